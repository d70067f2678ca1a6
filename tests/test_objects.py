import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slime_core.stages.infer import lemma
from slime_core.stages.objects import (
    WORDS_FILE,
    coco_classes,
    coco_words,
    frequent_objects,
    object_scores,
    objects_from_captions,
    objects_from_tags,
)

COCO_NAMES = Path(__file__).resolve().parents[1] / "models" / "fastestdet" / "coco.names"


def test_every_word_maps_to_one_of_the_80_coco_names():
    names = [n for n in COCO_NAMES.read_text().splitlines() if n]
    assert len(names) == 80
    table = json.loads(WORDS_FILE.read_text())
    assert table == coco_words()
    assert set(table.values()) <= set(names)
    assert list(table) == sorted(table) and all(k == k.lower().strip() for k in table)
    for must in ("man", "woman", "child", "people", "dog", "puppy", "horse", "bike", "motorcycle", "boat", "ball",
                 "soccer ball", "frisbee", "skateboard", "surfboard", "snowboard", "kite", "bench"):
        assert must in table, must


def test_a_key_and_its_lemma_never_name_two_classes():
    table = coco_words()
    for key, cls in table.items():
        lemmatised = " ".join(lemma(w) for w in key.split())
        assert table.get(lemmatised, cls) == cls, (key, lemmatised)


def test_coco_classes_lemmatises_keeps_order_and_drops_duplicates():
    assert coco_classes(["Men", "dogs", "grass", "woman", "soccer ball", "puppies"]) == ["person", "dog", "sports ball"]
    assert coco_classes([]) == [] and coco_classes(["", "sky"]) == []


def test_objects_from_tags_known_answers():
    assert objects_from_tags(["man ride bicycle", "black dog", "dog catch frisbee"]) == [
        "person", "bicycle", "dog", "frisbee"]
    # a two-word tag is its noun unless it is a compound itself; three-word tags give subject and object
    assert objects_from_tags(["soccer ball", "teddy bear", "young boy", "man in shirt", "girl sit on bench"]) == [
        "sports ball", "teddy bear", "person", "bench"]
    assert objects_from_tags(["grass", "blue sky", "water"]) == []


def test_objects_from_captions_known_answers():
    caps = ["A man rides a dirt bike .", "Two football players chase a soccer ball near a pit bull .",
            "Children play with puppies on a couch ."]
    # "dirt bike" is a motorbike, not a bicycle; "football players" are people, not a ball; "pit bull" a dog
    assert objects_from_captions(caps) == ["person", "motorbike", "sports ball", "dog", "sofa"]
    assert objects_from_captions("A dog catches a frisbee in the grass") == ["dog", "frisbee"]
    assert objects_from_captions([]) == []


def test_object_scores_known_answers_and_empty_sets():
    s = object_scores([["dog", "person"], [], [], ["cat"], ["dog", "dog"]],
                      [["dog", "frisbee", "person", "car"], [], ["dog"], [], ["dog"]])
    np.testing.assert_allclose(s["precision"], [1.0, 1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(s["recall"], [0.5, 1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(s["f1"], [2 / 3, 1.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 predicted object lists for 1 reference"):
        object_scores([[], []], [[]])


def test_frequent_objects_counts_images_and_breaks_ties_by_name():
    lists = [["person", "dog", "dog"], ["person", "cat"], ["cat", "dog"], ["bicycle"]]
    assert frequent_objects(lists, 3) == ["cat", "dog", "person"]
    assert frequent_objects(lists, 10) == ["cat", "dog", "person", "bicycle"]
    assert frequent_objects([], 5) == []


CLASSES = st.lists(st.sampled_from(["person", "dog", "cat", "car", "boat", "kite"]), max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(CLASSES, CLASSES), max_size=8))
def test_object_scores_lie_in_unit_interval_and_f1_is_the_harmonic_mean(pairs):
    s = object_scores([p for p, _ in pairs], [r for _, r in pairs])
    assert all(len(v) == len(pairs) and v.dtype == np.float64 for v in s.values())
    p, r, f = s["precision"], s["recall"], s["f1"]
    for v in (p, r, f):
        assert np.all((0 <= v) & (v <= 1))
    harmonic = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=p + r > 0)
    np.testing.assert_allclose(f, harmonic)
