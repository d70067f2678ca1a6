"""Bad input never reaches a traceback: each case is one line on stderr naming the file, and exit status 2.

Corrupt bundles are built in tmp_path from copies of models/default; nothing here needs a network."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import DEFAULT_BUNDLE
from slime_core.cli import main
from slime_core.errors import SlimeError


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
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_corrupt_bundle_is_one_error_naming_the_file(bundle_copy, case):
    from slime_core.bundle import load_bundle

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
    from slime_core.bundle import load_bundle

    bundle = load_bundle(bundle_copy)
    assert bundle.pool_embeddings["lite2"].shape[0] == len(bundle.pool["images"])
