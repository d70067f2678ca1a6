"""AttackSpec: one check per mistake, the same message on every surface, before any slow work."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from slime_core.attack_spec import AttackSpec, parse_ints
from slime_core.cli.main import main
from slime_core.infra.errors import SlimeError


def test_parse_ints():
    assert parse_ints("10, 30,100") == [10, 30, 100]
    assert parse_ints(5) == [5] and parse_ints([1, 2]) == [1, 2]
    with pytest.raises(SlimeError, match="whole numbers"):
        parse_ints("10,x", "N")
    with pytest.raises(SlimeError, match="no values"):
        parse_ints("", "k")


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k=0: k must be at least 1"),
    ({"k": "5,-1"}, "k=-1: k must be at least 1"),
    ({"n_align": 1}, "N=1: alignment needs at least 2"),
    ({"method": "magic"}, "unknown alignment method 'magic'"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"victim": ""}, "no victim"),
])
def test_spec_refuses(kwargs, message):
    with pytest.raises(SlimeError, match=message):
        AttackSpec(**kwargs)


def test_spec_normalises_and_checks_sizes():
    s = AttackSpec("lite0", "30,300", 10)
    assert s.n_align == (30, 300) and s.k == (10,) and s.n == 300 and s.top_k == 10
    unsorted = AttackSpec("lite0", "300,30", "10,5")  # kept in the order given; n and top_k are both the largest
    assert unsorted.n_align == (300, 30) and unsorted.n == 300 and unsorted.top_k == 10
    fake = SimpleNamespace(pool_attack=[0] * 100, bundle=SimpleNamespace(tags=["a"] * 50))
    with pytest.raises(SlimeError, match=r"N=300 alignment pairs asked; the public pool holds 100 images"):
        s.within(fake)
    with pytest.raises(SlimeError, match=r"k=100000 tags asked; the attacker's vocabulary holds 50 tags"):
        AttackSpec(n_align=30, k=100000).within(fake)
    assert AttackSpec(n_align=30, k=50).within(fake).k == (50,)


def one_line(capsys, argv, command):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"slime {command}: error: "), err
    return err[0]


@pytest.mark.parametrize("argv, command, needle", [
    (["report", "--out", "/proc/x/report.html"], "report", "/proc/x/report.html"),
    (["report", "--out", "report.txt"], "report", "should end in .html"),
    (["eval", "--data", ".", "--output", "/proc/x/e.json"], "eval", "/proc/x/e.json"),
    (["defend", "--defence", "noise", "--figure", "/proc/x/f.html"], "defend", "/proc/x/f.html"),
    (["build", "--data", ".", "--out", "/proc/x/bundle"], "build", "/proc/x/bundle"),
    (["eval", "--data", ".", "--k", "0,5"], "eval", "k=0: k must be at least 1"),
    (["attack", "--image", "x.jpg", "--k", "0"], "attack", "k=0: k must be at least 1"),
    (["eval", "--data", ".", "--final-caption", "objects,colour"], "eval",
     "final caption parts must be objects, relations or scene, not ['colour']"),
    (["attack", "--image", "x.jpg", "--final-caption", "scenes"], "attack", "not ['scenes']"),
    (["defend", "--defence", "noise", "--n-align", "1"], "defend", "N=1: alignment needs at least 2"),
    (["defend", "--defence", "noise", "--strength", "-1"], "defend", "sigma must be"),
])
def test_cli_refuses_before_slow_work(capsys, argv, command, needle):
    assert needle in one_line(capsys, argv, command)


def test_version():
    out = subprocess.run([sys.executable, "-m", "slime_core.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("slime ")


def test_every_option_has_help():
    from slime_core.cli.main import parser

    ap = parser()
    sub = next(a for a in ap._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"slime {name} {action.option_strings[0]} has no help"


def test_report_checks_its_n_by_k_grid_before_the_slow_set_up(capsys, monkeypatch, tmp_path):
    from slime_core.experiments import defence_curves

    def slow(*args, **kwargs):
        raise AssertionError("the slow set-up ran before the grid was checked")

    monkeypatch.setattr(defence_curves, "prepare", slow)
    line = one_line(capsys, ["report", "--no-defences", "--n-aligns", "30,100000", "--out", str(tmp_path / "r.html"),
                             "--no-progress"], "report")
    assert "N=100000 alignment pairs asked" in line
