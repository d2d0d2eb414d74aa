"""Device-resident training data: one uint8 tensor, seeded batches, batched augmentation.

CIFAR fits on any GPU many times over (50k×3×32×32 uint8 = 150 MB), so copying it once and
augmenting whole batches with tensor ops removes the DataLoader/PIL bottleneck that
otherwise dominates small-model distillation (see ``benchmarks/bench_loader.py``). The
batch order is a pure function of ``(seed, epoch)`` and the augmentation draws come from an
explicit generator, so a run resumed from a checkpoint sees exactly the batches and views
it would have seen without the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kdspectra.errors import ConfigError, DataError

PADDING_MODES = ("reflect", "zeros")
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """Mix (seed, epoch, stream) into one 64-bit generator seed.

    ``stream`` separates independent uses of the same (seed, epoch), e.g. the batch order
    (0) and the augmentation draws (1), so changing one never shifts the other.
    """
    return (seed * 1_000_003 + epoch + stream * 0x9E3779B97F4A7C15) & _MASK64


class DeviceLoader:
    """Batches of a whole split kept on ``device`` as one uint8 N×3×H×W tensor."""

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        device: torch.device,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        """Copy ``images`` (uint8 N×H×W×3, the prepared-data layout) to ``device`` once."""
        tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
            raise DataError(
                f"DeviceLoader images: expected uint8 N×H×W×3, "
                f"found {tensor.dtype} {tuple(tensor.shape)}"
            )
        n = int(tensor.shape[0])
        if batch_size < 1:
            raise ConfigError(f"batch_size: expected an integer >= 1, found {batch_size}")
        if drop_last and n < batch_size:
            raise ConfigError(
                f"batch_size: {batch_size} exceeds the {n} images of the split with "
                f"drop_last=True, so no batch would be produced; use a smaller batch_size"
            )
        self.device = torch.device(device)
        self.images = tensor.to(self.device).permute(0, 3, 1, 2).contiguous()
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_images // self.batch_size
        return math.ceil(self.num_images / self.batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's image order on the device (drawn on the CPU so it is device-independent)."""
        if not self.shuffle:
            return torch.arange(self.num_images, device=self.device)
        gen = torch.Generator(device="cpu").manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.num_images, generator=gen).to(self.device)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(indices int64, images uint8 B×3×H×W)`` on the device for one epoch."""
        order = self.permutation(epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield idx, self.images.index_select(0, idx)

    def generator(self, epoch: int) -> torch.Generator:
        """A device generator for the epoch's augmentation draws, independent of the order."""
        return torch.Generator(device=self.device).manual_seed(
            epoch_seed(self.seed, epoch, stream=1)
        )


@dataclass(frozen=True)
class ViewParams:
    """The random draws behind one augmented view of each of N images, as data.

    Splitting the draws from their application lets a view be *replayed*: the teacher
    embeds cached view k of image i at extraction time and training rebuilds exactly that
    view from the same parameters (``training.teacher_view: same``). Shapes are (N,) for
    one view per image or (K, N) for a table of K cached views; ``colour`` holds the
    brightness, contrast and saturation factors (saturation 0 = grayscale) in a trailing
    axis of 3, or is ``None`` when the pipeline has no colour step.
    """

    dy: torch.Tensor
    dx: torch.Tensor
    mirror: torch.Tensor | None
    colour: torch.Tensor | None

    def take(self, *index: torch.Tensor) -> ViewParams:
        """The parameters at ``index`` (e.g. ``(k, i)`` into a K×N table), one per row."""
        return self._map(lambda t: t.to(index[-1].device)[index])

    def to(self, device: torch.device | str) -> ViewParams:
        """The same parameters on ``device``."""
        return self._map(lambda t: t.to(device))

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> ViewParams:
        fields = (self.dy, self.dx, self.mirror, self.colour)
        return ViewParams(*(None if t is None else fn(t) for t in fields))


def has_colour(jitter: float, grayscale_p: float) -> bool:
    """Whether a view pipeline has a colour step: any jitter or any grayscale."""
    return jitter > 0 or grayscale_p > 0


def draw_view_params(
    shape: int | tuple[int, ...],
    generator: torch.Generator,
    *,
    crop_padding: int = 4,
    flip: bool = True,
    colour: bool = False,
    jitter: float = 0.4,
    grayscale_p: float = 0.2,
) -> ViewParams:
    """Draw crop offsets, mirror flags and colour factors for ``shape`` views on the
    generator's device (order: offsets, mirror, colour factors, grayscale flags)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dev = generator.device
    dy = torch.randint(0, 2 * crop_padding + 1, shape, generator=generator, device=dev)
    dx = torch.randint(0, 2 * crop_padding + 1, shape, generator=generator, device=dev)
    mirror = torch.rand(shape, generator=generator, device=dev) < 0.5 if flip else None
    factors = None
    if colour:
        uniform = torch.rand((*shape, 3), generator=generator, device=dev)
        factors = 1.0 + jitter * (2.0 * uniform - 1.0)
        to_gray = torch.rand(shape, generator=generator, device=dev) < grayscale_p
        factors[..., 2] = torch.where(to_gray, torch.zeros_like(factors[..., 2]), factors[..., 2])
    return ViewParams(dy, dx, mirror, factors)


def apply_view(
    x: torch.Tensor, params: ViewParams, *, crop_padding: int = 4, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Build the views ``params`` describe from a uint8 N×3×H×W batch; float [0, 1].

    Crop and flip are one gather on uint8 (exact on every device); the colour step is
    float arithmetic on ``x``'s device.
    """
    out = _crop_flip(x, params, crop_padding, padding_mode)
    out = out.float().div_(255.0)
    if params.colour is not None:
        out = _colour(out, params.colour.to(out.device))
    return out


def cached_view_params(
    n: int,
    k: int,
    seed: int,
    *,
    crop_padding: int,
    jitter: float,
    grayscale_p: float,
) -> ViewParams:
    """The K×N table of cached views (crop, flip, colour) that ``teacher_view: same`` uses.

    Drawn on the CPU from ``seed`` alone, so extraction and every training job on any
    device rebuild the identical table; view k of image i depends on (seed, k, i) only.
    """
    if k < 1:
        raise ConfigError(f"config key 'training.teacher_views_k': expected >= 1, found {k}")
    gen = torch.Generator(device="cpu").manual_seed(epoch_seed(seed, 0, stream=2))
    colour = has_colour(jitter, grayscale_p)
    return draw_view_params(
        (k, n),
        gen,
        crop_padding=crop_padding,
        colour=colour,
        jitter=jitter,
        grayscale_p=grayscale_p,
    )


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    crop_padding: int = 4,
    flip: bool = True,
    colour: bool = False,
    jitter: float = 0.4,
    grayscale_p: float = 0.2,
    padding_mode: str = "reflect",
) -> torch.Tensor:
    """Randomly crop, flip and (optionally) colour-distort a uint8 batch; return float [0,1].

    All draws are per sample but made as whole-batch tensor ops from ``generator``, so the
    views are reproducible and cost one gather instead of a Python loop. Crop and flip are
    folded into the gather indices (reflection needs no padded copy). ``colour=True`` adds
    the SimCLR-style jitter and grayscale. ``padding_mode="zeros"`` matches torchvision's
    ``RandomCrop(padding=4)``; ``"reflect"`` (airbench) avoids black borders that a
    contrastive objective could latch on to.
    """
    _check_augment_args(x, generator, crop_padding, jitter, grayscale_p, padding_mode)
    params = draw_view_params(
        x.shape[0],
        generator,
        crop_padding=crop_padding,
        flip=flip,
        colour=colour,
        jitter=jitter,
        grayscale_p=grayscale_p,
    )
    return apply_view(x, params, crop_padding=crop_padding, padding_mode=padding_mode)


def _check_augment_args(
    x: torch.Tensor,
    generator: torch.Generator,
    crop_padding: int,
    jitter: float,
    grayscale_p: float,
    padding_mode: str,
) -> None:
    """Fail with the offending argument before a mismatch turns into a cryptic kernel error."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"augment: expected uint8 N×3×H×W, found {x.dtype} {tuple(x.shape)}")
    if generator.device.type != x.device.type:
        raise ConfigError(
            f"augment: generator is on {generator.device}, images on {x.device}; "
            f"they must share a device"
        )
    if not 0 <= crop_padding < min(x.shape[2], x.shape[3]):
        raise ConfigError(
            f"crop_padding: expected 0 <= padding < image size {tuple(x.shape[2:])}, "
            f"found {crop_padding}"
        )
    if not 0.0 <= jitter <= 1.0:
        raise ConfigError(f"jitter: expected a strength in [0, 1], found {jitter}")
    if not 0.0 <= grayscale_p <= 1.0:
        raise ConfigError(f"grayscale_p: expected a probability in [0, 1], found {grayscale_p}")
    if padding_mode not in PADDING_MODES:
        raise ConfigError(f"padding_mode: expected one of {PADDING_MODES}, found {padding_mode!r}")


def _crop_flip(x: torch.Tensor, params: ViewParams, pad: int, mode: str) -> torch.Tensor:
    """Per-sample translated (and mirrored) view of ``x`` as a single gather on uint8.

    Each output pixel's source position is computed per sample (offset, mirror, reflection
    at the border), flattened to one index per pixel and gathered in one pass; zero padding
    gathers from a zero-padded copy so no mask pass is needed.
    """
    n, c, h, w = x.shape
    dev = x.device
    dy, dx = params.dy.to(dev).view(n, 1), params.dx.to(dev).view(n, 1)
    rows = dy - pad + torch.arange(h, device=dev)  # source row of each output row, N×H
    cols = dx - pad + torch.arange(w, device=dev)  # N×W
    if params.mirror is not None:
        cols = torch.where(params.mirror.to(dev).view(n, 1), cols.flip(1), cols)
    if mode == "reflect":
        src, rows, cols = x, _reflect(rows, h), _reflect(cols, w)
    else:
        src, rows, cols = F.pad(x, (pad, pad, pad, pad)), rows + pad, cols + pad
    src_h, src_w = src.shape[2:]
    idx = (rows[:, :, None] * src_w + cols[:, None, :]).view(n, 1, h * w)
    out = src.reshape(n, c, src_h * src_w).gather(2, idx.expand(n, c, h * w))
    return out.view(n, c, h, w)


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices in [-size+1, 2size-2] into [0, size-1] without repeating the edge."""
    return (size - 1) - ((size - 1) - idx.abs()).abs()


def _colour(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation jitter from N×3 ``factors`` (saturation 0 = gray).

    Saturation and grayscale are both blends towards the luma image, and the saturation
    blend leaves luma unchanged, so a grayscale sample is simply one whose saturation factor
    is 0: one pass instead of two. ``x`` is augment's own float tensor, modified in place.
    """
    n = x.shape[0]
    brightness, contrast, saturation = factors.view(n, 3, 1, 1, 1).unbind(dim=1)
    x = x.mul_(brightness).clamp_(0.0, 1.0)
    mean = _gray(x.mean(dim=(2, 3), keepdim=True))  # mean of the luma image, N×1×1×1
    x = _blend_(x, mean, contrast)
    return _blend_(x, _gray(x), saturation)


def _blend_(x: torch.Tensor, towards: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """In place ``towards + factor·(x − towards)``, clamped; broadcast lerp is slow on CPU."""
    return x.sub_(towards).mul_(factor).add_(towards).clamp_(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of an N×3×H×W batch as N×1×H×W, accumulated in place (no N×3×H×W temporary)."""
    r, g, b = _LUMA
    return (x[:, 0:1] * r).add_(x[:, 1:2], alpha=g).add_(x[:, 2:3], alpha=b)
