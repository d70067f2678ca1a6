"""Datasets: a folder of `captions.jsonl` + `images/`, COCO's `captions_*.json` with an image folder, or
Karpathy's `dataset_coco.json` split file; `paper_protocol` and `write_folder` turn COCO into the folder
form that `slime build` reads (full train for the retriever, 500 val images as dev, 500 as test)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from slime_core.infra.errors import SlimeError
from slime_core.infra.files import read_bytes


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
    if any(part in ("", ".") for part in name.replace("\\", "/").split("/")):
        raise SlimeError(f"{where}: image name {name!r} is not a file name (an empty or '.' part, or a trailing "
                         f"slash).")
    if not _is_text(name) or any(ord(c) < 32 for c in name) or any(
            len(part.encode("utf-8")) > 255 for part in posix.parts) or len(name) > 1024:
        raise SlimeError(f"{where}: image name {name[:80]!r} is not a usable file name "
                         f"(control characters, undecodable text, or longer than 255 bytes).")
    return name


def check_plain_name(name, where: str) -> str:
    """`name` if it is one plain file name (no folder part at all), as a bundle's pool names must be."""
    check_image_name(name, where)
    if len(PurePosixPath(name).parts) != 1 or "\\" in name or name in (".", ".."):
        raise SlimeError(f"{where}: image name {name!r} is not a plain file name (no folders allowed).")
    return name


MAX_CAPTION_CHARS = 100_000  # spaCy refuses texts over 1,000,000; no real caption comes near this


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\udc80" escape
        return False
    return True


def check_captions(captions, where: str) -> list[str]:
    """A list of texts, each valid Unicode and at most MAX_CAPTION_CHARS long; SlimeError naming `where`."""
    if isinstance(captions, (str, bytes, dict)) or not isinstance(captions, (list, tuple)) or not all(
            isinstance(c, str) for c in captions):
        raise SlimeError(f"{where}: not a valid record ('captions' must be a list of texts).")
    for c in captions:
        if len(c) > MAX_CAPTION_CHARS:
            raise SlimeError(f"{where}: a caption is {len(c):,} characters long; at most {MAX_CAPTION_CHARS:,} "
                             f"are taken.")
        if not _is_text(c):
            raise SlimeError(f"{where}: a caption holds an escape that is not text (a lone surrogate like \\udc80).")
    return list(captions)


def load_folder(folder: str | Path, split: str | list[str] | None = None, require_images: bool = True) -> list[Sample]:
    """Samples from `folder/captions.jsonl` (fields image, captions, split) with images in `folder/images/`."""
    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not os.path.lexists(index):
        raise SlimeError(f"{folder}: no captions.jsonl here (expected one JSON object per line with 'image' and 'captions').")
    raw = read_bytes(index, "captions file")  # regular files only (a FIFO would block), size capped
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
            name, captions = row["image"], row["captions"]
        except RecursionError:
            raise SlimeError(f"{index}:{lineno}: not a valid record (JSON nested too deeply).") from None
        except (ValueError, KeyError, TypeError, IndexError) as err:  # ValueError: bad JSON, a 5000-digit number
            reason = f"missing key {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:200]
            raise SlimeError(f"{index}:{lineno}: not a valid record ({reason}).") from None
        if not isinstance(row, dict):
            raise SlimeError(f"{index}:{lineno}: not a valid record (a JSON object with 'image' and 'captions').")
        captions = check_captions(captions, f"{index}:{lineno}")
        check_image_name(name, f"{index}:{lineno}")
        path = folder / "images" / name
        has_image = row.get("image_present", True) and _exists(path)
        if require_images and not has_image:
            raise SlimeError(f"{index}:{lineno}: image {path} is missing.")
        meta = {k: v for k, v in row.items() if k not in ("image", "captions", "split")}
        samples.append(Sample(name, path if has_image else None, captions, str(row.get("split", "")), meta))
    return select_split(samples, split)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name the file system cannot hold
        return False


def _read_json(path: Path, what: str):
    """A JSON file's value; one SlimeError naming the file for anything else (not a regular file, too large,
    not UTF-8, bad or too deeply nested JSON)."""
    data = read_bytes(path, what)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise SlimeError(f"{path}: not UTF-8 text (byte {err.start + 1}); save it as UTF-8.") from None
    except RecursionError:
        raise SlimeError(f"{path}: not a {what} (JSON nested too deeply).") from None
    except ValueError as err:
        raise SlimeError(f"{path}: not a {what} ({str(err).splitlines()[0][:200]}).") from None


def load_coco(captions_json: str | Path, image_dir: str | Path | None = None, split: str | None = None,
              require_images: bool = True) -> list[Sample]:
    """Samples from COCO's `captions_{train,val}2017.json`; `split` defaults to the file's stem suffix."""
    captions_json = Path(captions_json)
    data = _read_json(captions_json, "COCO captions file")
    try:
        images, domains = {}, {}
        for img in data["images"]:
            image_id = img["id"]
            if image_id in images:
                raise SlimeError(f"{captions_json}: image id {image_id!r} appears twice in 'images' "
                                 f"({images[image_id]!r} and {img['file_name']!r}); each id must be unique.")
            images[image_id] = img["file_name"]
            if "domain" in img:
                domains[image_id] = img["domain"]  # nocaps: in/near/out-domain
        by_image: dict = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    except SlimeError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # TypeError: an unhashable id, a list
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, KeyError) else f"missing key {err}"
        raise SlimeError(f"{captions_json}: not a COCO captions file ({reason[:200]}).") from None
    unknown = [i for i in by_image if i not in images]
    if unknown:
        raise SlimeError(f"{captions_json}: {len(unknown)} caption(s) name image ids not in 'images' "
                         f"(first: {unknown[0]!r}).")
    split = split or captions_json.stem.split("_")[-1]
    samples = []
    for image_id, name in images.items():
        check_image_name(name, f"{captions_json} (image id {image_id})")
        path = Path(image_dir) / name if image_dir else None
        if path is not None and not _exists(path):
            if require_images:
                raise SlimeError(f"COCO image {path} is missing (image_dir={image_dir}).")
            path = None
        elif path is None and require_images:
            raise SlimeError("load_coco needs image_dir unless require_images=False.")
        meta = {"image_id": image_id} | ({"domain": domains[image_id]} if image_id in domains else {})
        captions = check_captions(by_image.get(image_id, []), f"{captions_json} (image id {image_id!r})")
        samples.append(Sample(name, path, captions, split, meta))
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
    data = _read_json(split_json, "Karpathy split file")
    try:
        rows = data["images"]
        records = [(r["filename"], r.get("filepath", ""), [x["raw"].strip() for x in r["sentences"]], r["split"],
                    {k: r[k] for k in ("cocoid", "imgid") if k in r}) for r in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
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
            path = next((p for p in (Path(image_dir) / sub / name, Path(image_dir) / name) if _exists(p)), None)
            if path is None and require_images:
                raise SlimeError(f"image {name} is not in {Path(image_dir) / sub} or {image_dir}.")
        captions = check_captions(captions, f"{split_json} (image {name!r})")
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


def check_dataset_out(out: str | Path, overwrite: bool = False) -> Path:
    """A folder `write_folder` may write, checked before any work: new, empty, or (with `overwrite`) an existing
    dataset folder; a file, a folder holding other things without `overwrite`, or one that cannot take a file is
    one SlimeError naming it."""
    from slime_core.infra.files import check_writable_folder

    out = Path(out)
    check_writable_folder(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SlimeError(f"--out {out} is not empty (it would lose its captions.jsonl and images); "
                         f"name a new or empty folder, or add --overwrite to replace the dataset there.")
    if (out / "images").exists() and not (out / "images").is_dir():
        raise SlimeError(f"--out {out}: {out / 'images'} is a file, not a folder.")
    return out


def write_folder(samples: list[Sample], out: str | Path, link: bool = True, overwrite: bool = False,
                 log=None) -> Path:
    """A dataset folder (`captions.jsonl` + `images/`) for `slime build`/`eval`: images symlinked (or
    copied with link=False) from where they are; samples without an image are recorded as absent.

    A non-empty `out` is refused unless `overwrite`; then every image named is replaced (never a stale one
    kept under a new caption), captions.jsonl is replaced whole (written beside it, then renamed), and files
    in images/ that the new captions.jsonl does not name are left and counted through `log`."""
    import shutil

    from slime_core.infra.errors import mask_output

    out = check_dataset_out(out, overwrite)
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1) if len(names) < 5000 else "?"
        raise SlimeError(f"{out / 'captions.jsonl'}: image file names repeat across the chosen samples (first: "
                         f"{dup!r}); they must be unique in one folder.")
    for s in samples:  # every name checked before anything is written
        check_image_name(s.name, f"{out / 'captions.jsonl'} (image {s.name!r})")
    index = out / "captions.jsonl"
    tmp = out / ".captions.jsonl.tmp"
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for s in samples:
            target = out / "images" / s.name
            if s.path is not None:
                if os.path.lexists(target):
                    if target.is_dir() and not target.is_symlink():
                        raise SlimeError(f"--out {out}: {target} is a folder; it cannot be replaced by an image.")
                    target.unlink()  # a stale image of the same name would answer for the new one
                target.parent.mkdir(parents=True, exist_ok=True)
                if link:
                    target.symlink_to(Path(s.path).resolve())
                else:
                    shutil.copyfile(s.path, target)
            row = {"image": s.name, "captions": s.captions, "split": s.split, **s.meta}
            if s.path is None:
                row["image_present"] = False
            rows.append(json.dumps(row))
        tmp.write_text(mask_output("\n".join(rows) + ("\n" if rows else "")), encoding="utf-8")
        os.replace(tmp, index)
    except OSError as err:
        raise SlimeError(f"--out {out}: writing the dataset failed ({err.strerror or type(err).__name__}"
                         f"{': ' + str(err.filename) if err.filename else ''}); captions.jsonl was not replaced.") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    named = set(names)
    stale = [p for p in (out / "images").rglob("*") if not p.is_dir() and
             p.relative_to(out / "images").as_posix() not in named]
    if stale and log is not None:
        log(f"note: {len(stale)} file(s) in {out / 'images'} are not named by the new captions.jsonl "
            f"(first: {stale[0].name}); they are left there and never read.")
    return out
