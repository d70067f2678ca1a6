"""A trained attacker on disk: safetensors for every array, JSON for everything else.

models/default/
  manifest.json        encoders, dims, vocabulary hash, training data, configs, metrics
  heads.safetensors    contrastive heads + DCN-v2 ranker (state dicts, prefixed), float16
  vocab.json           tags with their training-image counts
  tags.safetensors     tag text embeddings (V, d_text), float16
  semantics.safetensors  the image tower's ImageNet classifier and class-name embeddings (offline attacker)
  pool.json            the public alignment pool: image names, splits, tags (captions stay in the dataset folder)
  pool_<encoder>.safetensors  pool embeddings for each encoder, float16
Never pickles: nothing here executes code when loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from slime_core.errors import SlimeError
from slime_core.rank import DCNRanker
from slime_core.retrieve import DualHeads

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"


def vocab_hash(tags: list[str]) -> str:
    return hashlib.sha256("\n".join(tags).encode()).hexdigest()[:16]


@dataclass
class Bundle:
    manifest: dict
    heads: DualHeads
    ranker: DCNRanker
    tags: list[str]
    tag_counts: np.ndarray  # (V,) training images that carry each tag
    tag_text: np.ndarray  # (V, d_text) float32, L2-normalised
    pool: dict  # {"images": [...], "splits": [...], "tags": [[...]]}
    pool_embeddings: dict[str, np.ndarray]  # encoder name -> (n_pool, d) float32, L2-normalised
    semantics: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def attacker(self) -> str:
        return self.manifest["attacker"]

    @property
    def image_encoder(self) -> str:
        return self.manifest["image_encoder"]

    def encoders(self) -> list[str]:
        return sorted(self.pool_embeddings)


def save_bundle(bundle: Bundle, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = dict(bundle.manifest, vocab_hash=vocab_hash(bundle.tags), n_tags=len(bundle.tags))
    # float16 on disk like every other array here (half the size; loaded back as float32)
    state = {f"heads.{k}": v.detach().half().numpy() for k, v in bundle.heads.state_dict().items()}
    state |= {f"ranker.{k}": v.detach().half().numpy() for k, v in bundle.ranker.state_dict().items()}
    save_file(state, folder / "heads.safetensors")
    save_file({"tag_text": bundle.tag_text.astype(np.float16)}, folder / "tags.safetensors")
    if bundle.semantics:
        save_file({k: v.astype(np.float16) for k, v in bundle.semantics.items()}, folder / "semantics.safetensors")
    for name, emb in bundle.pool_embeddings.items():
        save_file({"embeddings": emb.astype(np.float16)}, folder / f"pool_{name}.safetensors")
    (folder / "vocab.json").write_text(json.dumps({"tags": bundle.tags, "counts": bundle.tag_counts.tolist()}))
    (folder / "pool.json").write_text(json.dumps(bundle.pool))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _state(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix):]: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items() if k.startswith(prefix)}


def load_bundle(folder: str | Path | None = None) -> Bundle:
    folder = Path(folder or DEFAULT_BUNDLE)
    if not (folder / "manifest.json").exists():
        raise SlimeError(f"{folder}: no attacker bundle here (manifest.json missing); build one with `slime build`.")
    manifest = json.loads((folder / "manifest.json").read_text())
    vocab = json.loads((folder / "vocab.json").read_text())
    if vocab_hash(vocab["tags"]) != manifest["vocab_hash"]:
        raise SlimeError(f"{folder}: vocab.json does not match the manifest's vocabulary hash; the bundle is inconsistent.")
    arrays = load_file(folder / "heads.safetensors")
    dims = manifest["dims"]
    heads, ranker = DualHeads(dims["image_features"], dims["text"], dims["joint"]), DCNRanker(dims["joint"])
    try:
        heads.load_state_dict(_state(arrays, "heads."))
        ranker.load_state_dict(_state(arrays, "ranker."))
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise SlimeError(f"{folder}: heads.safetensors does not match the manifest's encoders/dims "
                         f"({manifest['image_encoder']} {dims['image']}-d, {manifest['text_encoder']} {dims['text']}-d): "
                         f"{first}") from None
    tag_text = load_file(folder / "tags.safetensors")["tag_text"].astype(np.float32)
    if tag_text.shape != (len(vocab["tags"]), dims["text"]):
        raise SlimeError(f"{folder}: tag embeddings {tag_text.shape} do not match {len(vocab['tags'])} tags x {dims['text']}.")
    semantics = {}
    if (folder / "semantics.safetensors").exists():
        semantics = {k: v.astype(np.float32) for k, v in load_file(folder / "semantics.safetensors").items()}
    pool_embeddings = {p.stem[len("pool_"):]: load_file(p)["embeddings"].astype(np.float32)
                       for p in sorted(folder.glob("pool_*.safetensors"))}
    for name, emb in pool_embeddings.items():
        expected = dims["image"] if name == manifest["image_encoder"] else None
        if expected and emb.shape[1] != expected:
            raise SlimeError(f"{folder}: pool embeddings of {name} are {emb.shape[1]}-d; the manifest says {expected}.")
    pool = json.loads((folder / "pool.json").read_text())
    return Bundle(manifest, heads.eval(), ranker.eval(), vocab["tags"], np.asarray(vocab["counts"], np.float32),
                  tag_text, pool, pool_embeddings, semantics, folder)


MODELS = DEFAULT_BUNDLE.parent


def resolve_bundle(bundle: str | Path | None, attacker: str | None) -> Path | None:
    """The bundle folder for `--bundle`/`--attacker`: an explicit folder wins; else models/<folder named by
    the attacker's registry entry> (lite2-minilm -> models/default); with neither, None (the default)."""
    if bundle is not None or attacker is None:
        return Path(bundle) if bundle is not None else None
    from slime_core.encoders import attacker_spec

    folder = MODELS / attacker_spec(attacker).get("bundle", attacker)
    if not (folder / "manifest.json").exists():
        raise SlimeError(f"no bundle for attacker '{attacker}' in {folder}; build one with "
                         f"`slime build --attacker {attacker} --data <dataset folder> --out {folder}`, or give --bundle.")
    return folder


def check_bundle(folder: str | Path | None, attacker: str | None = None, victim: str | None = None) -> dict:
    """The manifest of the bundle in `folder`, after checking that it was built for `attacker` and that the
    encoders whose embeddings it stores are the ones this process would build (same registry overrides:
    a bundle made with a tiny random test model must not meet the real one, nor the reverse)."""
    from slime_core.encoders import encoder_spec, fingerprint

    folder = Path(folder or DEFAULT_BUNDLE)
    if not (folder / "manifest.json").exists():
        raise SlimeError(f"{folder}: no attacker bundle here (manifest.json missing); build one with `slime build`.")
    manifest = json.loads((folder / "manifest.json").read_text())
    if attacker is not None and manifest.get("attacker") != attacker:
        raise SlimeError(f"{folder} holds a bundle for attacker '{manifest.get('attacker')}', not '{attacker}'; "
                         f"build one with `slime build --attacker {attacker}` or pick the matching --attacker.")
    stored = manifest.get("fingerprints", {})
    names = [manifest["image_encoder"]] + ([victim] if victim in stored else [])
    for name in names:
        now = fingerprint(name)
        if name in stored and stored[name] != now:
            made = manifest.get("encoder_overrides", {}).get(name) or "the registry entry"
            raise SlimeError(f"{folder}: the bundle's '{name}' embeddings were made with {made} ({stored[name]}), "
                             f"but this process builds '{name}' as {now}; rebuild the bundle or set "
                             f"$SLIME_ENCODER_OVERRIDES as it was at build time.")
    image = manifest["image_encoder"]
    if fingerprint(image) == image and "dim" in encoder_spec(image) and encoder_spec(image)["dim"] != manifest["dims"]["image"]:
        raise SlimeError(f"{folder}: the bundle's {image} embeddings are {manifest['dims']['image']}-d, but the "
                         f"registry's {image} is {encoder_spec(image)['dim']}-d; the bundle was built with another model.")
    return manifest
