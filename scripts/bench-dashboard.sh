#!/usr/bin/env bash
# What open live dashboards cost the hit path: one daemon (memory tier), memory hits on
# KEYS keys (~2 KB answers), in interleaved rounds with no dashboard open and with
# STREAMS open /dashboard/events streams (curl, on the generator's core); medians and
# their ratio. CPU-bound: the daemon on core 0, the generator on core 1 (bench-lib.sh).
#   DURATION=5s ROUNDS=5 STREAMS=5 scripts/bench-dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-100}
STREAMS=${STREAMS:-5}
source scripts/bench-lib.sh

write_knowledge "$WORK/knowledge.json"
P=$(port)
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "memory"\n[origin]\ntype = "sample"\npath = "%s"\n' \
  "$P" "$WORK/knowledge.json" > "$WORK/d.toml"
CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/d.toml" & PIDS+=($!)
wait_http "http://127.0.0.1:$P/healthz"
$BIN bench load --url "http://127.0.0.1:$P" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null
load() { $CLIENT $BIN bench load --url "http://127.0.0.1:$P" --concurrency 32 --duration "$DURATION" --keys "$KEYS" --distribution uniform --json; }
echo "# live dashboards' cost, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, ${DURATION} per run, $ROUNDS interleaved rounds, $STREAMS streams"
for r in $(seq "$ROUNDS"); do
  load > "$WORK/none$r.json"
  STREAM_PIDS=()
  for _ in $(seq "$STREAMS"); do
    $CLIENT curl -sN "http://127.0.0.1:$P/dashboard/events" > "$WORK/frames" & STREAM_PIDS+=($!)
  done
  sleep 1.5
  load > "$WORK/open$r.json"
  kill "${STREAM_PIDS[@]}" 2>/dev/null || true
  wait "${STREAM_PIDS[@]}" 2>/dev/null || true
done
grep -q '^data:' "$WORK/frames" || { echo "the streams received no frame" >&2; exit 1; }
python3 - "$WORK" "$ROUNDS" "$STREAMS" <<'PY'
import json, statistics, sys
w, rounds, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rps = {k: [json.load(open(f"{w}/{k}{r}.json"))["throughput_rps"] for r in range(1, rounds + 1)] for k in ("none", "open")}
med = {k: statistics.median(v) for k, v in rps.items()}
print(f"no dashboard      {med['none']:>10.0f} hits/s  (rounds: {' '.join(f'{x/1000:.1f}k' for x in rps['none'])})")
print(f"{streams} dashboards      {med['open']:>10.0f} hits/s  (rounds: {' '.join(f'{x/1000:.1f}k' for x in rps['open'])})")
print(f"open / none = {med['open'] / med['none']:.3f}")
PY
