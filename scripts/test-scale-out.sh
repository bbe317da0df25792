#!/bin/bash
# Command-line checks of sharding (docs/scale-out.md), with the keymm binary:
#  1. `SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=4 keymm fuzz ...` writes the same lines as
#     `keymm fuzz ... --shard 2/4` (wall seconds aside);
#  2. 3 shards run with GNU parallel (or a shell loop) merge to the unsharded `keymm fuzz --json`
#     and `keymm sweep --format json` in every modeled number;
#  3. `keymm merge` exits 2 on a missing, duplicated or foreign shard;
#  4. when `sbatch` is on PATH (scripts/slurm/single-node/start.sh), the same fuzz campaign and
#     sweep as Slurm job arrays with a dependent merge job, compared with the unsharded results.
# Usage: scripts/test-scale-out.sh [KEYMM]   (default .build/release/keymm, else .build/debug/keymm)
set -uo pipefail
cd "$(dirname "$0")/.."
keymm=${1:-}
[ -n "$keymm" ] || for k in .build/release/keymm .build/debug/keymm; do [ -x "$k" ] && { keymm=$k; break; }; done
keymm=$(realpath "${keymm:?no keymm binary; build it first}")
tmp=$(mktemp -d /tmp/keymm-scale-out.XXXXXX)
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
# Modeled content only: drop host time and host facts.
strip() { python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("wall", None); d.pop("host", None)
for r in d.get("results", []):
    r.pop("wall_seconds", None); r.pop("host_rate", None)
print(json.dumps(d, sort_keys=True))' "$1"; }
nowall() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line); d.pop("wall_seconds", None); d.pop("host", None)
    print(json.dumps(d, sort_keys=True))' "$1"; }

fuzz=(--ops 300 --episode 50 --seed 7 --policy wrapper,integrated --keep-going --set cache=256K)
# 1. Slurm variables = --shard.
SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=4 "$keymm" fuzz "${fuzz[@]}" --format jsonl --quiet > "$tmp/env.jsonl"
"$keymm" fuzz "${fuzz[@]}" --shard 2/4 --format jsonl --quiet > "$tmp/flag.jsonl"
if cmp -s <(nowall "$tmp/env.jsonl") <(nowall "$tmp/flag.jsonl"); then ok "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=4 = --shard 2/4"; else bad "Slurm variables differ from --shard 2/4"; fi
JOB_COMPLETION_INDEX=2 "$keymm" fuzz "${fuzz[@]}" --shards 4 --format jsonl --quiet > "$tmp/k8s.jsonl"
if cmp -s <(nowall "$tmp/k8s.jsonl") <(nowall "$tmp/flag.jsonl"); then ok "JOB_COMPLETION_INDEX=2 --shards 4 = --shard 2/4"; else bad "JOB_COMPLETION_INDEX differs"; fi

# 2. Shards merge to the unsharded run.
"$keymm" fuzz "${fuzz[@]}" --json "$tmp/whole.json" --quiet
mkdir -p "$tmp/fuzz"
if command -v parallel >/dev/null; then
  parallel "$keymm" fuzz "${fuzz[@]}" --shard {}/3 --format jsonl --quiet '>' "$tmp/fuzz/fuzz-{}.jsonl" ::: 0 1 2
else
  for i in 0 1 2; do "$keymm" fuzz "${fuzz[@]}" --shard $i/3 --format jsonl --quiet > "$tmp/fuzz/fuzz-$i.jsonl"; done
fi
"$keymm" merge "$tmp/fuzz" --output "$tmp/merged.json" --quiet
if [ "$(strip "$tmp/merged.json")" = "$(strip "$tmp/whole.json")" ]; then ok "fuzz: merge of 3 shards = unsharded"; else bad "fuzz merge differs"; fi
spec=$tmp/sweep.toml
printf 'workloads = ["alloc-free"]\npolicies = ["integrated"]\nquick = true\ncache = ["256K", "1M"]\nkeyid-bits = [3, 6]\nmemory = "256M"\n' > "$spec"
"$keymm" sweep "$spec" --format json --output "$tmp/sweep-whole.json" --quiet
mkdir -p "$tmp/sweep"
for i in 0 1 2; do "$keymm" sweep "$spec" --shard $i/3 --format jsonl --output "$tmp/sweep/sweep-$i.jsonl" --quiet; done
"$keymm" merge "$tmp/sweep" --output "$tmp/sweep-merged.json" --quiet
if [ "$(strip "$tmp/sweep-merged.json")" = "$(strip "$tmp/sweep-whole.json")" ]; then ok "sweep: merge of 3 shards = unsharded"; else bad "sweep merge differs"; fi
"$keymm" report "$tmp/sweep" --output "$tmp/report.html" --quiet && ok "report of a shard directory" || bad "report of a shard directory"

# 3. Refusals.
"$keymm" merge "$tmp/fuzz/fuzz-0.jsonl" "$tmp/fuzz/fuzz-2.jsonl" --quiet > /dev/null 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "missing shard 1 of 3" "$tmp/err" && ok "missing shard: exit 2" || bad "missing shard: exit $rc $(cat "$tmp/err")"
"$keymm" merge "$tmp/fuzz" "$tmp/fuzz/fuzz-1.jsonl" --quiet > /dev/null 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "duplicated shard 1/3" "$tmp/err" && ok "duplicated shard: exit 2" || bad "duplicated shard: exit $rc $(cat "$tmp/err")"
"$keymm" merge "$tmp/fuzz/fuzz-0.jsonl" "$tmp/sweep/sweep-1.jsonl" "$tmp/fuzz/fuzz-2.jsonl" --quiet > /dev/null 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "foreign shard" "$tmp/err" && ok "foreign shard: exit 2" || bad "foreign shard: exit $rc $(cat "$tmp/err")"
head -c -40 "$tmp/fuzz/fuzz-1.jsonl" > "$tmp/killed.jsonl"
"$keymm" merge "$tmp/fuzz/fuzz-0.jsonl" "$tmp/killed.jsonl" "$tmp/fuzz/fuzz-2.jsonl" --quiet > /dev/null 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "did not finish" "$tmp/err" && ok "killed shard: exit 2" || bad "killed shard: exit $rc $(cat "$tmp/err")"

# 4. Slurm, when there is one.
if command -v sbatch >/dev/null && sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
  t0=$(date +%s.%N)
  KEYMM=$keymm scripts/slurm/submit.sh fuzz "$tmp/slurm-fuzz" 3 "${fuzz[@]}" | tee "$tmp/submit"
  KEYMM=$keymm scripts/slurm/submit.sh sweep "$tmp/slurm-sweep" 3 "$spec" | tee -a "$tmp/submit"
  for _ in $(seq 1 600); do [ -z "$(squeue -h -u "$(id -un)" -n keymm-fuzz,keymm-sweep,keymm-merge)" ] && break; sleep 1; done
  echo "slurm: both arrays and merges done in $(echo "$(date +%s.%N) - $t0" | bc) s"
  if [ "$(strip "$tmp/slurm-fuzz/merged.json")" = "$(strip "$tmp/whole.json")" ]; then ok "slurm fuzz array + merge = unsharded"; else bad "slurm fuzz merge differs"; fi
  if [ "$(strip "$tmp/slurm-sweep/merged.json")" = "$(strip "$tmp/sweep-whole.json")" ]; then ok "slurm sweep array + merge = unsharded"; else bad "slurm sweep merge differs"; fi
else
  echo "skip: no idle Slurm node (sbatch missing or not started: scripts/slurm/single-node/start.sh)"
fi
[ $fail = 0 ] && rm -rf "$tmp"
[ $fail = 0 ] && echo "scale-out checks passed" || echo "scale-out checks FAILED (files in $tmp)"
exit $fail
