"""Transitional: `Attacker.attack_batch` is the one batch core; this name stays until its last caller moves."""

from __future__ import annotations


def attack_batch(attacker, fit, X, A_true, k: int, intercept: bool = False, own_rows=None):
    """`attacker.attack_batch(fit, X, k, A_true=A_true, own_rows=own_rows)`; the map owns its intercept now."""
    return attacker.attack_batch(fit, X, k, A_true=A_true, own_rows=own_rows)
