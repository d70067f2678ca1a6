"""Datasets: a folder of `captions.jsonl` + `images/`, or COCO's `captions_*.json` with an image folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from slime_core.errors import SlimeError


@dataclass
class Sample:
    name: str  # image file name, unique within a dataset
    path: Path | None  # None where the dataset has captions only
    captions: list[str]
    split: str = ""
    meta: dict = field(default_factory=dict)


def load_folder(folder: str | Path, split: str | list[str] | None = None, require_images: bool = True) -> list[Sample]:
    """Samples from `folder/captions.jsonl` (fields image, captions, split) with images in `folder/images/`."""
    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not index.exists():
        raise SlimeError(f"{folder}: no captions.jsonl here (expected one JSON object per line with 'image' and 'captions').")
    samples = []
    for lineno, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, captions = row["image"], list(row["captions"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SlimeError(f"{index}:{lineno}: not a valid record ({err}).") from None
        path = folder / "images" / name
        has_image = row.get("image_present", True) and path.exists()
        if require_images and not has_image:
            raise SlimeError(f"{index}:{lineno}: image {path} is missing.")
        meta = {k: v for k, v in row.items() if k not in ("image", "captions", "split")}
        samples.append(Sample(name, path if has_image else None, captions, str(row.get("split", "")), meta))
    return select_split(samples, split)


def load_coco(captions_json: str | Path, image_dir: str | Path | None = None, split: str | None = None,
              require_images: bool = True) -> list[Sample]:
    """Samples from COCO's `captions_{train,val}2017.json`; `split` defaults to the file's stem suffix."""
    captions_json = Path(captions_json)
    try:
        data = json.loads(captions_json.read_text())
        images = {img["id"]: img["file_name"] for img in data["images"]}
        annotations = data["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise SlimeError(f"{captions_json}: not a COCO captions file ({err}).") from None
    by_image: dict[int, list[str]] = {}
    for ann in annotations:
        by_image.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    split = split or captions_json.stem.split("_")[-1]
    samples = []
    for image_id, name in images.items():
        path = Path(image_dir) / name if image_dir else None
        if path is not None and not path.exists():
            if require_images:
                raise SlimeError(f"COCO image {path} is missing (image_dir={image_dir}).")
            path = None
        elif path is None and require_images:
            raise SlimeError("load_coco needs image_dir unless require_images=False.")
        samples.append(Sample(name, path, by_image.get(image_id, []), split, {"image_id": image_id}))
    return samples


def select_split(samples: list[Sample], split: str | list[str] | None) -> list[Sample]:
    if split is None:
        return samples
    wanted = {split} if isinstance(split, str) else set(split)
    chosen = [s for s in samples if s.split in wanted]
    if not chosen:
        found = sorted({s.split for s in samples})
        raise SlimeError(f"no samples in split {sorted(wanted)}; this dataset has splits {found}.")
    return chosen
