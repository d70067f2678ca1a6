"""infra.registry.Registry: the one name -> member table behind every registry of the tool."""

import pytest

from slime_core.infra.errors import SlimeError
from slime_core.infra.registry import Registry


def test_members_keep_registration_order_and_metadata():
    reg = Registry("widget")

    @reg.register("b", about="second letter")
    def b():
        return "B"

    reg.add("a", str.upper)
    assert reg.names() == ["b", "a"] and list(reg) == [("b", b), ("a", str.upper)]
    assert reg.get("b") is b and reg.get("b")() == "B"
    assert reg.meta("b") == {"about": "second letter"} and reg.meta("a") == {}
    assert "a" in reg and "c" not in reg


def test_unknown_name_is_one_line_naming_the_known_ones():
    reg = Registry("widget")
    reg.add("x", 1)
    reg.add("y", 2)
    with pytest.raises(SlimeError) as err:
        reg.get("z")
    assert str(err.value) == "unknown widget 'z'; use one of x, y."
    with pytest.raises(SlimeError, match="unknown widget 'z'"):
        reg.meta("z")


def test_same_member_twice_is_harmless_another_under_a_taken_name_is_refused():
    reg = Registry("widget")
    reg.add("x", len)
    reg.add("x", len)
    with pytest.raises(ValueError, match="a widget named 'x' is already registered \\(len\\)"):
        reg.add("x", max)
    reg.remove("x")
    reg.remove("x")  # forgetting twice is harmless too
    assert reg.names() == [] and reg.add("x", max) is max


def test_the_tool_registries_are_registries():
    from slime_core.experiments import store_audit
    from slime_core.stages import align, stores, tags, write
    from slime_core.stages.defences import registry

    for reg, first in [(align.METHODS, "ridge"), (tags.PARSERS, "spacy"), (write.WRITERS, "local"),
                       (stores.STORES, "npy"), (store_audit.ENGINES, "local"), (registry.DEFENCES, "noise")]:
        assert isinstance(reg, Registry) and reg.names()[0] == first
