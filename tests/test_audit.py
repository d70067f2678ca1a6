"""The audit report on the synthetic world of test_defence_curves: self-contained HTML, JSON, honest labels."""

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from test_defence_curves import FakeAttacker

from slime_core.attack_spec import AttackSpec
from slime_core.experiments import audit
from slime_core.experiments import defence_curves as curves
from slime_core.experiments.audit import build_report, load_paper_figures
from slime_core.infra.errors import SlimeError
from slime_core.present.html_report import write_report

PACKAGED = Path(audit.__file__).resolve().parents[1] / "paper_figures.json"
FIGURES_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "figures.md"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "images").mkdir()
    att = FakeAttacker(data=root)
    for s in att.samples[:4]:
        Image.new("RGB", (64, 48), (200, 80, 40)).save(s.path)
    setup = curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=100, refs=att.refs,
                           scorer=att.scorer())
    return att, setup


def _report(world, **kw):
    att, setup = world
    args = dict(grid=AttackSpec("fake-victim", (10, 60), (1, 3)), defences={"noise": [0, 0.3], "rotation": [0, 1]},
                n_align=60, k=3, n_examples=3, n_boot=100, setup=setup)
    args.update(kw)
    return build_report(att, att.samples, **args)


def test_report_contents(world):
    r = _report(world)
    assert [row["n_align"] for row in r["attack"]["alignment_vs_n"]] == [10, 60]
    assert {(row["n_align"], row["k"]) for row in r["attack"]["leakage"]} == {(10, 1), (10, 3), (60, 1), (60, 3)}
    assert all("frequent" in row for row in r["attack"]["leakage"])  # every figure beside its prior
    assert set(r["defences"]) == {"noise", "rotation"}
    assert len(r["examples"]) == 3
    assert all(t["match"] in ("exact", "near", "miss") for ex in r["examples"] for t in ex["tags"])
    assert r["paper_figures"] == load_paper_figures(PACKAGED)  # the paper's tables by default


def test_html_is_self_contained_and_json_beside_it(world, tmp_path):
    r = _report(world, n_examples=24)  # every test image: some have files (thumbnails), some do not
    html_path, json_path = write_report(r, tmp_path / "audit.html")
    html = html_path.read_text()
    assert "Threat model" in html and "Models used" in html and "Alignment cosine vs N" in html
    assert "Leakage per k" in html and "what leaked" in html and "leakage vs utility" in html
    assert "Plotly" in html and html.count("Plotly.newPlot") >= 4  # plotly.js inlined, one call per chart
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: opens offline
    assert "data:image/jpeg;base64," in html and "(image not available)" in html
    paper = html.index("The paper's reference figures (NOT measured by this run)")
    assert html.index("<td>DeepSeek-v3.2</td><td>18.89</td><td>61.86</td><td>33.90</td><td>54.36</td>") > paper
    assert "not results of this project" in html[paper:] and "<td>11.20</td>" in html  # as printed in the paper
    data = json.loads(json_path.read_text())
    assert "thumbnail" not in json_path.read_text()
    assert data["defences"]["rotation"]["rows"][1]["strength"] == 1


def test_paper_figures_are_labelled_as_the_papers(world, tmp_path):
    fig = tmp_path / "paper.json"
    fig.write_text(json.dumps({"source": "a transcription for the test", "figures": [
        {"title": "cosine vs N", "x_label": "N", "y_label": "cosine", "series": [{"name": "s", "x": [1, 2], "y": [0.1, 0.2]}]}]}))
    r = _report(world, defences={}, paper_figures=fig)
    html_path, _ = write_report(r, tmp_path / "p.html")
    html = html_path.read_text()
    assert "THE PAPER&#x27;S FIGURE" in html or "THE PAPER'S FIGURE" in html
    assert "a transcription for the test" in html
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"figures": [{"series": [{"x": [1], "y": [1, 2]}]}]}))
    with pytest.raises(SlimeError, match="not a valid figures file"):
        load_paper_figures(bad)
    assert load_paper_figures(fig.read_bytes()) == load_paper_figures(fig)  # an upload's bytes
    with pytest.raises(SlimeError, match=r"\(uploaded file\): not a valid figures file"):
        load_paper_figures(b"\xff not json")
    table = {"title": "T", "columns": ["LLM", "ROUGE-L"], "metrics": ["ROUGE-L"], "rows": [["a", 54.36]]}
    assert load_paper_figures(json.dumps({"tables": [table]}).encode())["tables"] == [table]
    for broken, problem in [({"tables": [{**table, "rows": [["a"]]}]}, "has 1 cells for 2 columns"),
                            ({"tables": [{**table, "rows": [["a", "54"]]}]}, "is not a percentage"),
                            ({"tables": [table], "text_figures": [3]}, "not a list of strings"),
                            ({"source": "nothing else"}, "neither 'figures' nor 'tables'")]:
        with pytest.raises(SlimeError, match=problem):
            load_paper_figures(json.dumps(broken).encode())


def test_report_texts_are_what_write_report_writes(world, tmp_path):
    from slime_core.present.html_report import report_texts

    r = _report(world, defences={"noise": [0, 0.3]})
    html, json_text = report_texts(r)
    html_path, json_path = write_report(r, tmp_path / "a.html")
    assert json_path.read_text() == json_text and "thumbnail" not in json_text
    strip = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # plotly's random div ids
    assert strip.sub("", html_path.read_text()) == strip.sub("", html)
    assert "Threat model" in html and "noise" in json.loads(json_text)["defences"]


def test_report_errors(world, tmp_path):
    with pytest.raises(SlimeError, match="unknown defence"):
        _report(world, defences={"nope": [1]})
    with pytest.raises(SlimeError, match="pool holds"):
        _report(world, grid=AttackSpec("fake-victim", 5000, 3))
    with pytest.raises(SlimeError, match="pool holds"):
        _report(world, n_align=5000)
    r = _report(world, defences={})
    with pytest.raises(SlimeError, match=".html"):
        write_report(r, tmp_path / "x.txt")
    with pytest.raises(SlimeError, match="does not exist"):
        write_report(r, tmp_path / "missing" / "x.html")


def test_report_with_a_caption_writer_shows_caption_rouge_beside_its_prior(tmp_path):
    from slime_core.stages.write import make_writer

    att = FakeAttacker(data=tmp_path)
    setup = curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=100, refs=att.refs,
                           scorer=att.scorer(), writer=make_writer("consensus"))
    r = build_report(att, att.samples, grid=AttackSpec("fake-victim", 60, 3), defences={"noise": [0, 0.3]},
                     n_align=60, k=3, n_examples=1, n_boot=100, setup=setup)
    html = write_report(r, tmp_path / "audit.html")[0].read_text()
    b = setup.undefended["baselines"]
    assert "Captions written by consensus-rougeL reach ROUGE-L" in html
    assert f"{b['random_caption']['caption_rouge_l']:.3f} for a random public caption" in html
    assert f"{b['mean_embedding_caption']['caption_rouge_l']:.3f} for the caption of the mean public embedding" in html
    assert html.count("caption ROUGE-L, d vs mean-embedding caption") == 1  # the column of the noise table


def test_paper_figures_path_comes_from_the_environment(monkeypatch, tmp_path):
    from slime_core.experiments.audit import paper_figures_path

    monkeypatch.delenv("SLIME_PAPER_FIGURES", raising=False)
    assert paper_figures_path() == PACKAGED and PACKAGED.is_file()  # the paper's tables ship with slime_core
    monkeypatch.setenv("SLIME_PAPER_FIGURES", str(tmp_path / "figs.json"))
    assert paper_figures_path() == tmp_path / "figs.json"


def test_own_embeddings_report_puts_the_cosine_beside_its_prior_and_escapes_names():
    from slime_core.present.html_report import own_embeddings_report, render_html

    audit = {"alignment_cosine": 0.71, "alignment_prior_cosine": 0.574, "n_align": 300, "method": "ridge", "k": 2,
             "results": [{"image": "<script>alert(1)</script>.npy#0", "tags": [{"tag": "dog run", "score": 3.0},
                                                                       {"tag": "green grass", "score": 2.0}],
                          "neighbors": [{"image": "123.jpg", "score": 0.8}]},
                         {"image": "row 1", "tags": [{"tag": "dog run", "score": 2.5}, {"tag": "red ball", "score": 1.0}],
                          "neighbors": []}]}
    report = own_embeddings_report(audit, "above the prior")
    assert report["own"]["tag_counts"][0] == ("dog run", 2)
    page = render_html(report)
    assert "0.710" in page and "0.574" in page and "+0.136" in page and "above the prior" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page  # a name is text, never markup
    assert page.count("dog run") == 3 and "123.jpg" in page  # two rows and the counts table
    assert "Tag leakage beside its prior" not in page  # no held-out photos measured: no such section
    est = {"mean": 0.09, "ci_low": 0.07, "ci_high": 0.11, "prior": 0.05, "vs_prior": {"diff": 0.04, "ci_low": 0.02,
                                                                                      "ci_high": 0.05}}
    audit["tag_leakage"] = {"images": 70, "k": 2, "exact_f1": est, "neighbourhood_f1": est}
    page = render_html(own_embeddings_report(audit, "above the prior"))
    assert "Tag leakage beside its prior" in page and "70 public dev photos" in page
    assert "0.090 [0.070, 0.110]" in page and "+0.040 [+0.020, +0.050]" in page
    # every report carries the paper's figures, apart and labelled (DeepSeek-v3.2's ROUGE-L in its Table 1)
    paper = page.index("The paper's reference figures (NOT measured by this run)")
    assert "54.36" in page[paper:]


def test_the_packaged_paper_figures_load_and_hold_the_papers_tables():
    paper = load_paper_figures(PACKAGED)
    assert "arXiv 2601.22929" in paper["source"] and "not results of this project" in paper["source"]
    t1, t2, t4 = paper["tables"]
    deepseek = dict(zip(t1["columns"], t1["rows"][1]))
    assert deepseek["LLM"] == "DeepSeek-v3.2" and deepseek["ROUGE-L"] == 54.36
    assert t2["rows"][6] == ["gemini", "out", 9.01, 40.85, 13.75, 35.00, 34.27]
    assert t4["rows"][7] == ["nomic", "out", 9.63, 34.72, 4.92, 34.07, 22.86]
    assert paper["relation_predicates"][-1] == "part_of" and len(paper["text_figures"]) == 8
    assert paper["models"]["rows"][4][2] == 1280


@pytest.mark.skipif(not FIGURES_MD.is_file(), reason="../shared/paper/figures.md (the hand transcription) is absent")
def test_the_packaged_paper_figures_equal_figures_md():
    """Every table cell and every text statement of figures.md, read from its markdown tables and bullets."""
    md = FIGURES_MD.read_text()
    blocks = re.findall(r"((?:^\|.*\n)+)", md, flags=re.M)  # each markdown table, header and separator included

    def cells(block):
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
        return rows[0], rows[2:]

    paper = load_paper_figures(PACKAGED)
    for block, table in zip(blocks, paper["tables"] + [paper["models"]], strict=True):
        columns, rows = cells(block)
        assert table["columns"] == columns
        as_text = [["–" if c is None else f"{c:.2f}" if isinstance(c, float) else str(c) for c in r]
                   for r in table["rows"]]
        assert as_text == rows, table["title"]
    bullets = re.findall(r"^- (.*(?:\n  .*)*)", md, flags=re.M)
    assert paper["text_figures"] == [" ".join(b.split()) for b in bullets]
