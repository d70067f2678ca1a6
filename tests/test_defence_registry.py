"""The defences' registry: the built-in defences in their order, and a toy defence registered here (only here)
showing up everywhere defences are listed -- the CLI's help and `slime defend`/`slime report`, the Defences page, the
report, the curves -- with no change anywhere else."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_defence_curves import fake_setup

from slime_core.attack_spec import AttackSpec
from slime_core.cli.main import main
from slime_core.experiments import defence_curves as curves
from slime_core.infra.errors import SlimeError
from slime_core.stages.defences import (
    Defence,
    DefenceSpec,
    create_defence,
    defence_options,
    defence_spec,
    list_defences,
    register_defence,
    registry,
    unregister_defence,
)
from slime_core.stages.defences.base import KeptDimensions

BUILT_IN = ["noise", "gaussian", "laplace", "rotation", "shuffle", "pca", "projection", "quantise"]


class Negate(Defence):
    """The toy: every coordinate negated (a keyed linear map with no key; the attacker absorbs it)."""

    spec = DefenceSpec("negate", "0 = off, 1 = every coordinate negated", "up", (0, 1),
                       "nothing worth the name: a sign flip", "any attacker holding leaked pairs (it learns -W)", 0.0,
                       short="0 = off, 1 = on", description="x -> -x: the toy defence of the registry's tests.",
                       refit_absorbs=True)
    transforms_queries = True

    def check_strength(self, st: float) -> None:
        if st not in (0.0, 1.0):
            raise SlimeError(f"negate: strength is 0 or 1, got {st:g}.")

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return -X


class Truncate(KeptDimensions):
    """A second toy whose strength is the released dimension: its curve's strengths follow its spec's policy."""

    spec = DefenceSpec("truncate", "d': leading coordinates kept", "down", (64, 16, 4), "the dropped coordinates",
                       "whatever the kept ones hold", short="strength = d'", description="x[:, :d'].",
                       released_dim=True)

    def _transform(self, X: np.ndarray, stream: int) -> np.ndarray:
        return X[:, : self.kept].copy()


@pytest.fixture
def negate():
    register_defence(Negate)
    yield "negate"
    unregister_defence("negate")


@pytest.fixture
def truncate():
    register_defence(Truncate)
    yield "truncate"
    unregister_defence("truncate")


# ---- the registry itself ---------------------------------------------------------------------------------------------

def test_built_ins_register_on_import_in_their_order():
    assert list_defences() == BUILT_IN
    for name in BUILT_IN:
        d = create_defence(name, defence_spec(name).default_strengths[-1])
        assert isinstance(d, Defence) and d.name == name and d.spec is defence_spec(name)
        assert type(d).__module__ == f"slime_core.stages.defences.{name}"  # one file per defence
        assert not hasattr(d, "state")  # its own state as typed attributes


def test_registry_refusals():
    with pytest.raises(SlimeError, match="unknown defence 'nope'; use one of noise, gaussian"):
        create_defence("nope", 1)
    with pytest.raises(SlimeError, match="noise: unknown option\\(s\\) delta; it takes none"):
        create_defence("noise", 0.1, delta=1e-5)
    assert defence_options("gaussian", delta=1e-3, calibration="classic") == {"delta": 1e-3, "calibration": "classic"}
    assert defence_options("noise", delta=1e-3, calibration="classic") == {}

    class Impostor(Negate):
        spec = replace(Negate.spec, name="noise")

    with pytest.raises(ValueError, match="a defence named 'noise' is already registered"):
        register_defence(Impostor)  # a second class under a taken name
    assert list_defences() == BUILT_IN
    with pytest.raises(TypeError):
        register_defence(object)


def test_register_and_unregister(negate):
    assert list_defences() == BUILT_IN + ["negate"]
    assert register_defence(Negate) is Negate  # registering the same class again is harmless
    X = np.eye(3, dtype=np.float32)
    d = create_defence("negate", 1).fit(X)
    np.testing.assert_array_equal(d.transform(X), -X)
    np.testing.assert_array_equal(d.transform_query(X), -X)
    np.testing.assert_array_equal(create_defence("negate", 0).fit(X).transform(X), X)  # spec.off
    assert d.describe()["strength_means"] == Negate.spec.strength
    unregister_defence("negate")
    assert list_defences() == BUILT_IN


def test_a_defences_policies_live_on_its_spec(truncate):
    assert curves.strengths_for("pca", 24) == [24, 16, 8, 4, 2]
    assert curves.strengths_for("truncate", 20) == [20, 16, 4]  # capped at d, d first: the spec's released_dim
    assert curves.strengths_for("truncate", 16) == [16, 4]
    assert curves.strengths_for("noise", 20) == list(defence_spec("noise").default_strengths)
    from slime_core.present.defence_panel import linear_warning

    assert linear_warning("projection") and linear_warning("rotation") and not linear_warning("pca")


# ---- a toy defence needs no change elsewhere -----------------------------------------------------------------------

def test_curves_take_a_new_defence(negate, truncate):
    _, setup = fake_setup()
    rows = curves.curve(setup, "negate", curves.strengths_for("negate", setup.X_pool.shape[1]))
    assert [r["strength"] for r in rows] == [0, 1] and sum(r["knee"] for r in rows) == 1
    assert rows[1]["defence"] == "negate" and rows[1]["defence_info"]["protects"] == Negate.spec.protects
    # the refitting attacker absorbs a sign flip: leakage as without a defence
    assert rows[1]["leakage"]["neighbourhood_f1"] == pytest.approx(rows[0]["leakage"]["neighbourhood_f1"], abs=0.05)
    assert rows[1]["leakage"]["non_adaptive"]["applicable"]  # same dimension: the pre-defence map applies
    dims = curves.curve(setup, "truncate", curves.strengths_for("truncate", setup.X_pool.shape[1]))
    assert [r["released_dim"] for r in dims] == [20, 16, 4]


def test_setup_holds_the_attacker_and_one_attack_spec():
    att, setup = fake_setup()
    assert setup.attacker is att and setup.spec == AttackSpec("fake-victim", 60, 3)
    row = setup.undefended
    assert (row["victim"], row["n_align"], row["k"], row["method"]) == ("fake-victim", 60, 3, "ridge")


def test_cli_help_lists_defences_at_call_time(negate, capsys):
    with pytest.raises(SystemExit) as done:
        main(["defend", "--help"])
    assert done.value.code == 0
    assert " | ".join(BUILT_IN + ["negate"]) in " ".join(capsys.readouterr().out.split())
    unregister_defence("negate")
    with pytest.raises(SystemExit):
        main(["defend", "--help"])
    assert "negate" not in capsys.readouterr().out


def test_report_lists_defences_at_call_time(negate, monkeypatch, tmp_path_factory):
    from slime_core.experiments.audit import build_report
    from slime_core.present.html_report import report_texts

    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    att, setup = fake_setup(data=root)
    # every defence (defences=None), with the registry cut to noise and the toy: pca's defaults exceed this
    # world's 20 dimensions
    monkeypatch.setattr(registry.DEFENCES, "_entries", {"noise": registry.defence_class("noise"), "negate": Negate})
    report = build_report(att, att.samples, grid=AttackSpec("fake-victim", (10, 60), (1, 3)), n_align=60, k=3,
                          n_examples=1, n_boot=100, setup=setup)
    assert list(report["defences"]) == ["noise", "negate"]
    assert report["defences"]["negate"]["spec"] == {"strength": Negate.spec.strength,
                                                    "protects": Negate.spec.protects,
                                                    "does_not_protect": Negate.spec.does_not}
    assert [r["strength"] for r in report["defences"]["negate"]["rows"]] == [0, 1]
    html, json_text = report_texts(report)
    assert "negate" in html and Negate.spec.strength in html
    assert list(json.loads(json_text)["defences"]) == ["noise", "negate"]


def test_slime_defend_and_report_run_a_new_defence(negate, capsys, tmp_path, tiny_bundle_dir, tiny_data, tiny_env):
    from conftest import TINY_VICTIM

    common = ["--bundle", str(tiny_bundle_dir), "--pool-data", str(tiny_data), "--data", str(tiny_data),
              "--victim", TINY_VICTIM, "--n-align", "30", "--k", "5", "--bootstrap", "50", "--caption", "none",
              "--no-progress"]
    assert main(["defend", "--defence", "negate", "--format", "json", *common]) == 0, capsys.readouterr().err
    rows = json.loads(capsys.readouterr().out)
    assert [(r["defence"], r["strength"]) for r in rows] == [("negate", 0), ("negate", 1)]
    out = tmp_path / "report.html"
    code = main(["report", "--defence", "negate", "--out", str(out), "--n-aligns", "10,30", "--ks", "1,5",
                 "--examples", "1", *common])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    assert list(report["defences"]) == ["negate"]
    assert report["defences"]["negate"]["spec"]["protects"] == Negate.spec.protects


# ---- the app ---------------------------------------------------------------------------------------------------------

def test_defences_page_and_audit_form_list_a_new_defence(negate):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    from test_app import APP, TIMEOUT, errors, ok

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.session_state["df_limit"] = 10
    at.session_state["df_boot"] = 100
    at.switch_page("app_pages/defences.py").run()
    ok(at)
    box = at.selectbox(key="df_defence")
    assert box.options[-1] == f"negate ({Negate.spec.short})"
    box.set_value("negate").run()
    ok(at)
    assert not at.error, errors(at)
    assert any(Negate.spec.protects in s.value for s in at.success)
    assert any("negate" in w.value and "least squares" in w.value for w in at.warning)  # its spec's refit_absorbs
    assert any("negate" in c.value for c in at.code)  # the `slime defend` table
    at.switch_page("app_pages/batch_report.py").run()
    ok(at)
    assert at.multiselect(key="ar_defences").options == BUILT_IN + ["negate"]
