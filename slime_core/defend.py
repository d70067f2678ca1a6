"""The old home of the defences, kept so that existing imports keep working: every name here is the registry's
(`slime_core.defences`), where each defence now lives in its own file. New code asks the registry.

`SPECS` and `DEFENCES` are read from the registry each time they are looked up on this module, so a defence
registered later is in them too (a `from slime_core.defend import DEFENCES` still copies the tuple of that moment).
"""

from __future__ import annotations

from slime_core.defences import (
    Defence, DefenceSpec, apply_defence, check_input, create_defence, defence_spec, list_defences, parse_strengths,
)
from slime_core.defences.base import MAX_KEPT_DIMS
from slime_core.defences.noise import MAX_NOISE
from slime_core.defences.pca import principal_basis
from slime_core.defences.quantise import dequantise, quantise_codes
from slime_core.defences.rotation import random_orthogonal

make_defence = create_defence
spec = defence_spec

__all__ = ["DEFENCES", "MAX_KEPT_DIMS", "MAX_NOISE", "SPECS", "Defence", "DefenceSpec", "apply_defence",
           "check_input", "dequantise", "make_defence", "parse_strengths", "principal_basis", "quantise_codes",
           "random_orthogonal", "spec"]


def __getattr__(name: str):
    if name == "DEFENCES":
        return tuple(list_defences())
    if name == "SPECS":
        return {n: defence_spec(n) for n in list_defences()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
