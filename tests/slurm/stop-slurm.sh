#!/usr/bin/env bash
# stop-slurm.sh [NAME...] - stop the daemons that tests/slurm/start-slurm.sh started (only those).
#
# NAME: munged, mariadb, slurmdbd, slurmctld, slurmd (default: every daemon start-slurm.sh started).
# Reads /run/geovae-slurm/started ("<name> <pidfile>" per line, written by start-slurm.sh) and
# stops each daemon by the PID in its PID file, newest first; daemons that were already running
# before start-slurm.sh (e.g. a site's own munged) are left alone. Safe to call twice.
set -uo pipefail

[ "$(id -u)" -eq 0 ] || { echo "stop-slurm.sh: must run as root" >&2; exit 1; }
LIST=/run/geovae-slurm/started
[ -s "$LIST" ] || { echo "[stop-slurm] nothing was started by start-slurm.sh"; exit 0; }

# cancel leftover jobs first so no slurmstepd outlives its daemon
if { [ "$#" -eq 0 ] || [[ " $* " == *" slurmctld "* ]]; } && grep -q '^slurmctld ' "$LIST" && command -v squeue >/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  # shellcheck disable=SC2086
  [ -n "${jobs// }" ] && { echo "[stop-slurm] scancel $jobs"; scancel $jobs 2>/dev/null; sleep 1; }
fi

ONLY=" $* "
tac "$LIST" | while read -r name pidfile; do
  [ "$#" -eq 0 ] || [[ "$ONLY" == *" $name "* ]] || continue
  [ -s "$pidfile" ] || { echo "[stop-slurm] $name: no pid file"; continue; }
  pid=$(cat "$pidfile")
  if ! kill -0 "$pid" 2>/dev/null; then echo "[stop-slurm] $name: not running"; continue; fi
  echo "[stop-slurm] stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && { echo "[stop-slurm] $name: SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
done
if [ "$#" -eq 0 ]; then rm -f "$LIST"; else
  tmp=$(grep -v -E "^($(echo "$*" | tr ' ' '|')) " "$LIST" || true); printf '%s\n' "$tmp" | sed '/^$/d' > "$LIST"
fi
echo "[stop-slurm] done"
