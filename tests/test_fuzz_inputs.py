"""Issue 22, classes 1 and 4: values checked where they enter, under generated inputs.

The property for every generated input: `slime` ends with exit 0 and finite scores, or with exit 2 and exactly one
stderr line naming the input - never a traceback, never confident nonsense (every neighbour at 0.00), never a
hang (each example has a deadline). Example tests beside them pin the cases the issue listed.

The example budget is one constant, FUZZ_EXAMPLES ($SLIME_FUZZ_EXAMPLES; `bench/fuzz.sh` raises it), so CI runs a
small fixed budget and a long run finds what it misses. Everything runs on the tiny bundle (conftest).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from slime_core.cli.main import main

from conftest import BLACK_DOG, DEMO, TINY_VICTIM, TINY_VICTIM_DIM

FUZZ_EXAMPLES = int(os.environ.get("SLIME_FUZZ_EXAMPLES", "12"))
FUZZ_DEADLINE_MS = int(os.environ.get("SLIME_FUZZ_DEADLINE_MS", "20000"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=FUZZ_DEADLINE_MS, derandomize="SLIME_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.fixture
def tiny(tiny_bundle_dir, tiny_data, tiny_env) -> list[str]:
    return ["--bundle", str(tiny_bundle_dir), "--victim", TINY_VICTIM, "--pool-data", str(tiny_data)]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_outcome(code, out, err, name: str, fmt: str = "json"):
    """Exit 0 with finite, not-all-zero scores, or exit 2 with one stderr line naming `name`; never a traceback."""
    assert "Traceback" not in err, err
    event(f"exit {code}")  # --hypothesis-show-statistics (bench/fuzz.sh) shows how many examples got through
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert name in lines[0], (name, lines[0])
        return None
    assert code == 0, (code, err)
    if fmt != "json":
        return None
    got = json.loads(out)
    results = got if isinstance(got, list) else [got]
    for r in results:
        scores = [t["score"] for t in r["tags"]] + [n["score"] for n in r["neighbors"]]
        assert all(math.isfinite(s) for s in scores), r
        assert any(abs(n["score"]) > 1e-3 for n in r["neighbors"]), r  # not "every neighbour at 0.00"
        assert math.isfinite(r["alignment_cosine"])
    return results


# ---------------------------------------------------------------- embedding files, generated

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint64",
          "bool", "complex64"]
SPECIALS = [np.nan, np.inf, -np.inf, 1e-45, 1e-310, 0.0, 1e30, 1e300, -1e38]


@st.composite
def embedding_arrays(draw):
    """Arrays as a careless or hostile user makes them: any dtype, rows x dims near and far from the victim's
    24 dims, scaled from denormal to overflowing, with NaN/inf/zeros/denormals sprinkled in."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from([(TINY_VICTIM_DIM,), (1, TINY_VICTIM_DIM), (3, TINY_VICTIM_DIM), (2, 5), (0, TINY_VICTIM_DIM),
                                  (1, 0), (2, 2, TINY_VICTIM_DIM), (1, TINY_VICTIM_DIM + 1)]))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([1.0, 1e-45, 1e-20, 1e-8, 1e8, 1e20, 1e30, 255.0]))
    base = np.random.default_rng(seed).normal(size=shape) * scale
    special = draw(st.sampled_from([None, *SPECIALS]))
    if special is not None and base.size:
        mask = np.random.default_rng(seed + 1).random(shape) < draw(st.sampled_from([0.05, 1.0]))
        base = np.where(mask, special, base)
    with np.errstate(all="ignore"):
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            arr = np.clip(np.nan_to_num(base, nan=0, posinf=info.max, neginf=info.min), info.min, info.max).astype(dtype)
        elif dtype.kind == "b":
            arr = base > 0
        else:
            arr = base.astype(dtype)
    return arr


def write_table(path: Path, arr: np.ndarray, ext: str, header: str) -> None:
    import pandas as pd

    flat = np.atleast_2d(arr) if arr.ndim <= 2 else arr.reshape(arr.shape[0], -1)
    df = pd.DataFrame(flat, columns=[f"d{i}" for i in range(flat.shape[1])])
    if header == "names":
        df.insert(0, "image", [f"img{i}.jpg" for i in range(len(df))])
    elif header == "two-text":
        df.insert(0, "image", ["a"] * len(df))
        df.insert(1, "note", ["b"] * len(df))
    if ext == "csv":
        df.to_csv(path, index=False, header=header != "none")
    else:
        if header == "vector":
            df = pd.DataFrame({"image": [f"img{i}.jpg" for i in range(len(flat))], "v": list(flat)})
        df.to_parquet(path)


@FUZZ
@given(arr=embedding_arrays(), ext=st.sampled_from(["npy", "csv", "parquet"]),
       header=st.sampled_from(["plain", "none", "names", "two-text", "vector"]))
def test_property_embedding_files(capsys, tiny, arr, ext, header):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-emb-"))
    try:
        path = folder / f"victim_emb.{ext}"
        if ext == "npy":
            np.save(path, arr)
        else:
            try:
                write_table(path, arr, ext, header)
            except Exception:  # noqa: BLE001 - a table pandas/pyarrow cannot write (complex, 3-D) is not an input
                return
        start = time.perf_counter()
        code, out, err = run(capsys, "attack", *tiny, "--embedding", path, "--n-align", "10", "--k", "3",
                             "--format", "json", "--no-progress")
        assert time.perf_counter() - start < FUZZ_DEADLINE_MS / 1000
        assert_outcome(code, out, err, path.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(arr=embedding_arrays(), named=st.booleans(), shuffle=st.booleans())
def test_property_victim_pool_files(capsys, tiny, tiny_bundle, arr, named, shuffle):
    """A --victim-pool file: the bundle's own pool (shuffled, named or not) or generated junk."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-pool-"))
    try:
        names = list(tiny_bundle.pool["images"])
        pool = tiny_bundle.pool_embeddings[TINY_VICTIM]
        if arr.size and arr.dtype.kind in "fiu" and arr.shape[-1] != TINY_VICTIM_DIM + 1:  # junk of the pool's shape
            pool = np.resize(arr, pool.shape).astype(arr.dtype)
        order = np.random.default_rng(0).permutation(len(names)) if shuffle else np.arange(len(names))
        path = folder / "victim_pool.csv"
        write_table(path, pool[order], "csv", "plain")
        if named:
            import pandas as pd

            df = pd.read_csv(path)
            df.insert(0, "image", [names[i] for i in order])
            df.to_csv(path, index=False)
        emb = folder / "one.npy"
        np.save(emb, tiny_bundle.pool_embeddings[TINY_VICTIM][3])
        code, out, err = run(capsys, "attack", *tiny, "--embedding", emb, "--victim-pool", path, "--n-align", "10",
                             "--k", "3", "--format", "json", "--no-progress")
        assert_outcome(code, out, err, path.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- CLI numbers, generated

NUMBER_TEXT = st.one_of(st.integers(-10**12, 10**12).map(str), st.sampled_from(["0", "-1", "1e3", "nan", "inf", "", " 3",
                                                                              "0x10", "1.5", "٣", "99999999999999999999"]))


@FUZZ
@given(option=st.sampled_from(["--bootstrap", "--limit", "--seed"]), value=NUMBER_TEXT)
def test_property_eval_numbers_parse(capsys, option, value):
    """Every numeric option of `slime eval` is accepted as a sane number or refused in one line, exit 2."""
    from slime_core.cli.main import parser

    try:
        args = parser().parse_args(["eval", "--data", "x", option, value])
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and len(err.strip().splitlines()) == 1 and option in err, err
        return
    got = getattr(args, option.lstrip("-").replace("-", "_"))
    assert isinstance(got, int) and got >= (1 if option == "--bootstrap" else 0)


@FUZZ
@given(option=st.sampled_from(["--examples", "--defence-seed", "--delta", "--seed"]), value=NUMBER_TEXT,
       command=st.sampled_from(["report", "defend", "build"]))
def test_property_other_numbers_parse(capsys, option, value, command):
    from slime_core.cli.main import parser

    argv = {"report": ["report"], "defend": ["defend", "--defence", "x"], "build": ["build", "--data", "x"]}[command]
    try:
        args = parser().parse_args([*argv, option, value])
    except SystemExit as exc:
        err = capsys.readouterr().err
        assert exc.code == 2 and len(err.strip().splitlines()) == 1, err
        return
    got = getattr(args, option.lstrip("-").replace("-", "_"))
    assert got >= 0 and math.isfinite(got)


@FUZZ
@given(n_align=NUMBER_TEXT, k=NUMBER_TEXT, seed=st.integers(-5, 2**33).map(str))
def test_property_attack_numbers(capsys, tiny, n_align, k, seed):
    """--n-align, --k and --seed of a real attack on the tiny bundle: a sane result or one line."""
    code, out, err = run(capsys, "attack", *tiny, "--image", DEMO / "images" / BLACK_DOG, "--n-align", n_align,
                         "--k", k, "--seed", seed, "--format", "json", "--no-progress")
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    else:
        assert code == 0, err
        assert_outcome(code, out, err, "")


# ---------------------------------------------------------------- the cases, one by one

def _npy(path: Path, arr) -> Path:
    np.save(path, arr)
    return path


@pytest.mark.parametrize("case", ["scaled 1e30", "denormal", "uint64"])
def test_scaled_embeddings_refused_not_zero_scores(tmp_path, capsys, tiny, tiny_bundle, case):
    row = tiny_bundle.pool_embeddings[TINY_VICTIM][3].astype(np.float64)
    arr = {"scaled 1e30": (row * 1e30).astype(np.float32), "denormal": np.full(TINY_VICTIM_DIM, 1e-45, np.float32),
           "uint64": np.full(TINY_VICTIM_DIM, 2**63, np.uint64)}[case]
    path = _npy(tmp_path / "victim.npy", arr)
    code, out, err = run(capsys, "attack", *tiny, "--embedding", path, "--n-align", "10", "--k", "3")
    assert code == 2 and "norm" in err and "victim.npy" in err and out == ""


def test_victim_pool_scaled_1e30_refused(tmp_path, capsys, tiny, tiny_bundle):
    pool = _npy(tmp_path / "pool.npy", tiny_bundle.pool_embeddings[TINY_VICTIM] * np.float32(1e30))
    emb = _npy(tmp_path / "one.npy", tiny_bundle.pool_embeddings[TINY_VICTIM][3])
    code, out, err = run(capsys, "attack", *tiny, "--embedding", emb, "--victim-pool", pool, "--n-align", "10", "--k", "3")
    assert code == 2 and "pool.npy" in err and "norm" in err


def test_identical_pool_rows_refused_in_the_cli(tmp_path, capsys, tiny, tiny_bundle):
    n = len(tiny_bundle.pool["images"])
    pool = _npy(tmp_path / "pool.npy", np.tile(tiny_bundle.pool_embeddings[TINY_VICTIM][:1], (n, 1)))
    emb = _npy(tmp_path / "one.npy", tiny_bundle.pool_embeddings[TINY_VICTIM][3])
    code, out, err = run(capsys, "attack", *tiny, "--embedding", emb, "--victim-pool", pool, "--n-align", "10", "--k", "3")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pool.npy" in err and "same vector" in err


def test_victim_pool_is_honoured_for_a_bundle_victim(tmp_path, capsys, tiny, tiny_bundle):
    """`--victim X --victim-pool F` uses F even where the bundle stores X's pool: a shuffled, unnamed pool fits a
    different map (another alignment cosine), the same pool named in any order fits the same map."""
    names = list(tiny_bundle.pool["images"])
    pool = tiny_bundle.pool_embeddings[TINY_VICTIM]
    emb = _npy(tmp_path / "one.npy", pool[3])
    argv = ["attack", *tiny, "--embedding", emb, "--n-align", "20", "--k", "3", "--format", "json"]
    code, out, _ = run(capsys, *argv)
    own = json.loads(out)
    order = np.random.default_rng(1).permutation(len(names))
    import pandas as pd

    df = pd.DataFrame(pool[order], columns=[f"d{i}" for i in range(pool.shape[1])])
    df.to_csv(tmp_path / "unnamed.csv", index=False)
    code, out, err = run(capsys, *argv, "--victim-pool", tmp_path / "unnamed.csv")
    assert code == 0, err
    shuffled = json.loads(out)
    assert shuffled["alignment_cosine"] != own["alignment_cosine"]  # used, not ignored
    assert own["warnings"] == [] and "not above" in shuffled["warnings"][0]  # a misaligned pool is said to be one
    df.insert(0, "image", [names[i] for i in order])
    df.to_csv(tmp_path / "named.csv", index=False)
    code, out, err = run(capsys, *argv, "--victim-pool", tmp_path / "named.csv")
    assert code == 0, err
    named = json.loads(out)
    assert named["alignment_cosine"] == pytest.approx(own["alignment_cosine"], abs=1e-3)  # matched by name
    assert [t["tag"] for t in named["tags"]] == [t["tag"] for t in own["tags"]]
    df["image"] = df["image"].str.replace(".jpg", ".png")
    df.to_csv(tmp_path / "foreign.csv", index=False)
    code, out, err = run(capsys, *argv, "--victim-pool", tmp_path / "foreign.csv")
    assert code == 2 and "foreign.csv" in err and "not pool images" in err


def test_embedding_onto_the_mean_warns(tiny_attacker):
    from slime_core.attack_spec import AttackSpec

    pool = tiny_attacker.bundle.pool_embeddings[TINY_VICTIM]
    spec = AttackSpec(TINY_VICTIM, 20, 3)
    assert tiny_attacker.attack(embedding=pool[3], spec=spec).warnings == []
    from slime_core.stages import align

    idx = align.choose_pairs(len(pool), 20, 0)
    mean = align.l2_normalise(pool[idx]).mean(axis=0)
    result = tiny_attacker.attack(embedding=mean, spec=spec)
    assert result.warnings and "mean of the leaked pairs" in result.warnings[0]
    assert result.to_dict()["warnings"] == result.warnings


def test_eval_refuses_duplicate_image_names(tmp_path, capsys, tiny, tiny_data):
    records = [json.loads(line) for line in (tiny_data / "captions.jsonl").read_text().splitlines()]
    test = [r for r in records if r["split"] == "test"][:3]
    folder = tmp_path / "dup"
    (folder / "images").mkdir(parents=True)
    for r in test:
        shutil.copy(tiny_data / "images" / r["image"], folder / "images" / r["image"])
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test + test[1:2]))
    code, out, err = run(capsys, "eval", *tiny, "--data", folder, "--n-align", "10", "--k", "3", "--bootstrap", "10",
                         "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and test[1]["image"] in err, err


def test_wide_csv_refused_from_its_header_in_milliseconds(tmp_path, capsys, tiny):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(["0.5"] * 300_000) + "\n")
    start = time.perf_counter()
    code, out, err = run(capsys, "attack", *tiny, "--embedding", path, "--n-align", "10", "--k", "3")
    assert code == 2 and "300000 columns" in err
    assert time.perf_counter() - start < 5


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    from numpy.lib import format as npformat

    from slime_core.infra.errors import SlimeError
    from slime_core.stages.uploads import parse_embeddings

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 10**4)})
    data = buf.getvalue() + b"\0" * 32
    start = time.perf_counter()
    with pytest.raises(SlimeError, match="bytes follow it"):
        parse_embeddings("huge.npy", data, max_rows=None, max_dim=None)
    assert time.perf_counter() - start < 1


# ---------------------------------------------------------------- bundles with insane values

def _bundle_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_arrays(path: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    arrays = load_file(path)
    edit(arrays)
    save_file(arrays, path)


def _nan_head(a):
    key = next(k for k in a if k.startswith("heads."))
    a[key] = np.full_like(a[key], np.nan)


def _int_heads(a):
    for k in list(a):
        if k.startswith("heads."):
            a[k] = a[k].astype(np.int32)


BUNDLE_CASES = {
    "nan head": ("heads.safetensors", _nan_head, "NaN or inf"),
    "integer heads": ("heads.safetensors", _int_heads, "not floating point"),
    "zero pool": (f"pool_{TINY_VICTIM}.safetensors", lambda a: a.update(embeddings=np.zeros_like(a["embeddings"])),
                  "all zeros"),
    "inf logit_scale": ("manifest.json", {"logit_scale": math.inf}, "logit_scale"),
    "nan prior_alpha": ("manifest.json", {"prior_alpha": math.nan}, "prior_alpha"),
    "huge joint dim": ("manifest.json", {"dims.joint": 10**12}, "dims"),
    "joint dim off by one": ("manifest.json", {"dims.joint": None}, "heads.safetensors"),
    "huge hidden": ("manifest.json", {"config.heads.hidden": 10**9}, "hidden"),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_bundle_with_insane_values_is_one_line(tmp_path, capsys, tiny_bundle_dir, tiny_data, tiny_env, case):
    folder = _bundle_copy(tiny_bundle_dir, tmp_path / "bundle")
    name, edit, expected = BUNDLE_CASES[case]
    if name == "manifest.json":
        manifest = json.loads((folder / name).read_text())
        for key, value in edit.items():
            *parents, last = key.split(".")
            node = manifest
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = node[last] + 1 if value is None else value
        (folder / name).write_text(json.dumps(manifest))  # json writes NaN/Infinity, as a careless tool would
    else:
        _edit_arrays(folder / name, edit)
    start = time.perf_counter()
    code, out, err = run(capsys, "attack", "--bundle", folder, "--victim", TINY_VICTIM, "--pool-data", tiny_data,
                         "--image", DEMO / "images" / BLACK_DOG, "--n-align", "10", "--k", "3")
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert "(nan)" not in out and time.perf_counter() - start < 30


MANIFEST_KEYS = ["prior_alpha", "logit_scale", "candidates", "use_ranker", "dims.image", "dims.image_features",
                 "dims.text", "dims.joint", "config.heads.hidden", "config.heads.temperature", "neighbour_votes.weight",
                 "neighbour_votes.neighbours", "neighbour_votes.temperature", "neighbour_votes.floor", "config"]
MANIFEST_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                            st.sampled_from([None, True, False, "1", [], {}, 0, 1, 16, 32, 10**12, 1e-320]))


def attack_with_damaged_bundle(capsys, folder: Path, tiny_data, tiny_bundle) -> None:
    """Attack one pool embedding through the damaged bundle in `folder`: finite scores, or one line naming the
    bundle; never a traceback."""
    emb = folder.parent / "one.npy"
    np.save(emb, tiny_bundle.pool_embeddings[TINY_VICTIM][3])
    code, out, err = run(capsys, "attack", "--bundle", folder, "--victim", TINY_VICTIM, "--pool-data", tiny_data,
                         "--embedding", emb, "--n-align", "10", "--k", "3", "--format", "json", "--no-progress")
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and str(folder) in err, err
    else:
        assert_outcome(code, out, err, "")


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(MANIFEST_KEYS), MANIFEST_VALUES, min_size=1, max_size=3))
def test_property_manifest_numbers(capsys, tiny_bundle_dir, tiny_data, tiny_env, tiny_bundle, edits):
    """A manifest with generated values: the bundle loads and the attack gives finite scores, or one line naming
    the manifest (or the file the values disagree with); nothing huge is allocated (the deadline)."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-bundle-")) / "bundle"
    try:
        shutil.copytree(tiny_bundle_dir, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        for key, value in edits.items():
            *parents, last = key.split(".")
            node = manifest
            for p in parents:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
            node[last] = copy.deepcopy(value)  # sampled_from hands out one shared {} or []: never mutate it
        (folder / "manifest.json").write_text(json.dumps(manifest))
        attack_with_damaged_bundle(capsys, folder, tiny_data, tiny_bundle)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


@FUZZ
@given(which=st.integers(0, 10**6), dtype=st.sampled_from(["float16", "float32", "float64", "int8", "int32", "uint8"]),
       reshape=st.sampled_from(["same", "transpose", "one more row", "flat", "empty"]),
       special=st.sampled_from([None, *SPECIALS]), scale=st.sampled_from([1.0, 1e-40, 1e30, 127.0]))
def test_property_bundle_arrays(capsys, tiny_bundle_dir, tiny_data, tiny_env, tiny_bundle, which, dtype, reshape,
                                special, scale):
    """One array of one safetensors file of the bundle replaced by a generated one (another dtype, shape, scale,
    NaN/inf/denormals): the attack gives finite scores, or one line naming the bundle; never a traceback."""
    from safetensors.numpy import load_file, save_file

    folder = Path(tempfile.mkdtemp(prefix="fuzz-arrays-")) / "bundle"
    try:
        shutil.copytree(tiny_bundle_dir, folder)
        files = sorted(folder.glob("*.safetensors"))
        path = files[which % len(files)]
        arrays = load_file(path)
        key = sorted(arrays)[which // len(files) % len(arrays)]
        old = arrays[key]
        shape = {"same": old.shape, "transpose": old.shape[::-1], "one more row": (old.shape[0] + 1, *old.shape[1:]) if
                 old.ndim else (2,), "flat": (old.size,), "empty": (0, *old.shape[1:])}[reshape]
        new = np.random.default_rng(which).normal(size=shape) * scale
        if special is not None and new.size:
            new.flat[which % new.size] = special
        with np.errstate(all="ignore"):
            if np.dtype(dtype).kind in "iu":
                info = np.iinfo(dtype)
                new = np.clip(np.nan_to_num(new), info.min, info.max)
            arrays[key] = np.ascontiguousarray(new.astype(dtype))
        save_file(arrays, path)
        attack_with_damaged_bundle(capsys, folder, tiny_data, tiny_bundle)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


STRENGTH_TEXT = st.one_of(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                                             st.integers(-10**6, 10**20).map(str),
                                             st.sampled_from(["inf", "-inf", "nan", "", "1e999", "1e-320", "x", "0x1"])),
                                   min_size=1, max_size=4).map(",".join), st.text(max_size=12))


@FUZZ
@given(defence=st.sampled_from(["noise", "gaussian", "laplace", "rotation", "shuffle", "pca", "projection", "quantise"]),
       strength=STRENGTH_TEXT, seed=NUMBER_TEXT)
def test_property_defence_strengths(capsys, defence, strength, seed):
    """`slime defend --strength S --defence-seed D`: every strength is checked (by building its defence) before the
    data loads, so generated values end in one line naming the problem, or in the data folder's own refusal."""
    code, out, err = run(capsys, "defend", "--defence", defence, f"--strength={strength}", f"--defence-seed={seed}",
                         "--data", "/nonexistent-fuzz-folder")
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def _npy_prefixed(payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 4), np.float32))
    head = buf.getvalue()
    return head[:len(head) - 32] + payload  # a real header, then anything


CSV_CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                      st.sampled_from(["", "image", "a.jpg", '"1,2"', "nan", "1e400", "-0", "TRUE", " "]))


@FUZZ
@given(ext=st.sampled_from(["npy", "csv", "parquet"]),
       data=st.one_of(st.binary(max_size=600), st.binary(max_size=200).map(_npy_prefixed),
                      st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
                      st.lists(st.lists(CSV_CELLS, min_size=1, max_size=6), min_size=1, max_size=6).map(
                          lambda rows: "\n".join(",".join(r) for r in rows).encode())))
def test_property_upload_bytes(ext, data):
    """The app's upload parser on arbitrary bytes: a finite float32 (rows, dims) array within the app's limits, or
    one SlimeError naming the file."""
    from slime_core.infra.errors import SlimeError
    from slime_core.stages.uploads import MAX_EMBEDDING_DIM, parse_embeddings

    start = time.perf_counter()
    try:
        arr, names = parse_embeddings(f"upload.{ext}", data)
    except SlimeError as err:
        assert "upload." in str(err), err
    else:
        assert arr.dtype == np.float32 and arr.ndim == 2 and 0 < arr.shape[1] <= MAX_EMBEDDING_DIM
        assert np.isfinite(arr).all() and (np.linalg.norm(arr.astype(np.float64), axis=1) > 0).all()
        assert names is None or len(names) == len(arr)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("count", [math.nan, -1, math.inf, "3", True, 1e20])
def test_vocab_counts_must_be_counts(tmp_path, capsys, tiny_bundle_dir, tiny_data, tiny_env, count):
    """A NaN or negative tag count made the prior NaN and every score (nan)."""
    folder = _bundle_copy(tiny_bundle_dir, tmp_path / "bundle")
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["counts"][0] = count
    (folder / "vocab.json").write_text(json.dumps(vocab))
    code, out, err = run(capsys, "attack", "--bundle", folder, "--victim", TINY_VICTIM, "--pool-data", tiny_data,
                         "--image", DEMO / "images" / BLACK_DOG, "--n-align", "10", "--k", "3")
    assert code == 2 and "vocab.json" in err and len(err.strip().splitlines()) == 1, err
