"""Stage 2b: a DCN-v2 ranker that re-scores the retriever's candidate tags for one image.

Input per (image, tag) pair: [u, v, u*v, |u-v|, cos, prior] with u, v the heads' unit vectors and
prior the tag's log training frequency. Cross layers x_{l+1} = x0 * (W_l x_l + b_l) + x_l (low-rank W_l,
as in DCN-v2's mixture-free variant) run beside an MLP; a linear layer reads both.
The ranker is residual: its score is the retriever's own (scale * cos + alpha * prior) plus a learned
correction whose output layer starts at zero, so an untrained ranker reproduces retrieval exactly.
Trained with a grouped pairwise margin loss: in each image's candidate group, every positive must beat
that group's hardest negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def pair_features(u: torch.Tensor, v: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """u (n, d) or (d,), v (n, d), prior (n,) -> (n, 4d + 2)."""
    u = u.expand_as(v)
    cos = (u * v).sum(-1, keepdim=True)
    return torch.cat([u, v, u * v, (u - v).abs(), cos, prior[:, None]], dim=-1)


class CrossLayer(nn.Module):
    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.up(self.down(x)) + x


class DCNRanker(nn.Module):
    def __init__(self, d_joint: int, n_cross: int = 2, rank: int = 64, hidden: int = 256, scale: float = 1.0,
                 alpha: float = 0.0):
        super().__init__()
        self.register_buffer("base", torch.tensor([scale, alpha], dtype=torch.float32))
        dim = 4 * d_joint + 2
        self.norm = nn.LayerNorm(dim)
        self.cross = nn.ModuleList(CrossLayer(dim, rank) for _ in range(n_cross))
        self.deep = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 64), nn.ReLU())
        self.out = nn.Linear(dim + 64, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        retrieval = self.base[0] * feats[:, -2] + self.base[1] * feats[:, -1]  # the cos and prior columns
        x0 = x = self.norm(feats)
        for layer in self.cross:
            x = layer(x0, x)
        return retrieval + self.out(torch.cat([x, self.deep(x0)], dim=-1)).squeeze(-1)


@dataclass
class RankerConfig:
    candidates: int = 50
    epochs: int = 6
    groups_per_batch: int = 32
    hard_negatives: int = 10
    margin: float = 0.2
    lr: float = 1e-3
    seed: int = 0


def grouped_margin_loss(scores: torch.Tensor, positive: torch.Tensor, n_hard: int, margin: float) -> torch.Tensor:
    """scores, positive: (groups, candidates). Hinge between every positive and the group's hardest negatives."""
    neg = scores.masked_fill(positive, -1e4).topk(min(n_hard, scores.shape[1]), dim=1).values  # (g, h)
    gaps = F.relu(margin - scores[:, :, None] + neg[:, None, :])  # (g, c, h)
    weight = positive[:, :, None].float()
    return (gaps * weight).sum() / weight.sum().clamp(min=1) / neg.shape[1]


def train_ranker(u: np.ndarray, cand_ids: np.ndarray, positives: np.ndarray, tag_vecs: np.ndarray, prior: np.ndarray,
                 cfg: RankerConfig = RankerConfig(), scale: float = 1.0, alpha: float = 0.0,
                 progress: bool = False, device: str = "cpu") -> DCNRanker:
    """u (n, d) projected images; cand_ids (n, c) candidate tag ids; positives (n, V) bool, or any object
    with `gather(cand_ids) -> (n, c) bool` (build_scale.SparseRows); tag_vecs (V, d) projected tags;
    prior (V,); scale, alpha: the retrieval score the ranker corrects."""
    torch.manual_seed(cfg.seed)
    ranker = DCNRanker(u.shape[1], scale=scale, alpha=alpha).to(device)
    opt = torch.optim.AdamW(ranker.parameters(), lr=cfg.lr, weight_decay=1e-2)
    U, V, Pr = map(lambda a: torch.from_numpy(np.asarray(a, np.float32)).to(device), (u, tag_vecs, prior))
    C = torch.from_numpy(cand_ids).long().to(device)
    gathered = positives.gather(cand_ids) if hasattr(positives, "gather") else np.take_along_axis(positives, cand_ids, axis=1)
    pos = torch.from_numpy(gathered).to(device)
    keep = pos.any(dim=1)  # groups without a positive teach nothing
    U, C, pos = U[keep], C[keep], pos[keep]
    gen = torch.Generator().manual_seed(cfg.seed)
    ranker.train()
    for _ in tqdm(range(cfg.epochs), desc="training DCN-v2 ranker", disable=not progress):
        for idx in torch.randperm(len(U), generator=gen).split(cfg.groups_per_batch):
            idx = idx.to(device)
            g, c = len(idx), C.shape[1]
            feats = pair_features(U[idx].repeat_interleave(c, 0), V[C[idx]].reshape(g * c, -1), Pr[C[idx]].reshape(-1))
            loss = grouped_margin_loss(ranker(feats).reshape(g, c), pos[idx], cfg.hard_negatives, cfg.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return ranker.cpu().eval()


@torch.inference_mode()
def rerank(ranker: DCNRanker, u: np.ndarray, cand_ids: np.ndarray, tag_vecs: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidates; returns (scores, ids), each (n, c), best first."""
    U, V, Pr = (torch.from_numpy(np.asarray(a, np.float32)) for a in (u, tag_vecs, prior))
    n, c = cand_ids.shape
    C = torch.from_numpy(cand_ids).long()
    scores = ranker(pair_features(U.repeat_interleave(c, 0), V[C].reshape(n * c, -1), Pr[C].reshape(-1))).reshape(n, c)
    order = scores.argsort(dim=1, descending=True)
    return scores.gather(1, order).numpy(), C.gather(1, order).numpy()
