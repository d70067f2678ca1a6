"""Datasets: a folder of `captions.jsonl` + `images/`, COCO's `captions_*.json` with an image folder, or
Karpathy's `dataset_coco.json` split file; `paper_protocol` and `write_folder` turn COCO into the folder
form that `slime build` reads (full train for the retriever, 500 val images as dev, 500 as test)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from slime_core.errors import SlimeError


@dataclass
class Sample:
    name: str  # image file name, unique within a dataset
    path: Path | None  # None where the dataset has captions only
    captions: list[str]
    split: str = ""
    meta: dict = field(default_factory=dict)


def check_image_name(name, where: str) -> str:
    """`name` if it is a relative path that stays inside its image folder; else SlimeError naming `where`.

    Refuses absolute paths ("/etc/hostname", "C:\\x"), any ".." part ("../../etc/hostname"), empty names
    and NUL bytes, on reading a dataset and on writing one, so no record can point outside its folder."""
    if not isinstance(name, str) or not name.strip():
        raise SlimeError(f"{where}: image name {name!r} is not a file name.")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if ("\0" in name or posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root
            or ".." in posix.parts or ".." in windows.parts):
        raise SlimeError(f"{where}: image name {name!r} is absolute or climbs out of its folder; "
                         f"use a path relative to the images folder.")
    return name


def load_folder(folder: str | Path, split: str | list[str] | None = None, require_images: bool = True) -> list[Sample]:
    """Samples from `folder/captions.jsonl` (fields image, captions, split) with images in `folder/images/`."""
    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not index.exists():
        raise SlimeError(f"{folder}: no captions.jsonl here (expected one JSON object per line with 'image' and 'captions').")
    try:
        raw = index.read_bytes()
    except OSError as err:
        raise SlimeError(f"{index}: cannot be read ({type(err).__name__}: {err.strerror or err}).") from None
    samples = []
    for lineno, data in enumerate(raw.splitlines(), 1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SlimeError(f"{index}:{lineno}: not UTF-8 text (byte {err.start + 1} of the line); "
                             f"save the file as UTF-8.") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, captions = row["image"], list(row["captions"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SlimeError(f"{index}:{lineno}: not a valid record ({err}).") from None
        if not isinstance(row, dict) or isinstance(row["captions"], str) or not all(
                isinstance(c, str) for c in captions):
            raise SlimeError(f"{index}:{lineno}: not a valid record ('captions' must be a list of texts).")
        check_image_name(name, f"{index}:{lineno}")
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
        domains = {img["id"]: img["domain"] for img in data["images"] if "domain" in img}  # nocaps: in/near/out-domain
        by_image: dict[int, list[str]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    except UnicodeDecodeError as err:
        raise SlimeError(f"{captions_json}: not UTF-8 text (byte {err.start + 1}); save it as UTF-8.") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, KeyError) else f"missing key {err}"
        raise SlimeError(f"{captions_json}: not a COCO captions file ({reason[:200]}).") from None
    split = split or captions_json.stem.split("_")[-1]
    samples = []
    for image_id, name in images.items():
        check_image_name(name, f"{captions_json} (image id {image_id})")
        path = Path(image_dir) / name if image_dir else None
        if path is not None and not path.exists():
            if require_images:
                raise SlimeError(f"COCO image {path} is missing (image_dir={image_dir}).")
            path = None
        elif path is None and require_images:
            raise SlimeError("load_coco needs image_dir unless require_images=False.")
        meta = {"image_id": image_id} | ({"domain": domains[image_id]} if image_id in domains else {})
        samples.append(Sample(name, path, by_image.get(image_id, []), split, meta))
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


def load_karpathy(split_json: str | Path, image_dir: str | Path | None = None, split: str | list[str] | None = None,
                  require_images: bool = True) -> list[Sample]:
    """Samples from Karpathy's `dataset_coco.json` (also the Flickr8k/30k files of the same format).

    Splits are the file's own ("train", "restval", "val", "test"); images are looked up as
    image_dir/filepath/filename, then image_dir/filename."""
    split_json = Path(split_json)
    try:
        rows = json.loads(split_json.read_text())["images"]
        records = [(r["filename"], r.get("filepath", ""), [x["raw"].strip() for x in r["sentences"]], r["split"],
                    {k: r[k] for k in ("cocoid", "imgid") if k in r}) for r in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # ValueError: bad JSON or not UTF-8 text
        raise SlimeError(f"{split_json}: not a Karpathy split file ({type(err).__name__}).") from None
    if require_images and image_dir is None:
        raise SlimeError("load_karpathy needs image_dir unless require_images=False.")
    samples = []
    for name, sub, captions, file_split, meta in records:
        check_image_name(name, str(split_json))
        if sub:
            check_image_name(sub, f"{split_json} (filepath of {name})")
        path = None
        if image_dir is not None:
            path = next((p for p in (Path(image_dir) / sub / name, Path(image_dir) / name) if p.exists()), None)
            if path is None and require_images:
                raise SlimeError(f"image {name} is not in {Path(image_dir) / sub} or {image_dir}.")
        samples.append(Sample(name, path, captions, file_split, meta))
    return select_split(samples, split)


def paper_protocol(train: list[Sample], held_out: list[Sample], n_dev: int = 500, n_test: int = 500,
                   seed: int = 0) -> list[Sample]:
    """The paper's COCO protocol: every `train` image trains the retriever ("train"); `n_dev` images of
    `held_out` (COCO val) validate ("dev") and `n_test` others are attacked ("test"), drawn with `seed`.
    The rest of `held_out` is dropped."""
    import random

    if n_dev + n_test > len(held_out):
        raise SlimeError(f"{n_dev} dev + {n_test} test images asked for; the held-out set has {len(held_out)}.")
    order = list(held_out)
    random.Random(seed).shuffle(order)
    relabel = lambda items, split: [Sample(s.name, s.path, s.captions, split, s.meta) for s in items]
    return relabel(train, "train") + relabel(order[:n_dev], "dev") + relabel(order[n_dev : n_dev + n_test], "test")


def write_folder(samples: list[Sample], out: str | Path, link: bool = True) -> Path:
    """A dataset folder (`captions.jsonl` + `images/`) for `slime build`/`eval`: images symlinked (or
    copied with link=False) from where they are; samples without an image are recorded as absent."""
    import shutil

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        raise SlimeError("image file names repeat across the chosen samples; they must be unique in one folder.")
    for s in samples:  # every name checked before anything is written
        check_image_name(s.name, f"{out / 'captions.jsonl'} (image {s.name!r})")
    with open(out / "captions.jsonl", "w") as f:
        for s in samples:
            target = out / "images" / s.name
            if s.path is not None and not target.exists():
                if link:
                    target.symlink_to(Path(s.path).resolve())
                else:
                    shutil.copyfile(s.path, target)
            row = {"image": s.name, "captions": s.captions, "split": s.split, **s.meta}
            if s.path is None:
                row["image_present"] = False
            f.write(json.dumps(row) + "\n")
    return out
