"""The one owner of loaded models.

Every set of weights this process reads into memory (the image and text encoders, the spaCy or Stanza parser, the
local caption LLM) is loaded here once per identity and shared by the CLI, the experiments and every session of
the app. The objects built around the weights (an `Encoder`, a `SpacyParser`, a `CaptionWriter`) stay cheap to
make, so nobody else needs to cache them: the app caches the `Attacker` (the bundle's arrays) and derived data,
never a model.

A key is a tuple whose first item names the kind of model, e.g. ("efficientnet_lite", "tf_efficientnet_lite2",
package, "cpu"); a loader whose positional arguments are the model's identity says so with `@load_once(kind)`. `in_memory()` lists what is loaded; `release()` drops models (tests, a long-lived server freeing memory).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_models: dict[Hashable, object] = {}
_loading: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()


def shared(key: tuple, load: Callable[[], T]) -> T:
    """The model under `key`, loaded by `load()` the first time it is asked for. Two threads asking at once (two
    app sessions) wait for one load; a load that raises stores nothing, so the next call tries again."""
    if key in _models:
        return _models[key]
    with _guard:
        lock = _loading.setdefault(key, threading.Lock())
    with lock:
        if key not in _models:
            _models[key] = load()
        return _models[key]


def load_once(kind: str):
    """Decorator for a loader whose positional arguments name the model: its result is `shared` under
    (kind, *arguments). Keyword arguments are refused, so one model never hides under two keys."""
    def wrap(load: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(load)
        def loaded(*identity):
            return shared((kind, *identity), lambda: load(*identity))
        return loaded
    return wrap


def in_memory() -> list[tuple]:
    """The keys of the models loaded in this process, in load order."""
    return list(_models)


def release(kind: str | None = None) -> int:
    """Drop the loaded models of one kind (all with None); returns how many were dropped. Objects already holding
    a model keep it alive until they go."""
    with _guard:
        keys = [k for k in _models if kind is None or k[0] == kind]
        for k in keys:
            del _models[k]
        return len(keys)
