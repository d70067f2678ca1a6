"""captions.jsonl and COCO caption files under a fuzzer (issue 22, classes 3 and 5).

Property, for every generated file: the command ends with exit 0 and a sane result, or with exit 2 and exactly
one stderr line naming the input - never a traceback, never a hang (a deadline per example). Generated: JSON
values of every type and nesting (deep nesting included), encodings (UTF-8, UTF-16, Latin-1, raw bytes),
lengths (captions past spaCy's 1,000,000 characters), image names (absolute, climbing, control characters,
surrogates, too long), COCO ids (repeated, unhashable, unknown). The budget is small here; SLIME_FUZZ_EXAMPLES
raises it (bench/fuzz.sh)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from slime_core.cli import main as cli

EXAMPLES = int(os.environ.get("SLIME_FUZZ_EXAMPLES", "40"))
DEADLINE_MS = int(os.environ.get("SLIME_FUZZ_DEADLINE_MS", "20000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE_MS, derandomize="SLIME_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
names = st.one_of(
    st.text(min_size=1, max_size=30),
    st.sampled_from(["a.jpg", "../a.jpg", "/etc/hostname", "C:\\x.jpg", "sub/b.jpg", "a\x00b.jpg", "x\udc80.jpg",
                     "a" * 300 + ".jpg", "..", ".", " ", "a\nb.jpg", "ok.jpg"]),
    st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))
captions = st.one_of(
    st.lists(st.text(max_size=60), max_size=4),
    st.lists(json_values, max_size=3),
    st.text(max_size=20),
    json_values,
    st.integers(0, 3).map(lambda k: ["a dog on a mat " * (10 ** k)]),
    st.just(["x" * 1_000_001]),  # past spaCy's limit
    st.just(["a cat\udc80"]))


clean_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .-]{0,20}\.jpg", fullmatch=True)
clean_captions = st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60), min_size=1,
                          max_size=3)


@st.composite
def records(draw, clean: bool = False):
    """One line's JSON: a well-formed record (`clean`: text fields, plain names), else generated fields or any
    JSON value."""
    if clean:
        return {"image": draw(clean_names), "captions": draw(clean_captions),
                "split": draw(st.sampled_from(["train", "dev", "test", ""]))}
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    row = {"image": draw(names), "captions": draw(captions)}
    for extra in draw(st.lists(st.sampled_from(["split", "image_present", "meta"]), max_size=3, unique=True)):
        row[extra] = draw(json_values | st.sampled_from(["train", "test", False, 0]))
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(["image", "captions"])))
    return row


def encode_line(draw, value, clean: bool = False) -> bytes:
    """The line's bytes: JSON (ensure_ascii or not) in some encoding, or a mangled variant (unless `clean`)."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    how = "utf-8" if clean else draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "truncated",
                                                      "bytes", "deep"]))
    if how == "deep":
        depth = draw(st.sampled_from([10, 500, 5_000, 100_000]))
        return ('{"image": "a.jpg", "captions": ' + "[" * depth + "]" * depth + "}").encode()
    if how == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if how == "truncated":
        return text.encode("utf-8", "surrogatepass")[: draw(st.integers(0, max(0, len(text) - 1)))]
    try:
        return text.encode(how, "surrogatepass" if how.startswith("utf") else "strict")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@st.composite
def captions_files(draw) -> bytes:
    clean = draw(st.booleans())  # half the files well formed (exit 0 checked for sanity), half hostile
    lines = [encode_line(draw, draw(records(clean)), clean) for _ in range(draw(st.integers(0, 4)))]
    ending = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
    return ending.join(lines) + draw(st.sampled_from([b"", ending]))


def one_line_naming(err: str, *inputs) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert any(str(i) in lines[0] for i in inputs), (inputs, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def workdir():
    root = Path(tempfile.mkdtemp(prefix="slime-fuzz-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def fresh(root: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "images").mkdir()
    return folder


@FUZZ
@given(content=captions_files())
def test_tags_reads_any_captions_file_or_refuses_it_in_one_line(capsys, workdir, content):
    """`slime tags` (the captions parser, then spaCy) on a generated captions.jsonl."""
    folder = fresh(workdir)
    (folder / "captions.jsonl").write_bytes(content)
    code = cli.main(["tags", "--data", str(folder), "--format", "json", "--no-progress"])
    out, err = capsys.readouterr()
    event(f"exit {code}")
    if code == 0:
        stats = json.loads(out)
        assert stats["images"] >= 0 and stats["tags_per_image"] is not None
        assert "Traceback" not in err
    else:
        assert code == 2, err
        one_line_naming(err, folder / "captions.jsonl", folder)


@FUZZ
@given(content=captions_files())
def test_load_folder_with_images_required(workdir, content):
    """The loader that build/eval use: a list of samples, or one SlimeError naming the file."""
    from slime_core.infra.errors import SlimeError
    from slime_core.stages.data import load_folder

    folder = fresh(workdir)
    (folder / "captions.jsonl").write_bytes(content)
    (folder / "images" / "a.jpg").write_bytes(b"not really an image")
    try:
        samples = load_folder(folder, require_images=False)
    except SlimeError as err:
        one_line_naming(str(err), folder)
        return
    for s in samples:
        assert isinstance(s.name, str) and all(isinstance(c, str) and len(c) <= 100_000 for c in s.captions)
        assert (folder / "images") in (folder / "images" / s.name).resolve().parents or \
            (folder / "images" / s.name).resolve().parent == (folder / "images").resolve()


ids = st.one_of(st.integers(-3, 40), st.text(max_size=3), st.none(), st.floats(allow_nan=False),
                st.lists(st.integers(0, 3), max_size=2), st.booleans())


@st.composite
def coco_files(draw, base: int):
    """A COCO captions file: images (id, file_name) and annotations (image_id, caption), fields generated."""
    clean = draw(st.booleans())  # half the files well formed, half with generated fields
    noise = (lambda: False) if clean else (lambda: draw(st.integers(0, 3)) == 0)  # noqa: E731
    if not clean and draw(st.integers(0, 6)) == 0:
        return json.dumps(draw(json_values)).encode()
    n = draw(st.integers(0, 6))
    images = []
    for i in range(n):
        img = {"id": draw(ids) if noise() else base + i,
               "file_name": draw(names) if noise() else f"{base + i}.jpg"}
        if not clean and draw(st.integers(0, 8)) == 0:
            img.pop(draw(st.sampled_from(["id", "file_name"])))
        images.append(img)
    anns = []
    for _ in range(draw(st.integers(0, 8))):
        ann = {"image_id": draw(ids) if noise() or not n else base + draw(st.integers(0, n - 1)),
               "caption": draw(st.text(max_size=40) if clean else st.text(max_size=40) | json_values)}
        anns.append(ann)
    doc = {"images": images, "annotations": anns}
    if not clean and draw(st.integers(0, 8)) == 0:
        doc.pop(draw(st.sampled_from(["images", "annotations"])))
    text = json.dumps(doc)
    how = "utf-8" if clean else draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "truncated", "deep"]))
    if how == "deep":
        return ('{"images": ' + "[" * 50_000 + "]" * 50_000 + ', "annotations": []}').encode()
    if how == "truncated":
        return text.encode()[: draw(st.integers(0, len(text)))]
    return text.encode(how, "surrogatepass")


@FUZZ
@given(train=coco_files(0), val=coco_files(1000), dev=st.integers(0, 3), test=st.integers(0, 3))
def test_data_coco_reads_any_coco_file_or_refuses_it_in_one_line(capsys, workdir, train, val, dev, test):
    folder = fresh(workdir)
    (folder / "captions_train.json").write_bytes(train)
    (folder / "captions_val.json").write_bytes(val)
    out_dir = folder / "out"
    code = cli.main(["data", "coco", "--captions", str(folder / "captions_train.json"), str(folder / "captions_val.json"),
                     "--captions-only", "--out", str(out_dir), "--dev", str(dev), "--test", str(test)])
    out, err = capsys.readouterr()
    event(f"exit {code}")
    if code == 0:
        rows = [json.loads(line) for line in (out_dir / "captions.jsonl").read_text().splitlines()]
        assert sum(r["split"] == "dev" for r in rows) == dev and sum(r["split"] == "test" for r in rows) == test
        assert len({r["image"] for r in rows}) == len(rows)
        assert "Traceback" not in err
    else:
        assert code == 2, err
        one_line_naming(err, folder / "captions_train.json", folder / "captions_val.json", out_dir)
