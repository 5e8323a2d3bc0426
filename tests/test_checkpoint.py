"""Checkpoints of the shared training loop: bitwise resume, parameter hash, divergence restarts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geovae.training import TrainingConfig, train_module
from geovae.training import trainer as trainer_mod
from geovae.training.checkpoint import CHECKPOINT_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Data:
    """Fixed Gaussian inputs (60 cells x 5 features)."""

    n_obs = 60

    def __init__(self) -> None:
        self.x = np.random.default_rng(0).normal(size=(self.n_obs, 5)).astype(np.float32)

    def get(self, idx):
        return {"x": self.x[idx]}


class _NoisyAE(torch.nn.Module):
    """Tiny stochastic autoencoder: the loss draws torch noise, so resuming must restore RNG state."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Linear(5, 2)
        self.dec = torch.nn.Linear(2, 5)
        self.stop_at = stop_at

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        if epoch == self.stop_at:
            raise KeyboardInterrupt(f"killed at epoch {epoch}")

    def loss(self, batch):
        z = self.enc(batch["x"])
        z = z + 0.1 * torch.randn_like(z)
        rec = ((self.dec(z) - batch["x"]) ** 2).mean()
        return {"total": rec + 0.01 * (z**2).mean(), "rec": rec}


def _cfg(tmp_path=None, **kw) -> TrainingConfig:
    base = dict(max_epochs=10, batch_size=16, lr=0.01, device="cpu", progress_bar=False, early_stopping=True,
                patience=50, checkpoint_every=3, checkpoint_dir=None if tmp_path is None else str(tmp_path))
    return TrainingConfig(**{**base, **kw})


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_history(a, b) -> None:
    cols = [c for c in a.columns if c != "seconds"]
    assert list(a.columns) == list(b.columns)
    assert a[cols].equals(b[cols])


def test_killed_run_resumes_bitwise_identical(tmp_path):
    reference = _NoisyAE()
    ref = train_module(reference, _Data(), _cfg())
    assert ref.metadata["resumed_from_epoch"] is None

    killed = _NoisyAE(stop_at=8)
    with pytest.raises(KeyboardInterrupt):
        train_module(killed, _Data(), _cfg(tmp_path))
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != CHECKPOINT_FILE]  # no temporary leftovers

    resumed = _NoisyAE()
    res = train_module(resumed, _Data(), _cfg(tmp_path))
    assert res.metadata["resumed_from_epoch"] == 6  # last multiple of checkpoint_every before epoch 8
    _same_history(ref.history, res.history)
    for key, value in _weights(reference).items():
        assert torch.equal(value, _weights(resumed)[key]), key

    # the finished run left a final checkpoint: rerunning is immediate and gives the same weights
    again = _NoisyAE()
    res2 = train_module(again, _Data(), _cfg(tmp_path))
    assert res2.metadata["resumed_from_epoch"] == 10
    _same_history(ref.history, res2.history)
    assert all(torch.equal(v, _weights(again)[k]) for k, v in _weights(reference).items())


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"seed": 1}, {"batch_size": 8}, {"checkpoint_key": "other"}])
def test_changed_parameters_invalidate_the_checkpoint(tmp_path, change, caplog):
    with pytest.raises(KeyboardInterrupt):
        train_module(_NoisyAE(stop_at=5), _Data(), _cfg(tmp_path))
    same = train_module(_NoisyAE(stop_at=None), _Data(), _cfg(tmp_path, max_epochs=10))
    assert same.metadata["resumed_from_epoch"] == 3
    with pytest.raises(KeyboardInterrupt):  # leave a mid-run checkpoint again
        train_module(_NoisyAE(stop_at=5), _Data(), _cfg(tmp_path / "b"))
    with caplog.at_level("WARNING", logger="geovae.training"):
        other = train_module(_NoisyAE(), _Data(), _cfg(tmp_path / "b", **change))
    assert other.metadata["resumed_from_epoch"] is None
    assert "other parameters" in caplog.text


def test_other_initial_weights_invalidate_the_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_module(_NoisyAE(stop_at=5), _Data(), _cfg(tmp_path))
    module = _NoisyAE()
    with torch.no_grad():
        module.enc.weight.add_(1.0)
    assert train_module(module, _Data(), _cfg(tmp_path)).metadata["resumed_from_epoch"] is None


def test_corrupt_checkpoint_starts_afresh(tmp_path, caplog):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING", logger="geovae.training"):
        result = train_module(_NoisyAE(), _Data(), _cfg(tmp_path, max_epochs=3))
    assert result.metadata["resumed_from_epoch"] is None and "unreadable" in caplog.text
    assert len(result.history) == 3


class _ConstantGradient(torch.nn.Module):
    """loss = w (gradient 1): every Adam step moves w by exactly -lr, so w counts steps x lr.

    ``nan_epochs``: epochs whose loss is NaN (each listed epoch fails once, or always with ``sticky``).
    """

    def __init__(self, nan_epochs=(), sticky: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.nan_epochs, self.sticky = set(nan_epochs), sticky
        self.epoch = 0

    def on_epoch_start(self, epoch: int, max_epochs: int) -> None:
        self.epoch = epoch

    def loss(self, batch):
        total = self.w.sum()
        if self.training and self.epoch in self.nan_epochs:
            if not self.sticky:
                self.nan_epochs.discard(self.epoch)
            total = total * float("nan")
        return {"total": total, "kl": total.detach() * 0}


class _OneBatch:
    n_obs = 8

    def get(self, idx):
        return {"x": np.zeros((len(idx), 1), dtype=np.float32)}


def test_divergence_restarts_from_last_checkpoint_with_half_lr():
    module = _ConstantGradient(nan_epochs=[5])
    cfg = TrainingConfig(max_epochs=8, batch_size=64, lr=0.1, device="cpu", progress_bar=False,
                         validation_fraction=0.0, early_stopping=False, checkpoint_every=2)
    result = train_module(module, _OneBatch(), cfg)
    meta = result.metadata
    assert [(r["epoch"], r["from_epoch"], r["lr"]) for r in meta["divergence_restarts"]] == [(5, 4, 0.05)]
    assert meta["final_lr"] == 0.05
    assert list(result.history["epoch"]) == list(range(1, 9))
    # 4 steps of lr 0.1 (kept), then epochs 5..8 re-run with lr 0.05: w = -(4 * 0.1 + 4 * 0.05)
    assert math.isclose(float(module.w.detach()), -0.6, rel_tol=1e-5)


def test_second_divergence_fails_naming_epoch_and_terms():
    module = _ConstantGradient(nan_epochs=[3], sticky=True)
    cfg = TrainingConfig(max_epochs=6, batch_size=64, lr=0.1, device="cpu", progress_bar=False,
                         validation_fraction=0.0, early_stopping=False, checkpoint_every=2)
    with pytest.raises(FloatingPointError, match=r"diverged at epoch 3 \(lr 0.05\) after 1 restart") as info:
        train_module(module, _OneBatch(), cfg)
    assert "total" in str(info.value) and "kl" in str(info.value)


def test_divergence_restarts_zero_fails_at_once():
    cfg = TrainingConfig(max_epochs=4, batch_size=64, lr=0.1, device="cpu", progress_bar=False,
                         validation_fraction=0.0, divergence_restarts=0)
    with pytest.raises(FloatingPointError, match=r"diverged at epoch 2 \(lr 0.1\): "):
        train_module(_ConstantGradient(nan_epochs=[2]), _OneBatch(), cfg)


def test_config_rejects_bad_checkpoint_settings():
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainingConfig(checkpoint_every=0)
    with pytest.raises(ValueError, match="divergence_restarts"):
        TrainingConfig(divergence_restarts=-1)


def test_livae_resume_and_hyperparameter_change(tmp_path, monkeypatch):
    """Through the model API: an interrupted LiVAE run resumes to the same latents; another
    hyperparameter (which changes no weight shape) does not reuse the checkpoint."""
    from test_livae import simulate

    from geovae.models import LiVAE

    adata, _ = simulate(n_cells=120, n_genes=40)
    kw = dict(max_epochs=6, batch_size=64, seed=3, progress_bar=False, device="cpu", checkpoint_every=2)
    ref = LiVAE(adata, hidden_dim=16)
    ref.train(**kw)

    calls = {"n": 0}
    original = trainer_mod._run_epoch

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # train+val per epoch: the 5th epoch's training pass
            raise KeyboardInterrupt("SIGINT")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "_run_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        LiVAE(adata, hidden_dim=16).train(checkpoint_dir=tmp_path, **kw)
    monkeypatch.setattr(trainer_mod, "_run_epoch", original)
    resumed = LiVAE(adata, hidden_dim=16)
    resumed.train(checkpoint_dir=tmp_path, **kw)
    assert resumed.metadata["resumed_from_epoch"] == 4
    assert np.array_equal(ref.get_latent_representation(), resumed.get_latent_representation())

    other = LiVAE(adata, hidden_dim=16, lorentz_weight=1.0)
    other.train(checkpoint_dir=tmp_path, **kw)
    assert other.metadata["resumed_from_epoch"] is None


@pytest.mark.parametrize("kind", ["torch", "geovae"])  # torch.optim.Adam / geovae's FusedAdam
def test_steps_after_a_restore_leave_the_snapshot_unchanged(kind):
    """A divergence restart restores the last snapshot; a second restart from the same snapshot must
    find it as it was (torch's load_state_dict keeps tensors that need no cast, so the loop copies)."""
    from geovae.training.checkpoint import clone_state
    from geovae.training.fused_adam import FusedAdam
    from geovae.training.trainer import _LoopState

    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    opt = FusedAdam(module.parameters(), lr=0.1) if kind == "geovae" else torch.optim.Adam(module.parameters(), lr=0.1)

    def step() -> None:
        opt.zero_grad()
        module(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()

    step()
    loop = _LoopState(module, opt, None, np.random.default_rng(0), 0.1, "run")
    snap = loop.snapshot()
    before = clone_state(snap["optimizer"]["state"])
    loop.restore(snap)
    for _ in range(3):
        step()
    after = snap["optimizer"]["state"]
    for pid, entry in before.items():
        for name, tensor in entry.items():
            assert torch.equal(after[pid][name], tensor), (pid, name)
