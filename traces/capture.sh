#!/bin/sh
# Re-captures the KeyMM trace corpus on this machine (see README.md). Run from anywhere:
#   sh traces/capture.sh
# Needs strace, perf (linux-perf), gcc, make, git, node and Debian's /usr/bin/python3.
set -eu
T=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$T/.." && pwd)
cd "$T"

strace -f -o python3-startup.strace /usr/bin/python3 -c pass
strace -f -ttt -T -o python3-imports.strace \
    /usr/bin/python3 -c "import json, decimal, email, http.client, xml.dom.minidom"
(cd src && strace -f -o ../gcc-compile.strace gcc -O2 -Wall -c -o /tmp/keymm-arena.o arena.c)
rm -f /tmp/keymm-arena.o
# git runs without system/user configuration (an empty HOME), so no host settings enter the corpus.
GITHOME=$(mktemp -d)
env HOME="$GITHOME" XDG_CONFIG_HOME="$GITHOME" GIT_CONFIG_NOSYSTEM=1 \
    strace -f -o git-log.strace git -C "$REPO" log --oneline -n 20
env HOME="$GITHOME" XDG_CONFIG_HOME="$GITHOME" GIT_CONFIG_NOSYSTEM=1 \
    strace -f -tt -T -y -o git-status.strace git -C "$REPO" --no-optional-locks status --short
rmdir "$GITHOME"
make -s -C src clean
strace -f -o make-j2.strace make -C src -j2
strace -f -o arenastat.strace src/arenastat 100000
make -s -C src clean
gcc -O2 -Wall -o src/pkeys-nopku src/pkeys-nopku.c
strace -f -o pkeys-nopku.strace src/pkeys-nopku
rm -f src/pkeys-nopku
gcc -O2 -Wall -o src/dropprivs src/dropprivs.c
strace -f -o dropprivs.strace src/dropprivs
rm -f src/dropprivs
gcc -O2 -Wall -o src/sealguard src/sealguard.c
strace -f -o sealguard.strace src/sealguard
rm -f src/sealguard
perf trace -F all --syscalls --sort-events -o python3-startup.perf -- /usr/bin/python3 -c pass
# A user's own capture: python3 through a shell shim, no terminal (setsid, stdin /dev/null), so
# bash's open of /dev/tty fails with ENXIO (replay learns it: the model has no /dev/tty).
setsid sh -c 'strace -f -o python3-shim-json.strace src/python3-shim -c "import json"' </dev/null >/dev/null 2>&1
# The timed build and its counts for `keymm bench macro`.
sh "$T/measure-make-j2.sh"
# Multi-threaded programs (threads share one mm: docs/vm-core.md "Threads").
gcc -O2 -Wall -pthread -o /tmp/keymm-threadmaps threads/threadmaps.c
strace -f -o threadmaps.strace /tmp/keymm-threadmaps
perf trace -F all --syscalls --sort-events -o threadmaps.perf -- /tmp/keymm-threadmaps
rm -f /tmp/keymm-threadmaps
strace -f -tt -T -o python3-threads.strace /usr/bin/python3 threads/pythreads.py
strace -f -o node-threads.strace node -e 'setTimeout(() => {}, 10)'
perf trace -F all --syscalls --sort-events -o node-threads.perf -- node -e 'setTimeout(() => {}, 10)'
ls -l *.strace *.perf
