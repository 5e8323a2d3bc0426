#!/usr/bin/env python3
"""Job status for snakemake-executor-plugin-cluster-generic on SLURM: prints running|success|failed.

Called as ``status.py <jobid>`` (the id printed by ``sbatch --parsable``). Asks ``sacct`` first and
falls back to ``squeue`` for clusters without accounting. A job neither knows (e.g. purged) is
reported as failed; when both commands fail (controller busy), it stays running until the next poll.
"""

from __future__ import annotations

import subprocess
import sys

RUNNING = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
          "DEADLINE", "REVOKED"}


def classify(state: str) -> str:
    """Map a SLURM job state (e.g. ``CANCELLED by 0``) to running/success/failed."""
    state = state.split()[0].rstrip("+") if state.strip() else ""
    if state == "COMPLETED":
        return "success"
    if state in FAILED:
        return "failed"
    return "running"


def query(jobid: str) -> str | None:
    """The job's state, ``""`` when the scheduler answered but does not know it, ``None`` when no answer."""
    answered = False
    for cmd in (["sacct", "-n", "-X", "-P", "-j", jobid, "-o", "State"],
                ["squeue", "-h", "-j", jobid, "--states=all", "-o", "%T"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        answered = answered or proc.returncode == 0
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[0]
    return "" if answered else None


if __name__ == "__main__":
    state = query(sys.argv[1].split(";")[0])
    print("running" if state is None else "failed" if state == "" else classify(state))
