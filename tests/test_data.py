"""The device-resident loader and batched augmentation (run on CPU; same code on CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdspectra.data.views import DeviceLoader, augment
from kdspectra.errors import ConfigError, DataError

CPU = torch.device("cpu")


def images(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_loader_layout_and_batch_content() -> None:
    x = images()
    loader = DeviceLoader(x, batch_size=16, device=CPU, seed=0)
    assert len(loader) == 3
    assert loader.images.shape == (50, 3, 32, 32) and loader.images.dtype == torch.uint8
    idx, batch = next(iter(loader.batches(0)))
    assert idx.dtype == torch.int64 and batch.shape == (16, 3, 32, 32)
    expected = torch.from_numpy(x[idx.numpy()]).permute(0, 3, 1, 2)
    assert torch.equal(batch, expected)


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    x = images()

    def order(seed: int, epoch: int) -> list[int]:
        loader = DeviceLoader(x, batch_size=10, device=CPU, seed=seed)
        return torch.cat([i for i, _ in loader.batches(epoch)]).tolist()

    torch.manual_seed(123)  # the global RNG must not matter
    first = order(0, 3)
    torch.manual_seed(456)
    assert order(0, 3) == first
    assert order(0, 4) != first
    assert order(1, 3) != first


def test_every_index_once_per_epoch_without_drop_last() -> None:
    loader = DeviceLoader(images(), batch_size=16, device=CPU, seed=7, drop_last=False)
    assert len(loader) == 4
    sizes, seen = [], []
    for idx, batch in loader.batches(2):
        sizes.append(len(idx))
        assert len(batch) == len(idx)
        seen.extend(idx.tolist())
    assert sizes == [16, 16, 16, 2]
    assert sorted(seen) == list(range(50))


def test_no_shuffle_keeps_order_and_drop_last_drops_the_tail() -> None:
    loader = DeviceLoader(images(), batch_size=16, device=CPU, seed=0, shuffle=False)
    seen = torch.cat([i for i, _ in loader.batches(0)]).tolist()
    assert seen == list(range(48))


def test_loader_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="uint8"):
        DeviceLoader(images().astype(np.float32), batch_size=4, device=CPU, seed=0)
    with pytest.raises(DataError, match="N×H×W×3"):
        DeviceLoader(images().transpose(0, 3, 1, 2).copy(), batch_size=4, device=CPU, seed=0)
    with pytest.raises(ConfigError, match="batch_size"):
        DeviceLoader(images(10), batch_size=16, device=CPU, seed=0)


def test_augment_shape_dtype_range_and_determinism() -> None:
    x = torch.from_numpy(images(64)).permute(0, 3, 1, 2).contiguous()
    for colour in (False, True):
        a = augment(x, gen(1), colour=colour)
        assert a.shape == (64, 3, 32, 32) and a.dtype == torch.float32
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert torch.equal(a, augment(x, gen(1), colour=colour))
    g = gen(2)
    assert not torch.equal(augment(x, g), augment(x, g))  # two views differ


def test_no_augmentation_is_identity() -> None:
    x = torch.from_numpy(images(8)).permute(0, 3, 1, 2).contiguous()
    out = augment(x, gen(0), crop_padding=0, flip=False)
    assert torch.equal(out, x.float() / 255)


def test_flip_mirrors_some_samples_and_keeps_others() -> None:
    x = torch.from_numpy(images(64)).permute(0, 3, 1, 2).contiguous()
    out = augment(x, gen(0), crop_padding=0, flip=True)
    ref = x.float() / 255
    flipped = (out == ref.flip(3)).flatten(1).all(1)
    same = (out == ref).flatten(1).all(1)
    assert (flipped | same).all()
    assert 10 < int(flipped.sum()) < 54


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_crop_translates_content_within_padding(mode: str) -> None:
    x = torch.from_numpy(images(64)).permute(0, 3, 1, 2).contiguous()
    out = (augment(x, gen(3), crop_padding=4, flip=False, padding_mode=mode) * 255).round()
    shifted = 0
    for i in range(64):
        matches = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(
                out[i, :, 4:28, 4:28], x[i, :, 4 + dy : 28 + dy, 4 + dx : 28 + dx].float()
            )
        ]
        assert len(matches) == 1, i  # the interior is the source, translated by <= 4 px
        shifted += matches[0] != (0, 0)
    assert shifted > 48
    if mode == "zeros":
        border = torch.cat([out[:, :, :4].flatten(1), out[:, :, -4:].flatten(1)], 1)
        assert (border == 0).any()


def test_reflect_padding_mirrors_the_edge() -> None:
    x = torch.arange(32, dtype=torch.uint8).repeat(1, 3, 32, 1)  # pixel value = column
    for seed in range(20):
        cols = (augment(x, gen(seed), crop_padding=4, flip=False)[0, 0, 0] * 255).round()
        diffs = cols.diff().abs()
        assert set(diffs.tolist()) <= {1.0}, cols  # reflection never repeats the edge pixel


def test_colour_jitter_changes_colour_only_when_enabled() -> None:
    x = torch.from_numpy(images(64)).permute(0, 3, 1, 2).contiguous()
    plain = augment(x, gen(5), crop_padding=0, flip=False, colour=False)
    assert torch.equal(plain, x.float() / 255)
    coloured = augment(x, gen(5), crop_padding=0, flip=False, colour=True, grayscale_p=0.0)
    per_sample = (coloured - plain).abs().flatten(1).mean(1)
    assert (per_sample > 1e-3).float().mean() > 0.9
    # Jitter strength 0 and no grayscale leave pixels untouched.
    none = augment(x, gen(5), crop_padding=0, flip=False, colour=True, jitter=0.0, grayscale_p=0)
    torch.testing.assert_close(none, plain, atol=1e-6, rtol=0)


def test_random_grayscale_rate() -> None:
    x = torch.from_numpy(images(400)).permute(0, 3, 1, 2).contiguous()
    out = augment(x, gen(6), crop_padding=0, flip=False, colour=True, jitter=0.0, grayscale_p=0.5)
    grey = ((out[:, 0] == out[:, 1]) & (out[:, 1] == out[:, 2])).flatten(1).all(1)
    assert 150 < int(grey.sum()) < 250
    all_grey = augment(x, gen(6), crop_padding=0, flip=False, colour=True, grayscale_p=1.0)
    assert torch.equal(all_grey[:, 0], all_grey[:, 2])


def test_augment_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(DataError, match="uint8"):
        augment(x.float(), gen())
    with pytest.raises(ConfigError, match="crop_padding"):
        augment(x, gen(), crop_padding=32)
    with pytest.raises(ConfigError, match="padding_mode"):
        augment(x, gen(), padding_mode="edge")
    with pytest.raises(ConfigError, match="grayscale_p"):
        augment(x, gen(), grayscale_p=1.5)


def test_loader_generator_is_deterministic_per_epoch() -> None:
    loader = DeviceLoader(images(), batch_size=10, device=CPU, seed=0)
    draw = [loader.generator(e).initial_seed() for e in (0, 0, 1)]
    assert draw[0] == draw[1] != draw[2]
    perm_seed = torch.Generator().manual_seed(0 * 1_000_003 + 0).initial_seed()
    assert draw[0] != perm_seed  # augmentation draws do not reuse the order's stream
