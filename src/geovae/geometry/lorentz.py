"""Hyperboloid (Lorentz) model helpers: exponential map at the origin and distances.

The hyperboloid of curvature -1 is ``{x in R^{d+1} : <x, x>_L = -1, x0 > 0}`` with the
Lorentz (Minkowski) inner product ``<x, y>_L = -x0 y0 + sum_i xi yi``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DEFAULT_MAX_TANGENT_NORM", "expmap0", "lorentz_inner", "lorentz_distance", "tangent_lorentz_distance"]

#: Largest tangent norm fed to cosh/sinh. cosh(15) ~ 1.6e6, so products of two
#: coordinates (~1e13) stay far below the float32 limit (~3e38); beyond this norm the
#: point is moved along the same direction only up to geodesic radius 15.
DEFAULT_MAX_TANGENT_NORM = 15.0


def expmap0(v: torch.Tensor, max_norm: float = DEFAULT_MAX_TANGENT_NORM, eps: float = 1e-7) -> torch.Tensor:
    """Map Euclidean tangent vectors at the hyperboloid origin onto the hyperboloid.

    ``x0 = cosh(||v||)``, ``x_rest = sinh(||v||) v / ||v||``; the zero vector maps to the
    origin ``(1, 0, ..., 0)``.

    Parameters
    ----------
    v
        Tensor of shape ``(..., d)`` (the spatial part of a tangent vector whose time
        coordinate is 0).
    max_norm
        The norm used inside cosh/sinh is clamped to this value (see
        :data:`DEFAULT_MAX_TANGENT_NORM`) so that the output stays finite; the direction
        is kept. Gradients w.r.t. the norm are zero beyond it.
    eps
        Lower clamp of the norm, so the zero vector has finite value and gradient
        (``sinh(eps) / eps ~ 1`` gives the correct limit).

    Returns
    -------
    torch.Tensor
        Points of shape ``(..., d + 1)`` on the hyperboloid.
    """
    _, norm, _, cosh, sinh, _ = _expmap0_parts(v, max_norm, eps)
    return torch.cat([cosh, sinh * v / norm], dim=-1)


def lorentz_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Lorentz inner product ``-x0 y0 + sum_i xi yi`` over the last dimension.

    Parameters
    ----------
    x, y
        Tensors of shape ``(..., d + 1)``.

    Returns
    -------
    torch.Tensor
        Shape ``(...)``.
    """
    return -x[..., 0] * y[..., 0] + (x[..., 1:] * y[..., 1:]).sum(dim=-1)


def lorentz_distance(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-5, stable: bool = True) -> torch.Tensor:
    """Geodesic distance on the hyperboloid, ``arccosh(clamp(-<x, y>_L, min=1 + eps))``.

    The clamp keeps arccosh (and its derivative ``1 / sqrt(u^2 - 1)``) finite when
    rounding puts ``-<x, y>_L`` at or below 1; the distance of a point to itself is
    therefore ``arccosh(1 + eps)`` (~0.0045 for ``eps = 1e-5``) rather than exactly 0.

    Parameters
    ----------
    x, y
        Points on the hyperboloid, shape ``(..., d + 1)``.
    eps
        Clamp margin above 1.
    stable
        For points on the hyperboloid ``-<x, y>_L - 1 = <x - y, x - y>_L / 2``; with
        ``stable=True`` (default) that right-hand side ``w`` is used and the distance is
        ``log1p(w + sqrt(w (w + 2)))`` with ``w >= eps``. This is the same quantity, but it
        avoids the float32 cancellation of ``-x0 y0 + ...`` (coordinates ~cosh of the
        norm), which otherwise gives nearby points a spurious distance of ~0.01-0.1.
        ``stable=False`` evaluates the literal formula.

    Returns
    -------
    torch.Tensor
        Distances of shape ``(...)``.
    """
    if not stable:
        return torch.arccosh(torch.clamp(-lorentz_inner(x, y), min=1.0 + eps))
    diff = x - y
    w = torch.clamp(0.5 * lorentz_inner(diff, diff), min=eps)
    return torch.log1p(w + torch.sqrt(w * (w + 2.0)))


def _expmap0_parts(v: torch.Tensor, max_norm: float, eps: float) -> tuple[torch.Tensor, ...]:
    """Pieces of :func:`expmap0`, each ``(..., 1)``: ``|v|^2``, ``norm``, ``r`` (the clamped norm),
    ``cosh r``, ``sinh r`` and ``f = sinh r / norm``; the point is ``(cosh r, sinh r v / norm)``."""
    sq = (v * v).sum(dim=-1, keepdim=True)
    # clamp the squared norm before sqrt: sqrt'(0) would be infinite
    norm = torch.sqrt(torch.clamp(sq, min=eps * eps))
    r = torch.clamp(norm, max=max_norm)
    cosh, sinh = torch.cosh(r), torch.sinh(r)
    return sq, norm, r, cosh, sinh, sinh / norm


def _expmap0_backward(v: torch.Tensor, parts: tuple[torch.Tensor, ...], grad_x0: torch.Tensor,
                      grad_rest: torch.Tensor, max_norm: float, eps: float) -> torch.Tensor:
    """Gradient w.r.t. ``v`` of :func:`expmap0` given the gradients of its output coordinates."""
    sq, norm, r, cosh, sinh, f = parts
    grad_f = (grad_rest * v).sum(dim=-1, keepdim=True)
    inside = (norm <= max_norm).to(v.dtype)  # clamp(norm, max): gradient to r only below the bound
    grad_norm = inside * (grad_x0 * sinh + grad_f * cosh / norm) - grad_f * sinh / norm**2
    grad_norm = grad_norm * (sq >= eps * eps).to(v.dtype) / norm  # d norm / d v = v / norm above the floor
    return f * grad_rest + grad_norm * v


class _TangentLorentzDistance(torch.autograd.Function):
    """``lorentz_distance(expmap0(a), expmap0(b))`` (stable form) with a closed-form backward."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, max_norm: float, eps_norm: float,  # type: ignore[override]
                eps_dist: float) -> torch.Tensor:
        pa, pb = _expmap0_parts(a, max_norm, eps_norm), _expmap0_parts(b, max_norm, eps_norm)
        diff0 = pa[3] - pb[3]  # (n, 1)
        diff_rest = pa[4] * a / pa[1] - pb[4] * b / pb[1]  # rounded as in expmap0
        w_raw = 0.5 * ((diff_rest * diff_rest).sum(dim=-1, keepdim=True) - diff0 * diff0)
        w = torch.clamp(w_raw, min=eps_dist)
        root = torch.sqrt(w * (w + 2.0))
        ctx.save_for_backward(a, b, *pa, *pb, diff0, diff_rest, w_raw, root)
        ctx.consts = (max_norm, eps_norm, eps_dist)
        return torch.log1p(w + root).squeeze(-1)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        a, b, *saved = ctx.saved_tensors
        pa, pb, (diff0, diff_rest, w_raw, root) = tuple(saved[:6]), tuple(saved[6:12]), saved[12:]
        max_norm, eps_norm, eps_dist = ctx.consts
        # d dist / d w = 1 / sqrt(w (w + 2)) where the clamp on w is inactive
        grad_w = grad_out.unsqueeze(-1) * (w_raw >= eps_dist).to(a.dtype) / root
        grad_x0, grad_rest = -grad_w * diff0, grad_w * diff_rest  # d w / d (x - y) in the Lorentz metric
        grad_a = _expmap0_backward(a, pa, grad_x0, grad_rest, max_norm, eps_norm) if ctx.needs_input_grad[0] else None
        grad_b = _expmap0_backward(b, pb, -grad_x0, -grad_rest, max_norm, eps_norm) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None, None


def tangent_lorentz_distance(a: torch.Tensor, b: torch.Tensor, max_norm: float = DEFAULT_MAX_TANGENT_NORM,
                             eps_norm: float = 1e-7, eps_dist: float = 1e-5) -> torch.Tensor:
    """Geodesic distance between ``expmap0(a)`` and ``expmap0(b)``, as one autograd node.

    Equals ``lorentz_distance(expmap0(a, max_norm, eps_norm), expmap0(b, max_norm, eps_norm),
    eps=eps_dist)`` (the stable form) with the same clamps, and its gradient, written in closed
    form: LiVAE's geometric loss evaluates it every step on small ``(n, d)`` tensors, where the
    ~60 autograd nodes of the composed version cost more than the arithmetic.

    Parameters
    ----------
    a, b
        Tangent vectors at the origin, shape ``(n, d)``.
    max_norm, eps_norm
        As ``max_norm`` / ``eps`` of :func:`expmap0`.
    eps_dist
        As ``eps`` of :func:`lorentz_distance`.

    Returns
    -------
    torch.Tensor
        Distances of shape ``(n,)``.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must be (n, d) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _TangentLorentzDistance.apply(a, b, float(max_norm), float(eps_norm), float(eps_dist))
