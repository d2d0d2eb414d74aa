"""The paper's two distillation objectives.

* ``cosine``: L_cos = 1 − cos(f_s(x), f_t(x)), eq. (1); the student's head already
  projects to the teacher's width, so no extra projector is needed.
* ``cosine_infonce``: L_cos + λ·InfoNCE, eq. (2), where InfoNCE is SimCLR's NT-Xent
  between two augmented views of each image.

Both are computed in float32 with autocast disabled: under bf16, cosine similarities lose
their third digit and the temperature-scaled logits (|s/τ| up to 1/τ = 10) saturate the
softmax unevenly, which is precisely the geometry the paper measures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdspectra.registry import objective_names

# The objectives these losses implement: the registry's (its `infonce` flag says which add
# the InfoNCE term).
OBJECTIVES: tuple[str, ...] = objective_names()


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Fail loudly on shape mismatch instead of broadcasting to a meaningless loss."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{what}: expected two N×D tensors of equal shape, "
            f"found {tuple(a.shape)} and {tuple(b.shape)}"
        )


def cosine_distillation(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean over rows of 1 − cos(s_i, t_i), in float32 (0 when aligned, 2 when opposed)."""
    _check_pair(s, t, "cosine_distillation")
    with torch.autocast(device_type=s.device.type, enabled=False):
        cos = F.cosine_similarity(s.float(), t.float(), dim=1, eps=1e-8)
        return (1.0 - cos).mean()


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) between two views ``z1[i]``, ``z2[i]`` of the same N images.

    The 2N embeddings are L2-normalised and compared all-to-all; a row's own similarity
    is masked with −inf (it is trivially 1 and would dominate the softmax), its positive
    is the other view of the same image, and the remaining 2N−2 rows are negatives. The
    cross-entropy is averaged over all 2N rows, so both views act as anchors. Logits are
    float32 regardless of autocast.
    """
    _check_pair(z1, z2, "info_nce")
    if not temperature > 0:
        raise ValueError(f"info_nce: temperature must be > 0, found {temperature}")
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.T / temperature
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])
        return F.cross_entropy(logits, targets)
