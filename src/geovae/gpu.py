"""Which GPUs a training job may use, so concurrent jobs on one workstation do not all land on GPU 0.

Strategy (see README, "GPU workstation"): Snakemake limits how many GPU jobs run at once with
``--resources gpu=N`` (the train rule asks for ``gpu=1``); each job then takes the lowest free *slot*
(an exclusive lock file under ``.snakemake/gpu-slots/``) and sees only the GPUs of that slot through
``CUDA_VISIBLE_DEVICES``. Slot ``k`` of a job needing ``g`` GPUs gets devices ``k*g .. k*g+g-1`` of the
GPUs the host exposes (its own ``CUDA_VISIBLE_DEVICES`` when set). Under a scheduler that already
assigned GPUs (``SLURM_JOB_ID`` set), the job uses what it was given.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def parse_visible(value: str | None, n_devices: int) -> list[str]:
    """The device ids a process may use: ``CUDA_VISIBLE_DEVICES`` (ids or UUIDs), or all ``n_devices``.

    Parameters
    ----------
    value
        The host's ``CUDA_VISIBLE_DEVICES`` (``None`` when unset; ``""`` hides every GPU).
    n_devices
        Number of GPUs on the host, used when ``value`` is ``None``.
    """
    if value is None:
        return [str(i) for i in range(n_devices)]
    return [v.strip() for v in value.split(",") if v.strip()]


def assign_devices(slot: int, gpus_per_job: int, visible: list[str]) -> list[str]:
    """Device ids for the job holding ``slot``: the ``slot``-th block of ``gpus_per_job`` ids.

    Parameters
    ----------
    slot
        The job's slot, ``0 <= slot < n_slots(gpus_per_job, visible)``.
    gpus_per_job
        GPUs the job asked for (Snakemake ``resources.gpu``); 0 means a CPU job (no GPU visible).
    visible
        GPUs available on the host (:func:`parse_visible`).

    Returns
    -------
    list of str
        The ids to put into the job's ``CUDA_VISIBLE_DEVICES``.

    Raises
    ------
    ValueError
        If the job asks for more GPUs than visible, or the slot does not exist.
    """
    if gpus_per_job < 0 or slot < 0:
        raise ValueError(f"slot ({slot}) and gpus_per_job ({gpus_per_job}) must be >= 0")
    if gpus_per_job == 0:
        return []
    if gpus_per_job > len(visible):
        raise ValueError(f"job asks for {gpus_per_job} GPU(s) but the host exposes {len(visible)}: {visible}")
    n = n_slots(gpus_per_job, visible)
    if slot >= n:
        raise ValueError(f"slot {slot} does not exist: {len(visible)} GPU(s) / {gpus_per_job} per job = {n} slots")
    return visible[slot * gpus_per_job:(slot + 1) * gpus_per_job]


def n_slots(gpus_per_job: int, visible: list[str]) -> int:
    """How many jobs needing ``gpus_per_job`` GPUs each can run side by side on ``visible``."""
    return len(visible) // gpus_per_job if gpus_per_job > 0 else 0


def count_host_gpus(dev: str | Path = "/dev") -> int:
    """NVIDIA GPUs on this Linux host (``/dev/nvidia<N>`` device files), without initialising CUDA."""
    return sum(1 for p in Path(dev).glob("nvidia*") if p.name[len("nvidia"):].isdigit())


@contextlib.contextmanager
def gpu_slot(n: int, lock_dir: str | Path = ".snakemake/gpu-slots") -> Iterator[int]:
    """Hold the lowest free slot in ``0..n-1`` (an ``flock`` on ``lock_dir/slot<k>.lock``) while inside.

    Locks vanish with the process, so a crashed job never blocks a slot. When every slot is taken
    (more concurrent jobs than ``--resources gpu`` allows), the job shares slot ``pid % n``.
    """
    if n <= 0:
        yield 0
        return
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(n):
        handle = open(lock_dir / f"slot{slot}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield slot
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    yield os.getpid() % n


@contextlib.contextmanager
def visible_devices_for_job(gpus_per_job: int, env: dict[str, str] | None = None,
                            n_devices: int | None = None,
                            lock_dir: str | Path = ".snakemake/gpu-slots") -> Iterator[str | None]:
    """Set ``CUDA_VISIBLE_DEVICES`` in ``env`` (default ``os.environ``) for one job; restore it after.

    Yields the value set, or ``None`` when nothing was changed (CPU job, no GPU on the host, or a
    scheduler-assigned allocation under SLURM). Call it before anything initialises CUDA.
    """
    env = os.environ if env is None else env
    if gpus_per_job <= 0 or "SLURM_JOB_ID" in env:
        yield None
        return
    if n_devices is None:
        n_devices = count_host_gpus()
    visible = parse_visible(env.get("CUDA_VISIBLE_DEVICES"), n_devices)
    if not visible:
        yield None
        return
    old = env.get("CUDA_VISIBLE_DEVICES")
    with gpu_slot(n_slots(gpus_per_job, visible), lock_dir) as slot:
        value = ",".join(assign_devices(slot, gpus_per_job, visible))
        env["CUDA_VISIBLE_DEVICES"] = value
        try:
            yield value
        finally:
            if old is None:
                env.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                env["CUDA_VISIBLE_DEVICES"] = old
