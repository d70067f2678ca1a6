"""The Streamlit app: every page through streamlit.testing.v1.AppTest, plus the non-streamlit helpers.

The pages share one process, so `st.cache_resource` keeps the attacker, parser and text encoder between tests
(the offline models are small; nothing is downloaded). Evaluations run on a handful of test images.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.numpy import load_file

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from slime_core.experiments import explore  # noqa: E402
from slime_core.infra.errors import SlimeError  # noqa: E402
from slime_core.present import app_figures  # noqa: E402
from slime_core.present.html_report import evaluation_report, render_html  # noqa: E402
from slime_core.stages import align, uploads  # noqa: E402
from slime_core.stages.encoders import availability

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
BUNDLE = ROOT / "models" / "default"
TIMEOUT = 180


def pool_embeddings(name: str) -> np.ndarray:
    return load_file(BUNDLE / f"pool_{name}.safetensors")["embeddings"].astype(np.float32)


def pool_names() -> list[str]:
    return json.loads((BUNDLE / "pool.json").read_text())["images"]


def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def png_bytes(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def literal(markdown: str) -> str:
    """What the reader sees of a text the app escaped for Markdown (common.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at: AppTest) -> str:
    return " | ".join(literal(e.value) for e in at.error)


CHIP = re.compile(r'<span class="slime-tag slime-(\w+)" data-class="\w+"[^>]*>(.*?)</span>')


def chips(at: AppTest) -> list[tuple[str, str]]:
    """The headline's recovered tags, in order, each with its colour class (exact / neighbourhood / miss)."""
    block = next(m.value for m in at.markdown if 'class="slime-tag' in m.value)
    return [(html.unescape(tag), cls) for cls, tag in CHIP.findall(block)]


def tags_line(at: AppTest) -> list[str]:
    return [tag for tag, _ in chips(at)]


def metric_of(at: AppTest, label: str):
    return next(m for m in at.metric if m.label == label)


# ---- page 1: attack one image -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def attack_app() -> AppTest:
    at = start()
    ok(at)
    return at


def photo_references(at: AppTest) -> tuple[list[str], list[str], set[str]]:
    """The attacked gallery photo's captions, its reference tags and their neighbourhoods, recomputed here."""
    from slime_core.stages.tags import tags_of_captions

    from app_pages import common

    item = next(g for g in common.gallery() if g["name"] == at.session_state["gallery_image"])
    refs = list(tags_of_captions(item["captions"], common.get_parser()))
    near = set().union(*common.get_scorer().neighbours(refs))
    return item["captions"], refs, near


def test_attack_page_renders_everything(attack_app):
    from slime_core.experiments import headline as hl

    from app_pages import common

    at = attack_app
    assert not at.error, errors(at)
    got = chips(at)
    assert len(got) == 10
    captions, refs, near = photo_references(at)
    pred = [t for t, _ in got]
    # every tag coloured by what it is: one of the photo's own tags, next to one, or a miss
    for tag, cls in got:
        assert cls == ("exact" if tag in refs else "neighbourhood" if tag in near else "miss"), (tag, cls)
    assert any("green** = one of this photo's own tags" in c.value for c in at.caption)
    # tag F1 beside the most-frequent-tags prior, in numbers and in words
    attack, prior = hl.exact_f1(pred, refs), hl.exact_f1(common.get_attacker().frequent_tags(10), refs)
    tag_metric = metric_of(at, "Tag F1 (exact)")
    assert tag_metric.value == f"{attack:.2f}" and tag_metric.delta.startswith(f"{attack - prior:+.2f}")
    assert any(f"guessing the 10 most frequent tags, with no embedding, scores {prior:.2f}" in c.value
               for c in at.caption)
    # the caption, its ROUGE-L beside the caption of the mean public embedding
    caption = html.unescape(next(m.value for m in at.markdown if 'class="slime-caption"' in m.value))
    caption = re.sub(r"<[^>]+>", "", caption).strip("\u201c\u201d")
    assert caption and caption.split()
    rouge = metric_of(at, "Caption ROUGE-L")
    assert rouge.value == f"{hl.caption_rouge(caption, captions):.2f}"
    mean_rouge = hl.caption_rouge(common.mean_caption("mbr", 10), captions)  # the default writer
    assert any(f"the caption written from the average public photo scores {mean_rouge:.2f}" in c.value
               for c in at.caption)
    # the details: alignment cosine beside a constant embedding's, every score beside both baselines, scene graph
    cos = metric_of(at, "Alignment cosine")
    assert 0 < float(cos.value) < 1 and "vs a constant embedding" in cos.delta
    scores = next(d.value for d in at.dataframe if "most frequent tags" in getattr(d.value, "columns", []))
    assert {"exact tag F1", "neighbourhood tag F1"} <= set(scores.index)
    assert abs(scores.loc["exact tag F1", "attack"] - attack) < 1e-9
    assert at.get("graphviz_chart"), "the scene graph is drawn"


def test_the_page_opens_on_the_shipped_rule_photo_and_says_so(attack_app):
    """From the first start (no gallery table cached yet), the opening photo is the one bench/demo_default.py chose
    for the shipped bundle by the stated median rule, and the page states that rule."""
    from slime_core.experiments import headline as hl
    from slime_core.infra import settings
    from slime_core.stages import bundle

    from app_pages import common

    shipped = json.loads((settings.DEMO_DATA / "default_photo.json").read_text())
    assert shipped["bundle"] == bundle.bundle_identity(common.get_attacker().bundle), "rerun bench/demo_default.py"
    assert attack_app.session_state["gallery_image"] == shipped["image"]
    assert any(f"Shown first: {hl.DEFAULT_RULE}." in c.value for c in attack_app.caption)


def test_default_photo_is_the_median_gain_first_by_name():
    from slime_core.experiments import headline as hl

    names, gains = ["d.jpg", "a.jpg", "c.jpg", "b.jpg", "e.jpg"], [0.3, 0.1, 0.1, 0.2, 0.0]
    assert hl.default_photo(names, gains) == "c.jpg"  # sorted (0.0 e, 0.1 a, 0.1 c, 0.2 b, 0.3 d): the middle one
    assert hl.default_photo(names[:4], gains[:4]) == "c.jpg"  # an even count: the lower median


def test_presentation_mode_shows_the_headline_only(attack_app):
    at = attack_app
    at.toggle(key="present").set_value(True).run()
    ok(at)
    assert len(tags_line(at)) == 10 and metric_of(at, "Tag F1 (exact)")
    assert not at.get("graphviz_chart") and not any(m.label == "Alignment cosine" for m in at.metric)
    at.toggle(key="present").set_value(False).run()
    assert at.get("graphviz_chart")


def test_k_slider_changes_tags(attack_app):
    at = attack_app
    before = tags_line(at)
    at.slider(key="k").set_value(3).run()
    ok(at)
    after = tags_line(at)
    assert len(after) == 3 and after == before[:3]
    assert any("guessing the 3 most frequent tags" in c.value for c in at.caption)
    at.slider(key="k").set_value(10).run()


def test_n_slider_victim_and_gallery_picker(attack_app):
    at = attack_app
    cos = lambda: metric_of(at, "Alignment cosine").value  # noqa: E731
    before_cos, before_tags, before_photo = cos(), tags_line(at), at.session_state["gallery_image"]
    at.slider(key="n_align").set_value(50).run()
    ok(at)
    assert cos() != before_cos
    at.selectbox(key="victim").set_value("lite1").run()
    ok(at)
    picks = [b for b in at.button if b.key and b.key.startswith("pick_")]
    assert len(picks) == 12  # one page of thumbnails
    other = next(b for b in picks if b.key != f"pick_{before_photo}")
    other.click().run()
    ok(at)
    assert at.session_state["gallery_image"] == other.key[len("pick_"):]
    assert tags_line(at) != before_tags
    at.selectbox(key="writer").set_value("none").run()
    ok(at)
    assert not at.error, errors(at)
    assert not any('class="slime-caption"' in m.value for m in at.markdown)
    assert any("No caption writer selected" in c.value for c in at.caption)


def test_percentile_among_the_test_photos(attack_app):
    from app_pages import _gallery

    at = attack_app
    thread = _gallery._state()["thread"]
    if thread is not None:
        thread.join(timeout=600)  # the background gallery table (computed once, cached atomically on disk)
    assert _gallery._state()["error"] is None, _gallery._state()["error"]
    assert list((Path(os.environ["SLIME_CACHE"]) / "app").glob("gallery_*.json"))
    at.selectbox(key="victim").set_value("lite0")
    at.slider(key="n_align").set_value(300)
    at.slider(key="k").set_value(9).run()
    ok(at)
    line = next(m.value for m in at.markdown if m.value.startswith("**This photo:"))
    assert re.search(r"(better|worse) than \d+% of the 125 test photos", line)
    assert "percentile" in line and "k=9" in line
    at.slider(key="k").set_value(10).run()


def test_unavailable_encoders_are_listed_with_reasons():
    usable, unavailable = availability.victim_choices(["lite0", "lite1", "lite2"])
    assert usable == ["lite0", "lite1", "lite2"]
    names = {u["encoder"]: u["reason"] for u in unavailable}
    assert "clip-vit-l-14" in names and "weights" in names["clip-vit-l-14"]
    assert "GOOGLE_API_KEY" in names["gemini-mm-001"]
    assert "minilm" not in names  # text-only encoders are no victims


def test_upload_photo_and_bad_photos():
    at = start()
    at.radio(key="source").set_value("Upload a photo").run()
    ok(at)
    assert any("Upload a photo" in i.value for i in at.info)
    at.file_uploader(key="photo").set_value(("red.png", png_bytes(), "image/png")).run()
    ok(at)
    assert len(tags_line(at)) == 10 and not at.error
    at.file_uploader(key="photo").set_value(("broken.jpg", b"not an image at all", "image/jpeg")).run()
    ok(at)
    assert "not a readable image" in errors(at)
    huge = io.BytesIO()
    Image.new("1", (8000, 6000)).save(huge, format="PNG")  # 48 Mpx, a few KB on disk
    at.file_uploader(key="photo").set_value(("huge.png", huge.getvalue(), "image/png")).run()
    ok(at)
    assert "downsize it first" in errors(at)


def test_upload_victim_embedding_paths():
    at = start()
    at.radio(key="source").set_value("Upload a victim embedding").run()
    good = pool_embeddings("lite0")[:1]
    up = lambda name, data: at.file_uploader(key="embedding_file").set_value((name, data, "application/octet-stream")).run()  # noqa: E731
    up("one.npy", npy_bytes(good))
    ok(at)
    assert len(tags_line(at)) == 10 and not at.error
    up("short.npy", npy_bytes(good[:, :100]))
    assert "dims" in errors(at)
    bad = good.copy()
    bad[0, 3] = np.nan
    up("nan.npy", npy_bytes(bad))
    assert "NaN" in errors(at)
    up("text.npy", b"garbage")
    assert "npy" in errors(at)
    up("scaled.npy", npy_bytes(good * np.float32(1e30)))  # issue 22: refused, not every neighbour at 0.00
    assert "norm" in errors(at)
    up("mean.npy", npy_bytes(align.l2_normalise(pool_embeddings("lite0")).mean(axis=0)))  # the prior's answer: said
    assert any("mean of the leaked pairs" in w.value for w in at.warning), [w.value for w in at.warning]
    ok(at)


# ---- page 2: alignment explorer ------------------------------------------------------------------------------

def test_alignment_explorer():
    at = start("alignment")
    ok(at)
    assert not at.error, errors(at)
    assert len(at.get("plotly_chart")) == 2
    caption = next(c.value for c in at.caption if "held-out images" in c.value)
    at.select_slider(key="al_proj_n").set_value(at.select_slider(key="al_proj_n").options[-1]).run()
    ok(at)
    assert next(c.value for c in at.caption if "held-out images" in c.value) != caption
    at.multiselect(key="al_methods").set_value([]).run()
    ok(at)
    assert any("Pick at least one" in i.value for i in at.info)


def test_projection_and_curve_helpers():
    from slime_core.pipeline import Attacker

    attacker = Attacker()
    rows = explore.alignment_curve(attacker, ["lite0"], ["ridge"], [10, 40])
    assert [r["N"] for r in rows] == [10, 40] and all(0 < r["heldout_cosine"] < 1 for r in rows)
    assert all(0 < r["prior_cosine"] < 1 for r in rows)  # a constant embedding's cosine is far from 0 ...
    assert rows[1]["heldout_cosine"] > rows[1]["prior_cosine"]  # ... and at N=40 the real victim beats it
    fig = app_figures.alignment_curve_figure(rows)
    assert list(fig.layout.xaxis.tickvals) == [10, 40]
    prior = [t for t in fig.data if t.name.startswith("prior (ridge)")]
    assert len(prior) == 1 and list(prior[0].y) == [r["prior_cosine"] for r in rows]
    proj = explore.projection(attacker, "lite0", 40, "ridge", n_points=30)
    assert proj["true"].shape == proj["aligned"].shape == (30, 2)
    assert explore.n_grid(775, 6)[0] == 10 and explore.n_grid(775, 6)[-1] == 775


# ---- pages 3 and 5: evaluation ----------------------------------------------------------------------------------

def test_retrieval_explorer_runs_a_small_evaluation():
    at = start("retrieval")
    ok(at)
    at.slider(key="re_limit").set_value(10)
    at.multiselect(key="re_ns").set_value([30])
    at.multiselect(key="re_ks").set_value([1, 5])
    at.select_slider(key="re_boot").set_value(100)
    at.button[0].click().run()
    ok(at)
    assert not at.error, errors(at)
    assert len(at.get("plotly_chart")) == 3
    table = at.dataframe[0].value
    assert {"attack", "ci_low", "ci_high", "most_frequent", "nearest_image", "vs_frequent"} <= set(table.columns)
    at.selectbox(key="re_metric").set_value("exact_f1").run()  # reuses the stored result
    ok(at)
    assert len(at.dataframe) == 2  # the metric table and the per-tag leakage table


def test_batch_report_and_its_errors():
    at = start("batch_report")
    ok(at)
    at.text_input(key="br_ns").set_value("abc")
    at.button[0].click().run()
    assert "comma-separated" in errors(at)
    at.text_input(key="br_ns").set_value("30,50000")
    at.button[0].click().run()
    assert "pool holds" in errors(at)
    at.text_input(key="br_ns").set_value("30")
    at.text_input(key="br_ks").set_value("1,5")
    at.number_input(key="br_limit").set_value(10)
    at.select_slider(key="br_boot").set_value(100)
    at.button[0].click().run()
    ok(at)
    assert not at.error, errors(at)
    assert len(at.get("download_button")) == 3
    assert at.get("plotly_chart")


def test_batch_report_scores_captions_beside_both_priors(wordnet):
    at = start("batch_report")
    if at.checkbox(key="br_captions").disabled:
        pytest.skip("the pool's captions are not here (../shared/data)")
    at.text_input(key="br_ns").set_value("300")
    at.text_input(key="br_ks").set_value("10")
    at.number_input(key="br_limit").set_value(6)
    at.select_slider(key="br_boot").set_value(100)
    at.checkbox(key="br_captions").check()
    at.button[0].click().run()
    ok(at)
    assert not at.error, errors(at)
    cap = at.dataframe[1].value
    assert set(cap["metric"]) >= {"rougeL", "bleu4", "meteor"}
    for col in ("random_public_caption", "mean_embedding_caption", "vs_mean_embedding_caption"):
        assert cap[col].between(-1, 1).all(), col


CAPTION_ROW = {"n_align": 30, "k": 5, "writer": "consensus-rougeL", "metrics": {"rougeL": {
    "attack": 0.25, "ci_low": 0.15, "ci_high": 0.35, "random_caption": 0.1, "mean_embedding_caption": 0.2,
    "vs_random_caption": {"diff": 0.15, "ci_low": 0.05, "ci_high": 0.25},
    "vs_mean_embedding_caption": {"diff": 0.05, "ci_low": -0.05, "ci_high": 0.15}}}}


def test_eval_helpers_and_html_report():
    row = {"n_align": 30, "k": 5, "alignment_cosine": {"heldout": 0.6, "test": 0.6, "ci_low": 0.5, "ci_high": 0.7},
           "metrics": {m: {"attack": 0.3, "ci_low": 0.2, "ci_high": 0.4, "frequent": 0.1, "nearest": 0.2,
                           "oracle": 0.5, "vs_frequent": {"diff": 0.2, "ci_low": 0.1, "ci_high": 0.3},
                           "vs_nearest": {"diff": 0.1, "ci_low": 0.0, "ci_high": 0.2}}
                       for m in ("exact_f1", "neighbourhood_f1")}}
    part = {"victim": "lite0", "attacker": "a", "method": "ridge", "n_images": 3, "seed": 0, "bootstrap": 10,
            "rows": [row], "captions": []}
    merged = explore.merge_results([part, dict(part, rows=[dict(row, n_align=10)])])
    assert [r["n_align"] for r in merged["rows"]] == [10, 30]
    df = app_figures.result_frame(merged)
    assert len(df) == 4 and df["vs_frequent"].eq(0.2).all()
    page = render_html(evaluation_report(dict(merged, captions=[CAPTION_ROW])))  # the audit report's template
    assert page.lstrip().lower().startswith("<!doctype html") and "<script" not in page  # no figure: no plotly.js
    assert "SLImE evaluation: semantic leakage from lite0 image embeddings" in page and "Threat model" in page
    assert page.count("<td class='l'>neighbourhood_f1</td>") == 2  # one row per (N, k) for each metric
    assert "<td>0.300 [0.200, 0.400]</td><td>0.100</td><td>0.200</td><td>0.500</td>" in page  # attack, baselines
    assert "<td>+0.200 [+0.100, +0.300]</td><td>+0.100 [+0.000, +0.200]</td>" in page  # paired differences
    assert "<td class='l'>consensus-rougeL</td><td class='l'>rougeL</td><td>0.250 [0.150, 0.350]</td>" in page
    assert "Alignment cosine vs N" not in page and "Examples: what leaked" not in page  # sections it lacks
    assert "54.36" in page[page.index("The paper's reference figures (NOT measured by this run)"):]  # the paper's, apart
    for fig in (app_figures.metric_vs_k_figure(df, "exact_f1", 30), app_figures.metric_vs_n_figure(df, "exact_f1", 5),
                app_figures.difference_figure(df, "exact_f1")):
        assert fig.data
    with pytest.raises(SlimeError):
        explore.merge_results([])


# ---- page 4: your own embeddings ---------------------------------------------------------------------------------

def test_own_embeddings_audit_and_refusals(monkeypatch):
    from app_pages import common

    at = start("own_embeddings")
    ok(at)
    assert any("Upload both" in i.value for i in at.info)
    pool = pool_embeddings("lite1")
    names = pool_names()
    # a CSV with a name column, rows shuffled: reordered by name
    order = np.random.default_rng(0).permutation(len(names))
    df = pd.DataFrame(pool[order], columns=[f"d{i}" for i in range(pool.shape[1])])
    df.insert(0, "image", [names[i] for i in order])
    at.file_uploader(key="own_pool").set_value(("pool.csv", df.to_csv(index=False).encode(), "text/csv"))
    at.file_uploader(key="own_audit").set_value(("audit.npy", npy_bytes(pool[:4]), "application/octet-stream")).run()
    ok(at)
    assert not at.error, errors(at)
    report = at.dataframe[0].value
    assert len(report) == 4
    cos = float(metric_of(at, "Held-out alignment cosine").value)
    prior = float(metric_of(at, "Prior: a constant embedding").value)
    attacker = common.get_attacker()
    assert abs(prior - align.prior_cosine(attacker.pool_attack, 300, "ridge")) < 1e-3
    assert cos > prior + 0.05  # lite1 aligns: well above what a constant embedding gets
    assert metric_of(at, "Held-out alignment cosine").delta == f"{cos - prior:+.3f} vs prior"
    assert any("a constant embedding, carrying no information" in c.value for c in at.caption)
    # tag leakage on held-out public dev photos, beside the most-frequent-tags prior
    leak = next(m for m in at.metric if m.label.startswith("Tag F1 (with near misses) on "))
    held = int(re.search(r"on (\d+) held-out", leak.label).group(1))
    dev = attacker.bundle.pool["splits"].count("dev")
    assert 0.8 * dev <= held <= dev  # the dev photos left after N=300 of the pool photos are drawn (about 96%)
    diff, low = (float(x) for x in re.match(r"([+-][\d.]+) \[([+-][\d.]+),", leak.delta).groups())
    assert diff > 0.03 and low > 0  # lite1 leaks tags well beyond guessing the most frequent ones
    # the pool and its map stay in this session: nothing is added to the attacker every session shares
    assert len(at.session_state["own_pools"].pools) == 1
    assert not attacker._extra_pools and not any(key[0].startswith("upload") for key in attacker._alignments)
    scored = []
    real_leakage = explore.own_model_leakage
    monkeypatch.setattr(explore, "own_model_leakage", lambda *a, **kw: scored.append(a[3:5]) or real_leakage(*a, **kw))
    at.slider(key="own_k").set_value(4).run()
    ok(at)
    assert all(len(t.split(", ")) == 4 for t in at.dataframe[0].value["top tags"])
    at.run()  # e.g. a download click: the page reruns without rescoring the same pool and settings
    assert scored == [(300, 4)]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the HTML audit report" in labels and "Download JSON" in labels
    # refusals: one line naming the file
    at.file_uploader(key="own_audit").set_value(("audit.npy", npy_bytes(pool[:2, :50]), "application/octet-stream")).run()
    assert "audit.npy" in errors(at) and "same model" in errors(at)
    at.file_uploader(key="own_audit").set_value(("same.npy", npy_bytes(np.repeat(pool[:1], 3, axis=0)),
                                                  "application/octet-stream")).run()
    assert "same.npy" in errors(at) and "same vector" in errors(at)
    at.file_uploader(key="own_audit").set_value(("audit.npy", npy_bytes(pool[:4]), "application/octet-stream"))
    constant = np.tile(pool[:1], (len(names), 1))
    for fname, arr, message in [("flat.npy", constant, "same vector"), ("zero.npy", np.vstack([pool[:-1], 0 * pool[:1]]),
                                 "all zeros"), ("nan.npy", np.where(np.eye(len(names), pool.shape[1]) > 0, np.nan, pool),
                                 "NaN"), ("short.npy", pool[:100], "100 rows")]:
        at.file_uploader(key="own_pool").set_value((fname, npy_bytes(arr), "application/octet-stream")).run()
        ok(at)
        assert len(at.error) == 1 and fname in errors(at) and message in errors(at), (fname, errors(at))
        assert "\n" not in errors(at)


def test_own_embeddings_sensitive_attributes():
    """After an upload: each uploaded embedding's attribute margins and flags, beside the built-in victim's AUCs
    (lite0's measured file: bench/results/attribute_auc_lite0.json), said to be measured there."""
    from slime_core.stages.attributes import load_attributes

    at = start("own_embeddings")
    pool = pool_embeddings("lite1")
    at.file_uploader(key="own_pool").set_value(("pool.npy", npy_bytes(pool), "application/octet-stream"))
    at.file_uploader(key="own_audit").set_value(("audit.npy", npy_bytes(pool[:3]), "application/octet-stream")).run()
    ok(at)
    assert not at.error, errors(at)
    names = load_attributes().names
    frames = [d.value for d in at.dataframe]
    scores = next(f for f in frames if "flagged" in f.columns)
    assert list(scores.columns) == ["embedding", "flagged", *names] and len(scores) == 3
    for _, row in scores.iterrows():  # flagged exactly where the margin over the calibrated threshold is >= 0
        assert row["flagged"] == (", ".join(a for a in names if row[a] >= 0) or "-")
    aucs = next(f for f in frames if "AUC N=300" in f.columns)
    assert list(aucs["attribute"]) == names and {"AUC oracle", "N=300 − chance", "N=300 − oracle"} <= set(aucs.columns)
    assert at.selectbox(key="own_attr_victim").value == "lite0"
    assert any("measured by bench/attribute_auc.py on 1,000 public test photos" in c.value and "0.5 is chance" in c.value
               for c in at.caption)
    assert any(m.value.startswith("**What each of your embeddings gives away") for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 1


def test_uploaded_pools_keep_at_most_four_per_session():
    from slime_core.experiments import uploaded_pools as upl
    from slime_core.pipeline import Attacker

    attacker = Attacker()
    pools = upl.UploadedPools(max_pools=4, max_fits=2)
    pool = pool_embeddings("lite0")
    for i in range(5):
        pools.add(f"p{i}", pool)
    assert list(pools.pools) == ["p1", "p2", "p3", "p4"]
    fit, prior = pools.fit(attacker, "p1", 50, "ridge")
    assert fit.heldout_cosine > prior and list(pools.pools)[-1] == "p1"
    for n in (60, 70):
        pools.fit(attacker, "p1", n, "ridge")
    assert len(pools.pools["p1"]["fits"]) == 2
    assert not attacker._extra_pools  # never registered with the attacker


def test_alignment_prior_is_a_constant_embeddings_heldout_cosine():
    from slime_core.pipeline import Attacker

    Y = Attacker().pool_attack
    idx = align.choose_pairs(len(Y), 120, 0)
    constant = np.ones((120, 16), dtype=np.float32)
    # ridge: exactly the leave-one-out cosine a constant victim embedding gets from the same fit
    assert abs(align.prior_cosine(Y, 120, "ridge") - align.fit_alignment(constant, Y[idx], "ridge").heldout_cosine) < 1e-4
    # k-fold methods: lstsq on a constant input outputs each fold's training mean only up to float32 round-off on a
    # rank-1 matrix (cosine ~0.99 to it), so its fitted cosine lands near, not exactly on, the prior
    prior = align.prior_cosine(Y, 120, "lstsq")
    assert abs(align.fit_alignment(constant, Y[idx], "lstsq").heldout_cosine - prior) < 0.03
    assert 0.3 < prior < align.fit_alignment(Attacker().victim_pool("lite0")[idx], Y[idx], "lstsq").heldout_cosine



def test_alignment_headline_says_where_the_cosine_sits_against_the_prior():
    from slime_core.present import headline_words as hw

    assert "expect tags to leak" in hw.alignment_headline(0.728, 0.577, 300)
    assert "barely above what no information gives" in hw.alignment_headline(0.6, 0.577, 300)
    # unrelated embeddings (e.g. random): the intercept-free map scores far below the constant-embedding prior
    assert "below what no information gives" in hw.alignment_headline(0.025, 0.577, 300)

def test_parse_embeddings_formats_and_errors():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    got, names = uploads.parse_embeddings("x.npy", npy_bytes(arr))
    assert np.allclose(got, arr) and names is None
    got, names = uploads.parse_embeddings("x.csv", "1,2,3\n4,5,6\n".encode())  # headerless
    assert got.shape == (2, 3)
    df = pd.DataFrame({"image": ["a", "b", "c"], "v": list(arr)})
    buf = io.BytesIO()
    df.to_parquet(buf)
    got, names = uploads.parse_embeddings("x.parquet", buf.getvalue())
    assert np.allclose(got, arr) and names == ["a", "b", "c"]
    for fname, data, message in [
        ("x.txt", b"1", "unsupported"),
        ("x.npy", b"", "empty"),
        ("x.npy", npy_bytes(np.array(["a", "b"])), "not numeric"),
        ("x.npy", npy_bytes(np.zeros((2, 3))), "all zeros"),
        ("x.npy", npy_bytes(np.full((2, 3), np.inf)), "NaN or inf"),
        ("x.npy", npy_bytes(np.ones((2, 2, 2))), "2-D"),
        ("x.csv", b"name,other,1\na,b,3\n", "not numeric"),
        ("x.parquet", b"PAR1 nonsense", "not a readable"),
    ]:
        with pytest.raises(SlimeError, match=message):
            uploads.parse_embeddings(fname, data)


def test_order_pool_upload():
    pool = ["a.jpg", "b.jpg", "c.jpg"]
    arr = np.eye(3, dtype=np.float32)
    assert np.allclose(uploads.order_pool_upload(arr, ["c.jpg", "a.jpg", "b.jpg"], pool), arr[[1, 2, 0]])
    with pytest.raises(SlimeError, match="2 rows"):
        uploads.order_pool_upload(arr[:2], None, pool)
    with pytest.raises(SlimeError, match="not pool images"):
        uploads.order_pool_upload(arr, ["a.jpg", "b.jpg", "x.jpg"], pool)
    with pytest.raises(SlimeError, match="repeats"):
        uploads.order_pool_upload(arr, ["a.jpg", "a.jpg", "b.jpg"], pool)


# ---- page 6 and figures --------------------------------------------------------------------------------------------

def test_about_page(monkeypatch):
    monkeypatch.delenv("SLIME_PAPER_FIGURES", raising=False)
    at = start("about")
    ok(at)
    assert not at.error
    assert any("Threat model" in m.value for m in at.markdown)
    assert len(at.dataframe) >= 1
    # the packaged paper figures are tables, no plots; the one chart is leakage by training-set size
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and "attacker's training photos" in charts[0].proto.spec


def test_about_page_shows_the_papers_tables_by_default_labelled_as_the_papers(monkeypatch):
    monkeypatch.delenv("SLIME_PAPER_FIGURES", raising=False)
    at = start("about")
    ok(at)
    assert any("The paper's numbers, on its data and with its models - not measured by this app" in m.value
               for m in at.markdown)
    assert any("arXiv 2601.22929" in c.value and "not results of this project" in c.value for c in at.caption)
    heads = [m.value for m in at.markdown if m.value.startswith("**Table 1")]
    assert len(heads) == 1 and "ATTACK embeddings" in heads[0]
    table1 = next(d.value for d in at.dataframe if "LLM" in d.value.columns)
    assert table1.set_index("LLM").loc["DeepSeek-v3.2", "ROUGE-L"] == 54.36  # the paper's number, as transcribed


def test_about_page_shows_transcribed_paper_figures_labelled_as_the_papers(monkeypatch, tmp_path):
    figs = tmp_path / "paper.json"
    figs.write_text(json.dumps({"source": "a transcription for the test", "figures": [
        {"title": "cosine vs N", "x_label": "N", "y_label": "cosine", "note": "note for the test",
         "series": [{"name": "s", "x": [1, 2], "y": [0.1, 0.2]}]}]}))
    monkeypatch.setenv("SLIME_PAPER_FIGURES", str(figs))
    at = start("about")
    ok(at)
    charts = at.get("plotly_chart")
    paper = [c for c in charts if "THE PAPER'S FIGURE" in c.proto.spec]
    assert len(paper) == 1 and "THE PAPER'S FIGURE (not this run): cosine vs N" in paper[0].proto.spec
    assert any("a transcription for the test" in c.value for c in at.caption)
    figs.write_text("{not json")
    at = start("about")
    ok(at)  # a broken file is a clear message, not a traceback
    assert "not a valid figures file" in errors(at)


def test_scene_graph_figure():
    from slime_core.stages.infer import graph_from_tags

    fig = app_figures.scene_graph_figure(graph_from_tags(["dog run on grass", "black dog", "man sit on bench"]))
    assert fig.data and {"dog", "grass", "man", "bench"} <= {t.split("<br>")[0] for t in fig.data[0].text}
    assert app_figures.scene_graph_figure(graph_from_tags([])).layout.annotations


def test_no_secret_is_echoed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert availability.any_llm_key() == ["OPENAI_API_KEY"]
    at = start()
    at.selectbox(key="writer").set_value("litellm").run()
    ok(at)
    assert any("enter a litellm model" in literal(w.value) for w in at.warning)
    at.text_input(key="llm_model").set_value("anthropic/claude-3-5-haiku-latest").run()
    ok(at)
    assert any("ANTHROPIC_API_KEY" in literal(w.value) for w in at.warning)  # a missing key is a clear message
    shown = " ".join(literal(str(e.value)) for group in (at.markdown, at.caption, at.error, at.warning) for e in group)
    assert "OPENAI_API_KEY" in shown and "sk-test-secret-value" not in shown


# ---- defences page and the audit report button ------------------------------------------------------------------------

def start_defences(limit: int = 10) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.session_state["df_limit"] = limit  # before the page's first run: no 40-image default run in the tests
    at.session_state["df_boot"] = 100
    at.switch_page("app_pages/defences.py").run()
    return at


def metric(at: AppTest, label: str) -> float:
    return float(next(m.value for m in at.metric if m.label == label))


def test_defences_page_leakage_utility_and_curve():
    at = start_defences()
    ok(at)
    assert not at.error, errors(at)
    assert {m.label for m in at.metric} == {"Alignment cosine", "Tag F1 (exact)", "Neighbourhood F1",
                                            "Utility: recall@1", "Utility: recall@5"}
    assert any("10 test images" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert list(table["leakage"]) == ["alignment cosine", "tag F1 (exact)", "neighbourhood F1"]
    assert {"attack", "ci_low", "ci_high", "prior", "difference", "diff_ci_low", "diff_ci_high"} <= set(table.columns)
    fig = at.get("plotly_chart")
    assert len(fig) == 1 and "selected: strength 0.05" in fig[0].proto.spec
    assert any("Protects against" in s.value for s in at.success)
    # no defence: utility is untouched by construction; strong noise destroys it
    slider = at.select_slider(key="df_strength_noise")
    slider.set_value(0.0).run()
    ok(at)
    assert metric(at, "Utility: recall@1") == 1.0
    clean_f1 = metric(at, "Neighbourhood F1")
    at.select_slider(key="df_strength_noise").set_value(0.5).run()
    ok(at)
    assert metric(at, "Utility: recall@1") < 0.5 and metric(at, "Neighbourhood F1") < clean_f1
    # rotation: the page says honestly that the refitting attacker undoes it, and the numbers agree
    at.selectbox(key="df_defence").set_value("rotation").run()
    ok(at)
    assert any("least squares" in w.value for w in at.warning)
    at.select_slider(key="df_strength_rotation").set_value(1.0).run()
    ok(at)
    assert metric(at, "Utility: recall@1") == 1.0
    assert abs(metric(at, "Neighbourhood F1") - clean_f1) < 0.02
    assert any("rotation" in c.value for c in at.code)  # the `slime defend` table
    assert not at.error, errors(at)


def test_defences_page_scores_captions_beside_both_caption_priors():
    at = start_defences(limit=8)
    at.toggle(key="df_captions").set_value(True).run()
    ok(at)
    assert not at.error, errors(at)
    table = at.dataframe[0].value
    for prior in ("random caption", "mean embedding caption"):
        row = table[table["leakage"] == f"caption ROUGE-L (mbr-rougeL) vs {prior}"].iloc[0]
        assert 0 < row["prior"] < 1 and 0 <= row["attack"] <= 1
        assert abs(row["difference"] - (row["attack"] - row["prior"])) < 1e-9  # paired over images: means subtract
    assert "caption ROUGE-L" in at.get("plotly_chart")[0].proto.spec


def test_defences_page_shows_slime_errors(monkeypatch):
    from slime_core.experiments import defence_curves as curves

    def refuse(*args, **kwargs):
        raise SlimeError("measurement refused for the test")

    monkeypatch.setattr(curves, "measure", refuse)
    at = start_defences()
    ok(at)  # a SlimeError is a clear message, never a traceback
    assert "measurement refused" in errors(at)


def test_audit_report_button():
    at = start("batch_report")
    ok(at)
    assert len(at.get("download_button")) == 0  # nothing built yet
    at.number_input(key="ar_limit").set_value(10)
    at.select_slider(key="ar_boot").set_value(100)
    at.number_input(key="ar_examples").set_value(2)
    at.multiselect(key="ar_defences").set_value(["rotation"])
    at.text_input(key="ar_ns").set_value("30,50000")
    at.button[1].click().run()
    ok(at)
    assert "pool holds" in errors(at) and not at.get("download_button")
    at.text_input(key="ar_ns").set_value("30,100")
    at.text_input(key="ar_ks").set_value("1,10")
    at.button[1].click().run()
    ok(at)
    assert not at.error, errors(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download audit report (HTML)", "Download audit report (JSON)"]
    built = at.session_state["ar_result"]
    page = built["html"]
    assert page.lstrip().lower().startswith("<!doctype html") and "data:image/jpeg;base64," in page
    assert "Threat model" in page and "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inlined: opens offline
    paper = page[page.index("The paper's reference figures (NOT measured by this run)"):]
    assert "<td>DeepSeek-v3.2</td><td>18.89</td><td>61.86</td><td>33.90</td><td>54.36</td>" in paper  # by default
    report = json.loads(built["json"])
    assert report["data"]["test_images"] == 10 and list(report["defences"]) == ["rotation"]
    assert [r["n_align"] for r in report["attack"]["alignment_vs_n"]] == [30, 100]
    assert len(report["examples"]) == 2 and "thumbnail" not in report["examples"][0]
