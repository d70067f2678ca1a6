"""The "Sensitive attributes" section of `slime report` on the tiny bundle: AUCs in [0, 1] with ordered intervals
beside chance and the oracle, or None with the reason; shown in the HTML; `--attributes` checked (one line, exit 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from slime_core.attack_spec import AttackSpec
from slime_core.cli.main import main
from slime_core.experiments import attribute_report
from slime_core.experiments import defence_curves as curves
from slime_core.experiments.audit import build_report
from slime_core.infra.errors import SlimeError
from slime_core.present.html_report import report_texts
from slime_core.stages.attributes import parse_attributes
from slime_core.stages.data import load_folder

from conftest import TINY_VICTIM

# the tiny vocabulary (91 tags of 40 captions) lacks most of the packaged table's words
TINY_TABLE = {"children": {"words": ["child", "boy", "girl", "baby"], "about": "a child in the photo"},
              "people": {"words": ["man", "woman", "lady", "people", "person", "boy", "girl", "child"]},
              "animals": {"words": ["dog"]}, "water": {"words": ["lake", "beach", "wave", "swim"]}}


@pytest.fixture
def tiny_report(tiny_attacker, tiny_data):
    samples = load_folder(tiny_data, "test")
    setup = curves.prepare(tiny_attacker, samples, AttackSpec(TINY_VICTIM, 30, 5), n_boot=50)
    # one more entry no tag shows: the packaged table on a small vocabulary (not measurable here, with the reason)
    table = parse_attributes(json.dumps(TINY_TABLE | {"zebras": {"words": ["zebra"]}}).encode(), "tiny.json")
    return build_report(tiny_attacker, samples, grid=AttackSpec(TINY_VICTIM, (10, 30), (5,)), n_align=30, k=5,
                        defences={}, n_examples=0, n_boot=50, setup=setup, attributes=table)


def test_report_has_the_attribute_section(tiny_report):
    sec = tiny_report["sensitive_attributes"]
    assert list(sec["systems"]) == ["N=10", "N=30", "oracle"] and sec["main"] == "N=30"
    assert sec["chance"] == 0.5 and sec["n_images"] == tiny_report["data"]["test_images"] == 8
    assert [r["attribute"] for r in sec["rows"]] == [*TINY_TABLE, "zebras"]
    for row in sec["rows"]:
        assert 0 <= row["prevalence"] <= 1 and row["n_positive"] == round(row["prevalence"] * 8)
        if not row["measurable"]:
            assert row["reason"] and set(row["auc"]) == set(sec["systems"]) and not any(row["auc"].values())
            continue
        assert row["reason"] is None and 0 < row["prevalence"] < 1
        for label, e in row["auc"].items():
            assert 0 <= e["mean"] <= 1, (row["attribute"], label, e)
            if not math.isnan(e["ci_low"]):  # NaN only where every resample held one class
                assert 0 <= e["ci_low"] <= e["ci_high"] <= 1
            assert ("vs_oracle" in e) == (label != "oracle")
    zebras = sec["rows"][-1]
    assert not zebras["measurable"] and "vocabulary" in zebras["reason"] and zebras["prevalence"] == 0
    assert any(r["measurable"] for r in sec["rows"])
    assert sec["systems"]["oracle"]["alignment_cosine"] == 1.0
    assert all(0 < s["alignment_cosine"] <= 1 for s in sec["systems"].values())


def test_the_section_prevalence_reason(tiny_attacker, tiny_data):
    """An attribute every (or no) test photo shows has no AUC: None with the reason."""
    samples = load_folder(tiny_data, "test")
    setup = curves.prepare(tiny_attacker, samples, AttackSpec(TINY_VICTIM, 30, 5), n_boot=50)
    # a tag of the vocabulary (so it can be scored) and "a", which every test photo's captions have
    table = parse_attributes(json.dumps({"all": {"words": [tiny_attacker.bundle.tags[0], "a"]}}).encode(), "t.json")
    sec = attribute_report.report_section(setup, samples, (10,), table)
    row = sec["rows"][0]
    assert row["prevalence"] == 1 and not row["measurable"] and "every photo" in row["reason"]
    assert row["auc"] == {"N=10": None, "N=30": None, "oracle": None}  # the set-up's N joins the N asked for


def test_html_and_json_show_the_section(tiny_report):
    html, json_text = report_texts(tiny_report)
    assert "<h2>Sensitive attributes</h2>" in html and "0.5 is chance" in html
    assert "AUC attack N=30 [95% CI]" in html and "AUC oracle [95% CI]" in html and "N=30 &minus; oracle" in html
    assert "not measurable here: none of its words (zebra)" in html
    assert html.index("Sensitive attributes") > html.index("Leakage per k")
    data = json.loads(json_text)
    assert [r["attribute"] for r in data["sensitive_attributes"]["rows"]][-1] == "zebras"


def test_report_attributes_option(capsys, tmp_path, tiny_bundle_dir, tiny_data, tiny_env):
    common = ["--bundle", str(tiny_bundle_dir), "--pool-data", str(tiny_data), "--data", str(tiny_data),
              "--victim", TINY_VICTIM, "--n-align", "30", "--k", "5", "--n-aligns", "10,30", "--ks", "5",
              "--bootstrap", "50", "--caption", "none", "--no-defences", "--examples", "0", "--no-progress"]
    out = tmp_path / "r.html"
    for content, needle in [("{not json", "not a JSON attributes table"),
                            (json.dumps({"kids": {"words": []}}), "attribute 'kids': 'words' must be a non-empty"),
                            (json.dumps({"zebras": {"words": ["zebra"]}}), "attribute 'zebras': none of its words")]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        code = main(["report", "--attributes", str(bad), "--out", str(out), *common])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("slime report: error: "), err
        assert str(bad) in err[0] and needle in err[0], err
    assert not out.exists()
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(TINY_TABLE))
    assert main(["report", "--attributes", str(good), "--out", str(out), *common]) == 0, capsys.readouterr().err
    sec = json.loads(out.with_suffix(".json").read_text())["sensitive_attributes"]
    assert sec["attributes_file"] == str(good) and [r["attribute"] for r in sec["rows"]] == list(TINY_TABLE)
    assert "Sensitive attributes" in out.read_text()


def test_uploaded_attribute_scores(tiny_attacker):
    """The page's scores: margins over thresholds that flag the prior's share of held-out public photos."""
    from slime_core.stages import align

    pool = tiny_attacker.victim_pool(TINY_VICTIM)
    fit = align.fit_alignment(pool[align.choose_pairs(len(pool), 20, 0)],
                              tiny_attacker.pool_attack[align.choose_pairs(len(pool), 20, 0)], "ridge")
    table = parse_attributes(json.dumps(TINY_TABLE | {"zebras": {"words": ["zebra"]}}).encode(), "t.json")
    out = attribute_report.uploaded_attribute_scores(tiny_attacker, fit, pool, pool[:3], ["a", "b", "c"], 20,
                                                     attributes=table)
    assert [a["name"] for a in out["attributes"]] == list(TINY_TABLE) and "zebras" in out["not_scored"]
    assert [r["embedding"] for r in out["rows"]] == ["a", "b", "c"]
    for r in out["rows"]:
        assert set(r["margins"]) == set(TINY_TABLE)
        assert r["flagged"] == [a for a, m in r["margins"].items() if m >= 0]
    assert all(0 <= a["prior"] <= 1 for a in out["attributes"]) and out["calibration_photos"] >= 20
    assert np.isfinite([a["threshold"] for a in out["attributes"]]).all()


def test_built_in_aucs_read_when_measured_else_measured_here(tiny_attacker, tiny_data, tmp_path):
    from slime_core.experiments.attribute_eval import evaluate_attributes

    samples = load_folder(tiny_data, "test")
    table = parse_attributes(json.dumps(TINY_TABLE).encode(), "t.json")
    here = attribute_report.built_in_aucs(tiny_attacker, TINY_VICTIM, samples, n_aligns=(10, 30, 5000), n_boot=50,
                                          measured_dir=tmp_path, attributes=table)
    assert not here["measured"] and "computed here on 8 public test photos" in here["source"]
    assert list(here["systems"]) == ["N=10", "N=30", "oracle"]  # N beyond the 40-photo pool dropped
    measured = evaluate_attributes(tiny_attacker, samples, victim=TINY_VICTIM, n_aligns=(30,), n_boot=50,
                                   attributes=table) | {"attributes_file": "attributes.json"}
    (tmp_path / f"attribute_auc_{TINY_VICTIM}.json").write_text(json.dumps(measured))
    read = attribute_report.built_in_aucs(tiny_attacker, TINY_VICTIM, samples, measured_dir=tmp_path)
    assert read["measured"] and "measured by bench/attribute_auc.py on 8 public test photos" in read["source"]
    assert read["rows"] == [r | {"measurable": r["reason"] is None} for r in json.loads(json.dumps(measured["rows"]))]
    assert read["main"] == "N=30" and "chance" in read["what_auc_means"]  # the report's section, as it is
    (tmp_path / f"attribute_auc_{TINY_VICTIM}.json").write_text(json.dumps(measured | {"attacker": "another"}))
    with pytest.raises(SlimeError, match="none of its words"):  # not this attacker's: measured here (packaged table)
        attribute_report.built_in_aucs(tiny_attacker, TINY_VICTIM, samples, measured_dir=tmp_path)


def test_own_embeddings_report_carries_the_attribute_tables(tiny_attacker, tiny_data):
    """The page's HTML download holds what the page shows: each audited embedding's margins and flags, the
    calibration, and the built-in victim's AUC section, said to be measured on public photos, not the user's."""
    from slime_core.present.html_report import own_embeddings_report, render_html

    table = parse_attributes(json.dumps(TINY_TABLE).encode(), "t.json")
    aucs = attribute_report.built_in_aucs(tiny_attacker, TINY_VICTIM, load_folder(tiny_data, "test"),
                                          n_aligns=(10, 30), n_boot=30, measured_dir=None, attributes=table)
    assert aucs["main"] == "N=30" and all("measurable" in r for r in aucs["rows"])
    scores = {"attributes": [{"name": "child", "about": "a child", "threshold": 0.25, "prior": 0.1,
                              "precision": 0.5},
                             {"name": "beach", "about": "sand, sea", "threshold": 0.4, "prior": 0.05,
                              "precision": None}],
              "calibration": "the dev photos, embedded by your model and aligned", "calibration_photos": 70,
              "rows": [{"embedding": "<b>row 0</b>", "margins": {"child": 0.125, "beach": -0.2}, "flagged": ["child"]}],
              "not_scored": {}}
    audit = {"alignment_cosine": 0.71, "alignment_prior_cosine": 0.574, "n_align": 300, "method": "ridge", "k": 2,
             "results": [], "sensitive_attributes": {"scores": scores, "built_in_aucs": aucs}}
    page = render_html(own_embeddings_report(audit, "above the prior"))
    own = page.index("Sensitive attributes of each audited embedding")
    assert "&lt;b&gt;row 0&lt;/b&gt;" in page and "+0.125" in page[own:] and "-0.200" in page[own:]
    assert "70 public photos" in page and "no flags" in page and "0.500" in page[own:]
    assert f"built-in victim {TINY_VICTIM} on public test photos, not on your model" in page
    section = page.index("<h2>Sensitive attributes</h2>")
    assert section > own and "AUC attack N=30" in page[section:]
    audit["sensitive_attributes"] = {"scores": {"attributes": [], "rows": [], "not_scored": {}}}
    page = render_html(own_embeddings_report(audit, "above the prior"))
    assert "nothing scored" in page and "<h2>Sensitive attributes</h2>" not in page
