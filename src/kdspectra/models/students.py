"""The paper's five students, built from configs (a registry), not from one class per name.

The paper's Student-S/M/L are *one* scalable CNN with a width factor (1×, 2×, 4×) at
0.5M/2.0M/8.0M parameters; its ablation adds a semi-global Hybrid (conv stem +
transformer over the feature-map tokens) and a global Tiny ViT at the Student-S budget so
that it varies the architecture, not the size. Following timm/open_clip, each name maps
to a frozen, torch-free config (its :class:`kdspectra.registry.StudentEntry`) and two
generic classes build every variant:

* :class:`ScalableCNN` — local receptive fields only. An airbench-style layout
  (conv → max-pool → BN → ReLU, then residual conv-BN-ReLU blocks at the pooled
  resolution) keeps most of the compute at 8×8 and 4×4, which is what makes the GPU
  throughput target reachable; global average pooling; a linear projection head.
* :class:`TokenTransformer` — pre-norm transformer blocks over tokens that come either
  from a strided conv stem (``hybrid``: locality first, attention on 8×8 feature tokens)
  or from non-overlapping 4×4 patches (``tiny_vit``: attention from the first layer).

Parameter budgets are counted with a 512-d head (CLIP ViT-B/32's width). The projection
head is the only part that grows *linearly* with width, so the three CNN sizes cannot be
exactly 4× apart; the registry's widths give 515,372 / 1,973,432 / 7,719,152 parameters
(+3.1 %, −1.3 %, −3.5 %), Hybrid 503,328 and Tiny ViT 508,064 (``tests/test_students.py``
holds them to the ±5 % / ±10 % budgets).

Every model takes float32 pixels in [0, 1] (N×3×32×32) and normalises internally with the
CIFAR-10 mean/std, registered as buffers, so the noise definition (on [0, 1] pixels,
before normalisation) holds for students exactly as for teachers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdspectra import registry
from kdspectra.architectures import CNNConfig, TransformerConfig
from kdspectra.errors import ConfigError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _scaled(channels: float, mult: float, *, multiple: int = 1, minimum: int = 4) -> int:
    """Scale a channel count, rounded to ``multiple`` and at least ``minimum``."""
    return max(minimum, multiple * round(channels * mult / multiple))


class Normalize(nn.Module):
    """Map [0, 1] pixels to CIFAR-standardised inputs (buffers follow ``.to(device)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn_relu(c_in: int, c_out: int, *, stride: int = 1, pool: bool = False) -> nn.Sequential:
    """3×3 conv (no bias: BN follows), optional 2×2 max-pool, BN, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Basic ResNet block: conv-BN-ReLU-conv-BN plus identity, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(y)), inplace=True)


class ScalableCNN(nn.Module):
    """Student-S/M/L: strictly local convolutions, global average pool, linear projection.

    Each stage is conv → max-pool(2) → BN → ReLU followed by ``blocks[i]`` residual
    blocks, so the receptive field grows only through depth and pooling.
    """

    def __init__(self, cfg: CNNConfig, embed_dim: int, width_mult: float = 1.0) -> None:
        super().__init__()
        mult = cfg.width * width_mult
        self.normalize = Normalize()
        c = _scaled(cfg.stem, mult)
        layers: list[nn.Module] = [_conv_bn_relu(3, c)]
        for width, n_blocks in zip(cfg.widths, cfg.blocks, strict=True):
            c_out = _scaled(width, mult)
            layers.append(_conv_bn_relu(c, c_out, pool=True))
            layers += [ResidualBlock(c_out) for _ in range(n_blocks)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.normalize(x))
        return self.head(h.mean(dim=(2, 3)))


class Attention(nn.Module):
    """Multi-head self-attention via ``scaled_dot_product_attention`` (flash on CUDA)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block (attention + GELU MLP), as in ViT."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _token_stem(cfg: TransformerConfig, dim: int, mult: float) -> tuple[nn.Module, int]:
    """Build the tokeniser and return it with the side length of its token grid."""
    if cfg.stem == "patch":
        return nn.Conv2d(3, dim, cfg.patch, stride=cfg.patch), 32 // cfg.patch
    if cfg.stem == "conv":
        layers: list[nn.Module] = []
        c, side = 3, 32
        for i, width in enumerate(cfg.stem_channels):
            c_out = _scaled(width, mult)
            layers.append(_conv_bn_relu(c, c_out, stride=1 if i == 0 else 2))
            side = side if i == 0 else side // 2
            c = c_out
        layers.append(nn.Conv2d(c, dim, 3, stride=2, padding=1))
        return nn.Sequential(*layers), side // 2
    raise ConfigError(f"TransformerConfig.stem: expected 'conv' or 'patch', found {cfg.stem!r}")


class TokenTransformer(nn.Module):
    """Hybrid and Tiny ViT: tokens from a stem, learned positions, pre-norm blocks,
    mean-pooled tokens, LayerNorm, linear projection to ``embed_dim``."""

    def __init__(self, cfg: TransformerConfig, embed_dim: int, width_mult: float = 1.0) -> None:
        super().__init__()
        dim = _scaled(cfg.dim, width_mult, multiple=cfg.heads, minimum=cfg.heads)
        self.normalize = Normalize()
        self.stem, side = _token_stem(cfg, dim, width_mult)
        self.pos = nn.Parameter(torch.zeros(1, side * side, dim))
        self.blocks = nn.Sequential(
            *(Block(dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """ViT-style init: truncated normal (std 0.02) for positions and linear layers."""
        nn.init.trunc_normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(self.normalize(x)).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens).mean(dim=1)))


def build_student(name: str, embed_dim: int, *, width_mult: float = 1.0) -> nn.Module:
    """Build student ``name`` with a ``embed_dim``-d projection head (the teacher's width).

    ``width_mult`` shrinks or grows every channel width on top of the architecture's own
    width factor; the paper's budgets hold at 1.0, and the CPU demo uses e.g. 0.25.
    """
    entry = registry.student(name)
    if not isinstance(embed_dim, int) or embed_dim <= 0:
        raise ConfigError(
            f"student {name!r}: embed_dim must be a positive int, found {embed_dim!r}"
        )
    if not (math.isfinite(width_mult) and width_mult > 0):
        raise ConfigError(f"student {name!r}: width_mult must be > 0, found {width_mult!r}")
    builder = registry.student_builder(name)
    if builder is not None:
        return builder(embed_dim, width_mult)
    cfg = entry.architecture
    if isinstance(cfg, CNNConfig):
        return ScalableCNN(cfg, embed_dim, width_mult)
    if isinstance(cfg, TransformerConfig):
        return TokenTransformer(cfg, embed_dim, width_mult)
    raise ConfigError(
        f"student {name!r}: expected a CNNConfig or TransformerConfig architecture, found "
        f"{type(cfg).__name__}"
    )


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (buffers such as BN statistics and the normaliser excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def feature_width(model: nn.Module) -> int:
    """Width of the features that the linear head maps to the embedding.

    The head is linear, so a student's centred embeddings have rank at most this width:
    the ceiling beside every effective rank (``rank_ceiling`` in docs/design.md), which keeps a
    low ER that the architecture forces from passing for collapse.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"feature_width: expected a student with a linear .head, found {head!r}")
    return int(head.in_features)


def build_projector(width: int) -> nn.Sequential:
    """SimCLR's projection head on a ``width``-d embedding: Linear → BatchNorm → ReLU →
    Linear, hidden and output width = ``width``.

    Used only for training (``training.infonce.projector: mlp``): InfoNCE acts on its
    output while L_cos and every measurement stay on the embedding it reads, and it is not
    part of the saved student. The output keeps the embedding's width rather than SimCLR's
    128 so that the arms with and without the head differ in one thing only, a non-linear
    map between the embedding and the contrastive loss, and not also in the dimension of
    the space InfoNCE spreads (SimCLR, Chen et al. 2020, Fig. 8: that width matters little).
    """
    if not isinstance(width, int) or width <= 0:
        raise ConfigError(f"projector: width must be a positive int, found {width!r}")
    return nn.Sequential(
        nn.Linear(width, width, bias=False),
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width),
    )
