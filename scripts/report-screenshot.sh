#!/bin/sh
# Renders a `keymm report` in headless Chromium and saves a screenshot, to check the report by eye.
#   scripts/report-screenshot.sh [OUTDIR]      (default OUTDIR: /tmp/keymm-report)
#   KEYMM=.build/debug/keymm scripts/report-screenshot.sh   (use a built binary; no release build)
# Steps: a quick bench (alloc-free, faults, tenants, keyid-pressure, macro) as JSON; a run of a small
# scenario with three tenants' keys (run JSON, for the address-space-by-KeyID chart); keymm report;
# chromium --headless --screenshot of the whole page. Needs Debian's `chromium`
# (apt-get install -y chromium). Exit status: non-zero when any step fails.
set -eu
OUT=${1:-/tmp/keymm-report}
SCRATCH=${SCRATCH:-.build-bench}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ -z "${KEYMM:-}" ]; then
    swift build -c release --scratch-path "$SCRATCH" >/dev/null
    KEYMM="$SCRATCH/release/keymm"
fi

"$KEYMM" bench alloc-free faults tenants keyid-pressure macro --quick --quiet --format json --output "$OUT/bench.json"

cat > "$OUT/tenants.strace" <<'SCEN'
# Three tenants' keys in one address space, with plain memory and a file-like hole between them.
add_key("mktme", "a", "type=cpu algorithm=aes-xts-128", 30, KEY_SPEC_PROCESS_KEYRING) = 11
add_key("mktme", "b", "type=cpu algorithm=aes-xts-128", 30, KEY_SPEC_PROCESS_KEYRING) = 12
add_key("mktme", "c", "type=cpu algorithm=aes-xts-128", 30, KEY_SPEC_PROCESS_KEYRING) = 13
mmap(0x7f0000000000, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000000000
encrypt_mprotect(0x7f0000004000, 16384, PROT_READ|PROT_WRITE, 11) = 0
encrypt_mprotect(0x7f000000a000, 8192, PROT_READ, 12) = 0
mmap(0x7f0000100000, 1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000100000
encrypt_mprotect(0x7f0000100000, 524288, PROT_READ|PROT_WRITE, 13) = 0
mmap(0x7f0000300000, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000300000
fork() = 2
2 mmap(0x7f0000400000, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000400000
2 encrypt_mprotect(0x7f0000400000, 16384, PROT_READ|PROT_WRITE, 12) = 0
SCEN
"$KEYMM" run "$OUT/tenants.strace" --json "$OUT/run.json" --quiet

"$KEYMM" report "$OUT/bench.json" "$OUT/run.json" --output "$OUT/keymm-report.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,4400 \
    --screenshot="$OUT/report.png" "file://$(cd "$OUT" && pwd)/keymm-report.html" 2>/dev/null
echo "report: $OUT/keymm-report.html  screenshot: $OUT/report.png"
