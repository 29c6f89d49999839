#!/usr/bin/env bash
# Submits both Asclepius stages as a chain: instruction tuning starts only after pretraining
# succeeded (--dependency=afterok), from pretraining's newest checkpoint (the instruct recipes'
# model.init_from names the stage-one run directory).
#
#   launch/slurm/submit_two_stage.sh MODEL [sbatch options...]        MODEL: llama-7b, llama2-13b, ...
#   launch/slurm/submit_two_stage.sh --recipes PRETRAIN.yaml INSTRUCT.yaml [sbatch options...]
#
# Defaults: one node, 8 tasks and 8 GPUs (override with sbatch options, e.g. --nodes=2).
# Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ${1:-} == --recipes ]]; then
  pre=${2:?PRETRAIN recipe}; ins=${3:?INSTRUCT recipe}; shift 3
else
  model=${1:?usage: submit_two_stage.sh MODEL [sbatch options] | --recipes PRE INS [sbatch options]}
  shift
  pre=recipes/asclepius/$model-pretrain.yaml ins=recipes/asclepius/$model-instruct.yaml
fi
for f in "$pre" "$ins"; do [[ -f $f ]] || { echo "submit_two_stage.sh: no recipe $f" >&2; exit 2; }; done
opts=("$@")
[[ ${#opts[@]} -gt 0 ]] || opts=(--nodes=1 --ntasks-per-node=8 --gpus-per-node=8)
one=$(sbatch --parsable --job-name=asclepius-pretrain "${opts[@]}" "$here/asclepius.sbatch" "$pre")
two=$(sbatch --parsable --job-name=asclepius-instruct --dependency=afterok:"${one%%;*}" \
  --kill-on-invalid-dep=yes "${opts[@]}" "$here/asclepius.sbatch" "$ins")
echo "pretrain job ${one%%;*}; instruct job ${two%%;*} (starts after the first succeeds)"
