#!/usr/bin/env bash
# Adaptive TTL under churn (issue "adaptive TTL"): an origin where 10 % of the keys get a
# new value every 10 s and 90 % never change, asked through two release daemons at
# once by the same Zipf traffic (s = 1, 1,000 keys, 150 req/s each) for DURATION
# seconds: one with a fixed TTL of 60 s, one with adaptive TTL (30..3600 s). Per mode:
# requests, origin calls, and the share of answers served stale (older than the origin's
# value when the request was sent). Then the same with every time but the duration
# divided by 10 (TTL 6 s, a change every second, 3..360 s): about 20 minutes of the
# scenario, long enough for the adaptive TTLs to grow (scripts/bench-churn.py).
# Where possible (bench-lib.sh), daemons are pinned to core 0, and the origins and clients
# (one Python process) to core 1.
#   DURATION=120 scripts/bench-churn.sh
#   DURATION=900 SCALES=1 scripts/bench-churn.sh     # the real-time scenario, 15 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-120}
SCALES=${SCALES:-1 10}
source scripts/bench-lib.sh

echo "# adaptive TTL under churn, $(date -u +%Y-%m-%d), $(nproc) cores, ${PINNING}, ${DURATION} s per run"
for SCALE in $SCALES; do
  # In the background so that the EXIT trap can stop it (it stops its own daemons).
  $CLIENT python3 scripts/bench-churn.py --bin "$BIN" --server "$SERVER" --duration "$DURATION" \
    --time-scale "$SCALE" & PIDS+=($!)
  wait $!
done
