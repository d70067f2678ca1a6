"""slime_core's public API: every advertised name resolves, and the package docstring's example runs."""

import doctest
import subprocess
import sys

import pytest

import slime_core


@pytest.mark.parametrize("name", [n for n in slime_core.__all__ if n != "__version__"])
def test_every_api_name_resolves_to_its_definition(name):
    value = getattr(slime_core, name)
    assert getattr(value, "__name__", name) == name and value.__module__.startswith("slime_core.")


def test_unknown_names_are_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        slime_core.nope  # noqa: B018


def test_the_docstring_example_runs():
    failed, tried = doctest.testmod(slime_core, verbose=False, optionflags=doctest.ELLIPSIS)
    assert tried >= 8 and failed == 0


def test_importing_the_package_loads_no_torch():
    """The CLI's quick answers (--help, argument errors) depend on it."""
    code = "import sys, slime_core; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
