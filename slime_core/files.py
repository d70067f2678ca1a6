"""Reading the user's files safely: regular files only (a FIFO blocks forever, /dev/zero never ends), symlinks
followed first, and a cap on the bytes read. Every refusal is one SlimeError naming the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from slime_core.errors import SlimeError

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
