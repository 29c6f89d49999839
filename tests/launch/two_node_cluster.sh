#!/usr/bin/env bash
# A two-node Slurm cluster on this machine, for the launch tests. Each node is its own network
# namespace (own veth interface and IP address, joined to the others by a bridge) with its own
# hostname (UTS namespace) and /etc/hosts (mount namespace), and runs its own slurmd; slurmctld
# and munged run in the machine's namespaces, on the bridge's address. Source it, then:
#   two_nodes_up DIR   builds the network, starts munged, slurmctld and one slurmd per node (as
#                      root) and waits until both nodes are idle. DIR is the nodes' shared storage
#                      (seen at the same path everywhere: put runs there); the cluster's own files
#                      are in DIR/cluster, each node's private /tmp in DIR/cluster/nodeN/tmp. Returns 77
#                      when this machine
#                      cannot make network namespaces, another non-zero status for any other
#                      failure, the reason on stderr in both cases
#   two_nodes_down     stops the jobs, every daemon and process on the nodes, removes the
#                      namespaces, interfaces and the bridge (also call it from a trap; idempotent)
#   on_node N CMD...   runs CMD on node N (1 or 2): in its network, UTS and mount namespaces
#   node_name N, node_ip N, node_iface, node_kill N (kills node N's slurmd and every process in
#   its namespace: the node is lost), node_slurmd N (starts node N's slurmd again)
#   $TWO_NODES_RSH     an rsh agent for `mpirun --mca plm_rsh_agent` (ssh between the nodes)
# Names and the subnet are derived from this shell's pid, so that a stale cluster of a killed run
# does not collide; ports 16827/16828 differ from the one-node cluster's.

TWO_NODES_DIR=
TWO_NODES_TAG=
TWO_NODES_NET=
TWO_NODES_RSH=
declare -a TWO_NODES_ANCHOR=()

node_name() { echo "ascnode$1"; }
node_ip() { echo "$TWO_NODES_NET.$((10 + $1))"; }
node_iface() { echo "ascnet0"; }  # the veth end inside each node
_node_ns() { echo "asc-$TWO_NODES_TAG-n$1"; }

on_node() {
  local n=$1; shift
  nsenter -t "${TWO_NODES_ANCHOR[$n]}" -n -u -m "$@"
}

_two_nodes_net() {  # builds bridge + 2 namespaces; each node gets an anchor process holding them
  local dir=$1 shared=$2 br="a${TWO_NODES_TAG}br"
  ip link add "$br" type bridge || return 77
  ip addr add "$TWO_NODES_NET.1/24" dev "$br" && ip link set "$br" up || return 1
  {
    echo "127.0.0.1 localhost"
    echo "$TWO_NODES_NET.1 $(hostname -s)"
    for n in 1 2; do echo "$(node_ip $n) $(node_name $n)"; done
  } >"$dir/hosts"
  for n in 1 2; do
    local ns host_end="a${TWO_NODES_TAG}n$n"
    ns=$(_node_ns $n)
    ip netns add "$ns" || return 77
    ip link add "$host_end" type veth peer name "$(node_iface)" netns "$ns" &&
      ip link set "$host_end" master "$br" up &&
      ip -n "$ns" addr add "$(node_ip $n)/24" dev "$(node_iface)" &&
      ip -n "$ns" link set "$(node_iface)" up && ip -n "$ns" link set lo up || return 1
    # The anchor: a process in the node's network namespace with its own hostname and /etc/hosts;
    # everything on the node (slurmd, and through it the jobs) is started inside its namespaces.
    # (nsenter, not `ip netns exec`, which remounts /sys and so hides the cgroup tree slurmd reads.)
    # A node has its own /tmp and /dev/shm (Slurm's PMIx plugin, Open MPI's session directory and
    # shared memory live there, named after the job, not the node); DIR stays visible at its path,
    # as shared storage.
    local private=$dir/node$n/tmp rel setup
    mkdir -p "$private"
    setup="hostname $(node_name $n) && mount --bind $dir/hosts /etc/hosts"
    if [[ $shared == /tmp/* ]]; then
      rel=${shared#/tmp/}
      mkdir -p "$private/$rel"
      setup+=" && mount --bind $shared $private/$rel"
    fi
    setup+=" && mount --rbind $private /tmp && mount -t tmpfs -o size=4g shm /dev/shm"
    nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private bash -c \
      "$setup && exec sleep infinity" </dev/null >"$dir/log/anchor-$n.log" 2>&1 &
    TWO_NODES_ANCHOR[$n]=$!
    disown "${TWO_NODES_ANCHOR[$n]}"  # killed in two_nodes_down, without the shell's notice
  done
  # mpirun without Slurm starts its daemon on another node through an "rsh agent" (ssh in real
  # life): this one runs the command in that node's namespaces.
  {
    echo '#!/usr/bin/env bash'
    echo '# plm_rsh_agent for the two-node test cluster: [OPTIONS] HOST COMMAND... runs COMMAND on HOST'
    echo 'while [[ ${1:-} == -* ]]; do shift; done'
    echo 'case $1 in'
    for n in 1 2; do echo "  $(node_name $n)) pid=${TWO_NODES_ANCHOR[$n]} ;;"; done
    echo '  *) echo "node-rsh: no node $1" >&2; exit 255 ;;'
    echo 'esac'
    echo 'shift'
    echo 'exec nsenter -t "$pid" -n -u -m -- /bin/sh -c "$*"'
  } >"$dir/node-rsh"
  chmod +x "$dir/node-rsh"
  TWO_NODES_RSH=$dir/node-rsh
  for n in 1 2; do
    for _ in $(seq 50); do
      [[ $(on_node $n hostname 2>/dev/null) == "$(node_name $n)" ]] && break
      sleep 0.1
    done
    [[ $(on_node $n hostname 2>/dev/null) == "$(node_name $n)" ]] ||
      { echo "node $n did not come up: $(cat "$dir/log/anchor-$n.log")" >&2; return 77; }
  done
  # One node must reach the other across the bridge (TCP, as MPI will): a closed port refuses.
  local probe
  probe=$(on_node 1 timeout 5 bash -c "exec 3<>/dev/tcp/$(node_ip 2)/9" 2>&1)
  [[ $probe == *refused* ]] ||
    { echo "the nodes cannot reach each other across the bridge" >&2; return 1; }
}

_two_nodes_conf() {
  local dir=$1 cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.45) }' /proc/meminfo)
  cat >"$dir/slurm.conf" <<CONF
ClusterName=asctwo
SlurmctldHost=$(hostname -s)($TWO_NODES_NET.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16827
SlurmdPort=16828
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
SlurmdTimeout=10
MessageTimeout=5
SchedulerParameters=nohold_on_prolog_fail
NodeName=$(node_name 1) NodeAddr=$(node_ip 1) NodeHostname=$(node_name 1) CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=$(node_name 2) NodeAddr=$(node_ip 2) NodeHostname=$(node_name 2) CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$(node_name 1),$(node_name 2) Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

# slurmd on node N (again after node_kill: the node comes back).
node_slurmd() {
  local n=$1 dir=$TWO_NODES_DIR
  mkdir -p "$dir/spool/$(node_name "$n")"
  on_node "$n" slurmd -f "$SLURM_CONF" -N "$(node_name "$n")" ||
    { echo "slurmd on node $n did not start (see $dir/log/slurmd-$(node_name "$n").log)" >&2; return 1; }
}

two_nodes_up() {
  local shared dir
  shared=$(mkdir -p "$1" && realpath "$1")
  dir=$shared/cluster
  [[ $(id -u) == 0 ]] || { echo "the two-node cluster needs root (network namespaces, daemons)" >&2; return 77; }
  for c in ip nsenter unshare slurmctld slurmd munged sinfo; do
    command -v $c >/dev/null || { echo "$c is not installed (tools/setup.sh installs it)" >&2; return 77; }
  done
  TWO_NODES_DIR=$dir
  TWO_NODES_TAG=$(($$ % 10000))
  TWO_NODES_NET=10.213.$(($$ % 250))
  mkdir -p "$dir"/{state,spool,munge,log}
  local rc=0
  _two_nodes_net "$dir" "$shared" || rc=$?
  if ((rc)); then
    ((rc == 77)) && echo "cannot make network namespaces here (ip netns add / ip link add bridge failed)" >&2
    two_nodes_down
    return $rc
  fi
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 2>/dev/null
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" ||
    { echo "munged did not start (see $dir/log/munged.log)" >&2; two_nodes_down; return 1; }
  _two_nodes_conf "$dir"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" ||
    { echo "slurmctld did not start (see $dir/log/slurmctld.log)" >&2; two_nodes_down; return 1; }
  node_slurmd 1 && node_slurmd 2 || { two_nodes_down; return 1; }
  for _ in $(seq 120); do
    [[ $(sinfo -h -N -o '%N %T' 2>/dev/null | grep -c ' idle$') == 2 ]] && return 0
    sleep 0.5
  done
  echo "the nodes did not become idle: $(sinfo -h -N -o '%N %T %E' 2>&1 | tr '\n' ';')" >&2
  tail -5 "$dir/log/slurmctld.log" "$dir"/log/slurmd-*.log >&2
  two_nodes_down
  return 1
}

# Node N is lost: its slurmd, job steps and ranks are killed at once (SIGKILL, no goodbye).
node_kill() {
  local ns pids
  ns=$(_node_ns "$1")
  pids=$(ip netns pids "$ns" 2>/dev/null | grep -vx "${TWO_NODES_ANCHOR[$1]}")
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null
  rm -f "$TWO_NODES_DIR/slurmd-$(node_name "$1").pid"
  return 0
}

two_nodes_down() {
  local dir=$TWO_NODES_DIR
  [[ -n $dir ]] || return 0
  if [[ -n ${SLURM_CONF:-} && -f $dir/slurmctld.pid ]]; then
    scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 50); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.2; done
  fi
  local pidfile pid n ns
  for pidfile in "$dir"/slurmd-*.pid "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
  done
  # Whatever still runs on a node (job steps, ranks, the anchor) goes with it.
  for n in 1 2; do
    ns=$(_node_ns $n)
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    [[ -n ${TWO_NODES_ANCHOR[$n]:-} ]] && kill -9 "${TWO_NODES_ANCHOR[$n]}" 2>/dev/null
    ip link del "a${TWO_NODES_TAG}n$n" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "a${TWO_NODES_TAG}br" 2>/dev/null
  TWO_NODES_DIR=
  TWO_NODES_ANCHOR=()
  return 0
}
