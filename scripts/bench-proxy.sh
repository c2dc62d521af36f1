#!/usr/bin/env bash
# The proxy's speed bar (issue: hits on /rest/v1/rpc/get_codette_context?input_prompt=...
# >= 0.9x the ceiling, same run). Starts the HTTP ceiling (which also answers
# /rest/v1/rpc/*, so it is the proxy's upstream too) and a daemon with a memory tier and
# the proxy caching get_codette_context; warms it; then drives, with wrk in interleaved
# rounds (A B C D, ROUNDS times), the same RPC URL on the ceiling and on the daemon:
#   ceiling       the bare server, no cache logic, sent proxy-key's request (apikey too)
#   proxy-key     a hit for a caller with a publishable key (no token to verify)
#   proxy-jwt     a hit for a caller with the legacy anon key (a JWT, verified)
#   context       GET /codette/context, a memory hit on the daemon's own route
# and prints medians and ratios. Servers pinned to core 0, wrk to core 1 (CPU-bound).
#   DURATION=5s ROUNDS=3 CONNS="32 256" scripts/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32 256}
source scripts/bench-lib.sh

SECRET="bench-jwt-secret-with-at-least-32-characters"
KEY="sb_publishable_bench"
JWT=$(python3 - "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys
b = lambda d: base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).rstrip(b"=")
head = b({"alg": "HS256", "typ": "JWT"}) + b"." + b({"role": "anon", "iss": "supabase", "exp": 4102444800})
sig = base64.urlsafe_b64encode(hmac.new(sys.argv[1].encode(), head, hashlib.sha256).digest()).rstrip(b"=")
print((head + b"." + sig).decode())
PY
)
write_knowledge "$WORK/knowledge.json"
CEIL=$(port); DAEMON=$(port)
$SERVER $BIN bench ceiling --listen 127.0.0.1:$CEIL 2>/dev/null & PIDS+=($!)
cat > "$WORK/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$DAEMON"
[[tiers]]
type = "memory"
[origin]
type = "sample"
path = "$WORK/knowledge.json"
[proxy]
upstream = "http://127.0.0.1:$CEIL"
publishable_keys = ["$KEY"]
[proxy.jwt]
secret = "$SECRET"
[[proxy.functions]]
name = "get_codette_context"
scope = "shared"
TOML
CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/proxy.toml" & PIDS+=($!)
wait_http "http://127.0.0.1:$CEIL/codette/context"
wait_http "http://127.0.0.1:$DAEMON/healthz"

RPC="/rest/v1/rpc/get_codette_context?input_prompt=bench%20query%201"
CTX="/codette/context?message=bench%20query%201"
curl -sf -H "apikey: $KEY" "http://127.0.0.1:$DAEMON$RPC" -o /dev/null -D - | grep -i cache-status
curl -sf -H "apikey: $KEY" "http://127.0.0.1:$DAEMON$RPC" -o /dev/null -D - | grep -i cache-status
curl -sf -H "apikey: $JWT" -H "authorization: Bearer $JWT" "http://127.0.0.1:$DAEMON$RPC" -o /dev/null -D - | grep -i cache-status
curl -sf "http://127.0.0.1:$DAEMON$CTX" -o /dev/null

run() { # name connections url [headers...] -> requests/s
  local name=$1 c=$2 url=$3; shift 3
  $CLIENT wrk -t1 -c"$c" -d"$DURATION" "$@" "$url" > "$WORK/$name.txt"
  awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt"
}
echo "# proxy speed bar, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, wrk ${DURATION} per run, $ROUNDS interleaved rounds"
for C in $CONNS; do
  : > "$WORK/rounds.txt"
  for R in $(seq "$ROUNDS"); do
    # The ceiling gets the proxy-key request as it is, header and all: the ratio is then
    # the proxy's own work, not hyper parsing a header every server parses.
    echo "ceiling $(run ceil "$C" "http://127.0.0.1:$CEIL$RPC" -H "apikey: $KEY")" >> "$WORK/rounds.txt"
    echo "proxy-key $(run key "$C" "http://127.0.0.1:$DAEMON$RPC" -H "apikey: $KEY")" >> "$WORK/rounds.txt"
    echo "proxy-jwt $(run jwt "$C" "http://127.0.0.1:$DAEMON$RPC" -H "apikey: $JWT" -H "authorization: Bearer $JWT")" >> "$WORK/rounds.txt"
    echo "context $(run ctx "$C" "http://127.0.0.1:$DAEMON$CTX")" >> "$WORK/rounds.txt"
  done
  python3 - "$WORK/rounds.txt" "$C" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for name, rps in rows:
    by.setdefault(name, []).append(float(rps))
ceil = statistics.median(by["ceiling"])
print(f"\n## {sys.argv[2]} connections (median; rounds: " + " | ".join(f"{k} " + " ".join(f"{v/1000:.1f}k" for v in vs) for k, vs in by.items()) + ")")
for name, vs in by.items():
    m = statistics.median(vs)
    print(f"{name:<12} {m:>10.0f} req/s   = {m/ceil:.2f} x ceiling")
PY
done
