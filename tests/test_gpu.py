"""GPU assignment for concurrent training jobs (geovae.gpu) and the fail-fast `device: cuda` check."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from geovae.gpu import (assign_devices, count_host_gpus, gpu_slot, n_slots, parse_visible,
                        visible_devices_for_job)
from geovae.training.trainer import resolve_device


def test_parse_visible() -> None:
    assert parse_visible(None, 4) == ["0", "1", "2", "3"]
    assert parse_visible("2, 3", 8) == ["2", "3"]
    assert parse_visible("", 4) == []
    assert parse_visible("GPU-aa,GPU-bb", 0) == ["GPU-aa", "GPU-bb"]


def test_assign_devices_known_answers() -> None:
    four = ["0", "1", "2", "3"]
    assert [assign_devices(s, 1, four) for s in range(4)] == [["0"], ["1"], ["2"], ["3"]]
    assert [assign_devices(s, 2, four) for s in range(2)] == [["0", "1"], ["2", "3"]]
    # the host restricts us to GPUs 5 and 7: slots map onto those, never onto GPU 0
    assert [assign_devices(s, 1, parse_visible("5,7", 8)) for s in range(2)] == [["5"], ["7"]]
    assert assign_devices(0, 0, four) == []
    assert n_slots(1, four) == 4 and n_slots(3, four) == 1 and n_slots(0, four) == 0


def test_assign_devices_errors() -> None:
    with pytest.raises(ValueError, match="asks for 3 GPU"):
        assign_devices(0, 3, ["0", "1"])
    with pytest.raises(ValueError, match="slot 2 does not exist"):
        assign_devices(2, 1, ["0", "1"])


def _hold_slot(lock_dir: str, n: int, ready, release, out) -> None:
    with gpu_slot(n, lock_dir) as slot:
        out.put(slot)
        ready.set()
        release.wait(10)


def test_concurrent_jobs_get_distinct_slots(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    out, release = ctx.Queue(), ctx.Event()
    procs = []
    for _ in range(2):  # two jobs hold their slots at the same time ...
        ready = ctx.Event()
        proc = ctx.Process(target=_hold_slot, args=(str(tmp_path), 2, ready, release, out))
        proc.start()
        assert ready.wait(10)
        procs.append(proc)
    slots = sorted(out.get(timeout=5) for _ in procs)
    release.set()
    for proc in procs:
        proc.join(10)
    assert slots == [0, 1]
    with gpu_slot(2, tmp_path) as slot:  # ... and a slot is free again once its job ended
        assert slot == 0


def test_visible_devices_for_job_sets_and_restores(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "4,6"}
    with visible_devices_for_job(1, env=env, n_devices=8, lock_dir=tmp_path) as first:
        with visible_devices_for_job(1, env={"CUDA_VISIBLE_DEVICES": "4,6"}, n_devices=8, lock_dir=tmp_path) as second:
            assert (first, second) == ("4", "6")
        assert env["CUDA_VISIBLE_DEVICES"] == "4"
    assert env == {"CUDA_VISIBLE_DEVICES": "4,6"}
    with visible_devices_for_job(0, env=env, n_devices=8, lock_dir=tmp_path) as none:
        assert none is None  # CPU job: untouched
    slurm = {"SLURM_JOB_ID": "12", "CUDA_VISIBLE_DEVICES": "0"}
    with visible_devices_for_job(1, env=slurm, n_devices=8, lock_dir=tmp_path) as given:
        assert given is None and slurm["CUDA_VISIBLE_DEVICES"] == "0"  # scheduler's allocation wins
    with visible_devices_for_job(1, env={}, n_devices=0, lock_dir=tmp_path) as nogpu:
        assert nogpu is None


def test_count_host_gpus(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert count_host_gpus(tmp_path) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a visible GPU")
def test_device_cuda_fails_fast_without_gpu() -> None:
    with pytest.raises(RuntimeError, match="cuda.*is_available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
