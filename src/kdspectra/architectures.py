"""Student architectures as data: the torch-free configs that
:mod:`kdspectra.models.students` builds.

They live apart from the torch modules so that :mod:`kdspectra.registry` (imported when the
Snakefile is parsed, once per cluster job) can hold every student's architecture without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CNNConfig:
    """A :class:`~kdspectra.models.students.ScalableCNN`: stem width, per-stage widths and
    residual blocks per stage.

    ``width`` is the paper's width factor; it multiplies every channel count.
    """

    stem: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    width: float = 1.0


@dataclass(frozen=True)
class TransformerConfig:
    """A :class:`~kdspectra.models.students.TokenTransformer`: token stem (``"conv"`` or
    ``"patch"``) and encoder size.

    ``stem_channels`` are the intermediate conv widths of the ``conv`` stem (the last conv
    maps to ``dim``); ``patch`` is the patch size of the ``patch`` stem.
    """

    stem: str
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    stem_channels: tuple[int, ...] = ()
    patch: int = 4
