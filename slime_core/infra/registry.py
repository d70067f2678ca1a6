"""One registry for everything the tool picks by name -- alignment methods, tag parsers, caption writers, defences,
embedding-store readers, audit engines -- in the manner of timm's `@register_model`: a member registers itself with a
decorator in its own file, and `names()` / `get()` are what the CLI's choices, the app's lists and the factories
ask. Members keep their registration order (the default first), read at call time, so a late registration (a
plugin, a test's toy) is offered everywhere at once.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from slime_core.infra.errors import SlimeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Members by name, each with optional keyword metadata (a writer's one-line description, a store's suffixes).

    `what` names a member in the one-line error for an unknown name: "unknown <what> '<name>'; use one of a, b."
    """

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict] = {}

    def add(self, name: str, entry: T, **meta) -> T:
        """Register `entry` as `name`; registering the same entry again is harmless, another one under a taken name
        is a programming error (two files claiming one name), not a user's."""
        taken = self._entries.get(name, entry)
        if taken is not entry:
            owner = getattr(taken, "__name__", taken)
            raise ValueError(f"a {self.what} named '{name}' is already registered ({owner}).")
        self._entries[name] = entry
        self._meta[name] = meta
        return entry

    def register(self, name: str, **meta) -> Callable[[T], T]:
        """Decorator form of `add`: `@REGISTRY.register("name")` above a class or function."""
        return lambda entry: self.add(name, entry, **meta)

    def remove(self, name: str) -> None:
        """Forget `name` (tests register toys and take them out again)."""
        self._entries.pop(name, None)
        self._meta.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        """(name, entry) in registration order."""
        return iter(list(self._entries.items()))

    def get(self, name: str) -> T:
        """The member `name`, or a one-line SlimeError that names the known ones."""
        if name not in self._entries:
            raise SlimeError(f"unknown {self.what} '{name}'; use one of {', '.join(self._entries)}.")
        return self._entries[name]

    def meta(self, name: str) -> dict:
        """The keyword metadata `name` was registered with."""
        self.get(name)
        return self._meta[name]
