#!/usr/bin/env bash
# The speed bar (issue: "a benchmark, not a timed test"). In one run on this machine:
# builds release binaries; starts the HTTP ceiling (a bare warp server answering a fixed
# ~2 KB JSON body, no cache logic), a daemon whose warmed memory tier answers bodies of
# the same size, and a daemon with only a warmed Redis tier; drives them with
# `codette-cache bench load` at 32 and 256 connections, alternating ceiling and daemon
# (A B A B); drives the ceiling with wrk too, to show our load generator is not the
# bottleneck; prints throughput ratios and p99s.
#   DURATION=10s scripts/bench-ceiling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
KEYS=${KEYS:-100}
source scripts/bench-lib.sh

# Ten snippets that all match "bench query N", so each answer is ~2 KB like the ceiling's.
python3 - "$WORK/knowledge.json" <<'PY'
import json, sys
s = "Use reverb on a send bus rather than an insert so several tracks share one space; high-pass the return. bench query"
json.dump({"snippets": [{"filename": f"mixing_guide_{i}.md", "snippet": s} for i in range(10)], "files": []}, open(sys.argv[1], "w"))
PY

CEIL=$(port); MEM=$(port); RED=$(port); RPORT=$(port)
$BIN bench ceiling --listen 127.0.0.1:$CEIL 2>/dev/null & PIDS+=($!)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
origin="[origin]
type = \"sample\"
path = \"$WORK/knowledge.json\""
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "memory"\n%s\n' "$MEM" "$origin" > "$WORK/mem.toml"
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n%s\n' "$RED" "$RPORT" "$origin" > "$WORK/redis.toml"
CODETTE_CACHE_LOG__LEVEL=warn $BIN serve --config "$WORK/mem.toml" & PIDS+=($!)
CODETTE_CACHE_LOG__LEVEL=warn $BIN serve --config "$WORK/redis.toml" & PIDS+=($!)
wait_http "http://127.0.0.1:$CEIL/codette/context"
wait_http "http://127.0.0.1:$MEM/healthz"
wait_http "http://127.0.0.1:$RED/healthz"
for _ in $(seq 50); do curl -s "http://127.0.0.1:$RED/codette/cache/status" | grep -q connected && break; sleep 0.1; done

load() { # url connections -> JSON result
  $BIN bench load --url "$1" --concurrency "$2" --duration "$DURATION" --keys "$KEYS" --distribution uniform --json
}
# Warm both daemons: every key requested once.
$BIN bench load --url "http://127.0.0.1:$MEM" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null
$BIN bench load --url "http://127.0.0.1:$RED" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null

echo "# speed bar, $(date -u +%Y-%m-%d), $(nproc) cores, ${DURATION} per run, $KEYS keys"
for C in 32 256; do
  load "http://127.0.0.1:$CEIL" "$C" > "$WORK/ceil1.json"
  load "http://127.0.0.1:$MEM" "$C" > "$WORK/mem1.json"
  load "http://127.0.0.1:$CEIL" "$C" > "$WORK/ceil2.json"
  load "http://127.0.0.1:$MEM" "$C" > "$WORK/mem2.json"
  load "http://127.0.0.1:$RED" "$C" > "$WORK/red.json"
  THREADS=$(( C < 2 ? 1 : 2 ))
  wrk -t"$THREADS" -c"$C" -d"$DURATION" --latency "http://127.0.0.1:$CEIL/codette/context?message=bench" > "$WORK/wrk.txt"
  python3 - "$WORK" "$C" <<'PY'
import json, re, sys
w, c = sys.argv[1], sys.argv[2]
j = lambda n: json.load(open(f"{w}/{n}.json"))
ceil = [j("ceil1"), j("ceil2")]; mem = [j("mem1"), j("mem2")]; red = j("red")
avg = lambda rs: sum(r["throughput_rps"] for r in rs) / len(rs)
p99 = lambda r, s: r["by_source"].get(s, {}).get("p99_ms", float("nan"))
wrk = open(f"{w}/wrk.txt").read()
wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
errors = sum(sum(r["errors"].values()) for r in ceil + mem + [red])
hits = min(r["hit_ratio"] for r in mem + [red])
print(f"\n## {c} connections")
print(f"ceiling            {avg(ceil):>10.0f} req/s   p99 {min(p99(r, 'ceiling') for r in ceil):.3f} ms")
print(f"memory hits        {avg(mem):>10.0f} req/s   p99 {max(p99(r, 'memory') for r in mem):.3f} ms   = {avg(mem)/avg(ceil):.2f} x ceiling")
print(f"redis hits         {red['throughput_rps']:>10.0f} req/s   p99 {p99(red, 'redis'):.3f} ms   = {red['throughput_rps']/avg(ceil):.2f} x ceiling")
print(f"wrk on ceiling     {wrk_rps:>10.0f} req/s   ours/wrk = {avg(ceil)/wrk_rps:.2f}")
print(f"errors {errors}, lowest client-seen hit ratio {hits:.3f}")
PY
done
