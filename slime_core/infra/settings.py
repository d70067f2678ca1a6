"""Every setting that comes from the environment, read here and only here, at call time.

Reading at call time (not import time) lets a test or the app point SLIME_CACHE elsewhere after slime_core
is imported. API keys are looked up by name through `secret`; callers never print what it returns.

| variable | meaning | default |
|---|---|---|
| SLIME_CACHE | root of the on-disk caches (embeddings, WordNet) | ~/.cache/slime |
| SLIME_EMBED_CACHE | where REST-encoder embeddings are cached | $SLIME_CACHE/embeddings |
| SLIME_DATA | dataset folder for pool images and captions | ../shared/data/flickr8k_8k_224, else assets/demo |
| SLIME_BUNDLE | attacker bundle the app loads | models/default |
| SLIME_APP_THREADS | torch threads in the app | 1 |
| SLIME_PAPER_FIGURES | JSON file of the paper's transcribed figures | slime_core/paper_figures.json |
| SLIME_ENCODER_OVERRIDES | JSON registry overrides (tiny test models) | none |
| SLIME_OPEN_CLIP_DIR, SLIME_HF_DIR | folders holding paper-encoder weights | none |
| SLIME_GEMINI_BASE_URL, SLIME_COHERE_BASE_URL | REST endpoints (fake servers in tests) | the vendors' |
| SLIME_REMOTE_DEADLINE | seconds one command may spend on remote calls (REST encoders, LLM/VLM), all retries included | 300 |
| SLIME_REMOTE_TIMEOUT | seconds one remote request may take | 30 |
| SLIME_REMOTE_RETRIES | extra tries of a remote request after a transient failure (429, 5xx, timeout, refused) | 3 |
| SLIME_TRUST_REMOTE_CODE | 1: allow Hugging Face models whose code comes with the weights (Nomic) | unset (refused) |
| SLIME_SECRET_NAMES | extra comma-separated variable names whose values are masked in every message | none |

Secrets: the values of every variable named in `secret_names()` (any *_API_KEY, *_TOKEN, *_SECRET,
*_ACCESS_KEY, plus SLIME_SECRET_NAMES) are masked in every error message (`errors.mask_secrets`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "assets" / "demo"


def env(name: str, default: str | None = None) -> str | None:
    """A variable's value with surrounding blanks removed; `default` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_path(name: str) -> Path | None:
    value = env(name)
    return Path(value).expanduser() if value else None


def secret(name: str) -> str | None:
    """An API key by its variable's name. Never log or print the value."""
    return env(name)


SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY", "_SECRET_KEY", "_PASSWORD")
KNOWN_SECRETS = ("CO_API_KEY", "GOOGLE_ACCESS_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                 "MISTRAL_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY", "OPENROUTER_API_KEY", "HF_TOKEN")


def secret_names() -> list[str]:
    """Names (never values) of the environment variables that hold secrets: the known API keys, every
    variable ending in a secret-like suffix, and those listed in SLIME_SECRET_NAMES."""
    extra = [n.strip() for n in (env("SLIME_SECRET_NAMES") or "").split(",") if n.strip()]
    found = [n for n in os.environ if n.upper().endswith(SECRET_SUFFIXES)]
    return sorted(set(KNOWN_SECRETS) | set(found) | set(extra) | set(_registry_key_names()))


def is_secret_name(name: str) -> bool:
    """Whether a setting called `name` holds a secret (the rule `secret_names` applies to the environment)."""
    upper = str(name).upper()
    return (upper.endswith(SECRET_SUFFIXES) or upper in {"API_KEY", "TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY"}
            or str(name) in set(KNOWN_SECRETS) | set(_registry_key_names())
            or str(name) in {n.strip() for n in (env("SLIME_SECRET_NAMES") or "").split(",")})


@functools.lru_cache(maxsize=1)
def _registry_key_names() -> tuple[str, ...]:
    """The "env" fields of the encoder registry (the variables REST encoders read their keys from), whatever
    their names end in."""
    import json

    try:
        table = json.loads((REPO / "slime_core" / "stages" / "encoders" / "registry.json").read_text())["encoders"]
        # raw JSON entries: settings sits below the encoders package and cannot use its typed EncoderCfg
        return tuple(sorted({entry["env"] for entry in table.values() if isinstance(entry.get("env"), str)}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()


def secret_values() -> list[str]:
    """The values of every secret variable that is set (for masking only; never print them)."""
    values = {env(n) for n in secret_names()}
    return sorted((v for v in values if v), key=len, reverse=True)


def trust_remote_code() -> bool:
    """SLIME_TRUST_REMOTE_CODE=1: run model code that ships with Hugging Face weights (Nomic needs it)."""
    return (env("SLIME_TRUST_REMOTE_CODE") or "").lower() in ("1", "true", "yes")


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "slime"


def cache_root() -> Path:
    return env_path("SLIME_CACHE") or default_cache_root()


def embeddings_cache() -> Path:
    """The image-embedding cache shared by the CLI, the app and `slime build`."""
    return cache_root() / "embeddings"


def api_embeddings_cache() -> Path:
    return env_path("SLIME_EMBED_CACHE") or embeddings_cache()


def data_dir() -> Path:
    """The full dataset beside the repo when present (research use), else the committed demo gallery."""
    chosen = env_path("SLIME_DATA")
    if chosen:
        return chosen
    shared = REPO.parent / "shared" / "data" / "flickr8k_8k_224"
    return shared if (shared / "captions.jsonl").exists() else DEMO_DATA


def bundle_dir() -> Path | None:
    return env_path("SLIME_BUNDLE")


def app_threads() -> int:
    return int(env("SLIME_APP_THREADS", "1"))


def paper_figures() -> Path:
    return env_path("SLIME_PAPER_FIGURES") or Path(__file__).resolve().parents[1] / "paper_figures.json"


def encoder_overrides() -> str:
    return env("SLIME_ENCODER_OVERRIDES", "")


def weights_dir(name: str) -> Path | None:
    """SLIME_OPEN_CLIP_DIR / SLIME_HF_DIR: where a user keeps paper-encoder weights."""
    return env_path(name)


def quiet_litellm() -> None:
    """litellm fetches a price list from the web on import unless told to use its local copy."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
