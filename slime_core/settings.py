"""Every setting that comes from the environment, read here and only here, at call time.

Reading at call time (not import time) lets a test or the app point SLIME_CACHE elsewhere after slime_core
is imported. API keys are looked up by name through `secret`; callers never print what it returns.

| variable | meaning | default |
|---|---|---|
| SLIME_CACHE | root of the on-disk caches (embeddings, WordNet) | ~/.cache/slime |
| SLIME_EMBED_CACHE | where REST-encoder embeddings are cached | $SLIME_CACHE/embeddings |
| SLIME_DATA | dataset folder for pool images and captions | ../shared/data/flickr8k_subset1000, else assets/demo |
| SLIME_BUNDLE | attacker bundle the app loads | models/default |
| SLIME_APP_THREADS | torch threads in the app | 1 |
| SLIME_PAPER_FIGURES | JSON file of the paper's transcribed figures | none |
| SLIME_ENCODER_OVERRIDES | JSON registry overrides (tiny test models) | none |
| SLIME_OPEN_CLIP_DIR, SLIME_HF_DIR | folders holding paper-encoder weights | none |
| SLIME_GEMINI_BASE_URL, SLIME_COHERE_BASE_URL | REST endpoints (fake servers in tests) | the vendors' |
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


def cache_root() -> Path:
    return env_path("SLIME_CACHE") or Path.home() / ".cache" / "slime"


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
    shared = REPO.parent / "shared" / "data" / "flickr8k_subset1000"
    return shared if (shared / "captions.jsonl").exists() else DEMO_DATA


def bundle_dir() -> Path | None:
    return env_path("SLIME_BUNDLE")


def app_threads() -> int:
    return int(env("SLIME_APP_THREADS", "1"))


def paper_figures() -> Path | None:
    return env_path("SLIME_PAPER_FIGURES")


def encoder_overrides() -> str:
    return env("SLIME_ENCODER_OVERRIDES", "")


def weights_dir(name: str) -> Path | None:
    """SLIME_OPEN_CLIP_DIR / SLIME_HF_DIR: where a user keeps paper-encoder weights."""
    return env_path(name)


def quiet_litellm() -> None:
    """litellm fetches a price list from the web on import unless told to use its local copy."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
