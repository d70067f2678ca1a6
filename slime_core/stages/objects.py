"""COCO object classes named by tags and captions, and set P/R/F1 of predicted against reference classes.

`coco_words.json` maps English nouns (and a few compounds: "soccer ball", "dirt bike", "football player") to
the 80 COCO class names as the detector spells them (models/fastestdet/coco.names). A word is mapped only where
the class is what it usually means; ambiguous words ("glass", "orange", "board", "bag", "mouse") are left out.
Words are looked up as written and as their noun lemma (`infer.lemma`: men -> man, puppies -> puppy).
Captions are matched left to right, longest key first, so "dirt bike" gives motorbike, not bicycle.

Scores compare per-image sets of classes. An image where both sets are empty scores precision = recall =
F1 = 1 (nothing to find, nothing claimed: a correct answer); exactly one empty set scores 0 for all three.
Every other image gets the usual P, R and F1 = 2PR / (P + R) (0 when P + R = 0).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from slime_core.stages import detect
from slime_core.stages.infer import _prf, lemma, parse_tag

WORDS_FILE = Path(__file__).resolve().parent / "coco_words.json"
POOL_OBJECTS = "pool_objects.json"  # in a bundle: what FastestDet sees in each pool photo


@functools.lru_cache(maxsize=1)
def coco_words() -> dict[str, str]:
    """word or compound -> COCO class name, as stored in coco_words.json."""
    return json.loads(WORDS_FILE.read_text())


@functools.lru_cache(maxsize=1)
def _index() -> tuple[dict[tuple[str, ...], str], int]:
    """(token tuple -> class for every key both as written and lemmatised, the longest key in tokens)."""
    index: dict[tuple[str, ...], str] = {}
    for key, cls in coco_words().items():
        words = tuple(key.split())
        index[words] = cls
        index.setdefault(tuple(lemma(w) for w in words), cls)
    return index, max(len(k) for k in index)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _lookup(raw: list[str]) -> str | None:
    index, _ = _index()
    return index.get(tuple(raw)) or index.get(tuple(lemma(w) for w in raw))


def _add(out: list[str], cls: str | None) -> None:
    if cls and cls not in out:
        out.append(cls)


def coco_classes(words: Iterable[str]) -> list[str]:
    """The COCO classes named by whole words or compounds ("dogs", "soccer ball"), in order of first
    appearance, without duplicates; words naming no class are skipped."""
    out: list[str] = []
    for w in words:
        if toks := _tokens(w):
            _add(out, _lookup(toks))
    return out


def objects_from_tags(tags: Iterable[str]) -> list[str]:
    """COCO classes of the nouns of relational tags (`infer.parse_tag`): a one-word tag is its noun; a two-word
    tag its noun, unless the whole tag is a compound ("soccer ball", "teddy bear"); longer tags give subject and
    object."""
    out: list[str] = []
    for tag in tags:
        parts = parse_tag(tag)
        if len(parts) == 2:
            _add(out, (coco_classes([tag]) or coco_classes([parts[1]]) or [None])[0])
        else:
            for cls in coco_classes([parts[0], parts[-1]] if len(parts) > 2 else parts):
                _add(out, cls)
    return out


def objects_from_captions(captions: str | Iterable[str]) -> list[str]:
    """COCO classes of the nouns in one image's caption(s), matched longest key first, each token used once."""
    out: list[str] = []
    for text in [captions] if isinstance(captions, str) else captions:
        toks, i = _tokens(text), 0
        while i < len(toks):
            cls, n = _match(toks, i)
            _add(out, cls)
            i += n
    return out


def _match(toks: list[str], i: int) -> tuple[str | None, int]:
    """(the class of the longest key starting at toks[i], its length), or (None, 1)."""
    for n in range(min(_index()[1], len(toks) - i), 0, -1):
        if cls := _lookup(toks[i:i + n]):
            return cls, n
    return None, 1


def object_scores(pred: list[list[str]], ref: list[list[str]]) -> dict[str, np.ndarray]:
    """Per-image set precision, recall and F1 of predicted against reference classes, as float64 arrays of
    len(pred); both sets empty scores 1, exactly one empty 0 (see the module docstring)."""
    if len(pred) != len(ref):
        raise ValueError(f"{len(pred)} predicted object lists for {len(ref)} reference lists")
    rows = []
    for p, r in zip(pred, ref):
        p, r = set(p), set(r)
        s = {"precision": 1.0, "recall": 1.0, "f1": 1.0} if not p and not r else _prf(len(p & r), len(p), len(r))
        rows.append((s["precision"], s["recall"], s["f1"]))
    arr = np.asarray(rows, np.float64).reshape(-1, 3)
    return {"precision": arr[:, 0], "recall": arr[:, 1], "f1": arr[:, 2]}


def frequent_objects(object_lists: list[list[str]], m: int) -> list[str]:
    """The prior: the m classes present in the most images (each image counts a class once), ties by name."""
    counts = Counter(c for objs in object_lists for c in set(objs))
    return sorted(counts, key=lambda c: (-counts[c], c))[:m]


# ---------------------------------------------------------------- objects detected in sets of photos

def detect_objects(images, progress: bool = False, desc: str = "detecting objects") -> list[list[str]]:
    """Each image's detected COCO classes, best first."""
    detector = detect.load_detector()
    return [detect.objects(detect.detect(im, detector=detector)) for im in tqdm(images, desc=desc, disable=not progress)]


def write_pool_objects(bundle_dir: Path, names: list[str], paths: list[Path], progress: bool = False) -> Path:
    """Detections on every pool photo, stored beside the bundle (atomically) so a clone without the photos still
    knows what its nearest public photos show. {"detector": ..., "objects": {name: [class, ...]}}."""
    found = detect_objects(list(paths), progress, "detecting objects in the pool")
    out = Path(bundle_dir) / POOL_OBJECTS
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"detector": "FastestDet (COCO-80), threshold %.2f" % detect.THRESHOLD,
                               "objects": dict(zip(names, found))}, separators=(",", ":")))
    os.replace(tmp, out)
    return out


def read_pool_objects(bundle_dir: Path) -> dict[str, list[str]] | None:
    path = Path(bundle_dir) / POOL_OBJECTS
    if not path.is_file():
        return None
    return {str(k): [str(c) for c in v] for k, v in json.loads(path.read_text())["objects"].items()}
