#!/usr/bin/env bash
# Invalidation lag across a group: three release daemons on one redis-server; the first
# receives RATE admin invalidations per second for DURATION seconds while a load
# generator keeps the other two busy with hits; then each of the others reports the lag
# percentiles it measured (published -> applied, HDR) and how many it received. Then
# memory-hit throughput of a daemon with the broadcast on against one with it off.
#   RATE=200 DURATION=5 scripts/bench-invalidation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-200}
DURATION=${DURATION:-5}
source scripts/bench-lib.sh

RPORT=$(port)
$SERVER redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
PORTS=()
for i in 1 2 3; do
  P=$(port); PORTS+=("$P")
  printf '[server]\nlisten = "127.0.0.1:%s"\n[admin]\ntoken = "bench"\n[[tiers]]\ntype = "memory"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n[origin]\ntype = "sample"\n' \
    "$P" "$RPORT" > "$WORK/d$i.toml"
  CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/d$i.toml" & PIDS+=($!)
done
for P in "${PORTS[@]}"; do
  wait_http "http://127.0.0.1:$P/healthz"
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$P/codette/cache/status" | grep -q '"subscribed":true' && break; sleep 0.1; done
done

echo "# invalidation lag, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, $RATE/s for ${DURATION}s, 3 daemons"
LOADS=()
for P in "${PORTS[@]:1}"; do
  $CLIENT $BIN bench load --url "http://127.0.0.1:$P" --concurrency 8 --duration "$((DURATION + 1))s" --keys 100 --json > "$WORK/hits$P.json" 2>/dev/null &
  LOADS+=($!)
done
$CLIENT python3 - "${PORTS[0]}" "$RATE" "$DURATION" <<'PY'
import http.client, json, sys, time
port, rate, duration = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
start = time.monotonic()
for i in range(rate * duration):
    conn.request("POST", "/codette/cache/invalidate", json.dumps({"message": f"churn {i}"}),
                 {"Authorization": "Bearer bench", "Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
    time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
print(f"sent {rate * duration} invalidations in {time.monotonic() - start:.2f} s")
PY
wait "${LOADS[@]}"
sleep 0.5
for P in "${PORTS[@]:1}"; do
  curl -s "http://127.0.0.1:$P/codette/cache/status" > "$WORK/status$P.json"
  python3 - "$WORK/status$P.json" "$WORK/hits$P.json" <<'PY'
import json, sys
inv = json.load(open(sys.argv[1]))["invalidation"]
hits = json.load(open(sys.argv[2]))
lag = inv["lag"]
print(f"received {inv['received']}, lag p50 {lag['p50_ms']} ms, p90 {lag['p90_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms; "
      f"meanwhile {hits['requests']} hits at {hits['throughput_rps']:.0f} req/s")
PY
done

# Memory hits with the broadcast on and off (both with the redis tier), A B A B, medians.
ON=$(port); OFF=$(port)
for pair in "$ON true" "$OFF false"; do
  set -- $pair
  printf '[server]\nlisten = "127.0.0.1:%s"\n[invalidation]\nbroadcast = %s\n[[tiers]]\ntype = "memory"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n[origin]\ntype = "sample"\n' \
    "$1" "$2" "$RPORT" > "$WORK/ab$1.toml"
  CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/ab$1.toml" & PIDS+=($!)
  wait_http "http://127.0.0.1:$1/healthz"
  $BIN bench load --url "http://127.0.0.1:$1" --concurrency 4 --duration 1s --keys 100 --warm --json > /dev/null 2>&1
done
for R in 1 2 3; do
  for P in "$ON" "$OFF"; do
    $CLIENT $BIN bench load --url "http://127.0.0.1:$P" --concurrency 32 --duration 3s --keys 100 --distribution uniform --json > "$WORK/ab$P-$R.json" 2>/dev/null
  done
done
python3 - "$WORK" "$ON" "$OFF" <<'PY'
import json, statistics, sys
w, on, off = sys.argv[1], sys.argv[2], sys.argv[3]
rps = lambda p: [json.load(open(f"{w}/ab{p}-{r}.json"))["throughput_rps"] for r in (1, 2, 3)]
a, b = statistics.median(rps(on)), statistics.median(rps(off))
print(f"\nmemory hits, broadcast on {a:.0f} req/s, off {b:.0f} req/s (medians of 3, A B A B): on/off = {a / b:.2f}")
PY
