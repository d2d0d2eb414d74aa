"""The towers of the teachers this pipeline pretrains itself (``teachers.<name>.pretrain``).

Both pretraining objectives share one image architecture, a small timm ViT built from the
spec's ``model`` name with the ``pretrain`` architecture keys as overrides, so that the
CLIP analogue and the DINOv2 analogue differ only in the objective:

* :class:`ImageTower`: the timm backbone (headless; its output is the layer-normed mean
  of the patch tokens, ``pool: avg``, or the [CLS] token, ``pool: token``) and, for
  ``objective: clip``, CLIP's bias-free linear projection. Its ``forward`` *is* the
  teacher embedding: the projected image embedding for ``clip`` (the space CLIP's loss
  acts in, as ``encode_image``), the backbone output for ``ssl`` (as DINOv2's [CLS],
  before any head).
* :class:`TextTower`: CLIP's text transformer in miniature (token and position
  embeddings, pre-norm blocks under a causal mask, final norm, the end-of-text token's
  feature, a bias-free projection) over the class-name captions, tokenised with
  open_clip's BPE tokenizer (its vocabulary ships inside the package: no download). The
  few dozen token ids the captions use are renumbered into a compact vocabulary, so the
  embedding table holds those rows, not 49,408.

The architecture is recorded in the weights file's metadata (:func:`arch_metadata`) so a
loader can refuse weights trained for another shape, naming the key that differs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

# CLIP's context is 77 tokens; the captions here are a handful, so 16 leave room for
# templates of a dozen words while keeping the text transformer's attention tiny.
CONTEXT_LENGTH = 16
METADATA_KEY = "kdspectra_tower"


@dataclass(frozen=True)
class TowerArch:
    """The shape keys of a ``pretrain`` spec: what a weights file must agree with."""

    model: str  # the timm model name whose defaults the keys override
    objective: str  # clip | ssl
    image_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    proj_dim: int
    text_depth: int
    pool: str = "avg"  # avg: mean of the patch tokens; token: the [CLS] output (DINOv2's)

    @classmethod
    def from_spec(cls, model: str, image_size: int, pretrain: Mapping[str, Any]) -> TowerArch:
        """The architecture a validated ``teachers.<name>`` entry asks for."""
        return cls(
            model=model,
            objective=str(pretrain["objective"]),
            image_size=int(image_size),
            patch_size=int(pretrain["patch_size"]),
            embed_dim=int(pretrain["embed_dim"]),
            depth=int(pretrain["depth"]),
            num_heads=int(pretrain["num_heads"]),
            proj_dim=int(pretrain["proj_dim"]),
            text_depth=int(pretrain["text_depth"]),
            pool=str(pretrain.get("pool", "avg")),
        )


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the CPU RNG for an init without disturbing the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_backbone(arch: TowerArch) -> nn.Module:
    """The headless timm ViT (``num_classes=0``) with the spec's shape overrides."""
    import timm

    return timm.create_model(
        arch.model,
        pretrained=False,
        num_classes=0,
        img_size=arch.image_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        global_pool=arch.pool,
        class_token=arch.pool == "token",
    )


class ImageTower(nn.Module):
    """timm backbone, plus CLIP's linear projection for the CLIP analogue."""

    def __init__(self, arch: TowerArch) -> None:
        super().__init__()
        self.backbone = build_backbone(arch)
        self.proj = (
            nn.Linear(arch.embed_dim, arch.proj_dim, bias=False)
            if arch.objective == "clip"
            else nn.Identity()
        )

    @property
    def patch_embed(self) -> nn.Module:
        """The backbone's patch embedding, read like a timm model's (patch-multiple check)."""
        return self.backbone.patch_embed

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone output ([CLS] after the final norm): N×embed_dim."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher embedding: projected for ``clip``, the backbone output for ``ssl``."""
        return self.proj(self.features(x))


# --------------------------------------------------------------------------- text


def caption_tokens(captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """open_clip BPE ids of ``captions`` renumbered compactly; (ids C×L, eot C, vocab).

    Id 0 stays padding; the end-of-text position of each caption is returned because
    CLIP's text feature is read there (its largest id, as ``text.argmax(-1)`` in CLIP).
    """
    from open_clip.tokenizer import SimpleTokenizer

    raw = SimpleTokenizer(context_length=CONTEXT_LENGTH)(list(captions))
    eot = raw.argmax(dim=-1)
    used = torch.unique(raw[raw != 0])
    remap = torch.zeros(int(raw.max()) + 1, dtype=torch.long)
    remap[used] = torch.arange(1, len(used) + 1)
    return remap[raw], eot, len(used) + 1


class TextTower(nn.Module):
    """CLIP's text encoder in miniature over a fixed set of captions."""

    def __init__(self, arch: TowerArch, captions: Sequence[str]) -> None:
        super().__init__()
        ids, eot, vocab = caption_tokens(captions)
        width = arch.embed_dim
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("eot", eot, persistent=False)
        # CLIP's init (open_clip ``TextTransformer.init_parameters``): tokens N(0, 0.02²),
        # positions N(0, 0.01²); at N(0, 1) the captions' shared words drown the class name.
        self.token = nn.Embedding(vocab, width)
        nn.init.normal_(self.token.weight, std=0.02)
        self.pos = nn.Parameter(torch.randn(CONTEXT_LENGTH, width) * 0.01)
        layer = nn.TransformerEncoderLayer(
            width, arch.num_heads, 4 * width, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.blocks = nn.TransformerEncoder(layer, arch.text_depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, arch.proj_dim, bias=False)
        mask = torch.triu(torch.full((CONTEXT_LENGTH, CONTEXT_LENGTH), float("-inf")), 1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self) -> torch.Tensor:
        """Embeddings of every caption: C×proj_dim (not normalised, as ``encode_text``)."""
        x = self.token(self.ids) + self.pos
        x = self.norm(self.blocks(x, mask=self.mask, is_causal=True))
        return self.proj(x[torch.arange(len(x), device=x.device), self.eot])


# --------------------------------------------------------------------------- metadata


def arch_metadata(arch: TowerArch, preprocess: Mapping[str, Any]) -> dict[str, str]:
    """The safetensors metadata of a trained image tower: its shape and input normalisation."""
    return {METADATA_KEY: json.dumps({"arch": asdict(arch), "preprocess": dict(preprocess)})}


def read_metadata(metadata: Mapping[str, str] | None) -> dict[str, Any] | None:
    """The inverse of :func:`arch_metadata`; None when the file carries none."""
    if not metadata or METADATA_KEY not in metadata:
        return None
    return json.loads(metadata[METADATA_KEY])
