"""Results to standard JSON, and output paths checked before any slow work."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np

from slime_core.errors import SlimeError


def jsonable(obj):
    """inf/nan -> strings, numpy -> python, dataclass results -> dicts, so the JSON is standard."""
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else ("inf" if f > 0 else "-inf" if f < 0 else "nan")
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    return json.dumps(jsonable(obj), indent=indent)


def check_writable(path, what: str = "output", suffixes: tuple[str, ...] = ()) -> Path:
    """`path` as a Path, after making sure a file can be written there (and, given `suffixes`, that it ends in
    one of them); a one-line SlimeError naming the path otherwise. Nothing is left behind by the check.

    An existing path must be a regular file (or /dev/null, /dev/stdout, /dev/stderr): a FIFO would block and a
    device such as /dev/full fails only after the work."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise SlimeError(f"{what} {path} should end in {' or '.join(suffixes)}.")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:  # a name too long, a loop of links, a file where a folder should be
        raise SlimeError(f"{what} {path} cannot be written ({err.strerror or type(err).__name__}).") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise SlimeError(f"{what} {path} is a folder; name a file.")
    if info is not None and not stat.S_ISREG(info.st_mode):
        if str(path) in (os.devnull, "/dev/stdout", "/dev/stderr"):
            return path
        raise SlimeError(f"{what} {path} is not a regular file (a device, pipe or socket); name a file.")
    if not path.parent.is_dir():
        raise SlimeError(f"{what} {path}: folder {path.parent} does not exist.")
    existed = info is not None
    try:
        with open(path, "ab" if existed else "xb"):
            pass
    except OSError as err:
        raise SlimeError(f"{what} {path} cannot be written ({err.strerror or type(err).__name__}).") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def check_writable_folder(path, what: str = "output folder") -> Path:
    """A folder that exists and takes a new file, or whose parent does (it will be created)."""
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as err:  # a name too long
        raise SlimeError(f"{what} {path} cannot be written ({err.strerror or type(err).__name__}).") from None
    probe_dir = path if exists else path.parent
    if exists and not path.is_dir():
        raise SlimeError(f"{what} {path} is a file, not a folder.")
    if not probe_dir.is_dir():
        raise SlimeError(f"{what} {path}: folder {probe_dir} does not exist.")
    check_writable(probe_dir / ".slime_write_check", what)
    return path
