#!/usr/bin/env bash
# What counting the hot set costs on the hit path: two daemons, memory tier only, one
# with [warm] hot_set_path set (every request counted), one without; memory hits on
# KEYS keys (~2 KB answers), interleaved rounds (off, on, off, on ...), medians and their
# ratio. CPU-bound: the daemons on core 0, the generator on core 1 (bench-lib.sh).
#   DURATION=5s ROUNDS=5 scripts/bench-hot-set.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-1000}
source scripts/bench-lib.sh

write_knowledge "$WORK/knowledge.json"
OFF=$(port); ON=$(port)
for p in "$OFF" "$ON"; do
  printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "memory"\n[origin]\ntype = "sample"\npath = "%s"\n' \
    "$p" "$WORK/knowledge.json" > "$WORK/d$p.toml"
done
printf '[warm]\nhot_set_path = "%s/hot.jsonl"\n' "$WORK" >> "$WORK/d$ON.toml"
for p in "$OFF" "$ON"; do
  CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/d$p.toml" & PIDS+=($!)
  wait_http "http://127.0.0.1:$p/healthz"
  $BIN bench load --url "http://127.0.0.1:$p" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null
done
load() { $CLIENT $BIN bench load --url "http://127.0.0.1:$1" --concurrency 32 --duration "$DURATION" --keys "$KEYS" --distribution zipf:1.0 --json; }
echo "# hot-set counting cost, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, ${DURATION} per run, $ROUNDS interleaved rounds, $KEYS keys (zipf 1.0)"
for r in $(seq "$ROUNDS"); do
  load "$OFF" > "$WORK/off$r.json"
  load "$ON" > "$WORK/on$r.json"
done
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
rps = {k: [json.load(open(f"{w}/{k}{r}.json"))["throughput_rps"] for r in range(1, rounds + 1)] for k in ("off", "on")}
med = {k: statistics.median(v) for k, v in rps.items()}
for k in ("off", "on"):
    print(f"hot set {k:<3} {med[k]:>10.0f} hits/s  (rounds: {' '.join(f'{x/1000:.1f}k' for x in rps[k])})")
print(f"on / off = {med['on'] / med['off']:.3f}")
PY
