"""The registry behind `slime_core.stages.defences`: name -> `Defence` class, in registration order, and the functions
everything else asks (`list_defences`, `defence_spec`, `create_defence`, ...). The defences' own files register
themselves here with `@register_defence`; the package's `__init__` imports them all, so importing
`slime_core.stages.defences` registers every built-in defence.
"""

from __future__ import annotations

import math

import numpy as np

from slime_core.infra.errors import SlimeError
from slime_core.infra.registry import Registry
from slime_core.stages.defences.base import Defence, DefenceSpec

# name -> class, in registration order: the order outputs, the CLI's help and the app list defences in
DEFENCES: Registry[type[Defence]] = Registry("defence")


def unregister_defence(name: str) -> None:
    """Forget a defence (tests register toy defences and take them out again)."""
    DEFENCES.remove(name)


def list_defences() -> list[str]:
    """Every registered defence's name, in registration order (read at call time: late registrations count)."""
    return DEFENCES.names()


def defence_class(name: str) -> type[Defence]:
    return DEFENCES.get(name)


def register_defence(cls: type[Defence]) -> type[Defence]:
    """Class decorator: make a `Defence` subclass (with its `spec`) known by its spec's name."""
    spec = getattr(cls, "spec", None)
    if not (isinstance(cls, type) and issubclass(cls, Defence) and isinstance(spec, DefenceSpec)):
        raise TypeError(f"{cls!r}: a defence is a Defence subclass with a DefenceSpec `spec`.")
    return DEFENCES.add(spec.name, cls)


def defence_spec(name: str) -> DefenceSpec:
    return defence_class(name).spec


def defence_options(name: str, **given) -> dict:
    """The keyword options among `given` that this defence takes (the CLI offers every option to every defence)."""
    return {k: v for k, v in given.items() if k in defence_class(name).options}


def create_defence(name: str, strength: float, seed: int = 0, **kwargs) -> Defence:
    """The defence `name` at `strength` with key `seed` (unfitted); `kwargs` are its own options."""
    cls = defence_class(name)
    unknown = sorted(set(kwargs) - set(cls.options))
    if unknown:
        raise SlimeError(f"{name}: unknown option(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(cls.options) or 'none'}.")
    return cls(strength, seed, **kwargs)


def apply_defence(name: str, X, strength: float, seed: int = 0, **kwargs) -> np.ndarray:
    """Fit on X and transform X: what an owner releasing all of X at once would publish."""
    return create_defence(name, strength, seed, **kwargs).fit(X).transform(X)


def parse_strengths(text: str | list) -> list[float]:
    """'0,0.05,0.1' -> [0.0, 0.05, 0.1]; 'inf' allowed (no noise for the DP mechanisms)."""
    items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise SlimeError("no strengths given (e.g. --strength 0,0.05,0.1).")
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise SlimeError(f"strength {item!r} is not a number (use comma-separated numbers, e.g. "
                             f"0,0.05,0.1).") from None
        if math.isnan(value):
            raise SlimeError("strength NaN is not allowed.")
        out.append(value)
    return out
