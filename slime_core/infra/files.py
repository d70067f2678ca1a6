"""Reading the user's files safely: regular files only (a FIFO blocks forever, /dev/zero never ends), symlinks
followed first, and a cap on the bytes read. Every refusal is one SlimeError naming the file.

Output paths the user names: checked before any slow work (`check_writable`, `check_writable_folder`).

Writing our own caches: atomically (temporary file, then rename), and a cache that cannot be written is not the
user's problem: the run goes on without it, saying so once per folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Callable

from slime_core.infra.errors import SlimeError

MAX_IMAGE_BYTES = 256 << 20  # an image file larger than this is refused before it is read
MAX_DATA_BYTES = 4 << 30  # captions.jsonl, COCO/Karpathy JSON, embedding files


def regular_file(path, what: str = "file") -> Path:
    """`path` after checking that it (its symlink's target) is a regular file; SlimeError otherwise."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        raise SlimeError(f"{path}: no such {what}.") from None
    except OSError as err:  # a loop of links, a name too long, no permission on a folder
        raise SlimeError(f"{path}: cannot read the {what} ({err.strerror or type(err).__name__}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise SlimeError(f"{path}: is a folder, not a {what}.")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
                or stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise SlimeError(f"{path}: is {kind}, not a regular {what}; give a file.")
    return path


def read_bytes(path, what: str = "file", max_bytes: int = MAX_DATA_BYTES) -> bytes:
    """The contents of a regular file of at most `max_bytes`; one SlimeError naming the file otherwise."""
    path = regular_file(path, what)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise SlimeError(f"{path}: cannot read the {what} ({err.strerror or type(err).__name__}).") from None
    if len(data) > max_bytes:
        raise SlimeError(f"{path}: the {what} is larger than {max_bytes >> 20:,} MiB; refused.")
    return data


_CACHES_OFF: set[str] = set()  # cache folders already reported unwritable in this process


def cache_off(root, err: OSError) -> None:
    """Say once per folder that a cache cannot be written and that the run goes on without it."""
    if str(root) in _CACHES_OFF:
        return
    _CACHES_OFF.add(str(root))
    logging.getLogger("slime_core.cache").warning(
        "note: the cache %s cannot be written (%s); going on without it (set SLIME_CACHE to a writable folder to "
        "keep results between runs).", root, err.strerror or type(err).__name__)


def write_cache_entry(path: Path, write: Callable[[Path], None], root=None) -> bool:
    """`write(tmp)` into a temporary file beside `path`, then rename it to `path`: readers see the whole entry or
    none. False (said once for `root`, default the entry's folder) when the cache cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
        return True
    except OSError as err:  # SLIME_CACHE is a file, /proc, read-only, full, ...
        cache_off(root or path.parent, err)
        return False
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:
            pass


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


# ---- small JSON caches (the app's gallery scores) ----------------------------------------------------------

def cache_key(*parts) -> str:
    """A short digest of JSON-able parts: a cache entry's name."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_json_atomic(path: Path, data) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_json(path: Path):
    """The cached JSON, or None when absent or unreadable (an unreadable entry is a miss, not an error)."""
    try:
        return json.loads(read_bytes(path, "cache entry").decode("utf-8"))  # a FIFO or device here is a miss too
    except (OSError, ValueError, RecursionError, SlimeError):
        return None
