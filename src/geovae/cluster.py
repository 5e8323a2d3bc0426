"""Site settings of a SLURM run, checked before the first job is submitted.

The SLURM profile (``profiles/slurm``) names no partition and no account: those belong to the site.
When a run gives neither, SLURM's own defaults may apply (a default partition, marked ``*`` by
``sinfo``; a default account of the user in the accounting database). When they do not, the run
stops here with one message that says what to pass, instead of failing job by job at ``sbatch``.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Runs a command and returns its standard output, or ``None`` when it cannot run or fails.
CommandRunner = Callable[[list[str]], "str | None"]


def run_command(argv: list[str]) -> str | None:
    """Standard output of ``argv``, or ``None`` when the program is missing or exits non-zero."""
    if shutil.which(argv[0]) is None:
        return None
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else None


@dataclass(frozen=True)
class SiteDefaults:
    """What the cluster supplies when a job names no partition or account.

    Attributes
    ----------
    partition
        The default partition (``sinfo``'s entry marked ``*``), or ``None``.
    account
        The user's default account in the accounting database, or ``None``.
    accounts_enforced
        Whether the cluster refuses jobs without a valid account (``AccountingStorageEnforce``
        includes ``associations``).
    """

    partition: str | None
    account: str | None
    accounts_enforced: bool


def site_defaults(run: CommandRunner = run_command, user: str | None = None) -> SiteDefaults:
    """Ask the cluster (``sinfo``, ``sacctmgr``, ``scontrol``) for its default partition and account.

    Parameters
    ----------
    run
        Command runner (replaceable in tests).
    user
        User whose default account is looked up (default: the current user).
    """
    partitions = (run(["sinfo", "-h", "-o", "%P"]) or "").split()
    partition = next((p.rstrip("*") for p in partitions if p.endswith("*")), None)
    user = user or getpass.getuser()
    account = (run(["sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount"]) or "").strip()
    config = run(["scontrol", "show", "config"]) or ""
    enforce = next((line for line in config.splitlines() if line.startswith("AccountingStorageEnforce")), "")
    return SiteDefaults(partition or None, account.splitlines()[0] if account else None,
                        "associations" in enforce)


def check_slurm_site(rule_resources: Mapping[str, Mapping[str, object]],
                     defaults: SiteDefaults | Callable[[], SiteDefaults] = site_defaults) -> None:
    """Stop before submitting when a cluster job would have no partition or no valid account.

    Parameters
    ----------
    rule_resources
        Resources of each rule that runs on the cluster (rule name -> resources); the values of
        ``slurm_partition`` and ``slurm_account`` are looked at.
    defaults
        The cluster's defaults, or a function returning them (called only when a rule lacks one).

    Raises
    ------
    ValueError
        Naming the rules without a partition (the cluster has no default partition) or without an
        account (the cluster enforces accounts and the user has no default account), and the
        option that fixes it.
    """
    missing = {key: sorted(rule for rule, res in rule_resources.items() if not res.get(key))
               for key in ("slurm_partition", "slurm_account")}
    if not any(missing.values()):
        return
    site = defaults() if callable(defaults) else defaults
    problems = []
    if missing["slurm_partition"] and site.partition is None:
        problems.append(f"no slurm_partition for rule(s) {_names(missing['slurm_partition'])}, and the cluster "
                        "has no default partition (`sinfo` marks none with '*')")
    if missing["slurm_account"] and site.account is None and site.accounts_enforced:
        problems.append(f"no slurm_account for rule(s) {_names(missing['slurm_account'])}, the cluster requires "
                        "one (AccountingStorageEnforce=associations) and you have no default account")
    if problems:
        raise ValueError("SLURM site settings missing: " + "; ".join(problems) + ". Pass them with "
                         "`--default-resources slurm_partition=<partition> slurm_account=<account>` "
                         "(or per rule under set-resources in your copy of profiles/slurm).")


def _names(rules: Iterable[str]) -> str:
    rules = list(rules)
    return ", ".join(rules[:5]) + (f" and {len(rules) - 5} more" if len(rules) > 5 else "")
