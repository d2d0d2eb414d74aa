"""Measurement precision: every saved embedding is computed in fp32.

bf16 is for training only. Rounding a student's embeddings to bf16 fills their null space
(σ₁₀₀/σ₁ from ~4e-7 to ~5e-3 on the demo's cnn_l) and raises the effective rank by ~3 %, as
much as the paper's whole S/M/L spread, and TF32 matmuls/convolutions (on by default for
cuDNN) round the inputs to a 10-bit mantissa. So measurement turns both off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def fp32(device: torch.device | str) -> Iterator[None]:
    """Autocast off and TF32 off for the duration (restored after), on any device."""
    device = torch.device(device)
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
