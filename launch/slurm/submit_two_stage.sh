#!/usr/bin/env bash
# Submits both Asclepius stages as a chain: instruction tuning starts only after pretraining
# succeeded (--dependency=afterok), from pretraining's newest checkpoint (the instruct recipes'
# model.init_from names the stage-one run directory).
#
#   launch/slurm/submit_two_stage.sh MODEL [sbatch options...]        MODEL: llama-7b, llama2-13b, ...
#   launch/slurm/submit_two_stage.sh --recipes PRETRAIN.yaml INSTRUCT.yaml [sbatch options...]
#
# With MODEL the per-model batch scripts are used (their job shape; options given here override
# single settings); with --recipes the generic one, shaped by the options given (default: one
# node, 8 tasks, 8 GPUs).
# Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ${1:-} == --recipes ]]; then
  pre=${2:?PRETRAIN recipe}; ins=${3:?INSTRUCT recipe}; shift 3
  # The generic script: the job shape is the options given here (default: 1 node, 8 tasks,
  # 8 GPUs when none are given).
  first=("$here/asclepius.sbatch" "$pre") second=("$here/asclepius.sbatch" "$ins")
  defaults=()
  [[ $# -gt 0 ]] || defaults=(--nodes=1 --ntasks-per-node=8 --gpus-per-node=8)
else
  model=${1:?usage: submit_two_stage.sh MODEL [sbatch options] | --recipes PRE INS [sbatch options]}
  shift
  pre=recipes/asclepius/$model-pretrain.yaml ins=recipes/asclepius/$model-instruct.yaml
  # The per-model scripts carry their own job shape, time limit and signal margin.
  first=("$here/$model-pretrain.sbatch") second=("$here/$model-instruct.sbatch")
  defaults=()
fi
for f in "$pre" "$ins" "${first[0]}" "${second[0]}"; do
  [[ -f $f ]] || { echo "submit_two_stage.sh: no $f" >&2; exit 2; }
done
one=$(sbatch --parsable --job-name=asclepius-pretrain "${defaults[@]}" "$@" "${first[@]}")
two=$(sbatch --parsable --job-name=asclepius-instruct --dependency=afterok:"${one%%;*}" \
  --kill-on-invalid-dep=yes "${defaults[@]}" "$@" "${second[@]}")
echo "pretrain job ${one%%;*}; instruct job ${two%%;*} (starts after the first succeeds)"
