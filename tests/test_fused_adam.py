"""geovae.training.fused_adam.FusedAdam: torch's fused Adam updates without torch.optim."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from geovae.training.fused_adam import FusedAdam


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(7, 5), (5,), (3, 4), (2,)]]


def _grads(params: list[torch.Tensor], step: int) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=g) for p in params]
    grads[3] = None if step % 2 else grads[3]  # one parameter without a gradient every other step
    return grads


def _run(opt, params, steps: range, scales: dict[int, float] | None = None) -> None:
    for step in steps:
        for p, grad in zip(params, _grads(params, step)):
            p.grad = None if grad is None else grad.clone()
        opt.grad_scale = torch.tensor(scales[step]) if scales and step in scales else None
        opt.step()
        opt.grad_scale = None
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_updates_equal_torch_fused_adam_bit_for_bit(weight_decay: float) -> None:
    ours, theirs = _params(), _params()
    kwargs = {"lr": 0.01, "eps": 1e-7, "weight_decay": weight_decay}
    scales = {2: 3.5, 5: 1.7}  # gradient clipping through the kernel's grad_scale
    _run(FusedAdam(ours, **kwargs), ours, range(8), scales)
    _run(torch.optim.Adam(theirs, fused=True, **kwargs), theirs, range(8), scales)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0], _params()[0])  # they moved


def test_state_dict_loads_both_ways_and_continues_identically() -> None:
    base = _params()
    first = FusedAdam(base, lr=0.02)
    _run(first, base, range(3))
    saved = first.state_dict()
    assert sorted(saved["state"]) == [0, 1, 2, 3]
    assert saved["param_groups"][0]["params"] == [0, 1, 2, 3] and saved["param_groups"][0]["fused"] is True

    ours = [p.detach().clone().requires_grad_() for p in base]
    theirs = [p.detach().clone().requires_grad_() for p in base]
    torch_opt = torch.optim.Adam(theirs, lr=0.02, fused=True)
    torch_opt.load_state_dict(saved)  # ours -> torch
    ours_opt = FusedAdam(ours, lr=0.5)
    ours_opt.load_state_dict(torch_opt.state_dict())  # torch -> ours (lr comes with the state)
    assert ours_opt.param_groups[0]["lr"] == 0.02
    _run(ours_opt, ours, range(3, 6))
    _run(torch_opt, theirs, range(3, 6))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_load_state_dict_copies_the_state() -> None:
    params = _params()
    opt = FusedAdam(params)
    _run(opt, params, range(2))
    saved = opt.state_dict()
    snapshot = {k: {n: t.clone() for n, t in v.items()} for k, v in saved["state"].items()}
    fresh = _params()
    other = FusedAdam(fresh)
    other.load_state_dict(saved)
    _run(other, fresh, range(2, 4))
    for k, entry in saved["state"].items():
        for name, tensor in entry.items():
            assert torch.equal(tensor, snapshot[k][name]), (k, name)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        FusedAdam([])
    with pytest.raises(ValueError, match="floating-point"):
        FusedAdam([torch.zeros(3, dtype=torch.int64)])
    opt = FusedAdam(_params())
    with pytest.raises(ValueError, match="other parameter groups"):
        opt.load_state_dict(FusedAdam(_params()[:2]).state_dict())
    state = opt.state_dict()
    state["param_groups"][0]["amsgrad"] = True
    with pytest.raises(ValueError, match="amsgrad"):
        opt.load_state_dict(state)


def test_training_does_not_import_torch_dynamo() -> None:
    """The point of the class: torch.optim's first call imports torch._dynamo (1-1.5 s a process)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import anndata as ad
        import scipy.sparse as sp
        from geovae.models.livae import LiVAE
        rng = np.random.default_rng(0)
        a = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (60, 30)).astype(np.float32)))
        a.layers["counts"] = a.X.copy()
        LiVAE.setup_anndata(a, layer="counts")
        m = LiVAE(a, hidden_dim=8)
        m.train(max_epochs=2, batch_size=16, device="cpu", progress_bar=False)
        assert m.history.shape[0] == 2
        print("torch._dynamo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
