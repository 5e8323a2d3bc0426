"""``nn.Linear`` whose float32 CPU products go through oneDNN instead of the BLAS.

PyTorch's CPU wheels compute ``nn.Linear`` with MKL's ``sgemm``. On AMD CPUs MKL does not
take its AVX-512 code path: on the AMD EPYC (AVX-512) of the development machine it runs the
products of a LiVAE step (``128 x 2000 x 128`` and ``256 x 128 x 2000``) at ~107 GFLOP/s,
while oneDNN (shipped inside the same wheel, ``torch.ops.mkldnn._linear_pointwise``) runs them
at 225-243 GFLOP/s in float32, with the same rounding error against float64 (a few 1e-5
relative; ``tests/test_onednn_linear.py``). :class:`Linear` is a drop-in ``nn.Linear`` (same
parameters, same ``state_dict``) that uses oneDNN for the forward product and both backward
products when all of these hold:

* the input is a float32 CPU tensor, no autocast is active (bf16 autocast keeps torch's path);
* the product is at least :data:`MIN_MACS` multiply-adds (below that oneDNN's per-call
  overhead makes it slower: ``128 x 64 x 64`` takes 15 us against MKL's 12 us);
* oneDNN is available and agreed with ``torch.nn.functional.linear`` on a first check
  (:func:`onednn_linear_available`);
* the CPU has AVX-512, or the path is switched on by hand (:func:`set_onednn_linear`,
  ``GEOVAE_ONEDNN_LINEAR=1``); ``GEOVAE_ONEDNN_LINEAR=0`` or ``set_onednn_linear(False)`` switches
  it off. On an AVX2-only AMD EPYC (a later development machine, 2026-12-07) oneDNN ran the same
  forward product at 63 GFLOP/s against MKL's 86 and LiVAE trained ~9 % slower through it
  (``benchmarks/bench_throughput.py --tools geovae,geovae_blas``), so without AVX-512 the default
  is torch's own path.

The two paths round differently, so a model's numbers depend on which one ran (recorded as
``matmul_backend`` in the training metadata); each path is deterministic on its own. On CUDA
nothing changes.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Linear", "MIN_MACS", "cpu_has_avx512", "linear", "matmul_backend", "onednn_linear_available",
           "set_onednn_linear"]

#: Smallest product (rows x in x out multiply-adds) sent to oneDNN (measured crossover ~1-2M).
MIN_MACS = 1 << 20


def _mode_from_env(value: str | None) -> bool | None:
    """``GEOVAE_ONEDNN_LINEAR``: unset, empty or ``auto`` -> None (decided by the CPU), else on/off."""
    text = (value or "auto").strip().lower()
    if text == "auto":
        return None
    return text not in ("0", "false", "no", "off")


_enabled: bool | None = _mode_from_env(os.environ.get("GEOVAE_ONEDNN_LINEAR"))  # None: by the CPU
_available: bool | None = None  # decided on first use


def cpu_has_avx512() -> bool:
    """Whether torch dispatches its CPU kernels with AVX-512 here (``torch.backends.cpu.get_cpu_capability``)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability()).upper().startswith("AVX512")
    except (AttributeError, RuntimeError):
        return False


def _onednn_mm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b_t.T (+ bias)`` with oneDNN (``a``: ``(m, k)``, ``b_t``: ``(n, k)``, any strides)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


def onednn_linear_available() -> bool:
    """Whether the oneDNN linear kernel exists in this torch build and matches ``F.linear``.

    Checked once per process on a small float32 product (relative error < 1e-4 against
    ``torch.nn.functional.linear``); False on builds without oneDNN.
    """
    global _available
    if _available is None:
        try:
            ok = bool(torch.backends.mkldnn.is_available())
            if ok:
                gen = torch.Generator().manual_seed(0)
                a = torch.randn(64, 96, generator=gen)
                w = torch.randn(80, 96, generator=gen)
                ref = F.linear(a, w)
                ok = bool(torch.allclose(_onednn_mm(a, w), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max())))
        except (AttributeError, RuntimeError):
            ok = False
        _available = ok
    return _available


def set_onednn_linear(enabled: bool | None) -> bool | None:
    """Switch the oneDNN path of :class:`Linear` on (True), off (False) or to the CPU's default (None:
    on with AVX-512) for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, None if enabled is None else bool(enabled)
    return previous


def matmul_backend(device: torch.device | str = "cpu") -> str:
    """``"onednn"`` when :class:`Linear` sends large float32 products on ``device`` to oneDNN,
    else ``"default"`` (torch's BLAS / cuBLAS)."""
    return "onednn" if torch.device(device).type == "cpu" and _onednn_on() else "default"


def _onednn_on() -> bool:
    """Whether the oneDNN path is switched on (by hand, or by the CPU's AVX-512) and works in this process."""
    wanted = cpu_has_avx512() if _enabled is None else _enabled
    return wanted and onednn_linear_available()


def _cpu_autocast() -> bool:
    """Whether CPU autocast is active (``is_autocast_enabled(device)`` is torch >= 2.4)."""
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:
        return torch.is_autocast_cpu_enabled()


class _OneDNNLinear(torch.autograd.Function):
    """``x @ W.T + b`` with the forward and both backward products in oneDNN (2-D ``x``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_mm(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_mm(grad_out, weight.t())  # (m, n) @ (n, k)
        if ctx.needs_input_grad[1]:
            n_out, n_in = weight.shape
            # dW = grad_out.T @ x; oneDNN is faster with the longer of (n_out, n_in) as its output columns
            if n_out >= n_in:
                grad_w = _onednn_mm(x.t(), grad_out.t()).t().contiguous()
            else:
                grad_w = _onednn_mm(grad_out.t(), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(dim=0)
        return grad_x, grad_w, grad_b


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:  # noqa: A002
    """``torch.nn.functional.linear`` with large float32 CPU products computed by oneDNN.

    Same arguments and result as ``F.linear`` (``input @ weight.T + bias``); the conditions of
    the oneDNN path are listed in the module docs.
    """
    n_out, n_in = weight.shape
    if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
            and input.dim() >= 2 and input.numel() * n_out >= MIN_MACS and not _cpu_autocast() and _onednn_on()):
        out = _OneDNNLinear.apply(input.reshape(-1, n_in), weight, bias)
        return out.reshape(*input.shape[:-1], n_out)
    return F.linear(input, weight, bias)


class Linear(nn.Linear):
    """``torch.nn.Linear`` with large float32 CPU products computed by oneDNN (see the module docs).

    Same constructor, parameters and ``state_dict`` as ``nn.Linear``; on CUDA, under autocast,
    for other dtypes and for small products it is ``nn.Linear``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear's name)
        return linear(input, self.weight, self.bias)
