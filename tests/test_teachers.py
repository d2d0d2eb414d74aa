"""Teachers: equivalence with each library's own PIL pipeline, and weight-source handling.

All models are random-init and small-input (CLIP ViT-B/32 at 64 px, DINOv2 ViT-B/14 at
56 px, timm's 0.3M-parameter ``test_vit``), each built once per module. No test touches the
network: a guard makes any socket connection fail, and hub downloads are monkeypatched.

The equivalence metric is ‖ours − theirs‖ / ‖theirs − mean(theirs)‖: a random-init ViT maps
every input near one direction, so cosine similarity would pass even a wrong mean/std.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from timm.data import create_transform, resolve_data_config

from kdspectra.errors import ArtifactError, ConfigError, DataError, KdspectraError
from kdspectra.models.teachers import Teacher, build_teacher, parse_spec, preprocess_batch

CLIP_SIZE, DINO_SIZE, TINY_SIZE = 64, 56, 32
TOLERANCE = 0.04
CLIP_SPEC = {"name": "clip", "library": "open_clip", "model": "ViT-B-32-quickgelu",
             "pretrained": None, "image_size": CLIP_SIZE}  # fmt: skip
DINO_SPEC = {"name": "dino", "library": "timm", "model": "vit_base_patch14_dinov2.lvd142m",
             "pretrained": False, "image_size": DINO_SIZE}  # fmt: skip
TINY_SPEC = {"name": "tiny", "library": "timm", "model": "test_vit.r160_in1k",
             "pretrained": False, "image_size": TINY_SIZE}  # fmt: skip


class NetworkDisabled(RuntimeError):
    """Raised by the socket guard; not an OSError, so HTTP clients do not retry it."""


@pytest.fixture(autouse=True, scope="module")
def no_network() -> Iterator[None]:
    """Module-wide, so it is in place before the module-scoped models are built."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise NetworkDisabled("tests must not touch the network")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """Natural-like 32×32 uint8 RGB: 4×4 random colour fields upsampled smoothly, plus a blob."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 4, 4)).astype(np.float32))
    x = F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)
    yy, xx = np.mgrid[:32, :32]
    for i in range(n):
        cy, cx, r = rng.uniform(6, 26), rng.uniform(6, 26), rng.uniform(3, 8)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        x[i] += torch.from_numpy(rng.uniform(-90, 90, size=(3, 1, 1)) * blob).float()
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs - theirs.mean(0)))


def pil_forward(transform: Callable, forward: Callable, images: np.ndarray) -> np.ndarray:
    """The library's own path: PIL image → its eval transform → batched forward."""
    x = torch.stack([transform(Image.fromarray(im)) for im in images])
    with torch.inference_mode():
        return forward(x).float().numpy()


def seeded(fn: Callable[[], Any], seed: int = 0) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return smooth_images(16)


@pytest.fixture(scope="module")
def clip() -> Teacher:
    return build_teacher(CLIP_SPEC)


@pytest.fixture(scope="module")
def dino() -> Teacher:
    return build_teacher(DINO_SPEC)


@pytest.fixture(scope="module")
def tiny() -> Teacher:
    return build_teacher(TINY_SPEC)


@pytest.fixture(scope="module")
def clip_reference(images: np.ndarray) -> np.ndarray:
    """open_clip's documented path: create_model_and_transforms' preprocess + encode_image."""
    model, _, preprocess = seeded(
        lambda: open_clip.create_model_and_transforms(
            CLIP_SPEC["model"], pretrained=None, force_image_size=CLIP_SIZE
        )
    )
    return pil_forward(preprocess, model.eval().encode_image, images)


def timm_reference(spec: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """timm's path: create_transform(**resolve_data_config(model=...)) + forward.

    The one alignment: resolve_data_config reports the checkpoint's input size (518 px for
    DINOv2, 160 for test_vit) even for a model built smaller, so input_size is set to the
    size the model was built at. crop_pct stays timm's own (test_vit: 0.95, i.e. resize to
    floor(size / 0.95) then centre-crop), which our on-device path reproduces.
    """
    size = spec["image_size"]
    model = seeded(
        lambda: timm.create_model(spec["model"], pretrained=False, img_size=size, num_classes=0)
    )
    cfg = resolve_data_config(model=model)
    cfg["input_size"] = (3, size, size)
    return pil_forward(create_transform(**cfg), model.eval(), images)


@pytest.fixture(scope="module")
def dino_reference(images: np.ndarray) -> np.ndarray:
    return timm_reference(DINO_SPEC, images)


@pytest.mark.parametrize("which", ["clip", "dino", "tiny"])
def test_embed_matches_library_pil_pipeline(
    which: str, request: pytest.FixtureRequest, images: np.ndarray
) -> None:
    teacher = request.getfixturevalue(which)
    if which == "tiny":
        theirs = timm_reference(TINY_SPEC, images)
    else:
        theirs = request.getfixturevalue(f"{which}_reference")
    assert relative_error(teacher.embed(images, batch_size=10), theirs) <= TOLERANCE


def test_wrong_normalisation_fails_the_check(
    clip: Teacher,
    dino: Teacher,
    clip_reference: np.ndarray,
    dino_reference: np.ndarray,
    images: np.ndarray,
) -> None:
    """The check has teeth: DINOv2 with CLIP's mean/std, CLIP with 0.5/0.5, or a nearest resize.

    (CLIP with ImageNet's mean/std scores 0.039 at random init — the embedding check alone
    is borderline there; the pixel-level test below catches it by orders of magnitude.)
    """
    wrong_dino = copy.copy(dino)
    wrong_dino.preprocess = dataclasses.replace(
        dino.preprocess, mean=clip.preprocess.mean, std=clip.preprocess.std
    )
    assert relative_error(wrong_dino.embed(images), dino_reference) > TOLERANCE
    for change in ({"mean": (0.5,) * 3, "std": (0.5,) * 3}, {"interpolation": "nearest"}):
        wrong_clip = copy.copy(clip)
        wrong_clip.preprocess = dataclasses.replace(clip.preprocess, **change)
        assert relative_error(wrong_clip.embed(images), clip_reference) > TOLERANCE


def library_transform(teacher: Teacher) -> Callable:
    """The library's own eval transform for the teacher as built (see ``timm_reference``)."""
    if teacher.spec.library == "open_clip":
        cfg = PreprocessCfg(**teacher.model.preprocess_cfg)
        return image_transform_v2(cfg, is_train=False)
    cfg = resolve_data_config(model=teacher.model)
    cfg["input_size"] = (3, teacher.image_size, teacher.image_size)
    return create_transform(**cfg)


def pixel_error(ours: torch.Tensor, theirs: torch.Tensor, teacher: Teacher) -> torch.Tensor:
    """Absolute differences of two normalised batches, in 0..255 pixel units."""
    std = torch.tensor(teacher.preprocess.std).view(1, 3, 1, 1)
    return ((ours - theirs) * std).abs() * 255


@pytest.mark.parametrize("which", ["clip", "dino", "tiny"])
def test_device_preprocessing_matches_pil_pixelwise(
    which: str, request: pytest.FixtureRequest, images: np.ndarray
) -> None:
    """Resize (PIL's bicubic kernel), crop and normalise agree up to PIL's uint8 rounding."""
    teacher = request.getfixturevalue(which)
    transform = library_transform(teacher)
    theirs = torch.stack([transform(Image.fromarray(im)) for im in images])
    batch = torch.from_numpy(images)
    ours = preprocess_batch(batch, teacher.preprocess)
    assert ours.shape == theirs.shape
    # PIL resizes in two separable passes, rounding to uint8 after each: up to ~1.6 levels
    # off, ~0.3 on average. A wrong kernel (bilinear, or torch's non-antialiased bicubic)
    # is ~3.5 levels off at worst and ~0.5 on average on these images.
    error = pixel_error(ours, theirs, teacher)
    assert error.max() <= 2.0 and error.mean() <= 0.35
    other = {"mean": (0.4, 0.5, 0.6), "std": (0.25,) * 3}
    for change in ({"interpolation": "bilinear"}, other):
        wrong = preprocess_batch(batch, dataclasses.replace(teacher.preprocess, **change))
        assert pixel_error(wrong, theirs, teacher).max() > 2.5


def test_preprocessing_comes_from_the_library(clip: Teacher, dino: Teacher, tiny: Teacher) -> None:
    assert clip.preprocess.mean == tuple(open_clip.OPENAI_DATASET_MEAN)
    assert dino.preprocess.std == tuple(timm.data.IMAGENET_DEFAULT_STD)
    assert {clip.preprocess.interpolation, dino.preprocess.interpolation} == {"bicubic"}
    # timm's config still says 518 px; the model was built (position embeddings resampled) at 56.
    assert timm.data.resolve_model_data_config(dino.model)["input_size"] == (3, 518, 518)
    assert dino.image_size == DINO_SIZE and clip.image_size == CLIP_SIZE
    assert (tiny.preprocess.size, tiny.preprocess.scale_size) == (32, 33)  # crop_pct 0.95


def test_dinov2_feature_is_cls_token_after_final_norm(dino: Teacher) -> None:
    model = dino.model
    assert model.global_pool == "token" and not isinstance(model.norm, torch.nn.Identity)
    x = torch.randn(3, 3, DINO_SIZE, DINO_SIZE)
    with torch.inference_mode():
        tokens = model.norm(model.blocks(model._pos_embed(model.patch_embed(x))))
        assert torch.allclose(model(x), tokens[:, 0], atol=1e-5)


def test_clip_embedding_is_projected_and_unnormalised(clip: Teacher, images: np.ndarray) -> None:
    emb = clip.embed(images[:4])
    assert emb.shape == (4, 512) == (4, clip.dim)
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0)


def test_shape_dtype_and_row_order(clip: Teacher, images: np.ndarray) -> None:
    images = images[:8]
    emb = clip.embed(images, batch_size=3)
    assert emb.dtype == np.float32 and emb.shape == (len(images), clip.dim)
    perm = np.random.default_rng(1).permutation(len(images))
    np.testing.assert_allclose(clip.embed(images[perm], batch_size=3), emb[perm], atol=1e-4)


def test_uint8_and_float_inputs_agree(tiny: Teacher, images: np.ndarray) -> None:
    as_float = images.astype(np.float32) / 255.0
    np.testing.assert_allclose(tiny.embed(as_float), tiny.embed(images), atol=1e-5)
    as_double = images.astype(np.float64) / 255.0  # any float dtype, computed in float32
    np.testing.assert_allclose(tiny.embed(as_double), tiny.embed(images), atol=1e-5)


def test_batch_size_invariance(tiny: Teacher, images: np.ndarray) -> None:
    full = tiny.embed(images, batch_size=len(images))
    for bs in (1, 5):
        np.testing.assert_allclose(tiny.embed(images, batch_size=bs), full, atol=1e-5)


def test_empty_input_and_throughput(tiny: Teacher, images: np.ndarray) -> None:
    assert tiny.embed(images[:0]).shape == (0, tiny.dim)
    emb = tiny.embed(images, batch_size=8)  # what the extract_teacher stage calls
    assert emb.shape == (len(images), tiny.dim) and tiny.last_images_per_s > 0


def test_batch_size_below_one_names_the_setting(tiny: Teacher, images: np.ndarray) -> None:
    from kdspectra.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size"):
        tiny.embed(images, batch_size=0)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 32, 32), np.uint8), np.zeros((2, 3, 32, 32), np.uint8),
     np.full((2, 8, 8, 3), 2.0, np.float32), np.zeros((2, 8, 8, 3), np.int64)],
)  # fmt: skip
def test_bad_images_are_named(tiny: Teacher, bad: np.ndarray) -> None:
    with pytest.raises(DataError, match="teacher input"):
        tiny.embed(bad)


def test_describe(clip: Teacher, dino: Teacher) -> None:
    d = clip.describe()
    assert {k: d[k] for k in ("library", "model", "weights_source", "image_size", "dim")} == {
        "library": "open_clip", "model": "ViT-B-32-quickgelu", "weights_source": "random-init",
        "image_size": CLIP_SIZE, "dim": 512,
    }  # fmt: skip
    assert 85e6 < d["params"] < 90e6  # the visual tower only (text tower dropped)
    assert dino.describe()["dim"] == 768 and 85e6 < dino.describe()["params"] < 87e6


def test_random_init_is_seeded(tiny: Teacher, images: np.ndarray) -> None:
    again = build_teacher(TINY_SPEC)
    other = build_teacher({**TINY_SPEC, "init_seed": 1})
    np.testing.assert_array_equal(again.embed(images), tiny.embed(images))
    assert relative_error(other.embed(images), tiny.embed(images)) > 0.5


# --------------------------------------------------------------------------- config errors


def test_openai_weights_need_quickgelu_model() -> None:
    spec = {**CLIP_SPEC, "model": "ViT-B-32", "pretrained": "openai"}
    with pytest.raises(ConfigError, match=r"teachers\.clip\.model.*ViT-B-32-quickgelu"):
        build_teacher(spec)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"library": "keras"}, "library"), ({"model": "ViT-Q-99"}, "model"),
     ({"pretrained": True}, "pretrained"), ({"pretrained": "no_such_tag"}, "pretrained"),
     ({"image_size": 0}, "image_size")],
)  # fmt: skip
def test_open_clip_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"teachers\.clip\.{key}"):
        build_teacher({**CLIP_SPEC, **change})


@pytest.mark.parametrize(
    ("change", "key"),
    [({"model": "no_such_net"}, "model"), ({"model": "test_vit.no_such_tag", "pretrained": True},
     "model"), ({"pretrained": "lvd142m"}, "pretrained"), ({"image_size": 40}, "image_size"),
     ({"model": "test_resnet.r160_in1k", "image_size": 64}, "image_size")],
)  # fmt: skip
def test_timm_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"teachers\.tiny\.{key}"):
        build_teacher({**TINY_SPEC, **change})


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [({"image_size": 13}, "image_size", ">= 14"), ({"library": "keras"}, "library", "timm"),
     ({"init_seed": True}, "init_seed", "integer"), ({"colour": 1}, "clip", "colour")],
)  # fmt: skip
def test_parse_spec_applies_the_config_schema(
    change: dict[str, Any], key: str, expected: str
) -> None:
    # One validator: the schema's bounds (image_size >= 14), not a second set of numbers.
    with pytest.raises(ConfigError, match=rf"'teachers\.clip(\.{key})?'.*{re.escape(expected)}"):
        parse_spec({**CLIP_SPEC, **change})


def test_parse_spec_builds_the_typed_entry(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    spec = parse_spec({**TINY_SPEC, "pretrained": str(weights), "cache_dir": "~/hub"})
    assert (spec.name, spec.library, spec.image_size, spec.init_seed) == ("tiny", "timm", 32, 0)
    assert spec.weights_file == weights.resolve() and not spec.cache_dir.startswith("~")
    assert parse_spec({**TINY_SPEC, "pretrained": "hf-hub:timm/x"}).weights_file is None


def test_every_registered_library_has_one_loader() -> None:
    # build_teacher dispatches on the schema-validated library name; a name the registry
    # (and so the schema) accepts without a loader would fail only at build time.
    from kdspectra import registry
    from kdspectra.models.teacher_libraries import LOADERS

    assert sorted(LOADERS) == sorted(registry.TEACHER_LIBRARIES)


@pytest.mark.parametrize("spec", [CLIP_SPEC, TINY_SPEC], ids=["open_clip", "timm"])
def test_missing_local_weights_file_is_named(spec: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "model.safetensors"
    with pytest.raises(ArtifactError, match=str(missing)):
        build_teacher({**spec, "pretrained": str(missing)})


# --------------------------------------------------------------------------- weight sources


def offline(*args: Any, **kwargs: Any) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    raise LocalEntryNotFoundError("cannot reach the Hub and the file is not in the local cache")


def test_open_clip_tag_unavailable_offline_says_what_to_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", offline)
    monkeypatch.setattr("urllib.request.urlopen", offline)
    spec = {**CLIP_SPEC, "pretrained": "openai", "cache_dir": str(tmp_path)}
    with pytest.raises(KdspectraError) as info:
        build_teacher(spec)
    msg = str(info.value)
    for needle in ("teachers.clip.pretrained", "timm/vit_base_patch32_clip_224.openai",
                   "hf download", str(tmp_path), "open_clip_pytorch_model.bin"):  # fmt: skip
        assert needle in msg


def test_timm_hub_unavailable_offline_says_what_to_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", offline)
    with pytest.raises(KdspectraError, match=r"hf download timm/test_vit\.r160_in1k model\.safe"):
        build_teacher({**TINY_SPEC, "pretrained": True})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A test_vit checkpoint as timm ships it (1000-class head, 160 px), and its model at 32 px."""
    path = tmp_path_factory.mktemp("timm") / "test_vit.safetensors"
    full = seeded(lambda: timm.create_model("test_vit"), seed=3)
    safetensors.torch.save_file(full.state_dict(), str(path))
    overlay = {"file": str(path)}
    reference = timm.create_model(
        "test_vit", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0, img_size=32
    )
    return path, reference.eval()


def test_timm_local_file_and_hub_forms(
    tiny_checkpoint: tuple[Path, torch.nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, reference = tiny_checkpoint
    from_file = build_teacher({**TINY_SPEC, "pretrained": str(path)})
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", lambda *a, **k: str(path))
    from_hub = build_teacher({**TINY_SPEC, "pretrained": True})
    assert from_file.weights_source == str(path)
    assert from_hub.weights_source == "hf-hub:timm/test_vit.r160_in1k"
    expected = reference.state_dict()
    for teacher in (from_file, from_hub):
        for name, value in teacher.model.state_dict().items():
            torch.testing.assert_close(value, expected[name])


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A full open_clip ViT-S-32 checkpoint (both towers), as open_clip saves one."""
    path = tmp_path_factory.mktemp("open_clip") / "vit_s_32.pt"
    model = seeded(lambda: open_clip.create_model("ViT-S-32"), seed=7)
    torch.save(model.state_dict(), path)
    return path, {k: v.clone() for k, v in model.visual.state_dict().items()}


def test_open_clip_local_file_and_tag_forms(
    clip_checkpoint: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, visual = clip_checkpoint
    spec = {**CLIP_SPEC, "model": "ViT-S-32"}
    from_file = build_teacher({**spec, "pretrained": str(path)})
    # A tag is registry data: register one whose source is our file (no download happens),
    # with its own preprocessing, which must reach the teacher.
    tag = {"file": str(path), "mean": (0.5,) * 3, "std": (0.25,) * 3,
           "interpolation": "bilinear", "resize_mode": "squash"}  # fmt: skip
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "ViT-S-32", {"kdtest": tag})
    from_tag = build_teacher({**spec, "pretrained": "kdtest"})
    assert (from_file.weights_source, from_tag.weights_source) == (str(path), "kdtest")
    assert (from_tag.preprocess.mean, from_tag.preprocess.std) == ((0.5,) * 3, (0.25,) * 3)
    assert (from_tag.preprocess.interpolation, from_tag.preprocess.crop) == ("bilinear", "squash")
    for teacher in (from_file, from_tag):
        assert teacher.image_size == CLIP_SIZE
        for name, value in teacher.model.state_dict().items():
            if name != "positional_embedding":  # resampled from 224 px to 64 px on load
                torch.testing.assert_close(value, visual[name])
