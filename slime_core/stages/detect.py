"""Objects from pixels: a small COCO-80 detector that lists what a photo shows, offline.

The paper's inference stages can condition on the objects a detector sees in an image (the victim's photo, or a
low-fidelity image made from its embedding). This module gives those objects from real weights that ship with
the repo: FastestDet (GitHub dog-qiuqiu/FastestDet, BSD-3-Clause, licence beside it), a 1 MB ONNX model run
by onnxruntime on the CPU, in `models/fastestdet/` so a fresh clone needs no network. It is weak (about 25%
COCO AP50) but real: it finds the black dog (0.91) and the people (0.8-0.88) in demo photos whose captions
name them, though it calls a tan dog a sheep.

    detect(image)       -> [Detection(label, score, x0, y0, x1, y1)], best first, boxes in the photo's pixels
    class_scores(image) -> each label's best cell score: a full ranking, for top-5 comparisons
    objects(detections) -> unique labels, best first
    decode(output, ...) -> the same from the raw 1x85x22x22 output; pure, so tests need no model

The model's contract (weights README): input 1x3x352x352, BGR, values /255, a plain resize (no letterbox).
Each of the 22x22 output cells holds an objectness (already through a sigmoid), box offsets x, y (through
tanh, relative to the cell), box size w, h (through a sigmoid, relative to the image) and 80 class scores
(already a softmax). A cell scores objectness^0.6 x best class^0.4, as the reference decoding does; cells
above the threshold become boxes and `torchvision.ops.batched_nms` keeps the best of overlapping boxes of
one class.

Speed: 0.007 s a photo on this 2-core CPU (median of 20 `detect` calls on a 256x170 demo photo after one
warm-up, image reading, resizing and NMS included; 6.8-7.3 ms over three runs, the model itself about 3.4 ms).
Measured while a long benchmark and the test suite kept both cores busy (load average above 5), so an idle
machine is faster. Loading the model takes 0.05-0.1 s, once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms

from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders.base import load_image

MODEL_DIR = settings.REPO / "models" / "fastestdet"
DEFAULT_MODEL = MODEL_DIR / "FastestDet.onnx"
LABELS_FILE = "coco.names"  # beside the model: the 80 class names in output order
INPUT_SIZE = 352
HEAD = 5  # objectness, x, y, w, h before the class scores
THRESHOLD = 0.65  # the reference's score threshold
IOU = 0.45  # the reference's NMS overlap


@dataclass(frozen=True)
class Detection:
    """One object: its COCO label, its score in [0, 1] and its box in pixels of the original image."""

    label: str
    score: float
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class Detector:
    """A loaded model: the onnxruntime session, its input's name and the class labels in output order."""

    session: object
    input_name: str
    labels: tuple[str, ...]


def load_detector(path=None) -> Detector:
    """The detector at `path` (default: the copy shipped in models/fastestdet/), loaded once per process.
    MissingModelError naming the file when it is absent or not a usable model."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    return _load_detector(str(path.resolve()))


@loaded_models.load_once("fastestdet")
def _load_detector(path: str) -> Detector:
    import onnxruntime  # only a process that detects pays for the import

    model = Path(path)
    if not model.is_file():
        raise MissingModelError(f"object detector model {model} not found "
                                f"(the repo ships FastestDet.onnx in models/fastestdet/).")
    names = model.parent / LABELS_FILE
    if not names.is_file():
        raise MissingModelError(f"object detector labels {names} not found; they belong beside {model.name}.")
    labels = tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
    options = onnxruntime.SessionOptions()
    # One thread without spin-waiting: the model is tiny, and on the busy 2-core machine one quiet thread ran
    # it in 3.4 ms where onnxruntime's default (all cores, spinning) took 7.9 ms and held both cores.
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for every kind of bad file
        reason = (str(err).splitlines() or ["unreadable"])[0][:200]
        raise MissingModelError(f"object detector model {model} is not a readable ONNX model ({reason}).") from None
    channels = session.get_outputs()[0].shape[1]
    if channels != HEAD + len(labels):  # a different model, or labels for another one
        raise MissingModelError(f"object detector model {model} gives {channels} channels per cell; "
                                f"{HEAD} + the {len(labels)} labels in {names.name} were expected.")
    return Detector(session, session.get_inputs()[0].name, labels)


def preprocess(image: Image.Image) -> np.ndarray:
    """(1, 3, 352, 352) float32 in [0, 1], BGR: the reference reads photos with OpenCV, so the weights were
    trained on blue-green-red planes. A plain resize, no letterbox, as the model was trained; PIL's bilinear
    (antialiased when shrinking) stands in for the reference's OpenCV INTER_AREA, so we need no OpenCV."""
    resized = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    bgr = np.asarray(resized, dtype=np.float32)[:, :, ::-1] / 255.0
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode(output: np.ndarray, size: tuple[int, int], labels, threshold: float = THRESHOLD,
           iou: float = IOU) -> list[Detection]:
    """Detections from the model's raw output (1, 5 + classes, rows, cols) for a photo of `size` (width,
    height) pixels, best first; boxes are clipped to the photo."""
    grid = np.asarray(output, dtype=np.float32)[0]
    if grid.ndim != 3 or grid.shape[0] != HEAD + len(labels):
        raise ValueError(f"detector output {np.shape(output)} does not fit {len(labels)} labels")
    rows, cols = grid.shape[1:]
    classes = grid[HEAD:]
    score = grid[0].clip(0, None) ** 0.6 * classes.max(axis=0).clip(0, None) ** 0.4
    ys, xs = np.nonzero(score > threshold)
    if len(ys) == 0:
        return []
    cell = grid[:, ys, xs]  # (channels, found)
    cx = (xs + np.tanh(cell[1])) / cols  # centre: the cell's corner plus an offset in (-1, 1) cells
    cy = (ys + np.tanh(cell[2])) / rows
    w, h = _sigmoid(cell[3]), _sigmoid(cell[4])  # size as a fraction of the whole image
    width, height = size
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    boxes = boxes.clip(0, [width, height, width, height]).astype(np.float32)
    found, kind = score[ys, xs].astype(np.float32), classes[:, ys, xs].argmax(axis=0)
    # per class: a dog's box never hides the person holding its lead
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(found), torch.from_numpy(kind), iou).numpy()
    return [Detection(labels[kind[i]], float(found[i]), *map(float, boxes[i])) for i in keep]


def detect(image, threshold: float = THRESHOLD, iou: float = IOU, detector: Detector | None = None) -> list[Detection]:
    """The objects in `image` (a path, bytes or a PIL image), best first. SlimeError for an unreadable or tiny
    image, or a threshold outside [0, 1], before the model is loaded."""
    for name, value in (("threshold", threshold), ("iou", iou)):
        if not 0.0 <= value <= 1.0:
            raise SlimeError(f"detection {name} must be between 0 and 1, not {value}.")
    photo = load_image(image)
    detector = detector or load_detector()
    output = detector.session.run(None, {detector.input_name: preprocess(photo)})[0]
    return decode(output, photo.size, detector.labels, threshold, iou)


def class_scores(image, detector: Detector | None = None) -> np.ndarray:
    """(labels,) each label's best cell score anywhere in `image`, thresholds aside: a ranking of all labels, so
    two images can be compared by their top five even where nothing passes the detection threshold."""
    photo = load_image(image)
    detector = detector or load_detector()
    grid = detector.session.run(None, {detector.input_name: preprocess(photo)})[0][0]
    cells = grid[0].clip(0, None) ** 0.6 * grid[HEAD:].clip(0, None) ** 0.4  # (labels, rows, cols)
    return cells.reshape(len(detector.labels), -1).max(axis=1)


def objects(detections: list[Detection]) -> list[str]:
    """Each label once, in order of its best score."""
    ranked = sorted(detections, key=lambda d: d.score, reverse=True)
    return list(dict.fromkeys(d.label for d in ranked))
