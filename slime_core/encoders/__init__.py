"""Registry of image and text encoders; the table itself lives in registry.json.

`get_encoder("lite0")` builds an encoder by name. Each `kind` in the table maps to a factory in
one module, imported only when that kind is asked for, so the offline path never imports open_clip.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path

from slime_core.encoders.base import EmbeddingCache, Encoder, l2_normalise, load_image
from slime_core.errors import SlimeError

_FACTORIES = {
    "efficientnet_lite": "slime_core.encoders.offline:build_efficientnet_lite",
    "sentence_transformers": "slime_core.encoders.offline:build_sentence_transformer",
    "open_clip": "slime_core.encoders.open_clip:build_open_clip",
    "hf_vision": "slime_core.encoders.hf:build_hf_vision",
    "gemini": "slime_core.encoders.api:build_gemini",
    "cohere": "slime_core.encoders.api:build_cohere",
}


@lru_cache(maxsize=1)
def registry() -> dict:
    return json.loads((Path(__file__).with_name("registry.json")).read_text())


def encoder_names(offline_only: bool = False) -> list[str]:
    table = registry()["encoders"]
    return [n for n, spec in table.items() if spec.get("offline") or not offline_only]


def encoder_spec(name: str) -> dict:
    table = registry()["encoders"]
    if name not in table:
        raise SlimeError(f"unknown encoder '{name}'; known: {', '.join(table)}.")
    return dict(table[name])


def attacker_spec(name: str) -> dict:
    table = registry()["attackers"]
    if name not in table:
        raise SlimeError(f"unknown attacker '{name}'; known: {', '.join(table)}.")
    return dict(table[name])


def get_encoder(name: str, device: str | None = None, **overrides) -> Encoder:
    """Build the encoder called `name`. `overrides` replace fields of its registry entry
    (e.g. `pretrained=None` for random open_clip weights, `model=` a local folder)."""
    spec = {**encoder_spec(name), **overrides}
    module_name, func = _FACTORIES[spec["kind"]].split(":")
    factory = getattr(importlib.import_module(module_name), func)
    return factory(name, spec, device=device)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = [
    "Encoder", "EmbeddingCache", "l2_normalise", "load_image", "registry", "encoder_names",
    "encoder_spec", "attacker_spec", "get_encoder", "default_device",
]
