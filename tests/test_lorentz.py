"""Hyperboloid exponential map and Lorentz distance."""

from __future__ import annotations

import math

import pytest
import torch

from geovae.geometry.lorentz import (DEFAULT_MAX_TANGENT_NORM, expmap0, lorentz_distance, lorentz_inner,
                                   tangent_lorentz_distance)


def _hyperboloid_residual(x: torch.Tensor) -> torch.Tensor:
    return lorentz_inner(x, x) + 1.0


def test_expmap_lands_on_hyperboloid():
    v = torch.randn(256, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2.0
    x = expmap0(v)
    assert x.shape == (256, 11)
    assert (x[:, 0] >= 1.0).all()
    assert _hyperboloid_residual(x).abs().max() < 1e-8


def test_expmap_zero_vector_is_origin_with_identity_jacobian():
    v = torch.zeros(3, 4, requires_grad=True)
    x = expmap0(v)
    assert torch.equal(x, torch.cat([torch.ones(3, 1), torch.zeros(3, 4)], dim=1))
    x[:, 1:].sum().backward()  # d x_rest / d v = identity at the origin
    assert torch.isfinite(v.grad).all()
    torch.testing.assert_close(v.grad, torch.ones(3, 4))


def test_distance_to_origin_equals_tangent_norm():
    v = torch.tensor([[3.0, 4.0], [0.3, -0.4], [0.0, 7.0]], dtype=torch.float64)
    origin = expmap0(torch.zeros(1, 2, dtype=torch.float64))
    d = lorentz_distance(expmap0(v), origin)
    torch.testing.assert_close(d, torch.tensor([5.0, 0.5, 7.0], dtype=torch.float64))


def test_distance_along_one_geodesic_adds_up():
    a = expmap0(torch.tensor([[1.5, 0.0]], dtype=torch.float64))
    b = expmap0(torch.tensor([[-2.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(lorentz_distance(a, b), torch.tensor([3.5], dtype=torch.float64))


def test_self_distance_is_clamped_near_zero_and_symmetric():
    g = torch.Generator().manual_seed(1)
    x = expmap0(torch.randn(64, 10, generator=g))
    y = expmap0(torch.randn(64, 10, generator=g))
    self_d = lorentz_distance(x, x)
    assert (self_d <= math.acosh(1 + 1e-5) + 1e-3).all()  # ~0.0045, the clamp floor
    torch.testing.assert_close(lorentz_distance(x, y), lorentz_distance(y, x))
    assert (lorentz_distance(x, y) > 0.1).all()


def test_huge_vectors_are_clamped_and_gradients_finite():
    v = torch.tensor([[1e6, -1e6, 0.0], [1e30, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    w = torch.tensor([[0.0, 0.0, 1e8], [0.5, 0.5, 0.5], [1e-20, 0.0, 0.0]], requires_grad=True)
    x, y = expmap0(v), expmap0(w)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()
    assert x[0, 0] <= math.cosh(DEFAULT_MAX_TANGENT_NORM) * (1 + 1e-5)
    loss = (lorentz_distance(x, y) ** 2).sum()
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("max_norm", [1.0, 5.0])
def test_clamped_point_keeps_direction(max_norm):
    v = torch.tensor([[30.0, 40.0]], dtype=torch.float64)
    x = expmap0(v, max_norm=max_norm)
    origin = expmap0(torch.zeros(1, 2, dtype=torch.float64))
    torch.testing.assert_close(lorentz_distance(x, origin), torch.tensor([max_norm], dtype=torch.float64))
    torch.testing.assert_close(x[0, 1:] / x[0, 1:].norm(), torch.tensor([0.6, 0.8], dtype=torch.float64))


def test_stable_distance_matches_literal_formula_in_float64():
    g = torch.Generator().manual_seed(2)
    x = expmap0(torch.randn(128, 10, dtype=torch.float64, generator=g) * 2)
    y = expmap0(torch.randn(128, 10, dtype=torch.float64, generator=g) * 2)
    torch.testing.assert_close(lorentz_distance(x, y), lorentz_distance(x, y, stable=False))


def test_stable_distance_resolves_nearby_points_in_float32():
    # two points 1e-3 apart at geodesic radius ~6: the literal float32 formula is swamped by
    # cancellation (coordinates ~200), the stable one recovers the float64 answer
    g = torch.Generator().manual_seed(3)
    v = torch.randn(256, 10, dtype=torch.float64, generator=g)
    v = v / v.norm(dim=1, keepdim=True) * 6.0
    u = torch.randn(256, 10, dtype=torch.float64, generator=g)
    w = v + 1e-3 * u / u.norm(dim=1, keepdim=True)
    ref = lorentz_distance(expmap0(v), expmap0(w), eps=1e-12)
    ours = lorentz_distance(expmap0(v.float()), expmap0(w.float()), eps=1e-12)
    literal = lorentz_distance(expmap0(v.float()), expmap0(w.float()), eps=1e-12, stable=False)
    assert (ours.double() - ref).abs().max() < 5e-4  # ~1e-4 observed
    assert (literal.double() - ref).abs().max() > 3e-2  # ~0.12 observed, distances ~0.03


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0, 40.0])
def test_tangent_distance_matches_composed_functions_in_float64(scale):
    gen = torch.Generator().manual_seed(int(scale * 10))
    a = (torch.randn(32, 6, dtype=torch.float64, generator=gen) * scale).requires_grad_()
    b = (torch.randn(32, 6, dtype=torch.float64, generator=gen) * scale).requires_grad_()
    with torch.no_grad():  # the clamps: a zero vector, identical points, nearly identical points
        a[0] = 0.0
        b[1] = a[1]
        b[2] = a[2] + 1e-6
    weights = torch.randn(32, dtype=torch.float64, generator=gen)
    ref = lorentz_distance(expmap0(a), expmap0(b))
    got = tangent_lorentz_distance(a, b)
    # same formula, other order of operations: rounding grows with the coordinates (~cosh(15) ~ 1.6e6)
    torch.testing.assert_close(got, ref, rtol=1e-8, atol=1e-12)
    for g_got, g_ref in zip(torch.autograd.grad((got * weights).sum(), (a, b)),
                            torch.autograd.grad((ref * weights).sum(), (a, b))):
        torch.testing.assert_close(g_got, g_ref, rtol=1e-7, atol=1e-9)


def test_tangent_distance_gradcheck_and_shape_errors():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: tangent_lorentz_distance(x, y, max_norm=1.5), (a, b))
    with pytest.raises(ValueError, match="one shape"):
        tangent_lorentz_distance(a, b[:, :2])
