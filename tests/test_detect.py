"""The object detector: decoding known answers on hand-built outputs (no model), the shipped FastestDet weights
on demo photos whose captions name a dog or a person, and the errors a user can meet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slime_core.infra import loaded_models
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages import detect

from conftest import BLACK_DOG, DEMO

LABELS = tuple((detect.MODEL_DIR / detect.LABELS_FILE).read_text().splitlines())
DOG, PERSON, CAT = 16, 0, 15
SIZE = (440, 220)  # width, height: 20 x 10 pixels per cell of the 22 x 22 grid
PEOPLE = "1082379191_ec1e53f996.jpg"  # "A lady and a man with no shirt sit on a dock ."


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _output(*cells) -> np.ndarray:
    """A raw 1x85x22x22 output, empty but for `cells`: (row, col, class, objectness, class score, x offset
    after tanh, w as a fraction of the image after sigmoid)."""
    out = np.zeros((1, 85, 22, 22), np.float32)
    for row, col, cls, obj, score, dx, w in cells:
        out[0, 0, row, col] = obj
        out[0, 1, row, col] = np.arctanh(dx)
        out[0, 2, row, col] = 0.0  # y offset 0: the box is centred on the cell's top edge
        out[0, 3, row, col] = _logit(w)
        out[0, 4, row, col] = 0.0  # sigmoid(0): half the image's height
        out[0, 5 + cls, row, col] = score
    return out


def test_one_dog_decodes_to_its_hand_computed_box():
    (found,) = detect.decode(_output((11, 10, DOG, 0.9, 0.9, 0.5, 0.25)), SIZE, LABELS)
    assert LABELS[DOG] == "dog" and found.label == "dog"
    assert found.score == pytest.approx(0.9 ** 0.6 * 0.9 ** 0.4)
    # centre x = (10 + 0.5) / 22 * 440 = 210, width 0.25 * 440 = 110; centre y = 11 / 22 * 220 = 110, height 110
    assert found.box == pytest.approx((155.0, 55.0, 265.0, 165.0), abs=1e-3)


def test_a_box_past_the_edge_is_clipped_to_the_photo():
    (found,) = detect.decode(_output((0, 0, DOG, 0.9, 0.9, 0.0, 0.5)), SIZE, LABELS)
    assert found.box == pytest.approx((0.0, 0.0, 110.0, 55.0), abs=1e-3)


def test_overlapping_boxes_of_one_class_keep_the_best_of_two_classes_keep_both():
    one_class = detect.decode(_output((11, 10, DOG, 0.9, 0.9, 0.0, 0.5), (11, 11, DOG, 0.8, 0.8, 0.0, 0.5)),
                              SIZE, LABELS)
    assert [(d.label, round(d.score, 3)) for d in one_class] == [("dog", 0.9)]
    two_classes = detect.decode(_output((11, 10, DOG, 0.9, 0.9, 0.0, 0.5), (11, 11, CAT, 0.8, 0.8, 0.0, 0.5)),
                                SIZE, LABELS)
    assert [d.label for d in two_classes] == ["dog", "cat"]
    assert detect.objects(two_classes[::-1] + one_class) == ["dog", "cat"]


def test_nothing_above_the_threshold_finds_nothing():
    assert detect.decode(_output((11, 10, DOG, 0.6, 0.6, 0.0, 0.5)), SIZE, LABELS) == []  # score 0.6 < 0.65
    assert detect.decode(_output(), SIZE, LABELS) == []
    assert len(detect.decode(_output((11, 10, DOG, 0.6, 0.6, 0.0, 0.5)), SIZE, LABELS, threshold=0.5)) == 1


@pytest.fixture(scope="module")
def detector():
    return detect.load_detector()


@pytest.mark.slow
def test_shipped_model_finds_the_dog_and_the_people(detector):
    assert detect.load_detector() is detector and ("fastestdet", str(detect.DEFAULT_MODEL.resolve())) in \
        loaded_models.in_memory()
    dog = detect.detect(DEMO / "images" / BLACK_DOG, detector=detector)
    assert "dog" in detect.objects(dog)
    best = dog[0]
    assert best.label == "dog" and 0 <= best.x0 < best.x1 <= 256 and 0 <= best.y0 < best.y1 <= 170
    people = Image.open(DEMO / "images" / PEOPLE)
    assert "person" in detect.objects(detect.detect(people, detector=detector))


def test_missing_or_corrupt_model_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(MissingModelError) as missing:
        detect.load_detector(tmp_path / "nope.onnx")
    assert "\n" not in str(missing.value) and str((tmp_path / "nope.onnx").resolve()) in str(missing.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    (tmp_path / "coco.names").write_text("\n".join(LABELS))
    with pytest.raises(SlimeError) as corrupt:
        detect.load_detector(bad)
    assert "\n" not in str(corrupt.value) and str(bad.resolve()) in str(corrupt.value)


def test_tiny_image_or_bad_threshold_is_refused_before_the_model(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (16, 16)).save(tiny)
    with pytest.raises(SlimeError, match="16x16 pixels; at least 32 on each side is needed"):
        detect.detect(tiny, detector=object())  # never reaches the (fake) detector
    with pytest.raises(SlimeError, match="threshold must be between 0 and 1"):
        detect.detect(tiny, threshold=1.5, detector=object())
