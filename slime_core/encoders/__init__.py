"""Registry of image and text encoders; the table itself lives in registry.json.

`get_encoder("lite0")` builds an encoder by name. Each `kind` in the table maps to a factory in
one module, imported only when that kind is asked for, so the offline path never imports open_clip.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from functools import lru_cache
from pathlib import Path

from slime_core import settings
from slime_core.encoders.base import EmbeddingCache, Encoder, l2_normalise, load_image
from slime_core.errors import MissingModelError, SlimeError

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


OVERRIDES_ENV = "SLIME_ENCODER_OVERRIDES"


def env_overrides() -> dict[str, dict]:
    """Per-encoder registry overrides from $SLIME_ENCODER_OVERRIDES, a JSON object such as
    {"clip-vit-bigg-14": {"model_config": "tiny.json", "pretrained": null}} (tests, local weight files)."""
    text = settings.encoder_overrides()
    if not text:
        return {}
    try:
        table = json.loads(text)
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise ValueError("expected an object of objects")
    except ValueError as err:
        raise SlimeError(f"${OVERRIDES_ENV} is not a JSON object of per-encoder objects ({err}).") from None
    return table


def effective_overrides(name: str, overrides: dict | None = None) -> dict:
    """The registry fields that differ for `name` in this process: $SLIME_ENCODER_OVERRIDES, then `overrides`."""
    return {**env_overrides().get(name, {}), **(overrides or {})}


def fingerprint(name: str, overrides: dict | None = None) -> str:
    """`name`, or `name@<hash>` when registry fields are overridden: embeddings made under different
    overrides (a tiny random test model, another weight file) never share a cache entry or a bundle."""
    over = effective_overrides(name, overrides)
    if not over:
        return name
    return f"{name}@{hashlib.sha1(json.dumps(over, sort_keys=True, default=str).encode()).hexdigest()[:10]}"


# Packages whose version says which weights (or which code computing them) an encoder kind uses.
_KIND_PACKAGES = {
    "efficientnet_lite": ("timm",),
    "sentence_transformers": ("sentence-transformers",),
    "open_clip": ("open_clip_torch",),
    "hf_vision": ("transformers",),
}
_PIP_NAMES = {"open_clip": "open_clip_torch", "sentence_transformers": "sentence-transformers"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".gguf")


def _version(package: str) -> str:
    from importlib import metadata

    for candidate in (package, package.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def _stamp(value) -> list | None:
    """Size and modification time of a local weights file, or of the weight files in a local folder."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        return None
    path = Path(value).expanduser()
    try:
        if path.is_file():
            st = path.stat()
            return [path.name, st.st_size, st.st_mtime_ns]
        if path.is_dir():
            return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir())
                    if p.suffix in _WEIGHT_SUFFIXES]
    except OSError:
        return None
    return None


def weights_identity(name: str, overrides: dict | None = None) -> str:
    """A short hash of which weights `name` runs with in this process: its registry entry (with overrides),
    the versions of the packages holding its weights or code, and the size/mtime of any local weight file.
    Part of the embedding cache's key, so upgraded or replaced weights never reuse cached vectors."""
    spec = {**encoder_spec(name), **effective_overrides(name, overrides)}
    packages = list(_KIND_PACKAGES.get(spec.get("kind"), ())) + ([spec["package"]] if spec.get("package") else [])
    files = {k: _stamp(v) for k, v in sorted(spec.items()) if _stamp(v) is not None}
    parts = {"spec": spec, "packages": {p: _version(p) for p in packages}, "files": files}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def get_encoder(name: str, device: str | None = None, **overrides) -> Encoder:
    """Build the encoder called `name`. `overrides` replace fields of its registry entry
    (e.g. `pretrained=None` for random open_clip weights, `model=` a local folder); so do the entries
    of $SLIME_ENCODER_OVERRIDES, with `overrides` winning."""
    over = effective_overrides(name, overrides)
    spec = {**encoder_spec(name), **over}
    module_name, func = _FACTORIES[spec["kind"]].split(":")
    try:
        factory = getattr(importlib.import_module(module_name), func)
        encoder = factory(name, spec, device=device)
    except ImportError as err:  # a paper encoder's package is not installed: say which, not a traceback
        missing = (err.name or str(err)).split(".")[0]
        wheel = _PIP_NAMES.get(missing, missing.replace("_", "-"))
        raise MissingModelError(f"encoder '{name}' needs the Python package '{missing}': pip install {wheel} "
                                f"(or install the paper extras: pip install -e '.[paper]').") from None
    encoder.cache_key = fingerprint(name, overrides)
    encoder.weights_id = weights_identity(name, overrides)
    return encoder


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = [
    "Encoder", "EmbeddingCache", "l2_normalise", "load_image", "registry", "encoder_names",
    "encoder_spec", "attacker_spec", "get_encoder", "default_device", "env_overrides", "effective_overrides",
    "fingerprint", "weights_identity", "OVERRIDES_ENV",
]
