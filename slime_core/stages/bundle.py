"""A trained attacker on disk: safetensors for every array, JSON for everything else.

models/default/
  manifest.json        encoders, dims, vocabulary hash, training data, configs, metrics
  heads.safetensors    contrastive heads + DCN-v2 ranker (state dicts, prefixed), float16
  vocab.json           tags with their training-image counts
  tags.safetensors     tag text embeddings (V, d_text), float16
  semantics.safetensors  the image tower's ImageNet classifier and class-name embeddings (offline attacker)
  pool.json            the public alignment pool: image names, splits, tags (captions stay in the dataset folder)
  pool_<encoder>.safetensors  pool embeddings for each encoder, int8 with a float32 scale per row
Never pickles: nothing here executes code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from slime_core.infra.errors import SlimeError
from slime_core.stages.align import check_embeddings
from slime_core.stages.encoders import attacker_cfg, encoder_cfg, fingerprint
from slime_core.stages.rank import DCNRanker
from slime_core.stages.retrieve import DualHeads

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"


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
        save_file(quantise_rows(emb), folder / f"pool_{name}.safetensors")
    (folder / "vocab.json").write_text(json.dumps({"tags": bundle.tags, "counts": bundle.tag_counts.tolist()}))
    (folder / "pool.json").write_text(json.dumps(bundle.pool))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def quantise_rows(emb: np.ndarray) -> dict[str, np.ndarray]:
    """Pool embeddings as int8 with one float32 scale per row: a quarter of float32, so the 6,909-image pool
    under three encoders fits the repository's size budget. Measured harmless (README: "The trained bundle")."""
    emb = np.asarray(emb, np.float32)
    scale = np.maximum(np.abs(emb).max(axis=1), 1e-12) / 127.0
    return {"embeddings": np.round(emb / scale[:, None]).astype(np.int8), "row_scale": scale.astype(np.float32)}


def dequantise_rows(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """float32 rows from `quantise_rows`' arrays (or from an older float16 file, which has no row_scale), unit
    length again where they were (rounding moves the norm by up to ~0.3%; pool rows are L2-normalised)."""
    emb = arrays["embeddings"].astype(np.float32)
    if "row_scale" in arrays:
        emb *= arrays["row_scale"].astype(np.float32)[:, None]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = np.where(norms > 0, emb / np.maximum(norms, 1e-12), emb)
    return emb


def _tensors_under(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix):]: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items() if k.startswith(prefix)}


# Every manifest field the loader and the attack read, with its type; a bundle lacking one is refused on load.
MANIFEST_FIELDS = {"attacker": str, "image_encoder": str, "text_encoder": str, "dims": dict, "vocab_hash": str,
                   "prior_alpha": (int, float), "logit_scale": (int, float), "candidates": int}
DIM_FIELDS = ("image", "image_features", "text", "joint")
SEMANTICS_KEYS = ("classifier_weight", "classifier_bias", "class_text", "feature_norm")
DAMAGED = "the bundle is damaged; rebuild it with `slime build` or restore the folder"
MAX_DIM = 65_536  # any dimension or width a manifest may name (checked before anything is allocated from it)
MAX_CANDIDATES = 100_000


def _read_bundle_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SlimeError(f"{path}: missing; {DAMAGED}.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SlimeError(f"{path}: cannot be read ({type(err).__name__}); {DAMAGED}.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SlimeError(f"{path}: not valid JSON ({err.msg}, line {err.lineno}); {DAMAGED}.") from None


def _read_arrays(path: Path, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A safetensors file's arrays; SlimeError naming the file when it is missing, truncated or not safetensors."""
    if not path.is_file():
        raise SlimeError(f"{path}: missing; {DAMAGED}.")
    try:
        arrays = load_file(path)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a bad header or length
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise SlimeError(f"{path}: not a readable safetensors file ({reason}); {DAMAGED}.") from None
    lacking = [k for k in keys if k not in arrays]
    if lacking:
        raise SlimeError(f"{path}: lacks the array(s) {lacking}; {DAMAGED}.")
    for key, value in arrays.items():
        if key == "embeddings" and value.dtype == np.int8:  # quantised pool rows (quantise_rows)
            continue
        if value.dtype.kind != "f":
            raise SlimeError(f"{path}: array '{key}' is {value.dtype}, not floating point; {DAMAGED}.")
        if not np.isfinite(value).all():
            raise SlimeError(f"{path}: array '{key}' holds NaN or inf; {DAMAGED}.")
        if value.size and value.dtype.itemsize > 4 and np.abs(value).max() > np.finfo(np.float32).max:
            raise SlimeError(f"{path}: array '{key}' holds values beyond float32's range; {DAMAGED}.")
    return arrays


def read_manifest(folder: str | Path | None = None) -> dict:
    """The bundle's manifest.json, checked: a JSON object with every field the attack reads, of the right type."""
    folder = Path(folder or DEFAULT_BUNDLE)
    path = folder / "manifest.json"
    if not path.exists():
        raise SlimeError(f"{folder}: no attacker bundle here (manifest.json missing); build one with `slime build`.")
    manifest = _read_bundle_json(path)
    if not isinstance(manifest, dict):
        raise SlimeError(f"{path}: expected a JSON object, got {type(manifest).__name__}; {DAMAGED}.")
    missing = [k for k in MANIFEST_FIELDS if k not in manifest]
    if missing:
        raise SlimeError(f"{path}: missing field(s) {missing}; {DAMAGED}.")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(manifest[key], kind) or isinstance(manifest[key], bool):
            raise SlimeError(f"{path}: field '{key}' is {manifest[key]!r}, not a {getattr(kind, '__name__', 'number')}; "
                             f"{DAMAGED}.")
    dims = manifest["dims"]
    bad = [k for k in DIM_FIELDS if not (isinstance(dims.get(k), int) and not isinstance(dims.get(k), bool)
                                         and 0 < dims[k] <= MAX_DIM)]
    if bad:
        raise SlimeError(f"{path}: dims {bad} missing or not integers in 1..{MAX_DIM}; {DAMAGED}.")
    _check_numbers(path, manifest)
    return manifest


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_numbers(path: Path, manifest: dict) -> None:
    """The manifest's numbers within sane ranges (read before anything is allocated from them): a NaN prior weight
    or an infinite logit scale would print (nan) scores; a huge head width would allocate gigabytes."""
    limits = {"prior_alpha": (-1e3, 1e3), "logit_scale": (0.0, 1e4)}
    for key, (low, high) in limits.items():
        value = manifest[key]
        if not (math.isfinite(value) and low <= value <= high):
            raise SlimeError(f"{path}: field '{key}' is {value!r}, not a finite number in {low:g}..{high:g}; {DAMAGED}.")
    if not 1 <= manifest["candidates"] <= MAX_CANDIDATES:
        raise SlimeError(f"{path}: field 'candidates' is {manifest['candidates']!r}, not in 1..{MAX_CANDIDATES}; {DAMAGED}.")
    if not isinstance(manifest.get("use_ranker", False), bool):
        raise SlimeError(f"{path}: field 'use_ranker' is {manifest['use_ranker']!r}, not true/false; {DAMAGED}.")
    votes = manifest.get("neighbour_votes", {})
    ranges = {"weight": (0.0, 1e3), "neighbours": (1, 1_000_000), "temperature": (1e-6, 1e3), "floor": (1e-12, 1.0)}
    if not isinstance(votes, dict) or set(votes) - set(ranges):
        raise SlimeError(f"{path}: 'neighbour_votes' must be an object with {sorted(ranges)} only; {DAMAGED}.")
    for key, value in votes.items():
        low, high = ranges[key]
        if not (_number(value) and low <= value <= high and (key != "neighbours" or isinstance(value, int))):
            raise SlimeError(f"{path}: neighbour_votes.{key} is {value!r}, not a number in {low:g}..{high:g}; {DAMAGED}.")
    config = manifest.get("config") or {}
    heads = (config.get("heads") or {}) if isinstance(config, dict) else None
    if not isinstance(heads, dict):
        raise SlimeError(f"{path}: config or config.heads is not an object; {DAMAGED}.")
    hidden, temperature = heads.get("hidden", 512), heads.get("temperature")
    if not (isinstance(hidden, int) and not isinstance(hidden, bool) and 0 <= hidden <= MAX_DIM):
        raise SlimeError(f"{path}: config.heads.hidden is {hidden!r}, not an integer in 0..{MAX_DIM}; {DAMAGED}.")
    if temperature is not None and not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
                                        and math.isfinite(temperature) and temperature > 0):
        raise SlimeError(f"{path}: config.heads.temperature is {temperature!r}, not a positive number; {DAMAGED}.")


def _read_semantics(path: Path, dims: dict) -> dict[str, np.ndarray]:
    """The image tower's classifier and class-name embeddings. Required, whole, when the heads read image +
    class-text features (image_features = image + text, the offline attacker); else loaded as found. Every
    array present must fit the manifest's dims."""
    required = dims["image_features"] == dims["image"] + dims["text"]
    if not required and not path.exists():
        return {}
    semantics = {k: v.astype(np.float32) for k, v in _read_arrays(path, SEMANTICS_KEYS if required else ()).items()}
    weight = semantics.get("classifier_weight")
    n_classes = weight.shape[0] if weight is not None and weight.ndim == 2 else None
    expected = {"classifier_weight": (n_classes, dims["image"]), "classifier_bias": (n_classes,),
                "class_text": (n_classes, dims["text"]), "feature_norm": (1,)}
    wrong = {k: semantics[k].shape for k, shape in expected.items() if k in semantics and
             (len(semantics[k].shape) != len(shape) or
              any(want is not None and got != want for got, want in zip(semantics[k].shape, shape)))}
    if wrong:
        raise SlimeError(f"{path}: arrays {wrong} do not fit the manifest's dims ({dims['image']}-d images, "
                         f"{dims['text']}-d text); {DAMAGED}.")
    return semantics


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _read_heads(folder: Path, manifest: dict) -> tuple[DualHeads, DCNRanker]:
    """The contrastive heads and the ranker from heads.safetensors, their shapes compared with the manifest's dims
    on meta tensors (nothing allocated) before the modules are built."""
    arrays = _read_arrays(folder / "heads.safetensors")
    dims = manifest["dims"]
    shape = (manifest.get("config") or {}).get("heads") or {}  # bundles before 2026-12 had no hidden/temperature
    def make():
        return (DualHeads(dims["image_features"], dims["text"], dims["joint"], shape.get("hidden", 512),
                          shape.get("temperature")), DCNRanker(dims["joint"]))

    with torch.device("meta"):  # shapes only, nothing allocated: the manifest's dims are checked against the file
        want = {f"{prefix}.{k}": tuple(v.shape) for prefix, module in zip(("heads", "ranker"), make())
                for k, v in module.state_dict().items()}
    wrong = [k for k, v in want.items() if k in arrays and tuple(arrays[k].shape) != v]
    if wrong:
        raise SlimeError(f"{folder}: heads.safetensors does not match the manifest's encoders/dims "
                         f"({manifest['image_encoder']} {dims['image']}-d, {manifest['text_encoder']} {dims['text']}-d): "
                         f"{wrong[0]} is {tuple(arrays[wrong[0]].shape)}, the manifest implies {want[wrong[0]]}; {DAMAGED}.")
    heads, ranker = make()
    try:
        heads.load_state_dict(_tensors_under(arrays, "heads."))
        ranker.load_state_dict(_tensors_under(arrays, "ranker."))
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise SlimeError(f"{folder}: heads.safetensors does not match the manifest's encoders/dims "
                         f"({manifest['image_encoder']} {dims['image']}-d, {manifest['text_encoder']} {dims['text']}-d): "
                         f"{first}") from None
    return heads.eval(), ranker.eval()


def load_bundle(folder: str | Path | None = None) -> Bundle:
    """The bundle in `folder` (None: models/default), every file checked as it loads: one SlimeError naming
    the file and what is wrong (bad JSON, missing fields, truncated or foreign safetensors, missing files,
    arrays whose shapes disagree with the manifest, the vocabulary or the pool list)."""
    folder = Path(folder or DEFAULT_BUNDLE)
    manifest = read_manifest(folder)
    vocab = _read_bundle_json(folder / "vocab.json")
    if not (isinstance(vocab, dict) and _str_list(vocab.get("tags")) and isinstance(vocab.get("counts"), list)
            and len(vocab["counts"]) == len(vocab["tags"])
            and all(_number(c) and 0 <= c < 1e15 for c in vocab["counts"])):
        raise SlimeError(f"{folder / 'vocab.json'}: expected {{\"tags\": [text, ...], \"counts\": [count >= 0, ...]}} "
                         f"of the same length; {DAMAGED}.")
    if vocab_hash(vocab["tags"]) != manifest["vocab_hash"]:
        raise SlimeError(f"{folder}: vocab.json does not match the manifest's vocabulary hash; the bundle is inconsistent.")
    heads, ranker = _read_heads(folder, manifest)
    dims = manifest["dims"]
    tag_text = _read_arrays(folder / "tags.safetensors", ("tag_text",))["tag_text"].astype(np.float32)
    if tag_text.shape != (len(vocab["tags"]), dims["text"]):
        raise SlimeError(f"{folder / 'tags.safetensors'}: tag embeddings {tag_text.shape} do not match "
                         f"{len(vocab['tags'])} tags x {dims['text']}; {DAMAGED}.")
    semantics = _read_semantics(folder / "semantics.safetensors", dims)
    pool = _read_bundle_json(folder / "pool.json")
    if not (isinstance(pool, dict) and _str_list(pool.get("images"))):
        raise SlimeError(f"{folder / 'pool.json'}: expected an object with an 'images' list of file names; {DAMAGED}.")
    from slime_core.stages.data import check_image_name

    for i, name in enumerate(pool["images"]):  # "../../x.jpg" or "/etc/x" would read outside --pool-data
        check_image_name(name, f"{folder / 'pool.json'} (image {i})")
    n_pool = len(pool["images"])
    for key in ("splits", "tags"):
        if key in pool and (not isinstance(pool[key], list) or len(pool[key]) != n_pool):
            raise SlimeError(f"{folder / 'pool.json'}: '{key}' does not list one entry per pool image ({n_pool}); "
                             f"{DAMAGED}.")
    if "tags" in pool and not all(_str_list(tags) for tags in pool["tags"]):
        raise SlimeError(f"{folder / 'pool.json'}: 'tags' must hold a list of tag texts per pool image; {DAMAGED}.")
    image_file = folder / f"pool_{manifest['image_encoder']}.safetensors"
    if not image_file.exists():
        raise SlimeError(f"{image_file}: missing (the attacker's own pool embeddings); {DAMAGED}.")
    pool_embeddings = {p.stem[len("pool_"):]: _read_pool(p, manifest, n_pool)
                       for p in sorted(folder.glob("pool_*.safetensors"))}
    return Bundle(manifest, heads, ranker, vocab["tags"], np.asarray(vocab["counts"], np.float32),
                  tag_text, pool, pool_embeddings, semantics, folder)


def _read_pool(path: Path, manifest: dict, n_pool: int) -> np.ndarray:
    """One encoder's pool embeddings (n_pool, d), float32, checked against pool.json and the manifest."""
    name = path.stem[len("pool_"):]
    arrays = _read_arrays(path, ("embeddings",))
    q = arrays["embeddings"]
    if q.ndim != 2 or q.shape[0] != n_pool:
        raise SlimeError(f"{path.parent / 'pool.json'}: lists {n_pool} images, but {path.name} holds pool embeddings of "
                         f"shape {q.shape}; {DAMAGED}.")
    if "row_scale" in arrays and arrays["row_scale"].shape != (n_pool,):
        raise SlimeError(f"{path}: row_scale has shape {arrays['row_scale'].shape}, not one per pool row; {DAMAGED}.")
    expected = manifest["dims"]["image"] if name == manifest["image_encoder"] else None
    if expected and q.shape[1] != expected:
        raise SlimeError(f"{path}: pool embeddings of {name} are {q.shape[1]}-d; the manifest says {expected}.")
    if "row_scale" in arrays and not (arrays["row_scale"] > 0).all():
        raise SlimeError(f"{path}: row_scale holds zero or negative scales; {DAMAGED}.")
    try:  # finite, non-zero, sanely scaled rows: the same gate as every embedding a user gives
        return check_embeddings(dequantise_rows(arrays), f"{path}: pool embeddings")
    except SlimeError as err:
        raise SlimeError(f"{err} {DAMAGED}.") from None


MODELS = DEFAULT_BUNDLE.parent


def resolve_bundle(bundle: str | Path | None, attacker: str | None) -> Path | None:
    """The bundle folder for `--bundle`/`--attacker`: an explicit folder wins; else models/<folder named by
    the attacker's registry entry> (lite2-minilm -> models/default); with neither, None (the default)."""
    if bundle is not None or attacker is None:
        return Path(bundle) if bundle is not None else None
    folder = MODELS / attacker_cfg(attacker).folder
    if not (folder / "manifest.json").exists():
        raise SlimeError(f"no bundle for attacker '{attacker}' in {folder}; build one with "
                         f"`slime build --attacker {attacker} --data <dataset folder> --out {folder}`, or give --bundle.")
    return folder


def check_bundle(folder: str | Path | None, attacker: str | None = None, victim: str | None = None) -> dict:
    """The manifest of the bundle in `folder`, after checking that it was built for `attacker` and that the
    encoders whose embeddings it stores are the ones this process would build (same registry overrides:
    a bundle made with a tiny random test model must not meet the real one, nor the reverse)."""
    folder = Path(folder or DEFAULT_BUNDLE)
    manifest = read_manifest(folder)
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
    if fingerprint(image) == image and encoder_cfg(image).dim != manifest["dims"]["image"]:
        raise SlimeError(f"{folder}: the bundle's {image} embeddings are {manifest['dims']['image']}-d, but the "
                         f"registry's {image} is {encoder_cfg(image).dim}-d; the bundle was built with another model.")
    return manifest


def bundle_identity(bundle) -> str:
    """A short hash of the bundle's manifest and vocabulary: what is cached from a bundle (the app's gallery
    scores) follows the bundle."""
    h = hashlib.sha1(json.dumps(bundle.manifest, sort_keys=True, default=str).encode())
    h.update("\n".join(bundle.tags).encode())
    return h.hexdigest()[:12]
