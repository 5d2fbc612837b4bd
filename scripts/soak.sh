#!/usr/bin/env bash
# Soak: mpmc 8x8 at 64 B over shm-queue, the shared-memory channel many
# processes share, under every waiting strategy that 16 processes on few
# CPUs can use (spin-yield, spin-park, park; pure spin is skipped there),
# run after run for DURATION seconds (600 by default). Every message is
# checked by the harness (sequence, checksum, exactly once across the
# consumers). At the end: points, messages moved, points that failed (a
# message lost, duplicated or corrupted, or a peer that died: must be 0),
# and the latency tail. Exit status 1 if anything failed.
#
#   scripts/soak.sh                 # 10 minutes
#   DURATION=60 scripts/soak.sh     # one minute
#   WAITS=park scripts/soak.sh      # one waiting strategy
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-600}
waits=${WAITS:-spin-yield,spin-park,park}
cargo build --release --quiet
bin=target/release/ipcbench
dir=$(mktemp -d "${TMPDIR:-/tmp}/ipcbench-soak.XXXXXX")
echo "soak: mpmc 8x8 over shm-queue for ${duration} s; runs in $dir" >&2
end=$((SECONDS + duration))
i=0
while ((SECONDS < end)); do
    i=$((i + 1))
    "$bin" run --no-python --no-report --transports shm-queue --patterns mpmc \
        --procs 8x8 --sizes 64 --wait "$waits" \
        --output "$dir/run-$i.json" >"$dir/run-$i.log" 2>&1 || true
    printf '\rsoak: run %d, %d s left ' "$i" $((end > SECONDS ? end - SECONDS : 0)) >&2
done
echo >&2
python3 - "$dir" <<'PY'
import glob, json, sys

points, failed, errors = [], 0, {}
for f in sorted(glob.glob(sys.argv[1] + "/run-*.json")):
    with open(f) as fh:
        for p in json.load(fh)["points"]:
            if (p.get("error") or "").startswith("skipped"):
                continue
            points.append(p)
            if not p["validated"]:
                failed += 1
                errors[p["error"]] = errors.get(p["error"], 0) + 1
ok = [p for p in points if p["validated"]]
moved = sum(p["messages"] for p in ok)
print(f"points: {len(points)}, validated: {len(ok)}, failed: {failed}")
print(f"messages moved and checked: {moved:,}")
for wait in ("spin-yield", "spin-park", "park"):
    w = [p for p in ok if p["wait"] == wait]
    if not w:
        continue
    rates = sorted(p["throughput"]["msgs_per_s"] for p in w)
    tail = lambda k: max(p["latency_ns"][k] for p in w if p.get("latency_ns"))
    print(f"  {wait:<10} {len(w):>4} points, {sum(p['messages'] for p in w):>14,} messages, "
          f"msgs/s median {rates[len(rates) // 2] / 1e6:.2f} M (min {rates[0] / 1e6:.2f} M), "
          f"worst p99 {tail('p99') / 1e3:.0f} µs, worst p99.9 {tail('p999') / 1e3:.0f} µs, "
          f"worst max {tail('max') / 1e6:.1f} ms")
for e, n in errors.items():
    print(f"  failed {n}x: {e}")
sys.exit(1 if failed or not ok else 0)
PY
