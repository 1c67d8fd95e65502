#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for test/batch-slurm.test.ts (melbo batch --backend slurm).
# Installs Debian's slurm-wlm and munge when missing (needs root), writes a minimal slurm.conf for
# this machine (its real CPUs and memory, from `slurmd -C`), starts munged, slurmctld and slurmd,
# and waits until the node is idle. Idempotent: daemons already running are left alone.
#
# Exit 0: `sinfo` shows the node up. Exit 3: the cluster cannot be started here (not root, no
# apt, daemons refuse to start); the last line says why, and the test skips with that reason.
#
# A slurm.conf that this script did not write is never replaced: then the machine has its own
# Slurm and the script only checks that it answers.
set -u

MARK="# written by melbo scripts/slurm-localhost.sh"
CONF=/etc/slurm/slurm.conf
STATE=/var/lib/slurm-melbo
LOGS=/var/log/slurm-melbo
RUN=/run/slurm-melbo

fail() {
  echo "slurm-localhost: $*" >&2
  exit 3
}

node_ready() {
  # Idle, or mixed/allocated when earlier jobs still run: the node takes work either way.
  local state
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1)
  case "$state" in
    idle* | mix* | alloc*) return 0 ;;
    *) return 1 ;;
  esac
}

if command -v sinfo >/dev/null 2>&1 && node_ready; then
  echo "slurm-localhost: the node is up"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail "needs root to install and start slurmctld/slurmd"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "slurm-wlm and munge are missing and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # `apt-get update` only when the package is unknown (a fresh container has no lists).
  apt-cache show slurm-wlm >/dev/null 2>&1 || apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >/dev/null 2>&1 ||
    fail "apt-get install slurm-wlm munge failed"
fi

# munge: the key is made by the package's postinst; make one when it is missing.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then mungekey --create --force >/dev/null 2>&1; else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # munged refuses to run as root; it runs as its own user, as the Debian service does.
  runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force 2>/dev/null || fail "munged does not start"
  for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munged started but does not answer"
fi

if [ ! -f "$CONF" ] || head -n 1 "$CONF" | grep -qF "$MARK"; then
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
  # The node line as slurmd sees this machine (CPUs, sockets, cores, memory), renamed localhost.
  NODE=$(slurmd -C 2>/dev/null | head -n 1)
  case "$NODE" in NodeName=*) ;; *) fail "slurmd -C did not describe this machine" ;; esac
  NODE=$(echo "$NODE" | sed -E 's/^NodeName=[^ ]+/NodeName=localhost NodeAddr=127.0.0.1/')
  cat >"$CONF" <<EOF
$MARK
ClusterName=melbo-localhost
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
# scancel sends SIGTERM, then SIGKILL after KillWait: melbo saves its last block and exits 130.
KillWait=30
SchedulerParameters=defer_batch
$NODE State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
fi

pgrep -x slurmctld >/dev/null 2>&1 || slurmctld 2>/dev/null || fail "slurmctld does not start (see $LOGS/slurmctld.log)"
pgrep -x slurmd >/dev/null 2>&1 || slurmd -N localhost 2>/dev/null || fail "slurmd does not start (see $LOGS/slurmd.log)"

for _ in $(seq 1 60); do
  if node_ready; then
    echo "slurm-localhost: the node is up"
    exit 0
  fi
  # A node that was down when slurmctld last ran stays down: resume it.
  scontrol update nodename=localhost state=resume >/dev/null 2>&1
  sleep 1
done
fail "the node did not become idle within 60 s: $(sinfo -h -N -o '%N %t %E' 2>&1 | head -n 1)"
