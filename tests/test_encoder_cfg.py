"""Typed registry entries (EncoderCfg, AttackerCfg): checked where they enter, and the embedding cache's key
unchanged by them -- users' caches on disk are keyed by `fingerprint` and `weights_identity`."""

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from slime_core.infra.errors import SlimeError
from slime_core.stages import encoders
from slime_core.stages.encoders import (
    OVERRIDES_ENV,
    AttackerCfg,
    EncoderCfg,
    attacker_cfg,
    effective_cfg,
    encoder_cfg,
    encoder_names,
    fingerprint,
    get_encoder,
    registry,
    weights_identity,
)
from slime_core.stages.encoders.config import from_entry


@pytest.fixture(autouse=True)
def no_env_overrides(monkeypatch):
    monkeypatch.delenv(OVERRIDES_ENV, raising=False)


def legacy_weights_identity(name: str, overrides: dict) -> str:
    """The cache key's recipe on the raw JSON entry, as it was computed before entries were typed."""
    entry = {**registry()["encoders"][name], **overrides}
    packages = list(encoders._KIND_PACKAGES.get(entry.get("kind"), ()))
    packages += [entry["package"]] if entry.get("package") else []
    files = {k: encoders._stamp(v) for k, v in sorted(entry.items()) if encoders._stamp(v) is not None}
    parts = {"spec": entry, "packages": {p: encoders._version(p) for p in packages}, "files": files}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the cache key's input is unchanged


@pytest.mark.parametrize("table, get", [("encoders", encoder_cfg), ("attackers", attacker_cfg)])
def test_every_registry_entry_round_trips_exactly(table, get):
    for name, entry in registry()[table].items():
        cfg = get(name)
        assert cfg.name == name and cfg.as_dict() == entry
        assert list(cfg.as_dict()) == list(entry)  # same keys in the same order, not only the same mapping
        assert json.dumps(cfg.as_dict()) == json.dumps(entry)


def test_overrides_round_trip_as_the_merged_entry(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    cases = [{}, {"pretrained": None}, {"size": 300}, {"seed": 1, "pretrained": None},
             {"pretrained": str(weights)}, {"path": str(tmp_path)}, {"model": tmp_path}, {"dim": 1280}]
    for name in encoder_names():
        for over in cases:
            assert effective_cfg(name, over).as_dict() == {**registry()["encoders"][name], **over}
            assert weights_identity(name, over) == legacy_weights_identity(name, over), (name, over)


def test_fingerprint_depends_only_on_the_overrides(monkeypatch):
    for name in encoder_names():
        assert fingerprint(name) == name  # the registry entry as it is: the bare name, as caches always had it
    assert fingerprint("an-encoder-outside-the-registry") == "an-encoder-outside-the-registry"
    a, b = fingerprint("lite0", {"size": 240}), fingerprint("lite0", {"size": 260})
    assert a.startswith("lite0@") and a != b and a == fingerprint("lite0", {"size": 240})
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"lite0": {"size": 240}}))
    assert fingerprint("lite0") == a  # from the environment or from a call: the same overrides, the same key
    assert fingerprint("lite1") == "lite1"


def test_weights_identity_follows_the_fields_that_matter():
    assert weights_identity("lite0") != weights_identity("lite1")
    assert weights_identity("lite0", {"size": 300}) != weights_identity("lite0")
    assert weights_identity("clip-vit-l-14", {"pretrained": None}) != weights_identity("clip-vit-l-14")
    # an override stating the registry's own value is still an override (it has always been part of the key)
    assert weights_identity("lite0", {"size": 224}) == legacy_weights_identity("lite0", {"size": 224})


# ---------------------------------------------------------------- typed and checked where it enters


def test_cfgs_are_frozen_and_overrides_make_new_ones():
    base = encoder_cfg("clip-vit-l-14")
    tiny = base.with_overrides({"pretrained": None, "seed": 1})
    assert (tiny.pretrained, tiny.seed, base.pretrained, base.seed) == (None, 1, "openai", 0)
    assert tiny == dataclasses.replace(base, pretrained=None, seed=1, given=tiny.given)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.dim = 3
    assert base.with_overrides({}) is base


def test_attacker_cfg():
    offline = attacker_cfg("lite2-minilm")
    assert isinstance(offline, AttackerCfg) and offline.victims == ("lite0", "lite1") and offline.folder == "default"
    assert from_entry(AttackerCfg, "mine", {"image": "lite2", "text": "minilm"}).folder == "mine"


@pytest.mark.parametrize("entry, needle", [
    ({"kind": "open_clip", "dim": 8, "pretraind": "openai"}, "entry 'x' has an unknown key 'pretraind'"),
    ({"kind": "open_clip", "dim": "8"}, "entry 'x', key 'dim' must be int, got '8'"),
    ({"kind": "open_clip", "dim": True}, "entry 'x', key 'dim' must be int"),
    ({"kind": "open_clip", "dim": 8, "offline": "yes"}, "key 'offline' must be bool"),
    ({"kind": "open_clip"}, "entry 'x' lacks the key 'dim'"),
    ([1, 2], "entry 'x' must be an object"),
])
def test_bad_registry_entries_name_the_entry_and_key(entry, needle):
    with pytest.raises(SlimeError, match=needle) as err:
        from_entry(EncoderCfg, "x", entry)
    assert "registry.json" in str(err.value)


def test_bad_attacker_entry():
    with pytest.raises(SlimeError, match="entry 'a', key 'victims' must be a list of str"):
        from_entry(AttackerCfg, "a", {"image": "lite2", "text": "minilm", "victims": "lite0"})


def test_bad_overrides_name_where_they_came_from(monkeypatch):
    with pytest.raises(SlimeError, match="encoder overrides: entry 'lite0', key 'size' must be int"):
        get_encoder("lite0", size="300")
    with pytest.raises(SlimeError, match="entry 'lite0', key 'seed' must be int, got None"):
        fingerprint("lite0", {"seed": None})
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps({"lite0": {"sise": 300}}))
    with pytest.raises(SlimeError, match=r"\$SLIME_ENCODER_OVERRIDES: entry 'lite0' has an unknown key 'sise'"):
        weights_identity("lite0")
    assert fingerprint("lite1") == "lite1"  # only the entry that is used is checked


def test_paths_and_nulls_where_they_mean_something():
    cfg = effective_cfg("clip-vit-bigg-14", {"model_config": Path("tiny.json"), "pretrained": None})
    assert cfg.model_config == Path("tiny.json") and cfg.pretrained is None
