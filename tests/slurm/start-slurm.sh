#!/usr/bin/env bash
# start-slurm.sh - a real single-node SLURM cluster on localhost for tests/test_slurm.py.
#
# Installs (apt, Debian/Ubuntu) and starts munged, MariaDB + slurmdbd (so `sacct` works),
# slurmctld and slurmd; one partition, one account, optionally fake GPUs (gres/gpu backed by
# dummy files so `--gpus=N` jobs are schedulable on a machine without GPUs). No systemd needed:
# daemons are started directly and every daemon this script starts is recorded in
# $STATE_DIR/started, so stop-slurm.sh stops exactly those (by PID file, never by name).
# Idempotent: a second call only checks that everything is up (about 2 s).
#
# Must run as root. Knobs (environment, all optional):
#   SLURM_PARTITION=debug  SLURM_ACCOUNT=ci  SLURM_CLUSTER=geovae-ci
#   SLURM_FAKE_GPUS=1      fake GPUs on the node (0 = none; then request gpu=0)
#   SLURM_MEM_PERCENT=90   share of the memory advertised as RealMemory
#   APT_TIMEOUT=600        seconds allowed for apt-get update + install
#
# Facts this relies on (learned on Debian 12, Slurm 22.05, snakemake-executor-plugin-slurm 2.x):
#   - the plugin tracks jobs with sacct by default: without slurmdbd it hangs silently;
#   - NodeName must equal `hostname -s`; daemons talk over 127.0.0.1;
#   - a gres/gpu needs a File= per GPU, dummy files work with proctrack/linuxproc + task/none;
#   - munged must run as user munge with /run/munge present;
#   - node/gres changes need slurmctld+slurmd restarts (scontrol reconfigure is not enough).
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "start-slurm.sh: must run as root" >&2; exit 1; }

PARTITION="${SLURM_PARTITION:-debug}"
ACCOUNT="${SLURM_ACCOUNT:-ci}"
CLUSTER="${SLURM_CLUSTER:-geovae-ci}"
FAKE_GPUS="${SLURM_FAKE_GPUS:-1}"
MEM_PERCENT="${SLURM_MEM_PERCENT:-90}"
APT_TIMEOUT="${APT_TIMEOUT:-600}"
STATE_DIR=/run/geovae-slurm
DB=slurm_acct_db DB_USER=slurm DB_PASS=geovae-ci-local   # MariaDB listens on its unix socket only
T0=$(date +%s)

log() { printf '[start-slurm %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() {
  log "ERROR: $*"
  for f in /var/log/slurm/slurmdbd.log /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 10 "$f" >&2; }
  done
  exit 1
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_until() { # wait_until <seconds> <what> <command...>
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "timed out after ${seconds}s waiting for $what"
}
started() { mkdir -p "$STATE_DIR"; grep -qx "$1 $2" "$STATE_DIR/started" 2>/dev/null || echo "$1 $2" >> "$STATE_DIR/started"; }
stop_pid() { # stop_pid <pidfile>: used only to restart our own SLURM daemons after a config change
  alive "$1" || return 0
  local pid; pid=$(cat "$1"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

# 1. packages ------------------------------------------------------------------------------------
PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { timeout "$APT_TIMEOUT" apt-get update -q \
      && timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      >/tmp/geovae-slurm-apt.log 2>&1 || { tail -20 /tmp/geovae-slurm-apt.log >&2; die "apt-get failed"; }
fi
log "$(slurmd -V)"

# 2. munge ---------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0600 /etc/munge/munge.key
if alive /run/munge/munged.pid && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running"
else
  runuser -u munge -- /usr/sbin/munged
  wait_until 15 munged sh -c 'munge -n | unmunge'
  started munged /run/munge/munged.pid
  log "started munged"
fi

# 3. slurm.conf / gres.conf ------------------------------------------------------------------------
HOST=$(hostname -s)
HW=$(slurmd -C | head -1)
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
[ -n "$CPUS" ] && [ -n "$MEM" ] || die "cannot parse 'slurmd -C': $HW"
MEM=$(( MEM * MEM_PERCENT / 100 ))
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd /etc/slurm

GRES_TYPES="" NODE_GRES="" GRES_CONF=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  install -d /var/lib/slurm/fakegpu
  for i in $(seq 0 $((FAKE_GPUS - 1))); do touch "/var/lib/slurm/fakegpu/gpu$i"; done
  GRES_TYPES="GresTypes=gpu" NODE_GRES="Gres=gpu:${FAKE_GPUS}"
  GRES_CONF="NodeName=${HOST} Name=gpu File=/var/lib/slurm/fakegpu/gpu[0-$((FAKE_GPUS - 1))]"
  [ "$FAKE_GPUS" -eq 1 ] && GRES_CONF="NodeName=${HOST} Name=gpu File=/var/lib/slurm/fakegpu/gpu0"
fi
CONF=$(cat <<EOF
# generated by tests/slurm/start-slurm.sh (geovae single-node test cluster)
ClusterName=${CLUSTER}
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
${GRES_TYPES}
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
MinJobAge=300
InactiveLimit=0
KillWait=30
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} ${NODE_GRES} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
)
CHANGED=0
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$CONF" ]; then
  printf '%s\n' "$CONF" > /etc/slurm/slurm.conf; CHANGED=1
fi
if [ "$(cat /etc/slurm/gres.conf 2>/dev/null)" != "$GRES_CONF" ]; then
  if [ -n "$GRES_CONF" ]; then printf '%s\n' "$GRES_CONF" > /etc/slurm/gres.conf; else rm -f /etc/slurm/gres.conf; fi
  CHANGED=1
fi
chmod 0644 /etc/slurm/slurm.conf
log "node ${HOST}: CPUs=${CPUS} RealMemory=${MEM} fake GPUs=${FAKE_GPUS} (config changed: ${CHANGED})"
if [ "$CHANGED" = 1 ]; then stop_pid /run/slurmd.pid; stop_pid /run/slurmctld.pid; fi

# 4. MariaDB + slurmdbd (accounting, needed by sacct) ----------------------------------------------
install -d -o mysql -g root -m 0755 /run/mysqld
install -d -o mysql -g adm -m 2750 /var/log/mysql
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/tmp/geovae-slurm-mariadb.log 2>&1
if mariadb-admin ping >/dev/null 2>&1; then
  log "MariaDB already running"
else
  setsid -f /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --log-error=/var/log/mysql/error.log \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1
  wait_until 60 MariaDB mariadb-admin ping
  wait_until 10 "MariaDB pid file" test -s /run/mysqld/mysqld.pid
  started mariadb /run/mysqld/mysqld.pid
  log "started MariaDB"
fi
mariadb -u root <<EOF
CREATE DATABASE IF NOT EXISTS ${DB};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL ON ${DB}.* TO '${DB_USER}'@'localhost';
FLUSH PRIVILEGES;
EOF
DBD=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=${DB_USER}
StoragePass=${DB_PASS}
StorageLoc=${DB}
EOF
)
if [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$DBD" ]; then
  printf '%s\n' "$DBD" > /etc/slurm/slurmdbd.conf; stop_pid /run/slurmdbd.pid
fi
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 0600 /etc/slurm/slurmdbd.conf  # slurmdbd insists
if alive /run/slurmdbd.pid; then
  log "slurmdbd already running"
else
  /usr/sbin/slurmdbd
  started slurmdbd /run/slurmdbd.pid
  log "started slurmdbd"
fi
wait_until 60 "slurmdbd (sacctmgr)" sacctmgr -n list cluster
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
  || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="geovae CI" organization=ci >/dev/null
for u in root ${SUDO_USER:-}; do
  sacctmgr -n -P list assoc user="$u" account="$ACCOUNT" format=user | grep -qx "$u" \
    || sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
done

# 5. slurmctld + slurmd ----------------------------------------------------------------------------
FRESH=0
if alive /run/slurmctld.pid; then log "slurmctld already running"; else
  FRESH=1; /usr/sbin/slurmctld; started slurmctld /run/slurmctld.pid; log "started slurmctld"
fi
wait_until 60 "slurmctld (scontrol ping)" sh -c 'scontrol ping | grep -q UP'
if alive /run/slurmd.pid; then log "slurmd already running"; else
  FRESH=1; /usr/sbin/slurmd; started slurmd /run/slurmd.pid; log "started slurmd"
fi
state=""
for _ in $(seq 1 120); do
  state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    *drain*|down*|inval*|*fail*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.25
done
case "$state" in idle|mixed|allocated|completing) ;; *) die "node ${HOST} is '${state}'" ;; esac

# 6. smoke test after a (re)start: a batch job that shows up in sacct ------------------------------
# (skipped when everything was already up: the node may be busy with other jobs)
if [ "$FRESH" = 1 ] || [ "${SLURM_SMOKE_TEST:-0}" = 1 ]; then
  jid=$(sbatch --parsable -p "$PARTITION" -A "$ACCOUNT" -t 1 -o /dev/null --wrap true) || die "sbatch failed"
  wait_until 180 "job $jid in sacct" sh -c "sacct -n -X -P -j $jid -o State | grep -qx COMPLETED"
  log "smoke job ${jid} COMPLETED in sacct"
fi
log "ready: partition ${PARTITION}, account ${ACCOUNT}, node ${HOST} ${state}"
