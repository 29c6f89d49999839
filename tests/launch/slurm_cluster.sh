#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the launch tests. Source it, then:
#   slurm_up DIR      installs slurmctld/slurmd/munge from Debian if missing, writes a minimal
#                     slurm.conf under DIR, starts munged, slurmctld and slurmd (as root) and waits
#                     until the node is idle; returns non-zero with the reason on stderr if it can't
#   slurm_down        stops every daemon slurm_up started (also call it from a trap)
# Everything lives under DIR (state, spool, logs, pid files, munge socket); other Slurm or munge
# installations on the machine are left alone (own ports, own socket).

slurm_up() {
  local dir=$1
  SLURM_TEST_DIR=$dir
  mkdir -p "$dir"/{state,spool,munge,log}
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge \
        >"$dir/log/apt.log" 2>&1 || { echo "cannot install Slurm (see $dir/log/apt.log)" >&2; return 1; }
    else
      echo "Slurm is not installed and cannot be installed here (needs root and apt-get)" >&2
      return 1
    fi
  fi
  [[ $(id -u) == 0 ]] || { echo "the test cluster runs its daemons as root" >&2; return 1; }
  # munge: our own key and socket.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 2>/dev/null
  chmod 400 "$dir/munge/munge.key"
  chown root "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" \
    || { echo "munged did not start (see $dir/log/munged.log)" >&2; return 1; }
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
  cat >"$dir/slurm.conf" <<CONF
ClusterName=asctest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
SchedulerParameters=nohold_on_prolog_fail
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" || { echo "slurmctld did not start (see $dir/log/slurmctld.log)" >&2; slurm_down; return 1; }
  slurmd -f "$SLURM_CONF" || { echo "slurmd did not start (see $dir/log/slurmd.log)" >&2; slurm_down; return 1; }
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then return 0; fi
    sleep 0.5
  done
  echo "the test node did not become idle: $(sinfo -h -o '%T %E' 2>&1)" >&2
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2
  slurm_down
  return 1
}

slurm_down() {
  local dir=${SLURM_TEST_DIR:-}
  [[ -n $dir ]] || return 0
  # Jobs first (a failed check can leave one running), so no trainer outlives the cluster.
  if [[ -n ${SLURM_CONF:-} ]]; then
    scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 100); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [[ -f $pidfile ]] || continue
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
  done
  SLURM_TEST_DIR=
}
