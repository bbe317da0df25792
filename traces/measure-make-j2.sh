#!/bin/sh
# The program-time inputs of `keymm bench macro` (docs/reproductions.md section 2): a timed log of
# `make -j2` of src/ and real counts of the same build, untraced. Run from anywhere:
#   sh traces/measure-make-j2.sh
# Writes traces/make-j2-timed.strace (strace -f -ttt -T) and traces/make-j2-timed.counts.json:
# the build's user and system CPU time (perf stat's "seconds user/sys", median of 5 runs: this
# host has no hardware counters, so no cycles or instructions from perf) and cachegrind's
# instruction and last-level-cache counts per process (the LL set to the model's default cache,
# 32 MiB 16-way 64-byte lines). Needs strace, perf, valgrind, make, gcc, /usr/bin/python3.
set -eu
T=$(cd "$(dirname "$0")" && pwd)
cd "$T"
W=$(mktemp -d)
make -s -C src clean
strace -f -ttt -T -o make-j2-timed.strace make -C src -j2 > /dev/null
for i in 1 2 3 4 5; do
    make -s -C src clean
    perf stat -e task-clock -o "$W/stat.$i" make -s -C src -j2 > /dev/null
done
make -s -C src clean
valgrind --tool=cachegrind --trace-children=yes --cache-sim=yes --LL=33554432,16,64 \
    --cachegrind-out-file="$W/cg.%p" make -s -C src -j2 > /dev/null 2> "$W/valgrind.log"
make -s -C src clean
/usr/bin/python3 - "$W" > make-j2-timed.counts.json <<'PY'
import glob, json, statistics, sys
w = sys.argv[1]
def stat(name):
    vals = []
    for f in sorted(glob.glob(w + "/stat.*")):
        for line in open(f):
            p = line.split()
            if name == "task-clock" and len(p) > 1 and p[1] == "msec" and p[2] == "task-clock":
                vals.append(float(p[0].replace(",", "")) / 1000)
            elif len(p) == 3 and p[1:] == ["seconds", name]:
                vals.append(float(p[0]))
    return round(statistics.median(vals), 6), [round(v, 6) for v in vals]
procs = []
for f in glob.glob(w + "/cg.*"):
    cmd, events, summary = "", [], []
    for line in open(f):
        if line.startswith("cmd: "): cmd = line[5:].strip()
        elif line.startswith("events: "): events = line.split()[1:]
        elif line.startswith("summary: "): summary = [int(x) for x in line.split()[1:]]
    row = {"cmd": cmd.split()[0] if cmd else ""}
    row.update(dict(zip(events, summary)))
    procs.append(row)
procs.sort(key=lambda r: (r["cmd"], r.get("Ir", 0)))
keys = ["Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw"]
totals = {k: sum(r.get(k, 0) for r in procs) for k in keys}
user, user_runs = stat("user")
sys_, sys_runs = stat("sys")
clock, clock_runs = stat("task-clock")
print(json.dumps({
    "schema": 1,
    "trace": "make-j2-timed.strace",
    "command": "make -C src -j2",
    "perf_stat": {"runs": len(user_runs), "user_seconds": user, "sys_seconds": sys_,
                  "task_clock_seconds": clock, "user_seconds_runs": user_runs,
                  "sys_seconds_runs": sys_runs, "task_clock_seconds_runs": clock_runs},
    "cachegrind": {"ll": "33554432,16,64", "processes": len(procs), "totals": totals, "per_process": procs},
}, indent=1, sort_keys=True))
PY
rm -rf "$W"
ls -l make-j2-timed.strace make-j2-timed.counts.json
