"""Bad input never reaches a traceback: each case is one line on stderr naming the file, and exit status 2.

Corrupt bundles are built in tmp_path from copies of models/default; nothing here needs a network."""

from __future__ import annotations

import json
import shutil

import pytest

from slime_core.cli.main import main
from slime_core.infra.errors import SlimeError

from conftest import DEFAULT_BUNDLE


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, *names):
    """Exit 2, one line on stderr, no traceback, and every name in `names` in that line."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


# --- 1. corrupt bundles -------------------------------------------------------------------------------

@pytest.fixture()
def bundle_copy(tmp_path):
    dest = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, dest)
    return dest


def _truncate(path, keep=100):
    path.write_bytes(path.read_bytes()[:keep])


def _resave(path, key, change):
    """Rewrite a safetensors file with array `key` changed by `change` (None: the key dropped)."""
    from safetensors.numpy import load_file, save_file

    arrays = load_file(path)
    if change is None:
        arrays.pop(key)
        arrays.setdefault("other", __import__("numpy").zeros(1, "float16"))
    else:
        arrays[key] = __import__("numpy").ascontiguousarray(change(arrays[key]))
    save_file(arrays, path)


def _edit_json(path, change):
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


DAMAGE = {
    "manifest-not-json": ("manifest.json", lambda b: (b / "manifest.json").write_text("{not json")),
    "manifest-empty-object": ("manifest.json", lambda b: (b / "manifest.json").write_text("{}")),
    "manifest-list": ("manifest.json", lambda b: (b / "manifest.json").write_text("[1, 2]")),
    "manifest-missing-dims": ("manifest.json", lambda b: _edit_json(b / "manifest.json",
                                                                      lambda m: {k: v for k, v in m.items() if k != "dims"})),
    "manifest-bad-dims": ("manifest.json", lambda b: _edit_json(b / "manifest.json",
                                                                  lambda m: dict(m, dims={"image": "big"}))),
    "heads-truncated": ("heads.safetensors", lambda b: _truncate(b / "heads.safetensors")),
    "heads-not-safetensors": ("heads.safetensors", lambda b: (b / "heads.safetensors").write_bytes(b"PK\x03\x04 zip?")),
    "heads-empty": ("heads.safetensors", lambda b: (b / "heads.safetensors").write_bytes(b"")),
    "tags-truncated": ("tags.safetensors", lambda b: _truncate(b / "tags.safetensors", 5000)),
    "semantics-truncated": ("semantics.safetensors", lambda b: _truncate(b / "semantics.safetensors", 3)),
    "semantics-wrong-shape": ("semantics.safetensors", lambda b: _resave(b / "semantics.safetensors", "class_text",
                                                                        lambda a: a[:, :100])),
    "semantics-missing-key": ("semantics.safetensors", lambda b: _resave(b / "semantics.safetensors", "feature_norm",
                                                                         None)),
    "pool-emb-wrong-key": ("pool_lite1.safetensors", lambda b: _resave(b / "pool_lite1.safetensors", "embeddings",
                                                                       None)),
    "pool-emb-truncated": ("pool_lite0.safetensors", lambda b: _truncate(b / "pool_lite0.safetensors", 64)),
    "vocab-deleted": ("vocab.json", lambda b: (b / "vocab.json").unlink()),
    "vocab-not-json": ("vocab.json", lambda b: (b / "vocab.json").write_text("tags: [dog]")),
    "vocab-wrong-shape": ("vocab.json", lambda b: (b / "vocab.json").write_text('{"tags": "dog"}')),
    "pool-deleted": ("pool.json", lambda b: (b / "pool.json").unlink()),
    "pool-short": ("pool.json", lambda b: _edit_json(b / "pool.json",
                                                                   lambda p: {k: v[:-5] for k, v in p.items()})),
    "pool-splits-short": ("pool.json", lambda b: _edit_json(b / "pool.json", lambda p: dict(p, splits=p["splits"][:3]))),
    "attacker-pool-deleted": ("pool_lite2.safetensors", lambda b: (b / "pool_lite2.safetensors").unlink()),
    "tags-deleted": ("tags.safetensors", lambda b: (b / "tags.safetensors").unlink()),
    "semantics-deleted": ("semantics.safetensors", lambda b: (b / "semantics.safetensors").unlink()),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_corrupt_bundle_is_one_error_naming_the_file(bundle_copy, case):
    from slime_core.stages.bundle import load_bundle

    filename, damage = DAMAGE[case]
    damage(bundle_copy)
    with pytest.raises(SlimeError) as err:
        load_bundle(bundle_copy)
    message = str(err.value)
    assert filename in message and "\n" not in message, message


@pytest.mark.parametrize("case", ["manifest-not-json", "manifest-empty-object", "heads-truncated", "pool-short",
                                  "vocab-deleted"])
def test_corrupt_bundle_cli_exit_2(bundle_copy, capsys, case):
    filename, damage = DAMAGE[case]
    damage(bundle_copy)
    code, out, err = run_cli(capsys, "pool", "--bundle", bundle_copy)
    assert_refused(code, err, filename)
    assert out == ""


def test_intact_bundle_copy_still_loads(bundle_copy):
    from slime_core.stages.bundle import load_bundle

    bundle = load_bundle(bundle_copy)
    assert bundle.pool_embeddings["lite2"].shape[0] == len(bundle.pool["images"])


# --- 2. the embedding cache ---------------------------------------------------------------------------

class _Counting:
    """Embeds an image as its mean colour; counts the images it embedded."""

    name, dim, modalities = "counting-bad-input", 3, ("image",)

    def __init__(self, weights_id="w1"):
        self.seen, self.weights_id = 0, weights_id

    def encode_images(self, images, batch_size=16, progress=False):
        import numpy as np

        from slime_core.stages.encoders import l2_normalise, load_image

        self.seen += len(images)
        return l2_normalise(np.stack([np.asarray(load_image(i), np.float32).mean(axis=(0, 1)) + 1 for i in images]))


def _png(path, colour, size=(40, 36)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return path


def test_truncated_cache_entry_is_a_miss_and_is_repaired(tmp_path):
    import numpy as np

    from slime_core.stages.encoders import EmbeddingCache

    images = [_png(tmp_path / "a.png", (200, 10, 10)), _png(tmp_path / "b.png", (10, 200, 10))]
    cache, enc = EmbeddingCache(tmp_path / "cache"), _Counting()
    first = cache.encode_images(enc, images)
    entries = sorted((tmp_path / "cache" / enc.name).glob("*.npy"))
    assert enc.seen == 2 and len(entries) == 2
    assert not list((tmp_path / "cache" / enc.name).glob("*.tmp"))  # temporary files renamed into place
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # a write cut short (disk full, killed process)
    entries[1].write_bytes(b"garbage, not an .npy file")
    again = cache.encode_images(enc, images)
    assert enc.seen == 4  # both recomputed, no exception
    np.testing.assert_allclose(again, first)
    assert all(np.load(p).shape == (3,) for p in entries)  # and rewritten whole
    cache.encode_images(enc, images)
    assert enc.seen == 4  # repaired entries are hits


def test_cache_key_includes_weights_identity_and_preprocess_version(tmp_path, monkeypatch):
    from slime_core.stages.encoders import EmbeddingCache, base, weights_identity

    images = [_png(tmp_path / "a.png", (200, 10, 10))]
    cache = EmbeddingCache(tmp_path / "cache")
    old, new = _Counting("weights-v1"), _Counting("weights-v2")
    assert cache.identity_of(old) != cache.identity_of(new)
    cache.encode_images(old, images)
    cache.encode_images(new, images)
    assert old.seen == 1 and new.seen == 1  # other weights: a different key, embedded again
    before = cache.identity_of(old)
    monkeypatch.setattr(base, "PREPROCESS_VERSION", base.PREPROCESS_VERSION + 1)
    assert cache.identity_of(old) != before
    cache.encode_images(old, images)
    assert old.seen == 2  # changed preprocessing: a miss
    # a registered encoder's identity follows its weights package's version and its overrides
    assert weights_identity("lite0") == weights_identity("lite0")
    assert weights_identity("lite0") != weights_identity("lite1")
    assert weights_identity("lite0", {"size": 300}) != weights_identity("lite0")


def test_cache_identity_follows_a_local_weights_file(tmp_path):
    from slime_core.stages.encoders import weights_identity

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 10)
    first = weights_identity("clip-vit-l-14", {"pretrained": str(weights)})
    weights.write_bytes(b"y" * 20)
    assert weights_identity("clip-vit-l-14", {"pretrained": str(weights)}) != first


# --- 3. images ----------------------------------------------------------------------------------------

def test_unreadable_image_bytes_name_the_file_not_a_bytesio(tmp_path):
    from slime_core.stages.encoders import load_image

    with pytest.raises(SlimeError) as err:
        load_image(b"not an image at all", name="holiday.png")
    assert str(err.value).startswith("holiday.png: not a readable image") and "BytesIO" not in str(err.value)
    with pytest.raises(SlimeError) as err:
        load_image(b"not an image at all")
    assert "BytesIO" not in str(err.value) and "0x" not in str(err.value)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(SlimeError, match="folder.png: is a folder"):
        load_image(tmp_path / "folder.png")


def test_tiny_image_refused(tmp_path):
    from PIL import Image

    from slime_core.stages.encoders import load_image

    Image.new("RGB", (31, 200)).save(tmp_path / "sliver.png")
    with pytest.raises(SlimeError, match=r"sliver.png: image is 31x200 pixels; at least 32"):
        load_image(tmp_path / "sliver.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").size == (32, 32)


def _png16(path, size=(64, 48)):
    """A 16-bit greyscale PNG: a left-to-right ramp over the whole 0..65535 range."""
    import numpy as np
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, size[0]), (size[1], 1)).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    return path


def test_16_bit_png_is_scaled_not_white(tmp_path):
    import numpy as np
    from PIL import Image

    from slime_core.stages.encoders import load_image

    path = _png16(tmp_path / "depth16.png")
    assert Image.open(path).mode in ("I;16", "I")
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (48, 64, 3)
    assert (pixels == 255).mean() < 0.05  # PIL's own convert("RGB") clips ~99.6% of this ramp to white
    assert abs(pixels.mean() - 127.5) < 3
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    np.testing.assert_array_equal(np.asarray(load_image(path.read_bytes())), pixels)
    # an in-memory 32-bit integer image holding 16-bit values is scaled the same way
    as_i = Image.fromarray(np.asarray(Image.open(path)).astype(np.int32), "I")
    assert abs(np.asarray(load_image(as_i)).mean() - 127.5) < 3


@pytest.fixture
def tiny_cli(tiny_bundle_dir, tiny_data, tiny_env):
    """Options pointing `slime attack` at the tiny bundle (tiny random encoders, see conftest)."""
    from conftest import TINY_VICTIM

    return ["--bundle", tiny_bundle_dir, "--victim", TINY_VICTIM, "--pool-data", tiny_data]


def test_cli_attack_refuses_tiny_image(tmp_path, capsys, tiny_cli):
    from PIL import Image

    Image.new("RGB", (16, 16), (100, 50, 20)).save(tmp_path / "thumb.png")
    code, out, err = run_cli(capsys, "attack", *tiny_cli, "--image", tmp_path / "thumb.png", "--n-align", "10",
                             "--k", "3", "--no-progress")
    line = assert_refused(code, err, "thumb.png")
    assert "16x16" in line


def test_cli_attack_on_a_non_image_names_it(tmp_path, capsys, tiny_cli):
    (tmp_path / "notes.png").write_text("hello")
    code, out, err = run_cli(capsys, "attack", *tiny_cli, "--image", tmp_path / "notes.png", "--n-align", "10",
                             "--k", "3", "--no-progress")
    assert_refused(code, err, "notes.png")


# --- 5. embeddings the CLI must not accept silently ---------------------------------------------------

def _npy(path, arr):
    import numpy as np

    np.save(path, arr)
    return path


@pytest.mark.parametrize("case", ["zeros", "nan", "inf", "3d", "empty", "object", "text"])
def test_cli_refuses_bad_embedding_before_loading_anything(tmp_path, capsys, monkeypatch, case):
    import numpy as np

    from slime_core.cli import main as cli

    monkeypatch.setattr(cli, "make_attacker", lambda args: pytest.fail("the bundle loaded before the check"))
    vec = np.ones(1280, np.float32)
    arrays = {"zeros": np.zeros((1, 1280), np.float32), "nan": np.where(np.arange(1280) == 7, np.nan, vec)[None],
              "inf": np.where(np.arange(1280) == 7, np.inf, vec)[None], "3d": np.ones((2, 2, 1280), np.float32),
              "empty": np.zeros((0, 1280), np.float32)}
    path = tmp_path / f"victim_{case}.npy"
    if case == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "text":
        path.write_text("1,2,3")
    else:
        _npy(path, arrays[case])
    code, out, err = run_cli(capsys, "attack", "--embedding", path, "--n-align", "10", "--k", "3")
    line = assert_refused(code, err, path.name)
    assert out == ""
    expected = {"zeros": "all zeros", "nan": "NaN or inf", "inf": "NaN or inf", "3d": "(2, 2, 1280)",
                "empty": "empty", "object": "object", "text": "not a readable .npy"}[case]
    assert expected in line, line


def test_cli_refuses_bad_victim_pool(tmp_path, capsys, monkeypatch):
    import numpy as np

    from slime_core.cli import main as cli

    monkeypatch.setattr(cli, "make_attacker", lambda args: pytest.fail("the bundle loaded before the check"))
    emb = _npy(tmp_path / "one.npy", np.ones((1, 1280), np.float32))
    pool = _npy(tmp_path / "pool_zero_rows.npy", np.vstack([np.ones((3, 1280)), np.zeros((1, 1280))]))
    code, out, err = run_cli(capsys, "attack", "--embedding", emb, "--victim-pool", pool, "--n-align", "3", "--k", "3")
    assert "all zeros" in assert_refused(code, err, "pool_zero_rows.npy")
    code, out, err = run_cli(capsys, "attack", "--embedding", emb, "--victim-pool", tmp_path / "absent.npy")
    assert "no such victim pool file" in assert_refused(code, err, "absent.npy")


# --- 4. dataset folders ---------------------------------------------------------------------------------

def _dataset(tmp_path, lines: list[bytes]):
    from PIL import Image

    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(folder / "images" / "a.jpg")
    (folder / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder


GOOD = json.dumps({"image": "a.jpg", "captions": ["a dog"], "split": "test"}).encode()


def test_captions_not_utf8_names_file_and_line(tmp_path, capsys):
    from slime_core.stages.data import load_folder

    bad = b'{"image": "a.jpg", "captions": ["caf\xe9 au lait"], "split": "test"}'  # Latin-1, not UTF-8
    folder = _dataset(tmp_path, [GOOD, bad])
    with pytest.raises(SlimeError, match=r"captions.jsonl:2: not UTF-8 text"):
        load_folder(folder)
    code, out, err = run_cli(capsys, "tags", "--data", folder)
    assert_refused(code, err, "captions.jsonl:2", "UTF-8")


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname", "sub/../../x.jpg", "..", "C:\\\\x.jpg",
                                  "..\\\\..\\\\x.jpg", ""])
def test_image_names_escaping_the_folder_refused_on_reading(tmp_path, name):
    from slime_core.stages.data import load_folder

    folder = _dataset(tmp_path, [GOOD, json.dumps({"image": name, "captions": ["x"], "split": "test"}).encode()])
    with pytest.raises(SlimeError, match=r"captions.jsonl:2: image name") as err:
        load_folder(folder, require_images=False)
    assert "\n" not in str(err.value)


def test_image_names_escaping_the_folder_cli(tmp_path, capsys):
    folder = _dataset(tmp_path, [GOOD, json.dumps({"image": "../../etc/hostname", "captions": ["x"],
                                                  "split": "test"}).encode()])
    code, out, err = run_cli(capsys, "tags", "--data", folder)
    assert_refused(code, err, "captions.jsonl:2", "../../etc/hostname")


def test_coco_file_name_escaping_refused_on_reading_and_writing(tmp_path, capsys):
    from slime_core.stages.data import Sample, write_folder

    coco = tmp_path / "captions_val2017.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "../../etc/hostname"}],
                                "annotations": [{"image_id": 1, "caption": "a host"}]}))
    code, out, err = run_cli(capsys, "data", "coco", "--captions", coco, coco, "--out", tmp_path / "out",
                             "--captions-only", "--dev", "0", "--test", "1")
    assert_refused(code, err, "captions_val2017.json", "../../etc/hostname")
    assert not (tmp_path / "out" / "captions.jsonl").exists()
    with pytest.raises(SlimeError, match="climbs out of its folder"):
        write_folder([Sample("ok.jpg", None, ["x"]), Sample("../../escape.jpg", None, ["y"])], tmp_path / "w")
    assert not (tmp_path / "w" / "captions.jsonl").exists()  # refused before anything is written
    assert not (tmp_path / "escape.jpg").exists()


# --- 6. code shipped with weights runs only on opt-in ------------------------------------------------

def _remote_code_checkpoint(tmp_path):
    folder = tmp_path / "remote-ckpt"
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text("raise SystemExit('this code must not run without opt-in')\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 16, "auto_map": {
        "AutoConfig": "modeling_tiny.TinyVisionConfig", "AutoModel": "modeling_tiny.TinyVisionModel"}}))
    return folder


def test_remote_code_is_refused_without_opt_in(tmp_path, monkeypatch):
    from slime_core.infra.errors import MissingModelError
    from slime_core.stages.encoders import get_encoder

    monkeypatch.delenv("SLIME_TRUST_REMOTE_CODE", raising=False)
    folder = _remote_code_checkpoint(tmp_path)
    with pytest.raises(MissingModelError) as err:
        get_encoder("nomic-vision-v1.5", device="cpu", path=str(folder))
    message = str(err.value)
    assert "SLIME_TRUST_REMOTE_CODE=1" in message and str(folder) in message and "\n" not in message
    monkeypatch.setenv("SLIME_TRUST_REMOTE_CODE", "0")
    with pytest.raises(MissingModelError, match="SLIME_TRUST_REMOTE_CODE=1"):
        get_encoder("nomic-vision-v1.5", device="cpu", path=str(folder))


def test_remote_code_opt_in_gets_past_the_refusal(tmp_path, monkeypatch):
    from slime_core.stages.encoders import EncoderCfg, hf

    monkeypatch.setenv("SLIME_TRUST_REMOTE_CODE", "1")
    folder = _remote_code_checkpoint(tmp_path)
    seen = {}

    def fake_load(path, trust_remote_code, device):  # stands in for transformers (not needed for this check)
        seen.update(path=path, trust=trust_remote_code)
        raise hf.MissingModelError("stop here")

    monkeypatch.setattr(hf, "_load_hf_vision", fake_load)
    with pytest.raises(SlimeError, match="stop here"):
        hf.build_hf_vision(EncoderCfg("nomic-vision-v1.5", "hf_vision", 768, model="x", path=str(folder)), device="cpu")
    assert seen == {"path": str(folder), "trust": True}
    # the registry entry may forbid it outright: then the checkpoint's code never runs, opt-in or not
    seen.clear()
    with pytest.raises(SlimeError, match="stop here"):
        hf.build_hf_vision(EncoderCfg("x", "hf_vision", 768, model="x", path=str(folder), trust_remote_code=False),
                           device="cpu")
    assert seen["trust"] is False


def test_cli_remote_code_victim_is_one_line(tmp_path, capsys, monkeypatch, tiny_cli, tiny_overrides):
    from conftest import BLACK_DOG, DEMO

    monkeypatch.delenv("SLIME_TRUST_REMOTE_CODE", raising=False)
    folder = _remote_code_checkpoint(tmp_path)
    overrides = json.loads(tiny_overrides) | {"nomic-vision-v1.5": {"path": str(folder)}}
    monkeypatch.setenv("SLIME_ENCODER_OVERRIDES", json.dumps(overrides))
    code, out, err = run_cli(capsys, "attack", *tiny_cli, "--image", DEMO / "images" / BLACK_DOG, "--victim",
                             "nomic-vision-v1.5", "--n-align", "10", "--k", "3", "--no-progress")
    assert "SLIME_TRUST_REMOTE_CODE=1" in assert_refused(code, err, str(folder))


# --- 7. packaging ---------------------------------------------------------------------------------------

def _req_name(line: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_dependencies_match_requirements():
    import tomllib

    from conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = {_req_name(line): line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    declared = list(project["dependencies"])
    for extra in ("paper", "test"):
        declared += project["optional-dependencies"][extra]
    by_name = {_req_name(d): d for d in declared}
    assert set(by_name) == set(reqs), set(by_name) ^ set(reqs)  # every requirement declared once, nothing extra
    for name, spec in by_name.items():
        assert spec.replace(" ", "") == reqs[name].replace(" ", ""), (spec, reqs[name])
    assert "tenacity" in reqs and "sacrebleu" not in reqs  # remote.py needs tenacity; nothing imports sacrebleu
    core = {_req_name(d) for d in project["dependencies"]}
    assert {"open-clip-torch", "diffusers", "litellm", "stanza"}.isdisjoint(core)
    assert {"pytest", "playwright"}.isdisjoint(core)


def test_tag_embedding_chunks_and_tag_cache_survive_truncation(tmp_path):
    import numpy as np

    pytest.importorskip("accelerate")
    from slime_core.training import build_scale

    class Text:
        name, dim, calls = "text-bad-input", 4, 0

        def encode_texts(self, texts, batch_size=64, progress=False):
            Text.calls += 1
            return np.stack([np.full(4, len(t), np.float32) for t in texts])

    tags = [f"tag {'x' * i}" for i in range(10)]
    first = build_scale.embed_tags(tmp_path, lambda device: Text(), tags, chunk=4, progress=False)
    assert Text.calls == 3
    chunks = sorted((tmp_path / "tags").rglob("*.npy"))
    assert len(chunks) == 3 and not list((tmp_path / "tags").rglob("*.tmp*"))
    chunks[1].write_bytes(chunks[1].read_bytes()[:30])
    again = build_scale.embed_tags(tmp_path, lambda device: Text(), tags, chunk=4, progress=False)
    assert Text.calls == 4  # only the damaged chunk recomputed
    np.testing.assert_allclose(again, first, rtol=1e-3)

    class Parser:
        calls = 0

    def fake_tags(samples, parser, progress=False):
        Parser.calls += 1
        from collections import Counter

        return [Counter({s.captions[0]: 1}) for s in samples]

    from slime_core.stages.data import Sample

    samples = [Sample("a.jpg", None, ["dog"]), Sample("b.jpg", None, ["cat"])]
    original = build_scale.tags_of_samples
    build_scale.tags_of_samples = fake_tags
    try:
        assert build_scale.cached_tags(samples, Parser, "fake", tmp_path) == [{"dog": 1}, {"cat": 1}]
        [entry] = (tmp_path / "tags").glob("fake-*.json")
        entry.write_text('[{"dog": 1}')  # cut short
        assert build_scale.cached_tags(samples, Parser, "fake", tmp_path) == [{"dog": 1}, {"cat": 1}]
        assert Parser.calls == 2 and entry.read_text().endswith("]")
        build_scale.cached_tags(samples, Parser, "fake", tmp_path)
        assert Parser.calls == 2
    finally:
        build_scale.tags_of_samples = original


@pytest.mark.parametrize("content", [b'{"images": [], "annotations": [{"caption": "x"}]}',
                                     b'{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]}',
                                     b'{"images": [], "annotations": [{"image_id": 1, "caption": 5}]}',
                                     b'{"images": [], "annotations": [{"image_id": 1, "caption": "caf\xe9"}]}'])
def test_malformed_coco_annotations_are_one_error(tmp_path, capsys, content):
    coco = tmp_path / "captions_val2017.json"
    coco.write_bytes(content)
    code, out, err = run_cli(capsys, "data", "coco", "--captions", coco, coco, "--out", tmp_path / "out",
                             "--captions-only")
    assert_refused(code, err, "captions_val2017.json")


def test_captions_must_be_a_list_of_texts(tmp_path):
    from slime_core.stages.data import load_folder

    folder = _dataset(tmp_path, [json.dumps({"image": "a.jpg", "captions": "a dog"}).encode()])
    with pytest.raises(SlimeError, match=r"captions.jsonl:1: .*list of texts"):
        load_folder(folder)


def test_malformed_karpathy_file_is_one_error(tmp_path, capsys):
    split = tmp_path / "dataset_coco.json"
    split.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"raw": 5}]}]}))
    code, out, err = run_cli(capsys, "data", "coco", "--karpathy", split, "--out", tmp_path / "out", "--captions-only")
    assert_refused(code, err, "dataset_coco.json")
    split.write_text(json.dumps({"images": [{"filename": "../../etc/hostname", "split": "val",
                                             "sentences": [{"raw": "x"}]}]}))
    code, out, err = run_cli(capsys, "data", "coco", "--karpathy", split, "--out", tmp_path / "out", "--captions-only")
    assert_refused(code, err, "dataset_coco.json", "../../etc/hostname")


# --- the real process: `python -m slime_core.cli.main` --------------------------------------------------------

def test_subprocess_corrupt_bundle_exit_2_one_line(bundle_copy):
    import os
    import subprocess
    import sys

    from conftest import REPO

    _truncate(bundle_copy / "heads.safetensors")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "slime_core.cli.main", "pool", "--bundle", str(bundle_copy)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "heads.safetensors" in proc.stderr and proc.stderr.startswith("slime pool: error: ")
