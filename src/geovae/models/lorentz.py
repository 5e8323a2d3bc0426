"""Hyperboloid (Lorentz) model helpers: exponential map at the origin and distances.

The hyperboloid of curvature -1 is ``{x in R^{d+1} : <x, x>_L = -1, x0 > 0}`` with the
Lorentz (Minkowski) inner product ``<x, y>_L = -x0 y0 + sum_i xi yi``.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_MAX_TANGENT_NORM", "expmap0", "lorentz_inner", "lorentz_distance"]

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
    sq = (v * v).sum(dim=-1, keepdim=True)
    # clamp the squared norm before sqrt: sqrt'(0) would be infinite
    norm = torch.sqrt(torch.clamp(sq, min=eps * eps))
    r = torch.clamp(norm, max=max_norm)
    x0 = torch.cosh(r)
    x_rest = torch.sinh(r) * v / norm
    return torch.cat([x0, x_rest], dim=-1)


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
