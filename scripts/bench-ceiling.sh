#!/usr/bin/env bash
# The speed bar (issue: "a benchmark, not a timed test"). In one run on this machine:
# builds release binaries; starts the HTTP ceiling (a bare warp server answering a fixed
# ~2 KB JSON body, no cache logic), a daemon whose warmed memory tier answers bodies of
# the same size, and a daemon with only a warmed Redis tier; drives them with
# `codette-cache bench load` in interleaved rounds (ceiling, memory, Redis; ROUNDS times)
# and prints the medians and their ratios; drives the ceiling with wrk too, to show our
# load generator is not the bottleneck.
#
# CPU-bound: with 2+ cores and taskset, every server (and redis-server) runs on core 0
# and the generator on core 1, so the server is what saturates; otherwise unpinned, and
# the generator shares the cores (then the ratios measure the generator as much).
#   DURATION=5s ROUNDS=3 scripts/bench-ceiling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-100}
CONNS=${CONNS:-32 256}
source scripts/bench-lib.sh

# Ten snippets that all match "bench query N", so each answer is as long as the ceiling's.
write_knowledge "$WORK/knowledge.json"

CEIL=$(port); MEM=$(port); RED=$(port); RPORT=$(port)
$SERVER $BIN bench ceiling --listen 127.0.0.1:$CEIL 2>/dev/null & PIDS+=($!)
$SERVER redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
origin="[origin]
type = \"sample\"
path = \"$WORK/knowledge.json\""
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "memory"\n%s\n' "$MEM" "$origin" > "$WORK/mem.toml"
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n%s\n' "$RED" "$RPORT" "$origin" > "$WORK/redis.toml"
CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/mem.toml" & PIDS+=($!)
CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/redis.toml" & PIDS+=($!)
wait_http "http://127.0.0.1:$CEIL/codette/context"
wait_http "http://127.0.0.1:$MEM/healthz"
wait_http "http://127.0.0.1:$RED/healthz"
for _ in $(seq 50); do curl -s "http://127.0.0.1:$RED/codette/cache/status" | grep -q connected && break; sleep 0.1; done

load() { # url connections -> JSON result
  $CLIENT $BIN bench load --url "$1" --concurrency "$2" --duration "$DURATION" --keys "$KEYS" --distribution uniform --json
}
# Warm both daemons: every key requested once.
$BIN bench load --url "http://127.0.0.1:$MEM" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null
$BIN bench load --url "http://127.0.0.1:$RED" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null

echo "# speed bar, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, ${DURATION} per run, $ROUNDS interleaved rounds, $KEYS keys"
for C in $CONNS; do
  for R in $(seq "$ROUNDS"); do
    load "http://127.0.0.1:$CEIL" "$C" > "$WORK/ceil$R.json"
    load "http://127.0.0.1:$MEM" "$C" > "$WORK/mem$R.json"
    load "http://127.0.0.1:$RED" "$C" > "$WORK/red$R.json"
  done
  THREADS=$([ -n "$CLIENT" ] && echo 1 || echo 2)
  $CLIENT wrk -t"$THREADS" -c"$C" -d"$DURATION" --latency "http://127.0.0.1:$CEIL/codette/context?message=bench" > "$WORK/wrk.txt"
  python3 - "$WORK" "$C" "$ROUNDS" <<'PY'
import json, re, statistics, sys
w, c, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {k: [json.load(open(f"{w}/{k}{r}.json")) for r in range(1, rounds + 1)] for k in ("ceil", "mem", "red")}
rps = {k: [r["throughput_rps"] for r in v] for k, v in runs.items()}
med = {k: statistics.median(v) for k, v in rps.items()}
p99 = lambda k, s: statistics.median(r["by_source"].get(s, {}).get("p99_ms", float("nan")) for r in runs[k])
wrk = open(f"{w}/wrk.txt").read()
wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
errors = sum(sum(r["errors"].values()) for v in runs.values() for r in v)
hits = min(r["hit_ratio"] for k in ("mem", "red") for r in runs[k])
each = lambda k: " ".join(f"{x/1000:.0f}k" for x in rps[k])
print(f"\n## {c} connections (median of {rounds}; each round: {each('ceil')} | {each('mem')} | {each('red')})")
print(f"ceiling            {med['ceil']:>10.0f} req/s   p99 {p99('ceil', 'ceiling'):.3f} ms")
print(f"memory hits        {med['mem']:>10.0f} req/s   p99 {p99('mem', 'memory'):.3f} ms   = {med['mem']/med['ceil']:.2f} x ceiling")
print(f"redis hits         {med['red']:>10.0f} req/s   p99 {p99('red', 'redis'):.3f} ms   = {med['red']/med['ceil']:.2f} x ceiling")
print(f"wrk on ceiling     {wrk_rps:>10.0f} req/s   ours/wrk = {med['ceil']/wrk_rps:.2f}")
print(f"errors {errors}, lowest client-seen hit ratio {hits:.3f}")
PY
done
