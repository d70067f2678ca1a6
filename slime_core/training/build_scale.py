"""The paper-scale parts of `slime build`: COCO-sized image sets and a vocabulary of millions of tags.

- Embedding: images and tags in chunks written to the on-disk cache as they finish, so an interrupted
  build resumes; with several GPUs, `accelerate launch -m slime_core.cli.main build ...` splits the work
  between processes (Hugging Face accelerate), and the main process alone trains.
- Positives as sparse rows (`SparseRows`) instead of a dense (n, V) matrix.
- Heads trained against sampled negatives above `NegativeSampling.above` tags: every step scores the
  batch's positive tags, `random` uniformly drawn tags, and each image's hardest negatives, mined by an
  exact search over the whole vocabulary every `refresh_every` epochs. Below the threshold
  `retrieve.train_heads` (every tag a negative at every step) is used unchanged.
- Exact top-k search in chunks on the GPU when there is one (never a (n, V) matrix in memory).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from slime_core.infra.errors import SlimeError
from slime_core.infra.files import write_cache_entry
from slime_core.stages.encoders import EmbeddingCache, Encoder, default_device, fingerprint
from slime_core.stages.retrieve import DualHeads, HeadConfig, hardest_negative_hinge, multi_positive_nce, one_cycle
from slime_core.stages.tags import tags_of_samples


@dataclass
class NegativeSampling:
    above: int = 100_000  # vocabulary size from which the heads train on sampled negatives
    batch_size: int = 1024
    random: int = 16_384  # uniformly drawn negative tags per step
    hard_per_image: int = 8  # mined hardest negatives per image and step
    refresh_every: int = 1  # epochs between two mining passes (mining starts after the first epoch)


# ------------------------------------------------------------------ sparse positives


class SparseRows:
    """A boolean (n, V) matrix stored as CSR row pointers and column ids: image -> its tags."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n_cols: int):
        self.indptr, self.indices, self.n_cols = np.asarray(indptr, np.int64), np.asarray(indices, np.int64), n_cols

    @classmethod
    def from_lists(cls, rows: list[list[int]], n_cols: int) -> "SparseRows":
        lengths = np.array([len(r) for r in rows], np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.fromiter((c for r in rows for c in r), np.int64, count=int(lengths.sum()))
        return cls(indptr, indices, n_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.indptr) - 1, self.n_cols

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(local row number, column id) of every True entry in `rows`."""
        rows = np.asarray(rows, np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        local = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return local, self.indices[np.repeat(starts, lengths) + offsets]

    def select(self, rows) -> "SparseRows":
        local, cols = self.take(rows)
        counts = np.bincount(local, minlength=len(rows))
        return SparseRows(np.concatenate([[0], np.cumsum(counts)]), cols, self.n_cols)

    def tile(self, times: int) -> "SparseRows":
        return self.select(np.tile(np.arange(len(self)), times))

    def gather(self, cand_ids: np.ndarray) -> np.ndarray:
        """Dense (n, c) bool: is cand_ids[i, j] a positive of row i (like take_along_axis on the dense matrix)."""
        out = np.zeros(cand_ids.shape, bool)
        for i in range(len(self)):
            cols = self.indices[self.indptr[i] : self.indptr[i + 1]]
            if len(cols):
                out[i] = np.isin(cand_ids[i], cols)
        return out

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        local, cols = self.take(np.arange(len(self)))
        out[local, cols] = True
        return out


# ------------------------------------------------------------------ exact search in chunks


def _rows_per_chunk(n_keys: int, budget: int) -> int:
    return max(1, budget // max(n_keys, 1))


@torch.inference_mode()
def exact_topk(queries, keys, k: int, device: str | None = None, exclude: SparseRows | None = None,
               budget: int = 1 << 26) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of queries (n, d) against keys (V, d), best first: (scores, ids), each (n, k).

    Exact, on `device` (fp16 keys on CUDA), `budget` similarity entries at a time; `exclude` marks
    (query, key) pairs to skip (e.g. a training image's own positives when mining negatives)."""
    device = device or default_device()
    dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    K = keys if isinstance(keys, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(keys, np.float32))
    K = K.to(device, dtype)
    Q = queries if isinstance(queries, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(queries, np.float32))
    k = min(k, len(K))
    rows = _rows_per_chunk(len(K), budget)
    scores, ids = [], []
    for s in range(0, len(Q), rows):
        sims = (Q[s : s + rows].to(device, dtype) @ K.T).float()
        if exclude is not None:
            local, cols = exclude.take(np.arange(s, s + len(sims)))
            sims[torch.from_numpy(local).to(device), torch.from_numpy(cols).to(device)] = -math.inf
        top = sims.topk(k, dim=1)
        scores.append(top.values.cpu())
        ids.append(top.indices.cpu())
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return torch.cat(scores).numpy(), torch.cat(ids).numpy()


# ------------------------------------------------------------------ embedding, resumable and distributed


def _accelerate_state():
    """accelerate's process state: one process unless started with `accelerate launch`."""
    from accelerate import PartialState

    return PartialState()


def is_main_process() -> bool:
    return _accelerate_state().is_main_process


def embed_images(cache: EmbeddingCache, make_encoder, paths: list[str], batch_size: int = 64, chunk: int = 2048,
                 progress: bool = True) -> np.ndarray | None:
    """(n, d) embeddings of `paths` through the cache. `make_encoder(device)` builds the encoder.

    Under `accelerate launch` every process embeds its share into the cache and the main process reads
    the whole set back; the other processes get None."""
    state = _accelerate_state()
    device = str(state.device) if state.num_processes > 1 else None
    encoder = make_encoder(device)
    if state.num_processes == 1:
        return cache.encode_images(encoder, paths, batch_size=batch_size, progress=progress, chunk=chunk)
    with state.split_between_processes(list(paths)) as mine:
        cache.encode_images(encoder, mine, batch_size=batch_size, progress=progress and state.is_main_process,
                            chunk=chunk)
    state.wait_for_everyone()
    return cache.encode_images(encoder, paths) if state.is_main_process else None


def vocab_digest(tags: list[str]) -> str:
    return hashlib.sha256("\n".join(tags).encode()).hexdigest()[:16]


def embed_tags(cache_root: Path, make_encoder, tags: list[str], batch_size: int = 1024, chunk: int = 65_536,
               progress: bool = True) -> np.ndarray | None:
    """(V, d) float32 text embeddings of the vocabulary, `chunk` tags per cache file (resumable).
    Chunks are shared out between accelerate processes; the main process gets the array, others None."""
    state = _accelerate_state()
    device = str(state.device) if state.num_processes > 1 else None
    encoder: Encoder = make_encoder(device)
    folder = (Path(cache_root) / "tags" / EmbeddingCache.key_of(encoder)
              / f"{vocab_digest(tags)}-{EmbeddingCache.identity_of(encoder)}")
    starts = list(range(0, len(tags), chunk))
    expected = {s: min(chunk, len(tags) - s) for s in starts}
    todo = [s for s in starts if _chunk(folder / f"{s // chunk:06d}.npy", expected[s]) is None]
    kept: dict[int, np.ndarray] = {}  # chunks the cache could not take (unwritable SLIME_CACHE): held in memory
    with state.split_between_processes(todo) as mine:
        for s in tqdm(mine, desc=f"embedding tags ({encoder.name}, {len(tags):,} in {len(starts)} chunks)",
                      disable=not (progress and state.is_main_process and mine)):
            vecs = encoder.encode_texts(tags[s : s + chunk], batch_size=batch_size).astype(np.float16)
            saved = not kept and write_cache_entry(folder / f"{s // chunk:06d}.npy",
                                                   lambda tmp: _save_npy(tmp, vecs), root=cache_root)
            if not saved:
                kept[s] = vecs
    if kept and state.num_processes > 1:
        raise SlimeError(f"{cache_root}: cannot be written, and the processes of `accelerate launch` share their "
                         f"tag embeddings through it; set SLIME_CACHE to a writable folder.")
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    out = np.empty((len(tags), encoder.dim), np.float32)
    for s in starts:
        vecs = kept[s] if s in kept else _chunk(folder / f"{s // chunk:06d}.npy", expected[s])
        if vecs is None:
            raise SlimeError(f"{folder}: tag-embedding chunk {s // chunk:06d}.npy is unreadable after it was "
                             f"written; delete the folder and run again.")
        out[s : s + chunk] = vecs
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _chunk(path: Path, rows: int) -> np.ndarray | None:
    """A cached chunk of tag embeddings, or None when absent or unreadable (truncated, wrong length): a miss."""
    try:
        vecs = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return vecs if vecs.ndim == 2 and len(vecs) == rows and np.isfinite(vecs).all() else None


def cached_tags(samples, parser, backend: str, cache_root: Path, progress: bool = True) -> list:
    """tags_of_samples, remembered on disk by (backend, captions), since a COCO-sized parse takes minutes."""
    from collections import Counter

    digest = hashlib.sha256(json.dumps([[s.name, s.captions] for s in samples]).encode()).hexdigest()[:16]
    path = Path(cache_root) / "tags" / f"{backend}-{digest}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list) and len(cached) == len(samples) and all(isinstance(d, dict) for d in cached):
            return [Counter(d) for d in cached]
    except (OSError, ValueError):  # absent, truncated or not JSON: a miss, rewritten below
        pass
    found = tags_of_samples(samples, parser, progress=progress)
    text = json.dumps([dict(c) for c in found])
    write_cache_entry(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), root=cache_root)
    return found


# ------------------------------------------------------------------ heads on sampled negatives


@torch.inference_mode()
def mine_hard_negatives(heads: DualHeads, X: torch.Tensor, T: torch.Tensor, positives: SparseRows, n_hard: int,
                        device: str, tag_batch: int = 65_536) -> np.ndarray:
    """(n, n_hard) ids of each image's most similar non-positive tags under the current heads."""
    heads.eval()
    V = torch.cat([heads.text(T[i : i + tag_batch].float()) for i in range(0, len(T), tag_batch)])
    U = torch.cat([heads.image(X[i : i + 8192]) for i in range(0, len(X), 8192)])
    heads.train()
    return exact_topk(U, V, n_hard, device, exclude=positives)[1]


def train_heads_sampled(image_x: np.ndarray, text_x: np.ndarray, positives: SparseRows, cfg: HeadConfig = HeadConfig(),
                        neg: NegativeSampling = NegativeSampling(), device: str | None = None,
                        progress: bool = False, log=None) -> DualHeads:
    """`retrieve.train_heads` for vocabularies too large to score in full at every step.

    image_x (n, di) float32; text_x (V, dt) tag embeddings; positives: SparseRows (n, V)."""
    if positives.shape != (len(image_x), len(text_x)):
        raise SlimeError(f"positives {positives.shape} do not match {len(image_x)} images x {len(text_x)} tags.")
    device = device or default_device()
    torch.manual_seed(cfg.seed)
    heads = DualHeads.from_config(image_x.shape[1], text_x.shape[1], cfg).to(device)
    opt = torch.optim.AdamW([p for p in heads.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(image_x) / neg.batch_size)
    sched = one_cycle(opt, cfg.lr, steps)
    X = torch.from_numpy(np.ascontiguousarray(image_x, np.float32)).to(device)
    tag_dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    T = torch.from_numpy(np.ascontiguousarray(text_x)).to(device, tag_dtype)
    n_tags = len(T)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    hard = None
    heads.train()
    for epoch in tqdm(range(cfg.epochs), desc="training contrastive heads (sampled negatives)", disable=not progress):
        if neg.hard_per_image and epoch > 0 and epoch % neg.refresh_every == 0:
            hard = mine_hard_negatives(heads, X, T, positives, neg.hard_per_image, device)
        for idx in torch.randperm(len(X), generator=gen).split(neg.batch_size):
            rows = idx.numpy()
            local, cols = positives.take(rows)
            parts = [cols, rng.integers(0, n_tags, neg.random)]
            if hard is not None:
                parts.append(hard[rows].ravel())
            cand = np.unique(np.concatenate(parts))
            pos = torch.zeros(len(rows), len(cand), dtype=torch.bool)
            pos[torch.from_numpy(local), torch.from_numpy(np.searchsorted(cand, cols))] = True
            pos = pos.to(device)
            if not pos.any():
                continue
            u = heads.image(X[idx.to(device)])
            v = heads.text(T[torch.from_numpy(cand).to(device)].float())
            sim = u @ v.T
            logits = heads.scale() * sim
            in_batch = pos.any(dim=0)
            loss = (multi_positive_nce(logits, pos) + multi_positive_nce(logits[:, in_batch].T, pos[:, in_batch].T)) / 2
            n_neg = int((~pos).sum(dim=1).min())
            if n_neg and cfg.hard_negatives:
                loss = loss + hardest_negative_hinge(sim, pos, min(cfg.hard_negatives, n_neg), cfg.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if log is not None:
            log(f"  heads epoch {epoch + 1}/{cfg.epochs}: loss {float(loss):.4f}")
    return heads.cpu().eval()


def encoder_fingerprints(names: list[str]) -> dict[str, str]:
    return {n: fingerprint(n) for n in dict.fromkeys(names)}
