#!/bin/sh
# The 10M-call fuzz campaign (docs/fuzzing.md "Long campaign"): 20 jobs of `keymm fuzz` (the 5
# policies x seeds 101-104, 500,000 calls each = 10,000,000 calls), run by WORKERS processes at a
# time (default 3) on a shared host; one log per job in OUT (default fuzz10m/). A worker claims a
# job by creating OUT/claim-SEED-POLICY (mkdir is atomic), so more workers can be started later
# on the same OUT. --keep-going: a violation does not end a job; the first one of each job is
# shrunk into OUT/fuzz-POLICY-SEED.strace.
# Usage: scripts/fuzz-10m.sh KEYMM [OUT] [WORKERS] [SWEEP_EVERY]
KEYMM=${1:?usage: fuzz-10m.sh KEYMM [OUT] [WORKERS] [SWEEP_EVERY]}
OUT=${2:-fuzz10m}
WORKERS=${3:-3}
SWEEP=${4:-4}
mkdir -p "$OUT"
worker() {
  for seed in 101 102 103 104; do
    for policy in none wrapper integrated eager per-keyid; do
      mkdir "$OUT/claim-$seed-$policy" 2>/dev/null || continue
      "$KEYMM" fuzz --ops 500000 --seed "$seed" --policy "$policy" --keep-going --sweep-every "$SWEEP" \
        --output "$OUT/fuzz-$policy-$seed.strace" > "$OUT/$policy-$seed.log" 2>&1
      rc=$?
      echo "$(date -u +%H:%M:%S) seed $seed policy $policy exit $rc: $(head -1 "$OUT/$policy-$seed.log")"
    done
  done
}
i=0
while [ "$i" -lt "$WORKERS" ]; do worker & i=$((i + 1)); done
wait
