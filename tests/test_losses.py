"""Losses against naive per-sample references, plus the properties the paper relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdspectra.models.students import build_student
from kdspectra.training.losses import cosine_distillation, info_nce


def naive_info_nce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """NT-Xent written one anchor at a time, in float64, straight from the definition."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        logits = {j: float(z[i] @ z[j]) / tau for j in range(n2) if j != i}
        denom = sum(math.exp(v) for v in logits.values())
        total += -math.log(math.exp(logits[pos]) / denom)
    return total / n2


def naive_cosine(s: torch.Tensor, t: torch.Tensor) -> float:
    vals = [
        1 - float(a @ b) / float(a.norm() * b.norm())
        for a, b in zip(s.double(), t.double(), strict=True)
    ]
    return sum(vals) / len(vals)


@pytest.mark.parametrize(("n", "d", "tau"), [(2, 3, 0.5), (5, 8, 0.1), (16, 32, 0.07)])
def test_info_nce_matches_naive_loop(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, d, generator=g) * 3, torch.randn(n, d, generator=g)
    assert float(info_nce(z1, z2, tau)) == pytest.approx(naive_info_nce(z1, z2, tau), rel=1e-5)


def test_info_nce_direct_cross_entropy_small_case() -> None:
    # N = 2 unit vectors: anchor 0 sees its positive (row 2) and two negatives.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    tau = 0.5
    # Rows of the 4×4 cosine matrix without the diagonal: z = [e1, e2, e1, -e2].
    # anchor 0: pos z2[0]=e1 (cos 1), negs e2 (0), -e2 (0)
    # anchor 1: pos -e2 (cos -1), negs e1 (0), e1 (0)
    # anchors 2, 3 mirror 0, 1.
    l0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    l1 = -math.log(math.exp(-2) / (math.exp(-2) + 2))
    assert float(info_nce(z1, z2, tau)) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_info_nce_matched_views_beat_shuffled() -> None:
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(64, 32, generator=g)
    z2 = z1 + 0.1 * torch.randn(64, 32, generator=g)
    shuffled = z2[torch.randperm(64, generator=g)]
    assert info_nce(z1, z2, 0.1) < info_nce(z1, shuffled, 0.1) - 1.0


def test_info_nce_identical_orthogonal_views_are_near_zero() -> None:
    z = torch.eye(8) * 5  # orthogonal rows: positives at cos 1, negatives at 0
    expected = math.log(1 + 14 * math.exp(-10))  # 2N - 2 = 14 negatives, 1/τ = 10
    assert float(info_nce(z, z.clone(), 0.1)) == pytest.approx(expected, abs=1e-6)
    assert expected < 1e-3


def test_info_nce_is_permutation_and_view_symmetric() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    perm = torch.randperm(10, generator=g)
    base = info_nce(z1, z2, 0.2)
    torch.testing.assert_close(info_nce(z1[perm], z2[perm], 0.2), base)
    torch.testing.assert_close(info_nce(z2, z1, 0.2), base)


def test_info_nce_logits_are_fp32_under_autocast() -> None:
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(32, 16, generator=g).bfloat16()
    z2 = torch.randn(32, 16, generator=g).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = info_nce(z1, z2, 0.1)
        cos = cosine_distillation(z1, z2)
    assert under.dtype == torch.float32 and cos.dtype == torch.float32
    # Equal to the computation on the same (bf16-rounded) values in plain fp32.
    assert float(under) == pytest.approx(float(info_nce(z1.float(), z2.float(), 0.1)), abs=1e-6)
    assert float(under) == pytest.approx(naive_info_nce(z1.float(), z2.float(), 0.1), rel=1e-5)


def test_gradients_are_finite_under_bf16() -> None:
    torch.manual_seed(0)
    model = build_student("cnn_s", 16, width_mult=0.25)
    x, t = torch.rand(8, 3, 32, 32), torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = model(x)
        s1, s2 = s.chunk(2)
        loss = cosine_distillation(s1, t) + info_nce(s1, s2, 0.1)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_info_nce_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(5, 3\)"):
        info_nce(torch.randn(4, 3), torch.randn(5, 3), 0.1)


def test_cosine_matches_naive_loop_and_bounds() -> None:
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(12, 7, generator=g), torch.randn(12, 7, generator=g)
    assert float(cosine_distillation(s, t)) == pytest.approx(naive_cosine(s, t), rel=1e-6)
    assert float(cosine_distillation(s, 3 * s)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_distillation(s, -s)) == pytest.approx(2.0, abs=1e-6)
    e = torch.eye(2)
    assert float(cosine_distillation(e[:1], e[1:])) == pytest.approx(1.0)


def test_cosine_gradient_matches_the_analytic_formula() -> None:
    """d/ds_i of mean_i(1 - cos(s_i, t_i)) = -(t_i/(|s_i||t_i|) - cos_i s_i/|s_i|²) / N,
    evaluated in float64 numpy: no torch function shared with the implementation."""
    g = torch.Generator().manual_seed(3)
    s = (torch.randn(5, 4, generator=g) * 2).requires_grad_(True)
    t = torch.randn(5, 4, generator=g)
    cosine_distillation(s, t).backward()
    sn, tn = s.detach().double().numpy(), t.double().numpy()
    s_norm = np.linalg.norm(sn, axis=1, keepdims=True)
    t_norm = np.linalg.norm(tn, axis=1, keepdims=True)
    cos = (sn * tn).sum(axis=1, keepdims=True) / (s_norm * t_norm)
    expected = -(tn / (s_norm * t_norm) - cos * sn / s_norm**2) / len(sn)
    np.testing.assert_allclose(s.grad.double().numpy(), expected, rtol=1e-5, atol=1e-7)


def test_cosine_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="cosine_distillation"):
        cosine_distillation(torch.randn(4, 8), torch.randn(4, 9))
