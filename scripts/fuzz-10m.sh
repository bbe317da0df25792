#!/bin/sh
# The 10M-call fuzz campaign (docs/fuzzing.md "Long campaign"): 20 jobs of `keymm fuzz` (the 5
# policies x seeds 101-104, 500,000 calls each = 10,000,000 calls), run JOBS at a time
# (default 3) on a shared host; one log per job in OUT (default fuzz10m/). --keep-going: a
# violation does not end a job; each job's first one per policy is shrunk into OUT.
# Usage: scripts/fuzz-10m.sh KEYMM [OUT] [JOBS] [SWEEP_EVERY]
KEYMM=${1:?usage: fuzz-10m.sh KEYMM [OUT] [JOBS] [SWEEP_EVERY]}
OUT=${2:-fuzz10m}
JOBS=${3:-3}
SWEEP=${4:-4}
mkdir -p "$OUT"
for seed in 101 102 103 104; do
  for policy in none wrapper integrated eager per-keyid; do
    echo "$seed $policy"
  done
done | xargs -P "$JOBS" -L 1 sh -c '
  # $0 keymm, $1 sweep, $2 out, $3 seed, $4 policy
  "$0" fuzz --ops 500000 --seed "$3" --policy "$4" --keep-going --sweep-every "$1" \
    --output "$2/fuzz-$4-$3.strace" > "$2/$4-$3.log" 2>&1
  rc=$?
  echo "$(date -u +%H:%M:%S) seed $3 policy $4 exit $rc: $(head -1 "$2/$4-$3.log")"
' "$KEYMM" "$SWEEP" "$OUT"
