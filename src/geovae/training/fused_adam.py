"""Adam through torch's fused kernel, without ``torch.optim``'s compiler hooks.

``torch.optim.Optimizer`` wraps its methods (``__init__``'s hooks, ``step``, ``zero_grad``,
``state_dict``) so that TorchDynamo stays out of them, and the first call imports
``torch._dynamo`` (1-1.5 s with sympy; measured in ``benchmarks/README.md``). Every pipeline
``train`` job is a fresh process, and a notebook's first ``model.train()`` pays it inside the call.
:class:`FusedAdam` calls the same kernel as ``torch.optim.Adam(fused=True)`` (``torch._fused_adam_``,
same arguments, same step counters), so its updates are bit-identical, and its ``state_dict`` has
the same layout (either class loads the other's). It covers what the trainer uses: one or more
parameter groups of floating-point tensors on CPU or CUDA, ``lr``, ``betas``, ``eps``,
``weight_decay`` (L2, as ``torch.optim.Adam``) and the ``grad_scale`` hook through which
:func:`geovae.training.trainer._clip_and_step` clips gradients inside the kernel.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

__all__ = ["FusedAdam", "fused_kernel_takes"]

#: Keys of a ``torch.optim.Adam`` parameter group besides ``params`` (fixed values: what the
#: fused kernel implements here), so that ``state_dict`` round-trips with torch's class.
_TORCH_GROUP_FLAGS = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                      "differentiable": False, "fused": True, "decoupled_weight_decay": False}


def fused_kernel_takes(p: torch.Tensor) -> bool:
    """Whether torch's fused Adam kernel updates ``p``: a floating-point tensor on CPU or CUDA."""
    return p.is_floating_point() and p.device.type in ("cpu", "cuda")


class FusedAdam:
    """Adam (Kingma & Ba 2015) with L2 weight decay, one fused kernel call per device and dtype.

    Parameters
    ----------
    params
        Tensors to optimise (floating point, all on CPU or CUDA), or parameter-group dicts with a
        ``"params"`` entry and optional per-group ``lr``, ``betas``, ``eps``, ``weight_decay``.
    lr, betas, eps, weight_decay
        As in :class:`torch.optim.Adam`.

    Attributes
    ----------
    param_groups
        List of group dicts (``lr`` may be changed between steps, as with torch's optimizers).
    grad_scale
        None, or a scalar tensor by which the kernel divides every gradient in the next
        :meth:`step` (the hook :class:`torch.amp.GradScaler` uses with fused optimizers).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        groups = list(params)
        if not groups:
            raise ValueError("FusedAdam got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            tensors = list(group["params"])
            for p in tensors:
                if not fused_kernel_takes(p):
                    raise ValueError(f"FusedAdam needs floating-point tensors on CPU or CUDA, got {p.dtype} "
                                     f"on {p.device}")
            self.param_groups.append({**defaults, **{k: v for k, v in group.items() if k != "params"},
                                      **_TORCH_GROUP_FLAGS, "params": tensors})
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self.grad_scale: torch.Tensor | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (``set_to_none``) or zero every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:  # torch's layout for fused Adam: a float32 step counter on the parameter's device
            state = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            self.state[p] = state
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        for group in self.param_groups:
            by_kind: dict[tuple[torch.device, torch.dtype], list[list[torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("FusedAdam does not take sparse gradients")
                state = self._state_of(p)
                lists = by_kind.setdefault((p.device, p.dtype), [[], [], [], [], []])
                for i, tensor in enumerate((p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    lists[i].append(tensor)
            beta1, beta2 = group["betas"]
            for (device, _), (params, grads, exp_avgs, exp_avg_sqs, steps) in by_kind.items():
                scale = None if self.grad_scale is None else self.grad_scale.to(device, non_blocking=True)
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=False, grad_scale=scale, found_inf=None)

    def state_dict(self) -> dict[str, Any]:
        """The state in ``torch.optim.Adam``'s layout: parameters numbered in group order."""
        index: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(p, len(index))
                ids.append(index[p])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[p]: dict(s) for p, s in self.state.items() if p in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state of this class or of ``torch.optim.Adam`` (copies; moved to each parameter's device).

        Raises
        ------
        ValueError
            If the groups or their sizes differ from this optimizer's, or the state was saved with
            options this class does not implement (amsgrad, maximize, decoupled weight decay).
        """
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("the loaded optimizer state has other parameter groups than this optimizer")
        for s in saved:
            unsupported = [k for k in ("amsgrad", "maximize", "decoupled_weight_decay") if s.get(k)]
            if unsupported:
                raise ValueError(f"FusedAdam cannot continue a state saved with {unsupported}")
        self.state = {}
        for s, group in zip(saved, self.param_groups):
            for pid, p in zip(s["params"], group["params"]):
                if pid not in state_dict["state"]:
                    continue
                entry = state_dict["state"][pid]
                self.state[p] = {"step": torch.tensor(float(entry["step"]), dtype=torch.float32, device=p.device),
                                 "exp_avg": entry["exp_avg"].to(device=p.device, dtype=p.dtype, copy=True),
                                 "exp_avg_sq": entry["exp_avg_sq"].to(device=p.device, dtype=p.dtype, copy=True)}
            group.update({k: v for k, v in s.items() if k in ("lr", "betas", "eps", "weight_decay")})
