# Shared set-up of the measuring scripts (sourced, not run): installs wrk and
# redis-server when missing, builds the release binary, and gives a work folder, a list
# of PIDS killed on exit, a free loopback port and a wait for an HTTP answer.
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
cargo build --release -q
BIN=target/release/codette-cache
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Pinning: servers on core 0, the load generator on core 1, when that is possible.
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER="taskset -c 0"; CLIENT="taskset -c 1"; PINNING="servers pinned to core 0, generator to core 1"
else
  SERVER=""; CLIENT=""; PINNING="unpinned"
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# A knowledge file for the sample origin: ten 150-byte snippets that all match "bench
# query N", so a hit is as long as the ceiling's answer (2,165 bytes against 2,164; the
# ~1,800 before 2026-12-04 flattered the daemon); other messages match nothing.
write_knowledge() {
  python3 - "$1" <<'PY'
import json, sys
s = "Use reverb on a send bus rather than an insert so several tracks share one space; high-pass the return about 200 Hz and keep the bus mono. bench query"
json.dump({"snippets": [{"filename": f"mixing_guide_{i}.md", "snippet": s} for i in range(10)], "files": []}, open(sys.argv[1], "w"))
PY
}
