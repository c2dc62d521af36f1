#!/usr/bin/env bash
# CPU time per request, the figure behind the speed bar's ratios: how many microseconds of
# user and kernel time one answer costs the server process, read from /proc/<pid>/stat
# around a wrk run. Compares a memory hit, a Redis hit (plus redis-server's own share)
# and the HTTP ceiling (a constant ~2 KB body, no cache logic), alternating A B A B.
#   RUNS=2 SECONDS_PER_RUN=4 scripts/cpu-per-request.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2}
SECS=${SECONDS_PER_RUN:-4}
source scripts/bench-lib.sh
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }   # utime stime, in clock ticks

MEM=$(port); RED=$(port); CEIL=$(port); RPORT=$(port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & RPID=$!; PIDS+=($RPID)
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "memory"\n[origin]\ntype = "sample"\n' "$MEM" > "$WORK/mem.toml"
printf '[server]\nlisten = "127.0.0.1:%s"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:%s/0"\n[origin]\ntype = "sample"\n' "$RED" "$RPORT" > "$WORK/redis.toml"
CODETTE_CACHE_LOG__LEVEL=warn $BIN serve --config "$WORK/mem.toml" & MPID=$!; PIDS+=($MPID)
CODETTE_CACHE_LOG__LEVEL=warn $BIN serve --config "$WORK/redis.toml" & DPID=$!; PIDS+=($DPID)
$BIN bench ceiling --listen "127.0.0.1:$CEIL" 2>/dev/null & CPID=$!; PIDS+=($CPID)
Q="/codette/context?message=how%20to%20use%20reverb%20in%20mixing"
wait_http "http://127.0.0.1:$MEM$Q"
wait_http "http://127.0.0.1:$CEIL$Q"
for _ in $(seq 50); do curl -s "http://127.0.0.1:$RED/codette/cache/status" | grep -q connected && break; sleep 0.1; done
wait_http "http://127.0.0.1:$RED$Q"
sleep 0.5   # the answer reaches Redis after the reply

# name port server-pid [extra-pid]: one wrk run, CPU per request of the server (and extra).
measure() {
  local name=$1 port=$2 pid=$3 extra=${4:-}
  local a b e1 e2 n
  read -r -a a < <(ticks "$pid"); [[ -n $extra ]] && read -r -a e1 < <(ticks "$extra")
  n=$(wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$port$Q" | awk '/requests in/ {print $1}')
  read -r -a b < <(ticks "$pid"); [[ -n $extra ]] && read -r -a e2 < <(ticks "$extra")
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$name" "$n" "$SECS" "$hz" "${a[@]}" "${b[@]}" ${extra:+"${e1[@]}" "${e2[@]}"} <<'PY'
import sys
name, n, secs, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
t = list(map(int, sys.argv[5:]))
us = lambda ticks: ticks * 1e6 / hz / n
user, kern = us(t[2] - t[0]), us(t[3] - t[1])
line = f"{name:<12} {n / secs:>9.0f} req/s   {user + kern:5.2f} us/req (user {user:4.2f}, kernel {kern:4.2f})"
if len(t) == 8:
    line += f"   + redis-server {us(t[6] + t[7] - t[4] - t[5]):4.2f} us/req"
print(line)
PY
}

echo "# CPU per request, $(date -u +%Y-%m-%d), $(nproc) cores, wrk -t1 -c32 for ${SECS}s per run"
for _ in $(seq "$RUNS"); do
  measure "memory hit" "$MEM" "$MPID"
  measure "ceiling" "$CEIL" "$CPID"
  measure "redis hit" "$RED" "$DPID" "$RPID"
done
