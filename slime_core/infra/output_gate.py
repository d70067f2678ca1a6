"""The output gate: every text the CLI prints or writes leaves through here, masked by `errors.mask_output`.

- `masked_streams()`: sys.stdout and sys.stderr wrapped for one command (line-buffered, so a key is never split
  across two writes and left unmasked); a reader that closes the pipe early (`slime pool | head -1`) ends the
  command quietly, as Unix tools do.
- `write_text(path, text, what)`: a result file, masked; a failed write (disk full, name too long) is one
  SlimeError naming the file, and what was computed is still printed by the caller where it prints.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from slime_core.infra.errors import SlimeError, mask_output

FLUSH_AT = 1 << 16  # a line longer than this is masked and written in pieces ...
KEEP = 4096  # ... each piece leaving this many characters for the next, so no key is cut in two


class MaskedStream:
    """A text stream that masks every complete line (or \\r-terminated progress update) before passing it on."""

    def __init__(self, stream):
        self._stream, self._pending = stream, ""

    def write(self, text) -> int:
        text = str(text)
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0 or len(self._pending) > FLUSH_AT:
            cut = cut if cut >= 0 else len(self._pending) - 1 - KEEP  # a key straddling the cut stays whole
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self._emit(ready)
        return len(text)

    def _emit(self, text: str) -> None:
        text = mask_output(text)
        try:
            self._stream.write(text)
        except UnicodeEncodeError:  # a lone surrogate, or a terminal that cannot show a character: escaped
            encoding = getattr(self._stream, "encoding", None) or "utf-8"
            self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def flush(self) -> None:
        if self._pending:
            ready, self._pending = self._pending, ""
            self._emit(ready)
        self._stream.flush()

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):  # isatty, fileno, encoding, ... of the real stream
        return getattr(self._stream, name)


@contextmanager
def masked_streams():
    """sys.stdout/sys.stderr masked for the block, restored (and flushed) after it."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(saved[0]), MaskedStream(saved[1])
    try:
        yield
        sys.stdout.flush()
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        sys.stdout, sys.stderr = saved


def quiet_broken_pipe() -> int:
    """After a reader closed stdout early: point stdout at /dev/null so the interpreter's final flush stays
    quiet, and return the status a Unix tool killed by SIGPIPE has (141)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def write_text(path, text: str, what: str = "output") -> Path:
    """`text`, masked, to `path` (UTF-8); an OSError is one SlimeError naming `what` and the file."""
    path = Path(path)
    try:
        path.write_text(mask_output(text), encoding="utf-8", errors="backslashreplace")
    except OSError as err:
        raise SlimeError(f"{what} {path} could not be written ({err.strerror or type(err).__name__}); "
                         f"nothing was saved there.") from None
    return path
