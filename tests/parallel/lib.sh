# lib.sh — sourced by the multi-rank test scripts: arguments (ASCLEPIUS PYTHON), the tiny recipe,
# mpirun as root, a temporary directory removed at exit, and check NAME 'CONDITION'.
set -uo pipefail
bin=$1 py=$2
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
recipe=$here/../../recipes/demo/tiny.yaml
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi; }
