"""Sensitive attributes (issue 24, part 2): the packaged table against the default vocabulary, one line for a bad
table (generated ones included), attribute scores on the tiny bundle with a known answer, and the AUC's known
answers."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from slime_core.experiments.attribute_eval import attribute_rows, auc_estimate, evaluate_attributes, rank_auc, resamples
from slime_core.infra.errors import SlimeError
from slime_core.stages import retrieve
from slime_core.stages.attributes import (attribute_scores, attribute_truth, load_attributes, normalise,
                                          parse_attributes)
from slime_core.stages.data import load_folder

from conftest import DEFAULT_BUNDLE, TINY_DIM, TINY_VICTIM

DEFAULT_VOCAB = json.loads((DEFAULT_BUNDLE / "vocab.json").read_text())["tags"]
DEFAULTS = {"children", "people", "women", "men", "animals", "vehicles", "water_beach", "street_city", "sport"}
SMALL = settings(max_examples=20, derandomize=True, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def tags_of(attributes, name: str, vocab=DEFAULT_VOCAB) -> set[str]:
    return {vocab[i] for i in attributes.tag_ids(vocab)[name]}


# ---------------------------------------------------------------- the packaged table

def test_packaged_table_matches_the_default_vocabulary():
    attributes = load_attributes(vocab=DEFAULT_VOCAB)
    assert DEFAULTS <= set(attributes.names)
    ids = attributes.tag_ids(DEFAULT_VOCAB)
    assert all(len(ids[name]) >= 1 for name in attributes.names)
    assert all(ids[n].dtype == np.int64 and np.all(np.diff(ids[n]) > 0) for n in attributes.names)
    assert {"young boy", "little girl", "group of child"} <= tags_of(attributes, "children")
    assert "man ride bike" in tags_of(attributes, "men") & tags_of(attributes, "vehicles") & tags_of(attributes, "people")
    assert "brown dog" in tags_of(attributes, "animals")


def test_words_match_whole_words_only():
    attributes = parse_attributes(b'{"men": {"words": ["man", "men"]}, "tee": {"words": ["T-Shirt"]}}', "t.json")
    vocab = ["man ride bike", "old woman", "snowman", "t shirt", "red shirt"]
    assert tags_of(attributes, "men", vocab) == {"man ride bike"}
    assert tags_of(attributes, "tee", vocab) == {"t shirt"}
    assert normalise("A boy's T-shirt, wet!") == "a boy s t shirt wet"


def test_truth_reads_every_caption_and_plural_words():
    attributes = load_attributes()
    names = attributes.names
    truth = dict(zip(names, attribute_truth(["Two men ride bikes down a city street .", "Some guys cycle."], attributes)))
    assert truth["men"] and truth["vehicles"] and truth["street_city"] and truth["people"]
    assert not truth["women"] and not truth["children"] and not truth["animals"]
    assert attribute_truth([], attributes).tolist() == [False] * len(names)


# ---------------------------------------------------------------- bad tables: one line naming the file and entry

BAD = [
    (b"not json", "not a JSON"),
    (b"\xff\xfe", "not a JSON"),
    (b"[1, 2]", "got list"),
    (b"{}", "empty"),
    (b'{"kids": ["child"]}', "'kids'"),
    (b'{"kids": {}}', "'kids'"),
    (b'{"kids": {"words": []}}', "'kids'"),
    (b'{"kids": {"words": "child"}}', "'kids'"),
    (b'{"kids": {"words": ["child", 3]}}', "'kids'"),
    (b'{"kids": {"words": ["child", "  ?! "]}}', "'kids'"),
    (b'{"kids": {"word": ["child"]}}', "'word'"),
    (b'{"kids": {"words": ["child"], "about": 1}}', "'kids'"),
    (b'{"": {"words": ["child"]}}', "name"),
    (b'{"kids": {"words": ["child"]}, "aliens": {"words": ["ufo", "martian"]}}', "'aliens'"),  # no vocabulary tag
]


@pytest.mark.parametrize("data,named", BAD)
def test_a_bad_table_is_one_line_naming_the_file_and_entry(tmp_path, data, named):
    path = tmp_path / "my_attributes.json"
    path.write_bytes(data)
    with pytest.raises(SlimeError) as err:
        load_attributes(path, vocab=DEFAULT_VOCAB)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and named in message, message


def test_a_missing_file_and_a_folder_are_one_line(tmp_path):
    for path in (tmp_path / "absent.json", tmp_path):
        with pytest.raises(SlimeError) as err:
            load_attributes(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_no_vocabulary_tag_is_caught_when_the_table_meets_a_vocabulary():
    attributes = parse_attributes(b'{"aliens": {"words": ["ufo"]}}', "mine.json")  # no vocabulary yet: loads
    with pytest.raises(SlimeError, match=r"^mine\.json: attribute 'aliens': none of its words"):
        attributes.tag_ids(DEFAULT_VOCAB)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
GOOD_ENTRY = st.fixed_dictionaries({"words": st.just(["dog"])}, optional={"about": st.text(max_size=10)})
BAD_ENTRY = JSON.filter(lambda v: not (isinstance(v, dict) and set(v) <= {"words", "about"} and
                                       isinstance(v.get("words"), list) and v["words"] and
                                       all(isinstance(w, str) and normalise(w) for w in v["words"]) and
                                       isinstance(v.get("about", ""), str)))


def _load_generated(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.json"
        path.write_bytes(data)
        try:
            return load_attributes(path, vocab=DEFAULT_VOCAB), None, path
        except SlimeError as err:
            return None, str(err), path


@SMALL
@given(good=st.lists(GOOD_ENTRY, max_size=3), bad=BAD_ENTRY, at=st.integers(0, 3))
def test_generated_bad_entry_is_named(good, bad, at):
    """A table of good entries with one bad entry among them: one line naming the file and the bad entry."""
    entries = [(f"good_{i}", e) for i, e in enumerate(good)]
    entries.insert(min(at, len(entries)), ("bad_entry", bad))
    _, message, path = _load_generated(json.dumps(dict(entries)).encode())
    assert message is not None and "\n" not in message
    assert str(path) in message and "'bad_entry'" in message, message


@SMALL
@given(data=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=20))
def test_generated_tables_load_or_fail_in_one_line(data):
    attributes, message, path = _load_generated(data)
    assert (attributes is None) != (message is None)
    if message is not None:
        assert "\n" not in message and str(path) in message, message


# ---------------------------------------------------------------- scores on the tiny bundle

def _tiny_attributes(attacker):
    """Two attributes from the tiny vocabulary: one word of its first tag, and one of its last tag's words."""
    first, last = attacker.bundle.tags[0].split()[-1], attacker.bundle.tags[-1].split()[0]
    return parse_attributes(json.dumps({"first": {"words": [first]}, "last": {"words": [last]}}).encode(), "tiny.json")


def _projected(attacker, A):
    return retrieve.project_images(attacker.bundle.heads, retrieve.image_features(A, attacker.bundle.semantics))


def test_scores_shape_dtype_and_the_retrieval_score(tiny_attacker):
    attributes = _tiny_attributes(tiny_attacker)
    A = tiny_attacker.pool_attack[:12]
    s = attribute_scores(tiny_attacker, A, attributes)
    assert s.shape == (12, 2) and s.dtype == np.float32
    # the same number as the max over the attribute's columns of the full prior-weighted score matrix
    q, keys = retrieve.with_prior(_projected(tiny_attacker, A), tiny_attacker.tag_vecs, tiny_attacker.prior,
                                  tiny_attacker.bundle.manifest["logit_scale"], tiny_attacker.alpha)
    ids = attributes.tag_ids(tiny_attacker.bundle.tags)
    want = np.stack([(q @ keys.T)[:, ids[n]].max(axis=1) for n in attributes.names], axis=1)
    np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-5)
    # batch-friendly: rows scored in two batches give what one batch gives; one row (d,) gives one row
    np.testing.assert_allclose(np.vstack([attribute_scores(tiny_attacker, A[:5], attributes),
                                          attribute_scores(tiny_attacker, A[5:], attributes)]), s, rtol=1e-5, atol=1e-6)
    assert attribute_scores(tiny_attacker, A[0], attributes).shape == (1, 2)
    assert attribute_scores(tiny_attacker, A[:0], attributes).shape == (0, 2)


def test_a_batch_attack_hands_its_projection_to_the_attribute_scores(tiny_attacker):
    """The audit scores attributes from the projection the retrieval already made: the same bits as projecting again,
    and the same tags as retrieving without it."""
    attributes = _tiny_attributes(tiny_attacker)
    A = tiny_attacker.pool_attack[:9]
    batch = tiny_attacker.attack_aligned(A, 5)
    np.testing.assert_array_equal(batch.projected, tiny_attacker.project(A))
    np.testing.assert_array_equal(attribute_scores(tiny_attacker, A, attributes, batch.projected),
                                  attribute_scores(tiny_attacker, A, attributes))
    assert batch.scored_tags == tiny_attacker.retrieve(A, 5)


def test_an_embedding_pointed_at_an_attribute_tag_scores_above_one_pointed_away(tiny_attacker):
    """Known answer: among random attack-space directions, the one whose projection is nearest the attribute's tag
    scores higher on that attribute than the one farthest from all of its tags."""
    attributes = _tiny_attributes(tiny_attacker)
    ids = attributes.tag_ids(tiny_attacker.bundle.tags)["first"]
    R = np.random.default_rng(0).standard_normal((4000, TINY_DIM)).astype(np.float32)
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    cos = _projected(tiny_attacker, R) @ tiny_attacker.tag_vecs[ids].T
    toward, away = R[np.argmax(cos[:, 0])], R[np.argmin(cos.max(axis=1))]
    s = attribute_scores(tiny_attacker, np.stack([toward, away]), attributes)
    assert s[0, 0] > s[1, 0]


def test_scores_refuse_the_wrong_dimension(tiny_attacker):
    with pytest.raises(SlimeError, match=f"{TINY_DIM}-d"):
        attribute_scores(tiny_attacker, np.ones((3, TINY_DIM + 1), np.float32), _tiny_attributes(tiny_attacker))


# ---------------------------------------------------------------- the AUC and the evaluation

def test_auc_known_answers():
    truth = np.array([0, 0, 1, 1, 0, 1], bool)
    assert rank_auc(truth.astype(float), truth) == 1.0  # perfect ranking
    assert rank_auc(-truth.astype(float), truth) == 0.0  # reversed
    assert rank_auc(np.zeros(6), truth) == 0.5  # all tied
    assert rank_auc(np.array([1.0, 2.0, 3.0, 2.0]), np.array([0, 0, 1, 1], bool)) == 0.875  # one tie counts half
    assert np.isnan(rank_auc(np.arange(3.0), np.ones(3, bool)))  # one class: no AUC


def test_auc_matches_sklearn_row_by_row():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(6, 40)).astype(float)  # many ties
    truth = rng.random((6, 40)) < 0.3
    got = rank_auc(scores, truth)
    np.testing.assert_allclose(got, [roc_auc_score(t, s) for s, t in zip(scores, truth)], rtol=1e-12)


def test_attribute_rows_interval_prevalence_and_reasons():
    attributes = parse_attributes(b'{"a": {"words": ["dog"]}, "none": {"words": ["dog"]}, '
                                  b'"all": {"words": ["dog"]}}', "t.json")
    rng = np.random.default_rng(0)
    t = rng.random(200) < 0.4
    truth = np.stack([t, np.zeros(200, bool), np.ones(200, bool)], axis=1)
    signal = np.stack([t + rng.normal(0, 0.8, 200)] * 3, axis=1)
    rows = attribute_rows(attributes, ["dog"], truth, {"N=1": signal, "oracle": signal}, n_boot=200, seed=0)
    a = rows[0]["auc"]["N=1"]
    assert a["ci_low"] <= a["mean"] <= a["ci_high"] and a["beats_chance"]
    assert a["vs_oracle"] == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}  # same scores: a paired zero
    assert rows[0]["prevalence"] == pytest.approx(t.mean()) and rows[0]["n_positive"] == int(t.sum())
    for row in rows[1:]:
        assert row["auc"] == {"N=1": None, "oracle": None} and "prevalence" in row["reason"]
    est, boot = auc_estimate(signal[:, 0], t, resamples(200, 50, 0))
    assert boot.shape == (50,) and est.mean == pytest.approx(roc_auc_score(t, signal[:, 0]))


def test_evaluate_attributes_on_the_tiny_bundle(tiny_attacker, tiny_data):
    samples = load_folder(tiny_data, "test")
    attributes = _tiny_attributes(tiny_attacker)
    result = evaluate_attributes(tiny_attacker, samples, victim=TINY_VICTIM, n_aligns=(10, 20), n_boot=50,
                                 attributes=attributes)
    json.dumps(result)  # JSON-ready
    assert list(result["systems"]) == ["N=10", "N=20", "oracle"] and result["n_images"] == len(samples)
    assert [r["attribute"] for r in result["rows"]] == ["first", "last"]
    for row in result["rows"]:
        assert (row["reason"] is None) == (0 < row["n_positive"] < len(samples))
        for entry in row["auc"].values():
            assert entry is None or (0.0 <= entry["mean"] <= 1.0 and not entry["ci_low"] > entry["ci_high"])
