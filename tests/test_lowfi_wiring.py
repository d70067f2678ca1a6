"""The low-fidelity image wired through the attack: `Attacker.attack(lowfi=...)`, `slime attack --lowfi`, the HTML
reports and the app, on the tiny bundle with a tiny offline generator (16x16 images, instant; the real regressor's
weights are not needed)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import run, tiny  # noqa: F401 - the CLI runner and the tiny-bundle options fixture

from slime_core.attack_spec import AttackSpec
from slime_core.infra import loaded_models
from slime_core.infra.errors import MissingModelError

from conftest import BLACK_DOG, DEMO, TINY_DIM, TINY_VICTIM

DOG = str(DEMO / "images" / BLACK_DOG)
OBJECT_KEYS = {"tags", "generated", "nearest", "union"}


def tiny_generator(dim: int = TINY_DIM):
    from slime_core.stages import taef2
    from slime_core.stages.generate import LatentRegressor, OfflineGenerator, RegressorConfig

    return OfflineGenerator(LatentRegressor(RegressorConfig(dim=dim, hidden=8, n_basis=4, latent_shape=(32, 2, 2))),
                            taef2.decoder(width=8))


@pytest.fixture
def tiny_lowfi(monkeypatch):
    """`make_lowfi("offline", ...)` gives a tiny generator of the attacker's width; Kandinsky stays the real loader."""
    from slime_core.stages import lowfi

    real = lowfi.make_lowfi

    def make(method, image_encoder, *args, **kwargs):
        return tiny_generator() if method == "offline" else real(method, image_encoder, *args, **kwargs)

    monkeypatch.setattr(lowfi, "make_lowfi", make)
    loaded_models.release("lowfi")
    yield make
    loaded_models.release("lowfi")


def one_line_error(code, err) -> str:
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slime attack: error: "), err
    return lines[0]


# ---- the pipeline ----------------------------------------------------------------------------------------------

def test_attack_with_a_generator_returns_the_image_and_objects(tiny_attacker):
    spec = AttackSpec(TINY_VICTIM, 30, 5)
    result = tiny_attacker.attack(DOG, spec=spec, lowfi=tiny_generator())
    assert isinstance(result.lowfi_image, Image.Image) and result.lowfi_image.size == (16, 16)
    assert result.lowfi["method"] == "offline" and result.lowfi["image"] is None and result.lowfi["seconds"] >= 0
    objs = result.objects
    assert set(objs) == OBJECT_KEYS and all(isinstance(v, list) for v in objs.values())
    assert objs["nearest"] == tiny_attacker.pool_objects().get(result.neighbours[0]["image"], [])
    assert objs["union"] == list(dict.fromkeys(objs["tags"] + objs["generated"] + objs["nearest"]))
    d = result.to_dict()
    assert "lowfi_image" not in d and "aligned" not in d
    json.dumps(d)  # serialisable as it is
    plain = tiny_attacker.attack(DOG, spec=spec)
    assert plain.lowfi is None and plain.objects is None and plain.lowfi_image is None
    assert plain.to_dict()["tags"] == d["tags"]


def test_nearest_objects_come_from_the_bundles_pool_objects(tiny_attacker, tmp_path, monkeypatch):
    from slime_core.infra.errors import SlimeError

    names = tiny_attacker.bundle.pool["images"]
    monkeypatch.setattr(tiny_attacker, "_pool_objects", {names[0]: ["dog", "person"]})
    got = tiny_attacker.objects_of(["man in shirt"], None, names[0])
    assert got["nearest"] == ["dog", "person"] and got["generated"] is None
    assert got["union"] == list(dict.fromkeys(got["tags"] + ["dog", "person"]))
    # read from the bundle folder's pool_objects.json; none there: no nearest objects; a damaged one: one message
    monkeypatch.setattr(tiny_attacker.bundle, "path", tmp_path)
    monkeypatch.setattr(tiny_attacker, "_pool_objects", None)
    assert tiny_attacker.objects_of([], None, names[1])["nearest"] == []
    (tmp_path / "pool_objects.json").write_text(json.dumps({"detector": "x", "objects": {names[1]: ["cat"]}}))
    monkeypatch.setattr(tiny_attacker, "_pool_objects", None)
    assert tiny_attacker.objects_of([], None, names[1])["nearest"] == ["cat"]
    (tmp_path / "pool_objects.json").write_text("{not json")
    monkeypatch.setattr(tiny_attacker, "_pool_objects", None)
    with pytest.raises(SlimeError, match="pool_objects.json"):
        tiny_attacker.pool_objects()


# ---- the CLI ---------------------------------------------------------------------------------------------------

def test_cli_lowfi_offline_writes_the_png_named_in_the_json(capsys, tiny, tiny_lowfi, tmp_path):
    out_png = tmp_path / "dog_lowfi.png"
    code, out, err = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--k", "5", "--format", "json",
                         "--lowfi", "offline", "--lowfi-out", str(out_png))
    assert code == 0, err
    d = json.loads(out)
    assert d["lowfi"]["method"] == "offline" and d["lowfi"]["image"] == str(out_png) and d["lowfi"]["seconds"] >= 0
    assert set(d["objects"]) == OBJECT_KEYS
    with Image.open(d["lowfi"]["image"]) as im:
        assert im.format == "PNG" and im.size == (16, 16)


def test_cli_lowfi_default_path_and_text_output(capsys, tiny, tiny_lowfi, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--k", "5", "--lowfi", "offline")
    assert code == 0, err
    expected = f"{BLACK_DOG.rsplit('.', 1)[0]}_lowfi.png"
    assert (tmp_path / expected).is_file()
    assert f"low-fidelity image: {expected} (offline" in out and "objects: tags " in out


def test_cli_without_lowfi_keeps_the_keys_null(capsys, tiny):
    code, out, _ = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--k", "5", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["lowfi"] is None and d["objects"] is None


def test_cli_lowfi_embedding_rows_each_get_a_file(capsys, tiny, tiny_lowfi, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "e.npy", tiny_bundle.pool_embeddings[TINY_VICTIM][:2])
    code, out, err = run(capsys, "attack", *tiny, "--embedding", "e.npy", "--n-align", "30", "--k", "5",
                         "--format", "jsonl", "--lowfi", "offline")
    assert code == 0, err
    paths = [json.loads(line)["lowfi"]["image"] for line in out.splitlines()]
    assert paths == ["lowfi_0.png", "lowfi_1.png"] and all((tmp_path / p).is_file() for p in paths)


def test_cli_lowfi_folder_attack_writes_one_png_per_image_into_the_folder(capsys, tiny, tiny_lowfi, tiny_data,
                                                                         tmp_path):
    code, out, err = run(capsys, "attack", *tiny, "--data", str(tiny_data), "--split", "test", "--n-align", "30",
                         "--k", "3", "--format", "jsonl", "--no-progress", "--lowfi", "offline",
                         "--lowfi-out", str(tmp_path / "made"))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 8
    for r in rows:
        assert r["lowfi"]["image"] == str(tmp_path / "made" / (r["image"].rsplit(".", 1)[0] + "_lowfi.png"))
        assert Path(r["lowfi"]["image"]).is_file()
    code, _, err = run(capsys, "attack", *tiny, "--data", str(tiny_data), "--lowfi", "offline",
                       "--lowfi-out", str(tmp_path / "one.png"))
    assert "name a folder" in one_line_error(code, err)


def test_cli_kandinsky_is_one_line(capsys, tiny, tmp_path, monkeypatch):
    """The tiny attacker's space is (a tiny) ViT-bigG-14, so the pairing passes and the loader's reason shows:
    no Kandinsky weights here."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--lowfi", "kandinsky")
    assert "Kandinsky 2.2 decoder not found" in one_line_error(code, err)
    assert not list(tmp_path.iterdir())


def test_cli_kandinsky_on_a_lite2_attacker_is_refused_before_loading(capsys, monkeypatch, tmp_path):
    from slime_core.stages import lowfi

    def no_load(*_, **__):
        raise AssertionError("Kandinsky must not load for a lite2 attacker")

    monkeypatch.setattr(lowfi.KandinskyDecoder, "from_pretrained", no_load)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "attack", "--image", DOG, "--n-align", "30", "--lowfi", "kandinsky")
    line = one_line_error(code, err)
    assert "ViT-bigG-14" in line and "lite2" in line


def test_cli_missing_offline_regressor_is_one_line(capsys, tiny, monkeypatch, tmp_path):
    from slime_core.stages import lowfi

    def missing(*_, **__):
        raise MissingModelError("models/lowfi: no trained low-fidelity regressor (regressor.safetensors + .json).")

    monkeypatch.setattr(lowfi, "make_lowfi", missing)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "attack", *tiny, "--image", DOG, "--n-align", "30", "--lowfi", "offline")
    assert "no trained low-fidelity regressor" in one_line_error(code, err)


@pytest.mark.parametrize("where, says", [("missing/out.png", "does not exist"), ("out.jpg", "should end in .png"),
                                         ("folder.png", "is a folder")])
def test_cli_unwritable_lowfi_out_is_refused_before_any_work(capsys, tmp_path, monkeypatch, where, says):
    """Refused before the attacker loads."""
    from slime_core.cli import main as cli

    def no_attacker(_):
        raise AssertionError("the attacker must not load for a bad --lowfi-out")

    monkeypatch.setattr(cli, "make_attacker", no_attacker)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.png").mkdir()
    code, _, err = run(capsys, "attack", "--image", DOG, "--lowfi", "offline", "--lowfi-out", where)
    line = one_line_error(code, err)
    assert "--lowfi-out" in line and says in line and where.split("/")[0] in line


def test_cli_lowfi_out_without_lowfi_is_refused(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "--image", DOG, "--lowfi-out", str(tmp_path / "x.png"))
    assert "--lowfi-out needs --lowfi" in one_line_error(code, err)


# ---- the reports -----------------------------------------------------------------------------------------------

def test_attack_report_embeds_the_generated_image_beside_the_original(tiny_attacker, tiny_data):
    from slime_core.present.html_report import attack_report, render_html, report_json

    result = tiny_attacker.attack(DOG, spec=AttackSpec(TINY_VICTIM, 30, 5), lowfi=tiny_generator())
    record = result.to_dict()
    report = attack_report(record, image=DOG, generated=result.lowfi_image, captions=["a black dog"],
                           classified=[(record["tags"][0]["tag"], "exact")], pool_images=tiny_data / "images")
    page = render_html(report)
    original, generated = page.index("data:image/jpeg;base64,"), page.index("data:image/png;base64,")
    assert original < generated < page.index("generated from its embedding (offline)")
    assert "seen in the generated image:" in page and "objects named by the tags:" in page
    assert "<span class='tag exact'>" in page and "<span class='tag unscored'>" in page
    assert page.count("<img") >= 3  # the photo, the generated image, the nearest public photos on disk
    slim = json.loads(report_json(report))
    assert "generated" not in slim["examples"][0] and "thumbnail" not in slim["examples"][0]
    assert slim["examples"][0]["objects"] == record["objects"]
    # an uploaded photo's bytes, and an embedding with no photo and no image generated
    assert "data:image/jpeg;base64," in render_html(attack_report(record, image=open(DOG, "rb").read()))
    bare = render_html(attack_report(tiny_attacker.attack(DOG, spec=AttackSpec(TINY_VICTIM, 30, 5)).to_dict()))
    assert "(image not available)" in bare and "data:image/png" not in bare


def test_audit_examples_carry_the_generated_image(monkeypatch):
    from test_defence_curves import FakeAttacker

    from slime_core.experiments import audit
    from slime_core.experiments import defence_curves as curves

    att = FakeAttacker()
    setup = curves.prepare(att, att.samples, AttackSpec("fake-victim", 60, 3), n_boot=50, refs=att.refs,
                           scorer=att.scorer())
    calls = []

    def objects_of(tags, image, nearest):
        calls.append((tags, image, nearest))
        return {"tags": ["dog"], "generated": ["person"], "nearest": [], "union": ["dog", "person"]}

    monkeypatch.setattr(att, "objects_of", objects_of, raising=False)
    gen = tiny_generator(att.pool_attack.shape[1])
    got = audit.examples(setup, att.samples, 2, lowfi=gen)
    assert len(got) == 2 and len(calls) == 2
    assert all(ex["generated"].startswith("data:image/png;base64,") and ex["lowfi_method"] == "offline" for ex in got)
    assert all(ex["objects"]["generated"] == ["person"] for ex in got)
    assert "generated" not in audit.examples(setup, att.samples, 2)[0]  # no maker, no image


# ---- the app ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_app_shows_original_generated_nearest_tags_caption_graph(monkeypatch):
    """The attack page on the default bundle, a tiny generator of its width standing in for models/lowfi."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from slime_core.stages import lowfi
    from slime_core.stages.bundle import load_bundle

    from app_pages import _gallery, _lowfi
    from conftest import REPO

    dim = load_bundle().pool_embeddings["lite2"].shape[1]
    real = lowfi.make_lowfi
    monkeypatch.setattr(lowfi, "make_lowfi", lambda m, enc, *a, **kw: tiny_generator(dim) if m == "offline"
                        else real(m, enc, *a, **kw))
    monkeypatch.setattr(_gallery, "start_warmup", lambda attacker: None)  # no background gallery scores here
    loaded_models.release("lowfi")
    _lowfi.lowfi_problem.clear()
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.selectbox(key="lowfi").value == "offline"
        assert at.selectbox(key="lowfi").options == [_lowfi.LABELS["offline"], "none"]
        assert any("Kandinsky 2.2" in c.value and "unavailable" in c.value and "ViT-bigG-14" in c.value
                   for c in at.caption)  # greyed, with the loader's reason
        heads = [m.value for m in at.markdown]
        order = ["**Original**", "**Generated from the embedding**", "**Nearest public photos**", "**Tags**",
                 "**Caption**", "**Scene graph** (from the recovered tags)"]
        assert [h for h in heads if h in order] == order  # side by side, in this order
        captions = [c for im in at.get("image") for c in im.proto.imgs for c in [c.caption]]
        assert any(c.startswith("offline, ") and c.endswith(" s") for c in captions)  # the generated image, its time
        assert any(m.value.startswith("objects in the generated image:") for m in at.markdown)
        assert at.get("graphviz_chart")
        labels = [b.proto.label for b in at.get("download_button")]
        assert "Download this attack (HTML report)" in labels
        at.selectbox(key="lowfi").set_value("none").run()
        assert not at.exception
        assert any("choose a generator in the sidebar" in c.value for c in at.caption)  # said, not drawn
        assert not [c for im in at.get("image") for c in im.proto.imgs if c.caption.startswith("offline, ")]
    finally:
        _lowfi.lowfi_problem.clear()
        loaded_models.release("lowfi")


def test_cli_eval_with_lowfi_scores_the_generated_images_objects(capsys, tiny, tiny_lowfi, tiny_data):
    code, out, err = run(capsys, "eval", *[a for a in tiny if a != "--pool-data" and a != str(tiny_data)],
                         "--data", str(tiny_data), "--split", "test", "--n-align", "30", "--k", "5", "--format", "json",
                         "--bootstrap", "50", "--no-progress", "--lowfi", "offline")
    assert code == 0, err
    objects = json.loads(out)["rows"][0]["objects"]
    assert {"prior", "tags", "nearest", "generated", "union"} <= set(objects)
    assert 0 <= objects["generated"]["f1"]["mean"] <= 1
