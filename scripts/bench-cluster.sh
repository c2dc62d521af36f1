#!/usr/bin/env bash
# Redis Cluster tier hits against single-Redis tier hits at the same concurrency: a
# redis-server and a 6-node cluster (3 masters, 3 replicas), two daemons with no memory
# tier (one on each), KEYS warmed keys (~2 KB answers), interleaved rounds (single,
# cluster, single, cluster ...), medians and their ratio. CPU-bound: daemons and every
# redis-server on core 0, the generator on core 1 (bench-lib.sh).
#   DURATION=5s ROUNDS=5 CONNS="32 256" scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
KEYS=${KEYS:-100}
CONNS=${CONNS:-32}
source scripts/bench-lib.sh
command -v redis-cli >/dev/null || { apt-get update -q && apt-get install -y -q redis-tools; }

# A node's cluster bus listens on its port + 10000.
cluster_port() { while :; do p=$(port); [ "$p" -le 55535 ] && echo "$p" && return; done; }
node() { # port dir [extra args]
  mkdir -p "$2"
  $SERVER redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$2" "${@:3}" >/dev/null & PIDS+=($!)
}

write_knowledge "$WORK/knowledge.json"
RPORT=$(port); node "$RPORT" "$WORK/single"
NODES=(); for i in 1 2 3 4 5 6; do
  p=$(cluster_port); NODES+=("$p")
  node "$p" "$WORK/n$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000
done
for p in "${NODES[@]}"; do for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${NODES[@]}") --cluster-replicas 1 --cluster-yes >/dev/null
for _ in $(seq 100); do redis-cli -p "${NODES[0]}" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done

SINGLE=$(port); CLUSTER=$(port)
origin="[origin]
type = \"sample\"
path = \"$WORK/knowledge.json\""
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n%s\n' \
  "$SINGLE" "$RPORT" "$origin" > "$WORK/single.toml"
seeds=$(printf '"redis://127.0.0.1:%s", ' "${NODES[@]:0:3}")
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "redis_cluster"\nnodes = [%s]\n%s\n' \
  "$CLUSTER" "${seeds%, }" "$origin" > "$WORK/cluster.toml"
for d in single cluster; do
  CODETTE_CACHE_LOG__LEVEL=warn $SERVER $BIN serve --config "$WORK/$d.toml" & PIDS+=($!)
done
for p in "$SINGLE" "$CLUSTER"; do
  wait_http "http://127.0.0.1:$p/healthz"
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$p/codette/cache/status" | grep -q '"redis_cache":"connected"' && break; sleep 0.1; done
  $BIN bench load --url "http://127.0.0.1:$p" --concurrency 4 --duration 1s --keys "$KEYS" --warm --json >/dev/null
done
load() { $CLIENT $BIN bench load --url "http://127.0.0.1:$1" --concurrency "$2" --duration "$DURATION" --keys "$KEYS" --distribution uniform --json; }

echo "# cluster tier vs single Redis tier, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, ${DURATION} per run, $ROUNDS interleaved rounds, $KEYS keys"
for C in $CONNS; do
  for r in $(seq "$ROUNDS"); do
    load "$SINGLE" "$C" > "$WORK/single$r.json"
    load "$CLUSTER" "$C" > "$WORK/cluster$r.json"
  done
  python3 - "$WORK" "$ROUNDS" "$C" <<'PY'
import json, statistics, sys
w, rounds, c = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = {k: [json.load(open(f"{w}/{k}{r}.json")) for r in range(1, rounds + 1)] for k in ("single", "cluster")}
rps = {k: [r["throughput_rps"] for r in v] for k, v in runs.items()}
med = {k: statistics.median(v) for k, v in rps.items()}
src = {"single": "redis", "cluster": "redis_cluster"}
for k in ("single", "cluster"):
    p50 = statistics.median(r["by_source"].get(src[k], {}).get("p50_ms", float("nan")) for r in runs[k])
    hits = min(r["by_source"].get(src[k], {}).get("count", 0) / max(r["requests"], 1) for r in runs[k])
    print(f"{c} conns, {k:<8} {med[k]:>10.0f} hits/s  p50 {p50:.3f} ms  lowest hit share {hits:.3f}  (rounds: {' '.join(f'{x/1000:.1f}k' for x in rps[k])})")
errors = sum(sum(r["errors"].values()) for v in runs.values() for r in v)
print(f"{c} conns, cluster / single = {med['cluster'] / med['single']:.3f}, errors {errors}")
PY
done
