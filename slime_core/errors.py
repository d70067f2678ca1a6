"""One exception type for every error a user can fix (bad input, missing model, missing key).

The CLI and the app catch `SlimeError` and show its message; anything else is a bug. A SlimeError masks
every configured secret in its own message when it is made, and `mask_secrets` does the same for any
other text that may reach a screen or a file (a provider's error echoing the key it was sent).
"""

from __future__ import annotations

import re
from typing import Iterable

from slime_core import settings

MASK = "***"
MIN_SECRET = 4  # shorter values ("1", "yes") would mask ordinary words
# "Bearer sk-...", "api_key=...", "x-api-key: ..." echoed by a server, whatever the key's value
_ECHOES = re.compile(
    r"(?i)(\bbearer\s+|\b(?:api[_-]?key|access[_-]?token|authorization|x-api-key|token)[\"']?\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9._~+/=\-]{6,})")
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|ya29\.[0-9A-Za-z_\-.]{10,})")


def mask_secrets(text, extra: Iterable[str] = ()) -> str:
    """`text` with every configured secret replaced by ***, case-insensitively, plus anything that looks
    like a key a server echoed back ("Bearer sk-...", "api_key=..."). `extra`: more values to mask
    (e.g. the app's st.secrets)."""
    text = str(text)
    values = set(settings.secret_values()) | {str(v) for v in extra if v}
    for value in sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True):
        text = re.sub(re.escape(value), MASK, text, flags=re.IGNORECASE)
    text = _ECHOES.sub(lambda m: m.group(1) + MASK, text)
    return _KEYLIKE.sub(MASK, text)


class SlimeError(ValueError):
    """A problem with the user's input or set-up, with a message that says how to fix it.

    The message is masked when the error is made, so no configured key can leave through it."""

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            try:
                args = (mask_secrets(args[0]),) + args[1:]
            except Exception:  # noqa: BLE001 - masking must never hide the error itself
                pass
        super().__init__(*args)


class MissingModelError(SlimeError):
    """A model, weight file, package or API key that a stage needs is not available."""
