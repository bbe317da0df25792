#!/bin/bash
# Submits a keymm fuzz campaign or sweep as a Slurm job array of SHARDS tasks (at most
# CONCURRENT at once) plus its merge as a dependent job (afterany + merge's own completeness
# check). Prints the two job ids.
# Usage:
#   scripts/slurm/submit.sh fuzz  OUT SHARDS [keymm fuzz options...]
#   scripts/slurm/submit.sh sweep OUT SHARDS SPEC.toml [keymm sweep options...]
# Environment: KEYMM (default: the release build next to this repository), CONCURRENT (default
# SHARDS), NICE (default 0), REPORT=1 (the merge also renders report.html), SBATCH_ARGS (extra
# sbatch options for every job, e.g. "--partition=debug").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kind=${1:?usage: submit.sh fuzz|sweep OUT SHARDS ...}
out=$(realpath -m "${2:?OUT}")
shards=${3:?SHARDS}
shift 3
export KEYMM=${KEYMM:-$(realpath "$here/../../.build/release/keymm")}
export OUT=$out NICE=${NICE:-0} REPORT=${REPORT:-0}
unset SHARDS   # the array tasks take their shard from SLURM_ARRAY_TASK_ID/COUNT/MIN
mkdir -p "$out"
# shellcheck disable=SC2086
case $kind in
  fuzz)
    export FUZZ_ARGS="$*"
    array=$(sbatch --parsable ${SBATCH_ARGS:-} --chdir "$out" --array=0-$((shards - 1))%"${CONCURRENT:-$shards}" "$here/fuzz-array.sbatch")
    ;;
  sweep)
    export SPEC=$(realpath "${1:?SPEC}"); shift
    export SWEEP_ARGS="$*"
    array=$(sbatch --parsable ${SBATCH_ARGS:-} --chdir "$out" --array=0-$((shards - 1))%"${CONCURRENT:-$shards}" "$here/sweep-array.sbatch")
    ;;
  *) echo "submit.sh: expected fuzz or sweep, got $kind" >&2; exit 2 ;;
esac
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_ARGS:-} --chdir "$out" --dependency=afterany:"$array" "$here/merge.sbatch")
echo "array job $array ($shards tasks), merge job ${merge%%;*}; shards and merged.json in $out"
echo "to redo shard I: KEYMM=$KEYMM OUT=$out SHARDS=$shards ${FUZZ_ARGS:+FUZZ_ARGS=\"$FUZZ_ARGS\" }${SPEC:+SPEC=$SPEC }${SWEEP_ARGS:+SWEEP_ARGS=\"$SWEEP_ARGS\" }sbatch --chdir $out --array=I $here/$kind-array.sbatch"
