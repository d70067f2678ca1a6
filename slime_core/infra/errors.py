"""One exception type for every error a user can fix (bad input, missing model, missing key).

The CLI and the app catch `SlimeError` and show its message; anything else is a bug. A SlimeError masks
every configured secret in its own message when it is made, and `mask_secrets` does the same for any
other text that may reach a screen or a file (a provider's error echoing the key it was sent).
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

from slime_core.infra import settings

MASK = "***"
MIN_SECRET = 4  # shorter values ("1", "yes") would mask ordinary words
# "Bearer sk-...", "api_key=...", "x-api-key: ..." echoed by a server, whatever the key's value
_ECHOES = re.compile(
    r"(?i)(\bbearer\s+|\b(?:api[_-]?key|access[_-]?token|authorization|x-api-key|token)[\"']?\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9._~+/=\-]{6,})")
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|ya29\.[0-9A-Za-z_\-.]{10,})")


_registered: set[str] = set()  # secrets a surface knows beyond the environment (the app's st.secrets)
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=")


def register_secrets(values: Iterable) -> None:
    """Add values (e.g. Streamlit's st.secrets) that every later `mask_secrets`/`mask_output` masks."""
    _registered.update(str(v) for v in values if isinstance(v, (str, int)) and len(str(v)) >= MIN_SECRET)


def _b64_cores(value: str) -> set[str]:
    """Base64 text that every base64 encoding of a string containing `value` contains, whatever precedes it
    ("user:key" basic auth included): for each of the 3 byte offsets, the groups that hold the key's bytes only.
    Short cores (a key under ~9 bytes) would match ordinary text, so only the whole encoding is kept for those."""
    import base64

    raw = value.encode("utf-8", "surrogatepass")
    cores = {base64.b64encode(raw).decode().rstrip("=")}
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw + b"\0\0").decode()
        g0, g1 = -(-shift // 3), (shift + len(raw)) // 3
        core = enc[4 * g0: 4 * g1]
        if len(core) >= 8:
            cores.add(core)
    return cores | {c.replace("+", "-").replace("/", "_") for c in cores}


@functools.lru_cache(maxsize=64)
def _secret_patterns(values: tuple[str, ...]):
    """Two regexes: every secret raw or URL-encoded (any case), and the base64 cores of every secret."""
    from urllib.parse import quote, quote_plus

    plain, encoded = set(), set()
    for v in values:
        plain |= {v, quote(v, safe=""), quote(v), quote_plus(v)}
        encoded |= _b64_cores(v)
    alternation = lambda xs: "|".join(re.escape(x) for x in sorted(xs, key=len, reverse=True))  # noqa: E731
    return (re.compile(alternation(plain), re.IGNORECASE) if plain else None,
            re.compile(alternation(encoded)) if encoded else None)


def _mask_b64(text: str, pattern) -> str:
    """Each base64 token (a run of base64 characters) holding a secret's core, replaced whole by ***."""
    out, last = [], 0
    for m in pattern.finditer(text):
        if m.start() < last:
            continue
        start, end = m.start(), m.end()
        while start > last and text[start - 1] in _B64_CHARS:
            start -= 1
        while end < len(text) and text[end] in _B64_CHARS:
            end += 1
        out += [text[last:start], MASK]
        last = end
    return "".join(out) + text[last:] if out else text


def _secrets(extra: Iterable[str] = ()) -> tuple[str, ...]:
    values = set(settings.secret_values()) | _registered | {str(v) for v in extra if v}
    return tuple(sorted(v for v in values if len(v) >= MIN_SECRET))


def mask_output(text, extra: Iterable[str] = ()) -> str:
    """The output gate: `text` with every configured secret (environment variables named by
    `settings.secret_names`, values given to `register_secrets`, `extra`) replaced by ***, raw, URL-encoded
    (any case) or base64-encoded (also inside "user:key" basic auth), and vendor-shaped keys (sk-..., AIza...).
    Everything the CLI prints or writes, and what the app shows, passes through here."""
    text = str(text)
    plain, encoded = _secret_patterns(_secrets(extra))
    if plain is not None:
        text = plain.sub(MASK, text)
    if encoded is not None:
        text = _mask_b64(text, encoded)
    return _KEYLIKE.sub(MASK, text)


def mask_secrets(text, extra: Iterable[str] = ()) -> str:
    """`mask_output`, plus anything that looks like a key a server echoed back in an error ("Bearer sk-...",
    "api_key=..."): for error messages (the echo patterns would blank ordinary words in a caption).
    `extra`: more values to mask (e.g. the app's st.secrets)."""
    text = mask_output(text, extra)
    return _ECHOES.sub(lambda m: m.group(1) + MASK, text)


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
