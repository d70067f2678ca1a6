"""Objects from pixels, measured: pool detections stored with a bundle, the prior, scores beside it."""

from __future__ import annotations

import json

import pytest

from slime_core.experiments.objects_eval import prior_objects, score_sources, union
from slime_core.stages.objects import POOL_OBJECTS, read_pool_objects, write_pool_objects
from tests.conftest import BLACK_DOG, DEMO, TAN_DOG


def test_pool_objects_round_trip_with_the_real_detector(tmp_path):
    names = [BLACK_DOG, TAN_DOG]
    path = write_pool_objects(tmp_path, names, [DEMO / "images" / n for n in names])
    assert path == tmp_path / POOL_OBJECTS and not list(tmp_path.glob("*.tmp"))
    stored = read_pool_objects(tmp_path)
    assert list(stored) == names
    assert stored[BLACK_DOG][0] == "dog"  # FastestDet finds the black dog (0.91 in detect.py's notes)
    assert "FastestDet" in json.loads(path.read_text())["detector"]


def test_a_bundle_without_pool_objects_reads_as_none(tmp_path):
    assert read_pool_objects(tmp_path) is None


def test_prior_is_the_most_frequent_classes_at_the_mean_count():
    train = [["person", "dog"], ["person"], ["person", "car", "dog"], []]
    assert prior_objects(train) == ["person", "dog"]  # 6 objects in 4 photos: m = round(1.5) = 2
    assert prior_objects([["a", "b"], ["b", "c"], ["b", "a"]]) == ["b", "a"]


def test_union_keeps_order_and_drops_repeats():
    assert union([["dog"], []], [["person", "dog"], ["car"]]) == [["dog", "person"], ["car"]]


def test_scores_beside_the_prior_with_known_answers():
    reference = [["dog"], ["person", "dog"], ["car"]]
    out = score_sources({"perfect": reference, "nothing": [[], [], []]}, reference, ["person"], n_boot=200)
    assert out["perfect"]["f1"]["mean"] == pytest.approx(1.0)
    assert out["nothing"]["f1"]["mean"] == pytest.approx(0.0)
    # prior "person": F1 0, 2/3, 0 -> mean 2/9
    assert out["prior"]["f1"]["mean"] == pytest.approx(2 / 9)
    assert out["perfect"]["vs_prior"]["diff"] == pytest.approx(1 - 2 / 9)
    assert out["perfect"]["n_images"] == 3
