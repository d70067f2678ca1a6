"""The registries (alignment methods, writers, tag parsers): an unknown name is a one-line SlimeError naming the
known ones, and a member registered in a test is listed and used, then removed."""

import numpy as np
import pytest

from slime_core import align
from slime_core.errors import SlimeError


def test_alignment_methods_listed_default_first():
    assert align.list_alignment_methods() == ["ridge", "lstsq", "procrustes"]


def test_unknown_alignment_method_names_the_known_ones():
    with pytest.raises(SlimeError) as err:
        align.fit_alignment(np.eye(3), np.eye(3), "nope")
    msg = str(err.value)
    assert "\n" not in msg and "'nope'" in msg
    assert all(name in msg for name in align.list_alignment_methods())


def test_toy_alignment_method_is_listed_and_used():
    @align.register_alignment_method("toy")
    def toy(X, Y):
        return align.Alignment(np.eye(X.shape[1], Y.shape[1], dtype=np.float32), "toy", len(X), 0.0)

    try:
        assert "toy" in align.list_alignment_methods()
        fit = align.fit_alignment(np.eye(3), np.eye(3), "toy")
        assert fit.method == "toy" and fit.n_pairs == 3
    finally:
        del align._METHODS["toy"]
    assert "toy" not in align.list_alignment_methods()
