#!/usr/bin/env bash
# One workstation, no Slurm: N ranks of `asclepius train` under mpirun, one per core group (CPU)
# or per GPU (each rank takes the GPU of its local rank, OMPI_COMM_WORLD_LOCAL_RANK).
#
#   launch/mpirun.sh N RECIPE [key=value ...]
#
# Binds each rank to its own cores (--map-by slot:PE=cores/N) and sets its thread count to match,
# oversubscribes only when N exceeds the cores, and allows running as root in containers.
set -euo pipefail
n=${1:?usage: launch/mpirun.sh N RECIPE [key=value ...]}
recipe=${2:?usage: launch/mpirun.sh N RECIPE [key=value ...]}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ASCLEPIUS_BIN:-$root/build/bin/asclepius}
[[ -x $bin ]] || { echo "launch/mpirun.sh: no binary at $bin (build first, or set ASCLEPIUS_BIN)" >&2; exit 2; }
[[ -f $recipe ]] || { echo "launch/mpirun.sh: no recipe $recipe" >&2; exit 2; }
# Check the recipe for N ranks before starting any.
"$bin" train "$recipe" "$@" --print-config --world-size "$n" >/dev/null
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if ((n <= cores)); then
  pe=$((cores / n))
  # nproc counts hardware threads: bind in those units so SMT machines do not refuse the map.
  exec mpirun -np "$n" --use-hwthread-cpus --map-by "slot:PE=$pe" --bind-to hwthread \
    -x OMP_NUM_THREADS="$pe" \
    "$bin" train "$recipe" "$@" train.threads="$pe"
fi
exec mpirun -np "$n" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
  "$bin" train "$recipe" "$@" train.threads=1
