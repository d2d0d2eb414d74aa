"""The per-library teacher loaders: weights resolution, model building, preprocessing config.

One loader per entry of :data:`kdspectra.registry.TEACHER_LIBRARIES`, found through
:data:`LOADERS`; each turns a :class:`~kdspectra.models.teacher_spec.TeacherSpec` into
(model, :class:`~kdspectra.models.teacher_spec.Preprocess`, weights source).
:func:`kdspectra.models.teachers.build_teacher` wraps the result in a
:class:`~kdspectra.models.teachers.Teacher`. Everything that defines the preprocessing is
read from the library's own config for the model as built, never copied as constants, so a
different checkpoint brings its own preprocessing with it.

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
import math
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdspectra.config import HUB_PREFIXES
from kdspectra.errors import ArtifactError, ConfigError
from kdspectra.models.teacher_spec import Preprocess, TeacherSpec

RANDOM_INIT = "random-init"
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip.constants.HF_WEIGHTS_NAME

# A loader: spec → (the model mapping a normalised NCHW batch to N×D, its preprocessing,
# the weights source recorded in the teacher's meta).
Loader = Callable[[TeacherSpec], tuple[nn.Module, Preprocess, str]]


# --------------------------------------------------------------------------- shared helpers


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the CPU RNG for model init without disturbing the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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


def build_open_clip(spec: TeacherSpec) -> tuple[nn.Module, Preprocess, str]:
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


def build_timm(spec: TeacherSpec) -> tuple[nn.Module, Preprocess, str]:
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


# ----- trained here (teachers.<name>.pretrain)


def build_pretrained_here(spec: TeacherSpec, weights: Path) -> tuple[nn.Module, Preprocess, str]:
    """The image tower rule pretrain_teacher trained (:mod:`kdspectra.models.towers`).

    The weights file carries the tower's shape and input normalisation; a file trained for
    another shape than the spec's is refused, naming the keys that differ. The input is
    the prepared 32-px image as is (no resize), normalised as in training.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from kdspectra.models.towers import ImageTower, TowerArch, read_metadata

    weights = Path(weights)
    if not weights.is_file():
        raise ArtifactError(
            f"teacher {spec.name}: weights file '{weights}' does not exist; rule "
            f"pretrain_teacher writes it (config key '{spec.key('pretrain')}')"
        )
    arch = TowerArch.from_spec(spec.model, pretrain_size(spec), spec.pretrain or {})
    with safe_open(str(weights), framework="pt") as fh:
        stored = read_metadata(fh.metadata())
    if stored is None:
        raise ArtifactError(f"{weights}: not a pretrained-here teacher (no tower metadata)")
    _check_arch(spec, weights, arch, stored["arch"])
    with _seeded(spec.init_seed):
        tower = ImageTower(arch)
    tower.load_state_dict(load_file(str(weights)))
    prep = stored["preprocess"]
    preprocess = Preprocess(
        size=int(prep["size"]),
        scale_size=int(prep["size"]),
        mean=tuple(float(v) for v in prep["mean"]),
        std=tuple(float(v) for v in prep["std"]),
        interpolation="bicubic",  # never used: the input is already at the tower's size
    )
    return tower, preprocess, str(weights)


def pretrain_size(spec: TeacherSpec) -> int:
    """Input side of a teacher trained here: ``image_size``, else the prepared images' 32."""
    from kdspectra.data.datasets import SIDE

    return int(spec.image_size or SIDE)


def _check_arch(spec: TeacherSpec, weights: Path, arch: Any, stored: Mapping[str, Any]) -> None:
    from dataclasses import asdict

    ours = asdict(arch)
    differ = [f"{k}: file {stored.get(k)!r}, config {v!r}" for k, v in ours.items()
              if stored.get(k) != v]  # fmt: skip
    if differ:
        raise ArtifactError(
            f"{weights}: trained for another shape than config key '{spec.key('pretrain')}' "
            f"asks ({'; '.join(differ)}); rerun rule pretrain_teacher for {spec.name}"
        )


# --------------------------------------------------------------------------- dispatch

# Keyed by the names in kdspectra.registry.TEACHER_LIBRARIES (the schema's enum, so a
# validated spec always finds its loader; a test holds the keys equal).
LOADERS: dict[str, Loader] = {"open_clip": build_open_clip, "timm": build_timm}
