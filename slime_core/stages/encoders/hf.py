"""Vision encoders from transformers checkpoints: Nomic Embed Vision v1.5 (a paper victim), or any ViT-like model.

Embedding = CLS token (index 0) of `last_hidden_state`, L2-normalised, as Nomic documents.

Remote-code models (Nomic) are built from their config with real initialisation and the checkpoint
is then loaded into them, not through `from_pretrained`: Nomic's code keeps its rotary tables and
attention scale in non-persistent buffers computed in `__init__`, which transformers 5's meta-device
loading leaves uninitialised (silent garbage), and its classes skip `post_init`, which
`from_pretrained` now needs. Models native to transformers go through `from_pretrained`, which also
maps their checkpoint names. Either way only local files are read; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from slime_core.infra import loaded_models, settings
from slime_core.infra.errors import MissingModelError, SlimeError
from slime_core.stages.encoders.base import Encoder, batched, l2_normalise, load_image
from slime_core.stages.encoders.config import EncoderCfg

ENV_DIR = "SLIME_HF_DIR"


def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo, filename)
    except ValueError:  # not a hub id at all (e.g. a folder path that does not exist)
        return None
    return hit if isinstance(hit, str) else None


def find_model_folder(model: str, path: str | None = None) -> Path:
    """Folder with config.json for `model` (a folder, or a hub id looked up offline).

    Order: `path`, `model` itself as a folder, $SLIME_HF_DIR/<hub id>, the Hugging Face cache."""
    candidates = [Path(p).expanduser() for p in (path, model) if p]
    if settings.weights_dir(ENV_DIR):
        candidates.append(settings.weights_dir(ENV_DIR) / model)
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    hit = _cached(model, "config.json")
    if hit:
        return Path(hit).parent
    raise MissingModelError(
        f"the transformers model {model!r} is not on this machine. Download it with "
        f"`hf download {model} --local-dir ${ENV_DIR}/{model}` "
        f"and set {ENV_DIR}, or run `hf download {model}` to fill the Hugging Face cache, or set the "
        f"encoder's `path` to a folder holding it. Looked in: {', '.join(map(str, candidates)) or '-'}, "
        "the Hugging Face cache."
    )


def _check_remote_code(folder: Path) -> None:
    """Code that config.json's auto_map pulls from another hub repo must already be in the cache,
    or transformers would try to fetch it."""
    auto_map = json.loads((folder / "config.json").read_text()).get("auto_map", {})
    missing: dict[str, list[str]] = {}
    for ref in auto_map.values():
        repo, sep, module = str(ref).rpartition("--")
        filename = module.rsplit(".", 1)[0] + ".py"
        if sep and not _cached(repo, filename):
            missing.setdefault(repo, []).append(filename)
        elif not sep and not (folder / filename).is_file():
            raise MissingModelError(f"{folder} names code file {filename} in its auto_map but lacks it.")
    if missing:
        cmds = "; ".join(f"hf download {r} {' '.join(sorted(set(f)))}" for r, f in missing.items())
        raise MissingModelError(f"the model in {folder} runs code from another hub repository; fetch it into "
                                f"the Hugging Face cache with: {cmds}")


def _load_weights(model: torch.nn.Module, folder: Path) -> None:
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        from safetensors.torch import load_file

        state = {k: v for shard in shards for k, v in load_file(str(shard)).items()}
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise MissingModelError(f"{folder} has a config.json but no weights (*.safetensors or pytorch_model.bin).")
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    if prefix != "." and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    # A buffer absent from the checkpoint keeps its freshly computed value; a missing parameter is an error.
    result = model.load_state_dict(state, strict=False)
    params = {n for n, _ in model.named_parameters()}
    missing = [k for k in result.missing_keys if k in params]
    if missing:
        raise SlimeError(f"weights in {folder} do not fit {type(model).__name__}: {len(missing)} parameters "
                         f"missing (e.g. {missing[:3]}), unexpected keys e.g. {result.unexpected_keys[:3]}.")


@loaded_models.load_once("hf_vision")
def _load_hf_vision(folder: str, trust_remote_code: bool, device: str):
    """(model, processor), once per process."""
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel
    except ImportError:
        raise MissingModelError("transformers encoders need the transformers package: "
                                "pip install transformers (or pip install -e .[paper]).") from None

    root = Path(folder)
    if trust_remote_code:
        _check_remote_code(root)
        check_remote_code_allowed(root.name, root)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
        ref = (getattr(config, "auto_map", None) or {}).get("AutoModel") if trust_remote_code else None
        if ref:
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            repo, _, ref = ref.rpartition("--")
            model = get_class_from_dynamic_module(ref, repo or folder, local_files_only=True)(config)
            _load_weights(model, root)
        else:
            model = AutoModel.from_pretrained(folder, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except SlimeError:
        raise
    except ImportError as err:  # e.g. remote code that imports einops
        raise MissingModelError(f"loading {folder} needs a missing package: {err}") from None
    except (OSError, ValueError) as err:
        raise MissingModelError(f"cannot load the model in {folder}: {err}") from None
    return model.to(device).eval(), processor


class HFVisionEncoder(Encoder):
    modalities = ("image",)

    def __init__(self, name: str, folder: Path, trust_remote_code: bool = False, device: str = "cpu"):
        self.name, self.device = name, device
        self.model, self.processor = _load_hf_vision(str(folder), trust_remote_code, device)
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode_images(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        images = list(images)
        out = []
        total = -(-len(images) // batch_size)
        for chunk in tqdm(batched(images, batch_size), total=total, desc=f"embedding images ({self.name})",
                          disable=not progress):
            pixels = self.processor(images=[load_image(i) for i in chunk], return_tensors="pt")["pixel_values"]
            hidden = self.model(pixel_values=pixels.to(self.device)).last_hidden_state
            out.append(hidden[:, 0].float().cpu().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


TRUST_ENV = "SLIME_TRUST_REMOTE_CODE"


def needs_remote_code(folder: Path) -> bool:
    """Whether the checkpoint's config.json names Python code of its own (an `auto_map`)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MissingModelError(f"{folder / 'config.json'}: not a readable JSON config ({type(err).__name__}).") from None
    return isinstance(config, dict) and bool(config.get("auto_map"))


def check_remote_code_allowed(name: str, folder: Path) -> None:
    """Running code that ships with weights is opt-in: refused unless $SLIME_TRUST_REMOTE_CODE is 1."""
    if not settings.trust_remote_code():
        raise MissingModelError(f"{folder}: encoder '{name}' runs Python code that ships with its weights "
                                f"(config.json auto_map), which is refused by default; if you trust this "
                                f"checkpoint, opt in with {TRUST_ENV}=1.")


def build_hf_vision(cfg: EncoderCfg, device: str | None = None) -> HFVisionEncoder:
    """cfg: `model` (hub id or folder), optional `path` (folder), `trust_remote_code` (default true: the
    registry allows it for Nomic, which needs it; false never runs a checkpoint's code). Even where the
    registry allows it, a checkpoint's own code runs only with $SLIME_TRUST_REMOTE_CODE=1."""
    folder = find_model_folder(cfg.model, cfg.path)
    remote = cfg.trust_remote_code and needs_remote_code(folder)
    if remote:
        _check_remote_code(folder)  # missing code files: say how to fetch them, before asking to trust them
        check_remote_code_allowed(cfg.name, folder)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return HFVisionEncoder(cfg.name, folder, remote, device)
