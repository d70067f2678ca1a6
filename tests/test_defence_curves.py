"""Curves on a small synthetic world (a fake attacker with the Attacker interface curves.py uses), plus
one small end-to-end run on the real default bundle (marked slow), and `slime defend`'s JSON contract on the
tiny bundle (fast) and on the default bundle (slow)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from slime_core.attack_spec import AttackSpec
from slime_core.experiments import defence_curves as curves
from slime_core.experiments.knee import knee_index, stop_index
from slime_core.infra.errors import SlimeError
from slime_core.pipeline import Attacker
from slime_core.present.figures import defence_figure
from slime_core.present.overview_png import render_png
from slime_core.present.tables import defence_table
from slime_core.stages import align
from slime_core.stages.defences import defence_spec
from slime_core.stages.metrics import NeighbourhoodScorer


def _unit(X):
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


class FakeDualEncoder:
    """The victim's text tower in the fake world: a tag's text embedding is the victim image embedding of a
    latent pointing at that tag, so zero-shot tagging works on clean embeddings."""

    modalities = ("image", "text")

    def __init__(self, vectors: dict):
        self.vectors = vectors

    def encode_texts(self, texts, batch_size=64, progress=False):
        return np.stack([self.vectors[t] for t in texts])


class FakeAttacker:
    """Images have a latent z; the victim and the attacker embed it linearly (different spaces), tags are
    directions in attack space and an image's reference tags are its 3 best tags; an image's captions name
    those tags. `dual=True` gives the victim a text tower."""

    def __init__(self, n_pool=120, n_test=24, latent=6, dv=20, da=16, n_tags=18, seed=0, data=Path("."), dual=False):
        rng = np.random.default_rng(seed)
        Mv, Ma = rng.standard_normal((latent, dv)), rng.standard_normal((latent, da))
        z = rng.standard_normal((n_pool + n_test, latent))
        Xv = _unit(z @ Mv + 0.05 * rng.standard_normal((len(z), dv))) + 0.5  # shifted: victim-like, non-negative-ish
        Xv = _unit(Xv)
        A = _unit(z @ Ma)
        self.tag_names = [f"tag{i}" for i in range(n_tags)]
        self.tag_vecs = _unit(rng.standard_normal((n_tags, da)))
        self.tag_text = _unit(rng.standard_normal((n_tags, 8)))
        pool_names = [f"pool{i}.jpg" for i in range(n_pool)]
        self.bundle = SimpleNamespace(pool={"images": pool_names}, attacker="fake-attacker", image_encoder="fake-att",
                                      manifest={"text_encoder": "fake-text"}, tags=self.tag_names, tag_text=self.tag_text)
        self.pool_attack, self._X_pool = A[:n_pool], Xv[:n_pool]
        self._alignments, self._extra_pools = align.FitCache(4), {}
        self._X_test, self._A_test = Xv[n_pool:], A[n_pool:]
        self.data = Path(data)
        best = lambda a: [self.tag_names[i] for i in np.argsort(-(self.tag_vecs @ a))[:3]]
        self._captions = {n: [f"a {' with a '.join(best(a))}"] for n, a in zip(pool_names, self.pool_attack)}
        self.refs = [best(a) for a in self._A_test]
        self.samples = [SimpleNamespace(name=f"test{i}.jpg", path=self.data / "images" / f"test{i}.jpg",
                                        captions=[f"a {' with a '.join(r)}", f"caption {i}"])
                        for i, r in enumerate(self.refs)]
        counts = np.zeros(n_tags)
        for r in self.refs:
            counts[[self.tag_names.index(t) for t in r]] += 1
        self._freq = [self.tag_names[i] for i in np.argsort(-counts, kind="stable")]
        # a tag's victim-side text vector: the victim embedding of the latent best aligned with the tag
        z_tag = np.linalg.lstsq(Ma.T, self.tag_vecs.T, rcond=None)[0].T
        self._encoder = FakeDualEncoder(dict(zip(self.tag_names, _unit(_unit(z_tag @ Mv) + 0.5)))) if dual else \
            SimpleNamespace(modalities=("image",))

    def victim_pool(self, victim, progress=False):
        return self._X_pool

    def victim_rows(self, victim, idx, progress=False):
        return self._X_pool[idx]

    def embed(self, name, paths, progress=False):
        return self._A_test if name == self.bundle.image_encoder else self._X_test

    def project(self, A):
        return np.atleast_2d(A)  # the fake's tags live in attack space itself

    def retrieve(self, A, k, own_rows=None, projected=None):
        s = (self.project(A) if projected is None else projected) @ self.tag_vecs.T
        return [[(self.tag_names[i], float(row[i])) for i in np.argsort(-row)[:k]] for row in s]

    def neighbours(self, A, k=5, exclude=frozenset()):
        names = self.bundle.pool["images"]
        s = np.atleast_2d(A) @ self.pool_attack.T
        return [[(names[j], float(row[j])) for j in np.argsort(-row)[:k]] for row in s]

    def frequent_tags(self, k):
        return self._freq[:k]

    def encoder(self, name):
        return self._encoder

    caption = Attacker.caption  # the real method: the fake only supplies captions_of
    attack_aligned = Attacker.attack_aligned  # the real batch core over the fake's retrieve and neighbours
    attack_batch = Attacker.attack_batch
    alignment, _fit_alignment = Attacker.alignment, Attacker._fit_alignment  # the real cached fit

    def captions_of(self, names):
        return [self._captions[n][0] for n in names if n in self._captions]

    def all_captions_of(self, name):
        return list(self._captions.get(name, []))

    def scorer(self):
        index = {t: i for i, t in enumerate(self.tag_names)}
        return NeighbourhoodScorer(self.tag_names, self.tag_text, lambda ts: self.tag_text[[index[t] for t in ts]], m=2)


def fake_setup(**kw):
    att = FakeAttacker(**kw)
    return att, curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=200, refs=att.refs,
                               scorer=att.scorer())


def test_undefended_attack_leaks_beyond_prior_and_utility_is_one():
    _, setup = fake_setup()
    u = setup.undefended
    assert set(u) >= {"defence", "strength", "leakage", "utility"}
    assert set(u["leakage"]) >= {"alignment_cosine", "exact_f1", "neighbourhood_f1"}
    assert u["utility"] == {"recall_at_1": 1.0, "recall_at_5": 1.0}
    assert u["leakage"]["alignment_cosine"] > 0.9
    assert u["leakage"]["exact_f1"] > u["baselines"]["frequent"]["exact_f1"] + 0.2
    assert u["leakage"]["exact_f1_vs_frequent"]["ci_low"] > 0


def test_noise_curve_falls_and_knee_and_stop_are_marked():
    _, setup = fake_setup()
    rows = curves.curve(setup, "noise", [0, 0.05, 0.3, 3.0])
    assert [r["strength"] for r in rows] == [0, 0.05, 0.3, 3.0]
    cos = [r["leakage"]["alignment_cosine"] for r in rows]
    r1 = [r["utility"]["recall_at_1"] for r in rows]
    assert cos[0] > cos[-1] and r1[0] == 1.0 and r1[-1] < 0.5
    assert sum(r["knee"] for r in rows) == 1
    assert sum(r["stops_leak"] for r in rows) <= 1
    assert rows[-1]["leakage"]["exact_f1_vs_frequent"]["ci_low"] <= 0.05  # huge noise: next to nothing beyond the prior
    text = defence_table(rows)
    assert "knee" in text and "prior baseline" in text


def test_rotation_and_shuffle_change_nothing_for_an_adaptive_attacker():
    _, setup = fake_setup()
    for name in ("rotation", "shuffle"):
        off, on = curves.curve(setup, name, [0, 1])
        assert on["leakage"]["alignment_cosine"] == pytest.approx(off["leakage"]["alignment_cosine"], abs=1e-4)
        assert on["leakage"]["exact_f1"] == pytest.approx(off["leakage"]["exact_f1"], abs=0.05)  # float ties only
        assert on["utility"] == off["utility"]


def test_rotation_and_shuffle_stop_a_non_adaptive_attacker():
    _, setup = fake_setup()
    base = setup.undefended["baselines"]["frequent"]
    clean = setup.undefended["leakage"]["non_adaptive"]
    # undefended, the pre-defence map is the adaptive attacker's map: the same leak
    assert clean["applicable"] and clean["exact_f1"] == pytest.approx(setup.undefended["leakage"]["exact_f1"], abs=1e-6)
    for name in ("rotation", "shuffle"):
        on = curves.curve(setup, name, [0, 1])[1]
        na = on["leakage"]["non_adaptive"]
        assert na["applicable"] and na["alignment_cosine"] < clean["alignment_cosine"] - 0.3
        assert na["neighbourhood_f1_vs_frequent"]["ci_low"] <= 0  # no longer above the prior ...
        assert on["leakage"]["exact_f1"] > base["exact_f1"] + 0.2  # ... while the adaptive attacker still leaks
    pca = curves.curve(setup, "pca", [4])[0]["leakage"]["non_adaptive"]
    assert pca == {"applicable": False, "why": pca["why"]} and "4-d" in pca["why"]
    assert "non-adaptive" in defence_table(curves.curve(setup, "shuffle", [1]))


def test_every_defence_runs_on_the_fake_world():
    _, setup = fake_setup()
    grid = {"noise": [0.1], "gaussian": [1000.0], "laplace": [1000.0], "rotation": [1], "shuffle": [1], "pca": [4],
            "projection": [4], "quantise": [8, 1]}
    out = curves.all_curves(setup, grid)
    assert set(out) == set(grid)
    assert out["pca"][0]["released_dim"] == 4
    assert out["quantise"][0]["utility"]["recall_at_1"] > 0.9  # 8 bits lose almost nothing


def test_caption_rouge_l_with_a_writer_beats_its_priors_until_the_noise_wins():
    from slime_core.stages.write import make_writer

    att = FakeAttacker()
    setup = curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=200, refs=att.refs,
                           scorer=att.scorer(), writer=make_writer("consensus"))
    clean, loud = curves.curve(setup, "noise", [0, 3.0])
    assert clean["leakage"]["caption_writer"] == "consensus-rougeL"
    prior = clean["baselines"]["random_caption"]["caption_rouge_l"]
    assert 0 < prior < clean["leakage"]["caption_rouge_l"] <= 1
    assert clean["leakage"]["caption_rouge_l_vs_random_caption"]["ci_low"] > 0
    assert loud["leakage"]["caption_rouge_l"] < clean["leakage"]["caption_rouge_l"]
    assert loud["leakage"]["caption_rouge_l_vs_random_caption"]["ci_low"] <= 0
    mean_prior = clean["baselines"]["mean_embedding_caption"]
    assert mean_prior["caption"].startswith("a tag")  # the writer's caption for the mean public embedding
    assert clean["leakage"]["caption_rouge_l_vs_mean_embedding_caption"]["ci_low"] > 0
    assert loud["leakage"]["caption_rouge_l_vs_mean_embedding_caption"]["ci_low"] <= 0
    assert loud["baselines"]["random_caption"]["caption_rouge_l"] == prior  # one fixed draw for every row
    assert "caption_rouge_l" not in fake_setup()[1].undefended["leakage"]  # no writer, no caption metric
    text = defence_table([clean, loud])
    assert "random public caption, ROUGE-L" in text and f"{clean['leakage']['caption_rouge_l']:.3f}" in text
    assert f"({mean_prior['caption']!r}".replace("'", '"') in text
    assert "caption ROUGE-L" in [t.name for t in defence_figure([clean, loud]).data]


def test_caption_metric_without_pool_captions_is_a_clear_error():
    from slime_core.stages.write import make_writer

    att = FakeAttacker()
    att._captions = {}
    with pytest.raises(SlimeError, match="need the public pool's captions"):
        curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=50, refs=att.refs,
                       scorer=att.scorer(), writer=make_writer("consensus"))


def test_zero_shot_tag_utility_only_for_dual_encoder_victims():
    att = FakeAttacker(dual=True)
    setup = curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=100, refs=att.refs,
                           scorer=att.scorer())
    rows = curves.curve(setup, "noise", [0, 3.0]) + curves.curve(setup, "rotation", [1])
    clean, loud, rotated = (r["utility"]["zero_shot_tag_f1"] for r in rows)
    assert clean > rows[0]["baselines"]["frequent"]["exact_f1"]  # the owner's own tagging beats frequent tags
    assert loud < clean
    assert rotated == pytest.approx(clean)  # the owner rotates its queries with the same key
    assert "zero_shot_tag_f1" not in fake_setup()[1].undefended["utility"]  # image-only victim


def test_retrieval_recall_definition():
    rng = np.random.default_rng(0)
    pool, test = _unit(rng.standard_normal((30, 5))), _unit(rng.standard_normal((6, 5)))
    targets = curves._nearest_targets(pool, test)
    assert curves.retrieval_recall(pool, test, targets) == {"recall_at_1": 1.0, "recall_at_5": 1.0}
    scrambled = curves.retrieval_recall(pool, _unit(rng.standard_normal((6, 5))), targets, ks=(1, 36))
    assert scrambled["recall_at_36"] == 1.0 and scrambled["recall_at_1"] < 1.0
    assert np.all(targets != 30 + np.arange(6))  # never itself


def _row(strength, r1, nb, base=0.1, ci_low=0.01):
    return {"defence": "noise", "strength": strength, "utility": {"recall_at_1": r1},
            "leakage": {"neighbourhood_f1": nb, "neighbourhood_f1_vs_frequent": {"ci_low": ci_low}},
            "baselines": {"frequent": {"neighbourhood_f1": base}}}


def test_knee_is_where_the_curve_bends_and_stop_is_the_weakest_safe_strength():
    rows = [_row(0, 1.0, 0.5), _row(1, 0.95, 0.15), _row(2, 0.5, 0.12, ci_low=-0.01), _row(3, 0.0, 0.1, ci_low=-0.05)]
    assert knee_index(rows, rows[0]) == 1  # leakage collapses while utility holds
    assert stop_index(rows) == 2
    assert stop_index(list(reversed(rows))) == 1  # order given does not matter: weakest first
    flat = [_row(0, 1.0, 0.5), _row(1, 1.0, 0.5)]
    assert knee_index(flat, flat[0]) == 0


def test_curve_errors():
    _, setup = fake_setup()
    with pytest.raises(SlimeError, match="unknown defence"):
        curves.curve(setup, "nope", [1])
    with pytest.raises(SlimeError, match="0 \\(off\\) or 1"):
        curves.curve(setup, "rotation", [0, 2])
    with pytest.raises(SlimeError, match="no strengths"):
        curves.curve(setup, "noise", [])
    with pytest.raises(SlimeError, match="larger than the embedding dimension"):
        curves.curve(setup, "pca", [64])


def test_figure_and_png(tmp_path):
    _, setup = fake_setup()
    rows = curves.curve(setup, "noise", [0, 0.1, 1.0])
    fig = defence_figure(rows)
    names = [t.name for t in fig.data]
    assert any(n.startswith("knee") for n in names) and "neighbourhood F1" in names
    png = tmp_path / "c.png"
    render_png({"noise": rows, "rotation": curves.curve(setup, "rotation", [0, 1])}, png, panel=(300, 200))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (600, 250)  # two 300x200 panels side by side, plus the title's half inch
        assert len(set(im.convert("RGB").getdata())) > 20  # drawn, not blank


@pytest.mark.slow
def test_real_bundle_end_to_end_on_a_few_images():
    """The default bundle and 6 test images; a cheap scorer stands in for MiniLM to keep this fast."""
    from slime_core.pipeline import Attacker
    from slime_core.stages.data import load_folder

    try:
        attacker = Attacker()
        samples = [s for s in load_folder(attacker.data, "test") if s.path is not None][:6]
    except SlimeError as err:
        pytest.skip(f"default bundle or data not available: {err}")
    b = attacker.bundle
    index = {t: i for i, t in enumerate(b.tags)}
    embed = lambda ts: np.stack([b.tag_text[index[t]] if t in index else np.zeros(b.tag_text.shape[1], np.float32)
                                 for t in ts])
    scorer = NeighbourhoodScorer(b.tags, b.tag_text, embed, m=5)
    setup = curves.prepare(attacker, samples, AttackSpec("lite0", 100, 10), n_boot=100, scorer=scorer)
    rows = curves.curve(setup, "rotation", [0, 1])
    assert rows[0]["leakage"]["alignment_cosine"] > 0.5
    assert rows[1]["leakage"]["alignment_cosine"] == pytest.approx(rows[0]["leakage"]["alignment_cosine"], abs=1e-3)
    assert rows[0]["utility"]["recall_at_1"] == 1.0


@pytest.mark.slow
def test_cli_defend_json_contract_with_a_caption_writer(capsys):
    """`slime defend ... --format json` on the default bundle: the issue's JSON contract, plus caption ROUGE-L."""
    import json

    from slime_core.cli.main import main

    code = main(["defend", "--victim", "lite0", "--defence", "noise", "--strength", "0,0.5", "--limit", "8",
                 "--k", "5", "--bootstrap", "50", "--caption", "consensus", "--format", "json", "--no-progress"])
    out = capsys.readouterr()
    if code == 2 and "error" in out.err:
        pytest.skip(f"default bundle or data not available: {out.err.strip()}")
    assert code == 0
    rows = json.loads(out.out)
    assert [r["strength"] for r in rows] == [0, 0.5]
    for r in rows:
        assert r["defence"] == "noise"
        assert set(r["leakage"]) >= {"alignment_cosine", "exact_f1", "neighbourhood_f1", "caption_rouge_l"}
        assert set(r["utility"]) == {"recall_at_1", "recall_at_5"}  # lite0 is image-only: no zero-shot field
        assert 0 <= r["leakage"]["caption_rouge_l"] <= 1
    assert rows[0]["utility"]["recall_at_1"] == 1.0
    assert rows[0]["baselines"]["random_caption"]["caption_rouge_l"] > 0
    assert rows[0]["baselines"]["mean_embedding_caption"]["caption"]


def test_cli_defend_json_contract_on_the_tiny_bundle(capsys, tiny_bundle_dir, tiny_data, tiny_env):
    """`slime defend ... --format json` on the tiny bundle: the same JSON contract, fast. The tiny victim is a
    dual encoder, so utility also has its zero-shot tag field."""
    import json

    from slime_core.cli.main import main

    from conftest import TINY_VICTIM

    code = main(["defend", "--bundle", str(tiny_bundle_dir), "--pool-data", str(tiny_data), "--data", str(tiny_data),
                 "--victim", TINY_VICTIM, "--defence", "noise", "--strength", "0,0.5", "--n-align", "30", "--k", "5",
                 "--bootstrap", "50", "--caption", "consensus", "--format", "json", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = json.loads(out.out)
    assert [r["strength"] for r in rows] == [0, 0.5]
    for r in rows:
        assert r["defence"] == "noise"
        assert set(r["leakage"]) >= {"alignment_cosine", "exact_f1", "neighbourhood_f1", "caption_rouge_l"}
        assert {"recall_at_1", "recall_at_5"} < set(r["utility"])
        assert 0 <= r["leakage"]["caption_rouge_l"] <= 1
    assert rows[0]["utility"]["recall_at_1"] == 1.0  # undefended: every image finds itself
    assert rows[0]["baselines"]["random_caption"]["caption_rouge_l"] > 0
    assert rows[0]["baselines"]["mean_embedding_caption"]["caption"]


def test_strengths_for_a_dimension_and_the_curve_progress_hook():
    assert curves.strengths_for("pca", 24) == [24, 16, 8, 4, 2]  # d itself first: nothing dropped
    assert curves.strengths_for("noise", 24) == list(defence_spec("noise").default_strengths)
    _, setup = fake_setup()
    seen = []
    rows = curves.curve(setup, "noise", [0, 3.0], on_step=lambda i, s: seen.append((i, s)))
    assert seen == [(0, 0), (1, 3.0)] and len(rows) == 2


def test_defence_panel_words_and_table_come_from_the_row():
    from slime_core.present import defence_panel as panel

    _, setup = fake_setup()
    clean, loud = curves.curve(setup, "noise", [0, 3.0])
    table = panel.leakage_rows(loud)
    assert [r["leakage"] for r in table] == ["alignment cosine", "tag F1 (exact)", "neighbourhood F1"]
    nb = table[2]
    assert nb["attack"] == loud["leakage"]["neighbourhood_f1"] and nb["prior"] == loud["baselines"]["frequent"]["neighbourhood_f1"]
    cards = panel.metric_cards(clean, setup.undefended)
    assert [c["label"] for c in cards] == ["Alignment cosine", "Tag F1 (exact)", "Neighbourhood F1",
                                           "Utility: recall@1", "Utility: recall@5"]
    assert cards[3]["value"] == "1.000" and cards[3]["delta"] == "+0.000"  # sigma 0: utility untouched
    assert panel.verdict(clean).startswith(":red[**Still leaking") and "least squares" in panel.linear_warning("rotation")
    assert panel.linear_warning("noise") is None
    knee = next(r for r in (clean, loud) if r["knee"])
    assert f"Knee (where the trade-off bends): strength {knee['strength']:g}" in panel.curve_note([clean, loud])
    fig = defence_figure([clean, loud], selected=loud)
    assert fig.data[-1].name == "selected: strength 3"


def test_a_measured_point_is_typed_and_writes_the_defend_json():
    _, setup = fake_setup()
    point = curves.measure(setup, "noise", 0.1)
    assert isinstance(point, curves.DefencePoint) and point.released_dim == 20 and point.n_align == 60
    row = point.to_dict()
    assert list(row) == ["defence", "strength", "leakage", "utility", "baselines", "released_dim", "defence_info",
                         "victim", "attacker", "n_align", "k", "method", "n_images", "seconds"]
    assert row["leakage"]["non_adaptive"]["applicable"] and json.loads(json.dumps(row)) == row
    assert list(setup.undefended) == list(row)  # the undefended point is the same JSON object
