#!/usr/bin/env bash
# Invalidation lag across a group: three release daemons on one redis-server; the first
# receives RATE admin invalidations per second for DURATION seconds while a load
# generator keeps the other two busy with hits; then each of the others reports the lag
# percentiles it measured (published -> applied, HDR) and how many it received. Then a
# PostgreSQL with sql/invalidation.sql: RATE chat inserts per second for DURATION
# seconds, and the lag (statement -> purged here) of a daemon LISTENing while it
# serves hits. Last, memory-hit throughput of a daemon with the broadcast and the
# LISTEN on against one with both off (tags are always on), A B A B, medians.
#   RATE=200 DURATION=5 scripts/bench-invalidation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-200}
DURATION=${DURATION:-5}
source scripts/bench-lib.sh

# One daemon's lag percentiles (status JSON) beside the hits it served (load JSON);
# $3 is the received count's path in "invalidation", dotted.
report_lag() {
  python3 - "$@" <<'PY'
import json, sys
inv = json.load(open(sys.argv[1]))["invalidation"]
hits = json.load(open(sys.argv[2]))
received = inv
for part in sys.argv[3].split("."):
    received = received[part]
lag = inv["lag"]
print(f"received {received}, lag p50 {lag['p50_ms']} ms, p90 {lag['p90_ms']} ms, p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms; "
      f"meanwhile {hits['requests']} hits at {hits['throughput_rps']:.0f} req/s")
PY
}

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
  report_lag "$WORK/status$P.json" "$WORK/hits$P.json" received
done

# A PostgreSQL (as the tests run it) with the schema and the triggers.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(port)
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --clear-groups "$@"; else "$@"; fi; }
mkdir -p "$WORK/pg"; chmod 755 "$WORK"
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK/pg"; fi
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -E UTF8 -D "$WORK/pg/data" >/dev/null
as_pg "$PGBIN/postgres" -D "$WORK/pg/data" -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off > "$WORK/pg/log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.1; done
export PGOPTIONS="-c client_min_messages=warning"
PSQL=("$PGBIN/psql" -q -X -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1)
"${PSQL[@]}" -f tests/sql/schema.sql >/dev/null
"${PSQL[@]}" -f sql/invalidation.sql >/dev/null
PGURL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

# Memory hits with the broadcast and LISTEN on and off (both with the redis tier).
ON=$(port); OFF=$(port)
printf '[server]\nlisten = "127.0.0.1:%s"\n[invalidation]\nbroadcast = true\n[invalidation.postgres]\nurl = "%s"\n[[tiers]]\ntype = "memory"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n[origin]\ntype = "sample"\n' \
  "$ON" "$PGURL" "$RPORT" > "$WORK/ab$ON.toml"
printf '[server]\nlisten = "127.0.0.1:%s"\n[invalidation]\nbroadcast = false\n[[tiers]]\ntype = "memory"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n[origin]\ntype = "sample"\n' \
  "$OFF" "$RPORT" > "$WORK/ab$OFF.toml"
for P in "$ON" "$OFF"; do
  CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/ab$P.toml" & PIDS+=($!)
  wait_http "http://127.0.0.1:$P/healthz"
  $BIN bench load --url "http://127.0.0.1:$P" --concurrency 4 --duration 1s --keys 100 --warm --json > /dev/null 2>&1
done
for _ in $(seq 50); do curl -s "http://127.0.0.1:$ON/codette/cache/status" | grep -q '"postgres":{[^}]*"subscribed":true' && break; sleep 0.1; done

echo
echo "# database changes: $RATE chat inserts/s for ${DURATION}s, one daemon LISTENing while serving hits"
$CLIENT $BIN bench load --url "http://127.0.0.1:$ON" --concurrency 8 --duration "$((DURATION + 1))s" --keys 100 --json > "$WORK/dbhits.json" 2>/dev/null &
LOAD=$!
$CLIENT python3 - "$PGBIN/psql" "$PGPORT" "$RATE" "$DURATION" <<'PY'
import subprocess, sys, time
psql, port, rate, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = subprocess.Popen([psql, "-q", "-X", "-h", "127.0.0.1", "-p", port, "-U", "postgres"],
                     stdin=subprocess.PIPE, text=True)
start = time.monotonic()
for i in range(rate * duration):
    p.stdin.write(f"INSERT INTO public.chat_history (id, user_id, messages, updated_at) "
                  f"VALUES (gen_random_uuid(), 'user-{i % 50}', '[]', now());\n")
    p.stdin.flush()
    time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
p.stdin.close(); p.wait()
print(f"inserted {rate * duration} chat rows in {time.monotonic() - start:.2f} s")
PY
wait "$LOAD"
sleep 0.5
curl -s "http://127.0.0.1:$ON/codette/cache/status" > "$WORK/dbstatus.json"
report_lag "$WORK/dbstatus.json" "$WORK/dbhits.json" postgres.received

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
print(f"\nmemory hits, broadcast + LISTEN on {a:.0f} req/s, both off {b:.0f} req/s (medians of 3, A B A B): on/off = {a / b:.2f}")
PY
