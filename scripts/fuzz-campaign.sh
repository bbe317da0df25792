#!/bin/bash
# A keymm fuzz campaign (or sweep) on one machine with GNU parallel: SHARDS shards, JOBS at a time,
# each `keymm ... --shard I/SHARDS --format jsonl` into OUT/<kind>-I.jsonl, then `keymm merge`
# (which checks that every shard finished) into OUT/merged.json. The same shards a Slurm array
# (scripts/slurm/) or a Kubernetes Indexed Job (scripts/k8s/) would run; docs/scale-out.md.
# Usage:
#   scripts/fuzz-campaign.sh KEYMM OUT SHARDS JOBS fuzz [keymm fuzz options...]
#   scripts/fuzz-campaign.sh KEYMM OUT SHARDS JOBS sweep SPEC.toml [keymm sweep options...]
# e.g. the 10M-call campaign (5 policies x 2,000,000 calls):
#   scripts/fuzz-campaign.sh .build/release/keymm fuzz10m 8 2 fuzz --ops 2000000 --seed 101 --keep-going
# Environment: NICE (default 10). Exit status: the merge's (0 clean, 1 a violation, 2 incomplete).
set -uo pipefail
keymm=$(realpath "${1:?usage: fuzz-campaign.sh KEYMM OUT SHARDS JOBS fuzz|sweep ...}")
out=${2:?OUT}
shards=${3:?SHARDS}
jobs=${4:?JOBS}
kind=${5:?fuzz or sweep}
shift 5
command -v parallel >/dev/null || { echo "fuzz-campaign.sh: GNU parallel is needed (apt-get install parallel)" >&2; exit 2; }
mkdir -p "$out"
start=$(date +%s.%N)
case $kind in
  fuzz)
    parallel --jobs "$jobs" --joblog "$out/joblog" nice -n "${NICE:-10}" "$keymm" fuzz "$@" --shard {}/"$shards" \
      --format jsonl --quiet '>' "$out/fuzz-{}.jsonl" ::: $(seq 0 $((shards - 1)))
    ;;
  sweep)
    spec=$(realpath "${1:?SPEC}"); shift
    parallel --jobs "$jobs" --joblog "$out/joblog" nice -n "${NICE:-10}" "$keymm" sweep "$spec" "$@" --shard {}/"$shards" \
      --format jsonl --quiet --output "$out/sweep-{}.jsonl" ::: $(seq 0 $((shards - 1)))
    ;;
  *) echo "fuzz-campaign.sh: expected fuzz or sweep, got $kind" >&2; exit 2 ;;
esac
end=$(date +%s.%N)
echo "shards done in $(echo "$end - $start" | bc) s wall (joblog: $out/joblog)"
"$keymm" merge "$out" --output "$out/merged.json" --scenario "$out/keymm-fuzz.strace"
