"""`slime eval`'s engine on eight demo test images: rows, baselines, intervals, and the guards, on the tiny
bundle; that more leaked pairs align better is checked on the real default attacker (`slow`)."""

import json

import numpy as np
import pytest

from slime_core.attack_spec import AttackSpec
from slime_core.experiments.evaluation import BASELINES, TAG_METRICS, Evaluation, TagRow, evaluate, tag_scores
from slime_core.infra.errors import SlimeError
from slime_core.present.tables import evaluation_table as format_table
from slime_core.stages.data import Sample, load_folder
from slime_core.stages.metrics import NeighbourhoodScorer

from conftest import TINY_ATTACKER, TINY_VICTIM


@pytest.fixture(scope="module")
def result(_tiny_attacker, tiny_overrides, tiny_data):
    from slime_core.stages.encoders import OVERRIDES_ENV

    samples = load_folder(tiny_data, "test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(OVERRIDES_ENV, tiny_overrides)
        typed = evaluate(_tiny_attacker, samples, spec=AttackSpec(TINY_VICTIM, (20, 30), (5,)), n_boot=200,
                         progress=False)
    assert isinstance(typed, Evaluation) and all(isinstance(r, TagRow) for r in typed.rows)
    return typed.to_dict()


def test_typed_result_writes_the_eval_json(result):
    """`Evaluation.to_dict()` is the `slime eval` JSON: its keys in their order, "objects" only where measured."""
    assert list(result) == ["victim", "attacker", "method", "n_images", "seed", "bootstrap", "rows", "captions"]
    assert list(result["rows"][0]) == ["n_align", "k", "alignment_cosine", "metrics", "against_oracle_tags",
                                       "scene_graph", "objects"]
    bare = TagRow(30, 5, {"heldout": 0.5}, {}, {}, {})
    assert bare.to_dict() == {"n_align": 30, "k": 5, "alignment_cosine": {"heldout": 0.5}, "metrics": {},
                              "against_oracle_tags": {}, "scene_graph": {}}
    assert Evaluation("v", "a", "ridge", 1, 0, 10, [bare]).to_dict()["rows"] == [bare.to_dict()]
    assert json.loads(json.dumps(result)) == result  # plain JSON all the way down


def test_result_shape(result):
    assert result["victim"] == TINY_VICTIM and result["attacker"] == TINY_ATTACKER and result["method"] == "ridge"
    assert result["n_images"] == 8 and result["bootstrap"] == 200
    assert [(r["n_align"], r["k"]) for r in result["rows"]] == [(20, 5), (30, 5)]


def test_rows_have_attack_baselines_and_intervals(result):
    for row in result["rows"]:
        cos = row["alignment_cosine"]
        assert 0 < cos["heldout"] <= 1
        assert -1 <= cos["ci_low"] <= cos["test"] <= cos["ci_high"] <= 1
        assert set(row["metrics"]) == set(TAG_METRICS)
        for name, m in row["metrics"].items():
            assert 0 <= m["ci_low"] <= m["attack"] <= m["ci_high"] <= 1, name
            for base in (*BASELINES, "oracle"):
                assert 0 <= m[base] <= 1, (name, base)
            for base in BASELINES:
                d = m[f"vs_{base}"]
                assert d["ci_low"] <= d["diff"] <= d["ci_high"]
                assert d["diff"] == pytest.approx(m["attack"] - m[base], abs=1e-9)
            if name.startswith("neighbourhood"):  # neighbourhood matching is never stricter than exact
                exact = row["metrics"]["exact" + name[len("neighbourhood"):]]
                assert m["attack"] >= exact["attack"] - 1e-12
        assert set(row["against_oracle_tags"]) == set(TAG_METRICS)


def test_format_table(result):
    table = format_table(result)
    lines = table.splitlines()
    assert f"victim {TINY_VICTIM} -> attacker {TINY_ATTACKER}" in lines[0]
    n = len(result["rows"])
    # header, rows, scene-graph header and a line per row, objects header and a line per row
    assert len(lines) == 3 + n + 1 + n + 1 + n
    row, last = result["rows"][1], lines[2 + n]
    o = row["objects"]["tags"]["f1"]
    assert lines[-1].split()[:2] == ["30", "5"] and f"tags {o['mean']:.3f} [{o['ci_low']:.3f},{o['ci_high']:.3f}]" in lines[-1]
    lines = lines[:-(n + 1)]
    assert last.split()[:3] == ["30", "5", f"{row['alignment_cosine']['test']:.3f}"]
    assert f"{row['metrics']['exact_f1']['attack']:.3f}" in last
    assert f"object_f1 {row['scene_graph']['object_f1']['attack']:.3f}" in lines[-1]
    g = row["scene_graph"]["relation_type_f1"]
    assert f"relation_type_f1 {g['attack']:.3f} [{g['ci_low']:.3f},{g['ci_high']:.3f}] | {g['frequent']:.3f}" in lines[-1]
    old = {**row, "scene_graph": {m: v for m, v in row["scene_graph"].items() if m != "relation_type_f1"}}
    assert "relation_type_f1" not in format_table({**result, "rows": [old], "captions": []})  # results saved before it
    assert "objects" not in format_table({**result, "rows": [{k: v for k, v in old.items() if k != "objects"}],
                                          "captions": []})


def test_pool_overlap_guard(tiny_attacker, demo_samples):
    pool_name = tiny_attacker.bundle.pool["images"][0]
    leaked = [Sample(pool_name, demo_samples[0].path, ["A dog ."], "test")]
    with pytest.raises(SlimeError, match="in the attacker's public pool"):
        evaluate(tiny_attacker, leaked, spec=AttackSpec(TINY_VICTIM, (30,), (5,)), progress=False)


def test_captions_only_split(tiny_attacker):
    with pytest.raises(SlimeError, match="no images to evaluate"):
        evaluate(tiny_attacker, [Sample("x.jpg", None, ["A dog ."], "test")], spec=AttackSpec(TINY_VICTIM),
                 progress=False)


def test_the_grid_is_checked_against_the_attacker_before_any_work(tiny_attacker, tiny_data):
    samples = load_folder(tiny_data, "test")
    pool = len(tiny_attacker.pool_attack)
    with pytest.raises(SlimeError, match=f"N={pool + 1} alignment pairs asked; the public pool holds {pool} images"):
        evaluate(tiny_attacker, samples, spec=AttackSpec(TINY_VICTIM, (5, pool + 1), 1), progress=False)
    vocab = len(tiny_attacker.bundle.tags)
    with pytest.raises(SlimeError, match=f"k={vocab + 1} tags asked"):
        evaluate(tiny_attacker, samples, spec=AttackSpec(TINY_VICTIM, 5, (1, vocab + 1)), progress=False)


def test_tag_scores_known_answer():
    vocab = ["black dog", "red car"]
    vecs = np.eye(2, dtype=np.float32)
    scorer = NeighbourhoodScorer(vocab, vecs, lambda ts: np.array([vecs[vocab.index(t)] for t in ts]), m=1)
    scores = tag_scores([["black dog", "red car"], ["red car"]], [["black dog"], ["black dog"]], scorer)
    assert set(scores) == set(TAG_METRICS)
    np.testing.assert_allclose(scores["exact_precision"], [0.5, 0.0])
    np.testing.assert_allclose(scores["exact_recall"], [1.0, 0.0])
    np.testing.assert_allclose(scores["exact_f1"], [2 / 3, 0.0])
    np.testing.assert_allclose(scores["neighbourhood_f1"], [2 / 3, 0.0])


def test_graph_scores_known_answers():
    from slime_core.experiments.evaluation import graph_scores
    from slime_core.stages.infer import graph_from_tags

    refs = [["black dog", "dog chase ball"], ["man sit on bench"]]
    ref_graphs = [graph_from_tags(r) for r in refs]
    same = graph_scores(refs, ["young boy"], ref_graphs, n_boot=50, seed=0)
    assert same["object_f1"]["attack"] == 1.0 and same["relation_f1"]["attack"] == 1.0
    assert same["object_f1"]["frequent"] == 0.0  # "boy" is in neither reference graph
    assert same["object_f1"]["vs_frequent"]["diff"] == 1.0
    half = graph_scores([["dog chase cat"], ["man sit on bench"]], ["young boy"], ref_graphs, n_boot=50, seed=0)
    assert half["object_f1"]["attack"] == pytest.approx((2 * 0.5 * 0.5 / 1.0 + 1.0) / 2)  # dog of {dog, ball}; cat wrong
    assert half["relation_f1"]["attack"] == pytest.approx(0.5)
    # relation-type F1: the multiset of predicate types of the typed relations. "dog chase ball" has none, so the
    # first image scores 0 on both sides (as infer's P/R/F1 does); "man sit on bench" is one "on".
    assert same["relation_type_f1"]["attack"] == pytest.approx(0.5) and same["relation_type_f1"]["frequent"] == 0.0
    assert same["relation_type_f1"]["vs_frequent"]["diff"] == pytest.approx(0.5)
    # right type, wrong objects: "boy on bench" + "cup on table" are two "on" against one -- P 1/2, R 1, F1 2/3 --
    # while no subject-object pair matches
    typed = graph_scores([["cat in box"], ["boy on bench", "cup on table"]], ["man on bench"], ref_graphs, n_boot=50, seed=0)
    assert typed["relation_type_f1"]["attack"] == pytest.approx((0.0 + 2 / 3) / 2)
    assert typed["relation_f1"]["attack"] == 0.0
    assert typed["relation_type_f1"]["frequent"] == pytest.approx(0.5)  # the prior's one "on" matches the second image
    assert typed["relation_type_f1"]["vs_frequent"]["diff"] == pytest.approx(2 / 6 - 0.5)
    assert set(typed) == {"object_f1", "relation_f1", "relation_type_f1"}


def test_final_captions_use_only_the_chosen_parts():
    from slime_core.experiments.evaluation import final_captions
    from slime_core.stages.write import CaptionWriter

    class Echo(CaptionWriter):
        model = "echo"

        def _generate(self, messages):
            return " / ".join(messages[-1]["content"].splitlines()[1:-1]), 0.0

    out = final_captions(Echo(), [["black dog", "dog chase ball"]], 10, ("objects",), progress=False)
    assert out == ["Objects: dog, ball"]
    out = final_captions(Echo(), [["black dog", "dog chase ball"]], 10, ("relations",), progress=False)
    assert out == ["Relations: dog chase ball"]
    with pytest.raises(SlimeError, match="LLM writer"):
        final_captions(object(), [["dog"]], 10, ("objects",), progress=False)


def test_captions_stand_beside_a_random_and_the_mean_embedding_caption(tiny_attacker, tiny_data, wordnet):
    from slime_core.stages.write import make_writer

    samples = load_folder(tiny_data, "test")
    res = evaluate(tiny_attacker, samples, spec=AttackSpec(TINY_VICTIM, (30,), (5,)), n_boot=100, progress=False,
                   writer=make_writer("consensus"), caption_k=5).to_dict()
    cap = res["captions"][0]
    pool_captions = tiny_attacker.captions_of(tiny_attacker.bundle.pool["images"])
    assert cap["mean_embedding_caption"] in pool_captions  # consensus picks one
    for key, v in cap["metrics"].items():
        for prior in ("random_caption", "mean_embedding_caption"):
            d = v[f"vs_{prior}"]
            assert d["diff"] == pytest.approx(v["attack"] - v[prior], abs=1e-9), (key, prior)
            assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert f'"{cap["mean_embedding_caption"]}"' in format_table(res)


# ---------------------------------------------------------------- known answers on the real default attacker


@pytest.mark.slow
def test_alignment_improves_with_n(attacker, small_test_folder):
    samples = load_folder(small_test_folder, "test")
    real = evaluate(attacker, samples, spec=AttackSpec("lite0", (30, 300), (5,)), n_boot=200,
                    progress=False).to_dict()
    assert real["victim"] == "lite0" and real["attacker"] == "lite2-minilm" and real["n_images"] == 8
    small, large = real["rows"]
    assert 0 < small["alignment_cosine"]["heldout"] < large["alignment_cosine"]["heldout"] <= 1
    assert large["alignment_cosine"]["test"] > small["alignment_cosine"]["test"]


def test_rows_score_objects_beside_the_most_frequent_objects(result):
    """The tiny bundle was built with its pool photos' detections, so every row scores objects."""
    for row in result["rows"]:
        o = row["objects"]
        assert set(o) == {"prior", "tags", "nearest", "union"}
        assert o["prior"]["objects"] and all(isinstance(c, str) for c in o["prior"]["objects"])
        for name in ("tags", "nearest", "union"):
            f1 = o[name]["f1"]
            assert 0 <= f1["ci_low"] <= f1["mean"] <= f1["ci_high"] <= 1 and o[name]["n_images"] == 8
            assert o[name]["vs_prior"]["diff"] == pytest.approx(f1["mean"] - o["prior"]["f1"]["mean"], abs=1e-9)
    assert "objects (COCO classes detected on the original photo)" in format_table(result)


def test_a_low_fidelity_maker_adds_the_generated_images_objects(_tiny_attacker, tiny_overrides, tiny_data):
    from slime_core.stages.encoders import OVERRIDES_ENV
    from tests.test_generate import tiny_generator

    dim = _tiny_attacker.bundle.manifest["dims"]["image"]
    samples = load_folder(tiny_data, "test")[:4]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(OVERRIDES_ENV, tiny_overrides)
        out = evaluate(_tiny_attacker, samples, spec=AttackSpec(TINY_VICTIM, (20,), (5,)), n_boot=50,
                       progress=False, lowfi=tiny_generator(dim))
    o = out.rows[0].objects
    assert o["generated"]["n_images"] == 4 and 0 <= o["generated"]["f1"]["mean"] <= 1
