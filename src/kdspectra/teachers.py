"""CLIP (open_clip) and DINOv2 (timm) teachers with fast, library-faithful batched embedding.

The paper's numbers are effective ranks of teacher and student embeddings, so a teacher must
produce *exactly* the embedding the library's own pipeline would (PIL resize, centre crop,
normalise, forward), only faster: images travel to the device as uint8, and resizing,
cropping and normalisation run there on whole batches. Everything that defines the
preprocessing (input size, mean/std, interpolation, crop) is read from the library's own
config for the model as built, never copied as constants, so a different checkpoint brings
its own preprocessing with it.

What each library contributes:

* ``open_clip``: ``create_model_and_transforms``; only the visual tower is kept (``.model``
  is ``clip.visual``), because the text tower is 40 % of the parameters and never used.
  ``clip.visual(x)`` is exactly ``clip.encode_image(x, normalize=False)``: the image
  embedding *after* the visual projection and *not* L2-normalised. Effective rank is
  computed on the centred raw embeddings; normalising would change the spectrum.
* ``timm``: ``create_model(num_classes=0)``; for ViTs with ``global_pool='token'`` (DINOv2)
  the output is the CLS token after the final norm. ``pretrained_cfg`` keeps reporting the
  checkpoint's 518-px size when the model is built at 224, so the input size is read from
  the built model (``patch_embed.img_size``), not from the config.

Weights: ``pretrained`` null/false builds a random-init teacher under a fixed seed
(``init_seed``, default 0) so demo runs are reproducible; a tag (open_clip) or ``true``
(timm) goes through the library's hub download, honouring ``HF_HOME``/``HF_HUB_CACHE`` or
``cache_dir``; a local file is loaded as is. Weights that cannot be fetched (no network)
raise :class:`~kdspectra.errors.ArtifactError` saying what to download and where to put it.
On air-gapped machines set ``HF_HUB_OFFLINE=1`` so the hub does not spend ~25 s retrying.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdspectra.config import HUB_PREFIXES, check_entry, weights_file
from kdspectra.errors import ArtifactError, ConfigError, DataError
from kdspectra.precision import fp32

logger = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip.constants.HF_WEIGHTS_NAME
# torchvision's PIL path implements these with PIL filters; antialias=True makes torch's
# bilinear/bicubic kernels the PIL ones (a = -0.5 for bicubic), also when upsampling.
_INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


# --------------------------------------------------------------------------- spec parsing


@dataclass(frozen=True)
class TeacherSpec:
    """A validated ``teachers.<name>`` config entry."""

    name: str
    library: str
    model: str
    pretrained: str | bool | None
    image_size: int | None
    cache_dir: str | None
    init_seed: int

    def key(self, field: str) -> str:
        """The config key of ``field``, for error messages a user can act on."""
        return f"teachers.{self.name}.{field}"

    @property
    def weights_file(self) -> Path | None:
        """The local weights file ``pretrained`` names, or None for a tag/hub/random init."""
        return weights_file(self.pretrained)


def parse_spec(spec: Mapping[str, Any]) -> TeacherSpec:
    """A typed ``teachers.<name>`` entry; ``spec["name"]`` (optional) names it in errors.

    The config schema is the validator (the same rules the Snakefile applies, so callers
    that skip it, such as benchmarks and tests, get the same bounds and messages); this
    only builds the typed spec.
    """
    name = str(spec.get("name", "teacher"))
    entry = {k: v for k, v in spec.items() if k != "name"}
    check_entry(entry, "teachers", name)
    pretrained = entry.get("pretrained")
    cache_dir = entry.get("cache_dir")
    return TeacherSpec(
        name=name,
        library=entry["library"],
        model=entry["model"],
        pretrained=pretrained if pretrained != "" else None,
        image_size=entry.get("image_size"),
        cache_dir=os.path.expanduser(str(cache_dir)) if cache_dir else None,
        init_seed=entry.get("init_seed", 0),
    )


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """The library's eval preprocessing, as data: resize, centre crop, normalise.

    ``scale_size`` is what the shorter side (``crop="center"``) or both sides
    (``crop="squash"``) are resized to before the centre crop to ``size``; it equals
    ``size`` unless timm's ``crop_pct`` < 1 (``scale_size = floor(size / crop_pct)``).
    """

    size: int
    scale_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop: str = "center"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATION:
            raise ConfigError(
                f"preprocessing interpolation: expected one of {sorted(_INTERPOLATION)}, "
                f"found {self.interpolation!r}"
            )
        if self.crop not in ("center", "squash"):
            raise ConfigError(
                f"preprocessing crop: expected 'center' or 'squash', found {self.crop!r}"
            )
        if self.scale_size < self.size:
            raise ConfigError(
                f"preprocessing: resize target {self.scale_size} is smaller than the crop "
                f"{self.size} (crop_pct > 1 is not supported)"
            )


def _resized_hw(h: int, w: int, prep: Preprocess) -> tuple[int, int]:
    """Output size of torchvision's ``Resize(scale_size)`` (shorter side) or squash resize."""
    if prep.crop == "squash" or h == w:
        return prep.scale_size, prep.scale_size
    if h < w:
        return prep.scale_size, int(prep.scale_size * w / h)
    return int(prep.scale_size * h / w), prep.scale_size


def preprocess_batch(x: torch.Tensor, prep: Preprocess) -> torch.Tensor:
    """uint8 or float [0, 1] NHWC batch (on the device) → normalised float32 NCHW.

    Mirrors ``Resize → CenterCrop → ToTensor → Normalize`` on PIL images: PIL clips the
    resized image to [0, 255], so we clamp to [0, 1]; we skip PIL's rounding to uint8
    (≤ 0.5/255 per pixel), which is why the match is close rather than bit-exact.
    """
    x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    h, w = x.shape[-2:]
    rh, rw = _resized_hw(h, w, prep)
    if (rh, rw) != (h, w):
        mode = _INTERPOLATION[prep.interpolation]
        x = F.interpolate(x, size=(rh, rw), mode=mode, antialias=mode != "nearest-exact")
        x = x.clamp_(0.0, 1.0)
    if (rh, rw) != (prep.size, prep.size):
        top = round((rh - prep.size) / 2.0)  # torchvision center_crop (half-to-even)
        left = round((rw - prep.size) / 2.0)
        x = x[..., top : top + prep.size, left : left + prep.size]
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    # The NHWC→NCHW permute leaves a channels_last layout, which makes CPU convolutions of
    # the patch embedding ~10x slower; hand the model a plain contiguous batch.
    return ((x - mean) / std).contiguous()


def _check_images(images: np.ndarray) -> np.ndarray:
    """Fail early on anything but uint8 or float [0, 1] NHWC RGB (the module-boundary format)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        found = getattr(images, "shape", type(images).__name__)
        raise DataError(f"teacher input: expected an N×H×W×3 RGB array, found {found}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"teacher input: expected uint8 or float [0, 1] pixels, found {images.dtype}"
        )
    if images.size:
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise DataError(
                f"teacher input: float pixels must lie in [0, 1], found range [{lo}, {hi}]"
            )
    return images.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- the teacher


class Teacher:
    """A frozen image encoder plus the preprocessing it was trained with.

    ``model`` maps a normalised float NCHW batch at ``image_size`` to N×``dim`` embeddings
    (open_clip: the visual tower; timm: the headless model).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        spec: TeacherSpec,
        preprocess: Preprocess,
        weights_source: str,
        device: torch.device,
    ) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.spec = spec
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.device = torch.device(device)
        self.image_size = preprocess.size
        self.last_images_per_s = float("nan")
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        """Run one blank image: proves the model runs at ``image_size`` and gives the width."""
        x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        with torch.inference_mode():
            out = self.encode_preprocessed(x)
        if out.ndim != 2:
            raise ConfigError(
                f"config key '{self.spec.key('model')}': expected {self.spec.model} to return "
                f"N×D embeddings, found shape {tuple(out.shape)}"
            )
        return int(out.shape[1])

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """Forward a normalised NCHW batch; float32 N×D (call under ``inference_mode``).

        fp32 with autocast and TF32 off on every device (:mod:`kdspectra.precision`): these
        rows are measured, and bf16 rounding would fill their null space.
        """
        with fp32(self.device):
            return self.model(x.float()).float()

    def embed(
        self, images: np.ndarray, *, batch_size: int = 256, progress: bool | None = None
    ) -> np.ndarray:
        """Embed uint8 (0..255) or float [0, 1] NHWC RGB images → float32 N×D, row i = image i.

        The shared measurement loop (:func:`kdspectra.inference.embed_batches`: fp32,
        ``inference_mode``; :class:`ConfigError` for a batch_size below 1).
        ``progress=None`` shows a bar only on a TTY. Throughput is logged and kept in
        ``last_images_per_s``.
        """
        from kdspectra.inference import embed_batches

        images = _check_images(images)
        n = len(images)
        start = time.perf_counter()
        result = embed_batches(
            lambda batch: self.encode_preprocessed(preprocess_batch(batch, self.preprocess)),
            images,
            device=self.device,
            batch_size=batch_size,
            dim=self.dim,
            desc=f"embed {self.spec.name}",
            progress=progress,
        )
        elapsed = time.perf_counter() - start
        self.last_images_per_s = n / elapsed if elapsed > 0 else float("inf")
        logger.info(
            "%s: embedded %d images in %.1f s (%.0f images/s, %s, batch %d)",
            self.spec.name, n, elapsed, self.last_images_per_s, self.device, batch_size,
        )  # fmt: skip
        return result

    def describe(self) -> dict[str, Any]:
        """What made these embeddings, for the extraction JSON and provenance footers."""
        return {
            "library": self.spec.library,
            "model": self.spec.model,
            "weights_source": self.weights_source,
            "image_size": self.image_size,
            "dim": self.dim,
            "params": sum(p.numel() for p in self.model.parameters()),
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "interpolation": self.preprocess.interpolation,
            "resize": self.preprocess.scale_size,
        }


# --------------------------------------------------------------------------- building


def build_teacher(spec: Mapping[str, Any], *, device: torch.device | str = "cpu") -> Teacher:
    """Build the teacher a ``teachers.<name>`` config entry describes, ready to ``embed``.

    Models are created on the CPU (so a random init is the same on every machine) and then
    moved to ``device``.
    """
    parsed = parse_spec(spec)
    builder = _build_open_clip if parsed.library == "open_clip" else _build_timm
    model, preprocess, source = builder(parsed)
    _check_patch_multiple(model, preprocess.size, parsed)
    teacher = Teacher(
        model=model,
        spec=parsed,
        preprocess=preprocess,
        weights_source=source,
        device=torch.device(device),
    )
    logger.info("teacher %s: %s", parsed.name, teacher.describe())
    return teacher


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the CPU RNG for model init without disturbing the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_patch_multiple(model: nn.Module, size: int, spec: TeacherSpec) -> None:
    """A ViT silently drops the pixels beyond the last whole patch; refuse such sizes."""
    patch = getattr(model, "patch_size", None) or getattr(
        getattr(model, "patch_embed", None), "patch_size", None
    )
    if patch is None:
        return
    p = patch[0] if isinstance(patch, tuple | list) else int(patch)
    if size % p:
        raise ConfigError(
            f"config key '{spec.key('image_size')}': expected a multiple of the patch size {p} "
            f"of {spec.model}, found {size}"
        )


def _square(size: Any, spec: TeacherSpec) -> int:
    """Input sizes are (h, w) in both libraries; the teachers here are square."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    if h != w:
        raise ConfigError(
            f"config key '{spec.key('model')}': expected a square input size, found {h}×{w}"
        )
    return int(h)


def _missing_file(spec: TeacherSpec, path: Path) -> ArtifactError:
    return ArtifactError(
        f"config key '{spec.key('pretrained')}': weights file '{path}' does not exist; expected "
        f"a checkpoint of {spec.library} model {spec.model} there (download it, point the key at "
        "the file, or set the key to null for a random-init teacher)"
    )


def _hub_cache(spec: TeacherSpec) -> str:
    """The Hugging Face cache this run reads (``cache_dir``, else HF_HUB_CACHE / HF_HOME)."""
    if spec.cache_dir:
        return spec.cache_dir
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _unavailable(
    spec: TeacherSpec, what: str, repo: str, filename: str, err: Exception
) -> ArtifactError:
    """The actionable "weights not available offline" error: what to fetch and where to put it."""
    cache = _hub_cache(spec)
    offline = (
        ""
        if os.environ.get("HF_HUB_OFFLINE")
        else " Set HF_HUB_OFFLINE=1 on machines without network."
    )
    return ArtifactError(
        f"config key '{spec.key('pretrained')}': {what} could not be loaded "
        f"({type(err).__name__}: {str(err)[:1000]}). On a machine with network run "
        f"`hf download {repo} {filename} --cache-dir {cache}` and copy that cache here (it is "
        f"the Hugging Face cache this run reads: set HF_HOME or '{spec.key('cache_dir')}' to "
        f"move it), or download https://huggingface.co/{repo}/resolve/main/{filename} and set "
        f"'{spec.key('pretrained')}' to the file's path.{offline}"
    )


# ----- open_clip


def _build_open_clip(spec: TeacherSpec) -> tuple[nn.Module, Preprocess, str]:
    """open_clip: resolve the weights ourselves (clear errors), then build and keep ``.visual``."""
    import open_clip

    kwargs: dict[str, Any] = {"cache_dir": spec.cache_dir}
    if spec.image_size is not None:
        kwargs["force_image_size"] = spec.image_size
    if spec.model.startswith(HUB_PREFIXES):
        pretrained, source = None, spec.model  # open_clip ignores `pretrained` for these
    else:
        pretrained, source = _open_clip_weights(spec, kwargs)
    try:
        with _seeded(spec.init_seed):
            clip, _, _ = open_clip.create_model_and_transforms(
                spec.model, pretrained=pretrained, **kwargs
            )
    # UnpicklingError: torch.load(weights_only=True) refusing a pickle payload or garbage.
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as err:
        if pretrained is None and source == RANDOM_INIT:
            raise
        raise ArtifactError(
            f"config key '{spec.key('pretrained')}': could not load {source!r} into open_clip "
            f"{spec.model} ({type(err).__name__}: {str(err)[:1000]})"
        ) from err
    visual = clip.visual
    del clip  # drop the text tower: it is never used and holds ~40 % of the parameters
    return visual, _open_clip_preprocess(visual, spec), source


def _open_clip_weights(spec: TeacherSpec, kwargs: dict[str, Any]) -> tuple[str | None, str]:
    """Turn ``pretrained`` into (what to pass open_clip, weights_source); fills ``kwargs``."""
    import open_clip

    if open_clip.get_model_config(spec.model) is None:
        raise ConfigError(
            f"config key '{spec.key('model')}': {spec.model!r} is not an open_clip model; "
            f"expected one of open_clip.list_models(), e.g. 'ViT-B-32-quickgelu'"
        )
    if spec.pretrained in (None, False):
        return None, RANDOM_INIT
    if spec.pretrained is True:
        raise ConfigError(
            f"config key '{spec.key('pretrained')}': open_clip needs a tag or a file, found true; "
            f"tags for {spec.model}: {open_clip.list_pretrained_tags_by_model(spec.model)}"
        )
    path = spec.weights_file
    if path is not None:
        if not path.is_file():
            raise _missing_file(spec, path)
        return str(path), str(path)
    return _open_clip_tag(spec, kwargs), str(spec.pretrained)


def _open_clip_tag(spec: TeacherSpec, kwargs: dict[str, Any]) -> str:
    """Download (or find cached) the weights of a tag; return the local file.

    Downloading here rather than inside ``create_model`` separates "not available offline"
    (actionable) from load errors, and catches the QuickGELU mismatch that open_clip only
    warns about: OpenAI's weights in a GELU model lose accuracy silently.
    """
    import open_clip
    from open_clip import pretrained as oc_pretrained

    tag = str(spec.pretrained)
    cfg = open_clip.get_pretrained_cfg(spec.model, tag)
    if not cfg:
        raise ConfigError(
            f"config key '{spec.key('pretrained')}': {tag!r} is neither an open_clip tag for "
            f"{spec.model} nor an existing file; tags: "
            f"{open_clip.list_pretrained_tags_by_model(spec.model)}"
        )
    _check_quick_gelu(spec, cfg)
    try:
        path = oc_pretrained.download_pretrained(cfg, cache_dir=spec.cache_dir)
    except Exception as err:  # the download alone: network, hub or checksum failures
        raise _open_clip_unavailable(spec, cfg, err) from err
    if not path:
        raise ConfigError(
            f"config key '{spec.key('pretrained')}': tag {tag!r} has no download source"
        )
    # A file path bypasses the tag's preprocessing config, so pass it on explicitly.
    kwargs.update(
        image_mean=cfg.get("mean"),
        image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"),
        image_resize_mode=cfg.get("resize_mode"),
    )
    return path


def _check_quick_gelu(spec: TeacherSpec, tag_cfg: Mapping[str, Any]) -> None:
    import open_clip

    model_qg = bool(open_clip.get_model_config(spec.model).get("quick_gelu", False))
    tag_qg = bool(tag_cfg.get("quick_gelu", False))
    if model_qg == tag_qg:
        return
    want = f"{spec.model}-quickgelu" if tag_qg else spec.model.replace("-quickgelu", "")
    raise ConfigError(
        f"config key '{spec.key('model')}': the {spec.pretrained!r} weights were trained with "
        f"{'QuickGELU' if tag_qg else 'GELU'} activations; expected model {want!r}, found "
        f"{spec.model!r} (the mismatch loses accuracy silently)"
    )


def _open_clip_unavailable(
    spec: TeacherSpec, cfg: Mapping[str, Any], err: Exception
) -> ArtifactError:
    what = f"open_clip weights {spec.pretrained!r} for {spec.model}"
    hub = cfg.get("hf_hub", "")
    if hub:
        # open_clip's convention: 'org/repo/file' or 'org/repo/' for its default file name
        repo, filename = os.path.split(hub)
        return _unavailable(spec, what, repo, filename or HF_WEIGHTS_NAME, err)
    url = cfg.get("url", "")
    cache = spec.cache_dir or os.path.expanduser("~/.cache/clip")
    return ArtifactError(
        f"config key '{spec.key('pretrained')}': {what} could not be loaded "
        f"({type(err).__name__}: {str(err)[:1000]}). Download {url} into {cache} (keep the file "
        f"name) or anywhere and set '{spec.key('pretrained')}' to the file's path."
    )


def _open_clip_preprocess(visual: nn.Module, spec: TeacherSpec) -> Preprocess:
    """Read open_clip's final preprocess config (size of the model as built, tag's mean/std)."""
    cfg = visual.preprocess_cfg
    size = _square(cfg["size"], spec)
    mode = cfg.get("resize_mode", "shortest")
    # 'longest' pads non-square images; for the square images used here all modes coincide.
    crop = "squash" if mode == "squash" else "center"
    return Preprocess(
        size=size,
        scale_size=size,
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=str(cfg["interpolation"]),
        crop=crop,
    )


# ----- timm


def _build_timm(spec: TeacherSpec) -> tuple[nn.Module, Preprocess, str]:
    """timm: headless model (``num_classes=0``); ``img_size`` resamples position embeddings."""
    import timm

    if not timm.is_model(spec.model):
        raise ConfigError(
            f"config key '{spec.key('model')}': {spec.model!r} is not a timm model; expected a "
            "name from timm.list_models(), e.g. 'vit_base_patch14_dinov2.lvd142m'"
        )
    kwargs: dict[str, Any] = {"num_classes": 0, "cache_dir": spec.cache_dir}
    if spec.image_size is not None:
        kwargs["img_size"] = spec.image_size
    pretrained, source = _timm_weights(spec, kwargs)
    try:
        with _seeded(spec.init_seed):
            model = timm.create_model(spec.model, pretrained=pretrained, **kwargs)
    except TypeError as err:  # e.g. a CNN given `img_size`
        if spec.image_size is None:
            raise
        raise ConfigError(
            f"config key '{spec.key('image_size')}': timm model {spec.model} does not take an "
            f"input size ({err}); remove the key to use its native size"
        ) from err
    except (OSError, RuntimeError, ValueError) as err:
        if not pretrained:
            raise
        raise _timm_load_error(spec, source, err) from err
    return model, _timm_preprocess(model, spec), source


def _timm_weights(spec: TeacherSpec, kwargs: dict[str, Any]) -> tuple[bool, str]:
    """Turn ``pretrained`` into (timm's flag, weights_source); a file goes in the cfg overlay."""
    import timm

    if spec.pretrained in (None, False):
        return False, RANDOM_INIT
    path = spec.weights_file
    if path is not None:
        if not path.is_file():
            raise _missing_file(spec, path)
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        return True, str(path)
    if spec.pretrained is not True:
        raise ConfigError(
            f"config key '{spec.key('pretrained')}': timm expects true, false/null or a weights "
            f"file, found {spec.pretrained!r} (put a tag in the model name, e.g. "
            "'vit_base_patch14_dinov2.lvd142m')"
        )
    try:
        cfg = timm.models.get_pretrained_cfg(spec.model)
    except RuntimeError as err:
        raise ConfigError(f"config key '{spec.key('model')}': {err}") from err
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(
            f"config key '{spec.key('pretrained')}': timm has no pretrained weights for "
            f"{spec.model!r}; expected one of timm.list_pretrained(), or a local file"
        )
    return True, f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else str(cfg.url)


def _timm_load_error(spec: TeacherSpec, source: str, err: Exception) -> ArtifactError:
    """Hub/network failures get download instructions; a bad local file is named."""
    if source.startswith("hf-hub:") and isinstance(err, OSError):
        repo = source.removeprefix("hf-hub:")
        return _unavailable(spec, f"timm weights {repo}", repo, "model.safetensors", err)
    return ArtifactError(
        f"config key '{spec.key('pretrained')}': could not load {source!r} into timm "
        f"{spec.model} ({type(err).__name__}: {str(err)[:1000]})"
    )


def _timm_preprocess(model: nn.Module, spec: TeacherSpec) -> Preprocess:
    """timm's data config for mean/std/interpolation/crop; the input size of the built model."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    built = getattr(getattr(model, "patch_embed", None), "img_size", None)
    size = _square(built or spec.image_size or cfg["input_size"], spec)
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    mode = cfg.get("crop_mode") or "center"
    if mode not in ("center", "squash"):
        raise ConfigError(
            f"config key '{spec.key('model')}': timm crop_mode {mode!r} is not supported; "
            "expected 'center' or 'squash'"
        )
    return Preprocess(
        size=size,
        scale_size=math.floor(size / crop_pct),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=str(cfg["interpolation"]),
        crop=mode,
    )
