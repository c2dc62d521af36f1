#!/usr/bin/env python3
"""Adaptive TTL under churn: two daemons side by side, one with a fixed TTL, one with
[cache.adaptive_ttl], each in front of its own copy of one churning origin (same clock,
same parameters) and asked the same Zipf traffic at the same moments.

The origin stands in for the Supabase RPC: "churn key <i>" is answered with the key's
version ("key 17 version 5"). Keys with i % 10 == 0 move to a new version every change
period, the others never change. An answer is stale when its version is older than the
origin's version at the moment the request was sent.

Run by scripts/bench-churn.sh; standalone (daemons unpinned):
  python3 scripts/bench-churn.py --bin target/release/codette-cache --duration 20
"""
import argparse, bisect, collections, ctypes, http.client, itertools, json, os, random, shlex, shutil, signal
import socket, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


STOP = threading.Event()  # set on the way out: clients stop before their daemons do


def changing(key):
    return key % 10 == 0


class Origin:
    """One churn origin on a free loopback port. Copies given the same t0 agree on every
    version. Serving starts with start(), after the daemons are spawned (see spawn)."""

    def __init__(self, period, delay):
        self.t0, self.period, self.delay = time.monotonic(), period, delay
        self.calls, self.lock = 0, threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the daemon pools its connections

            def log_message(self, *_):
                pass

            def do_GET(self):
                self.reply({"calls": origin.calls} if self.path == "/calls" else {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with origin.lock:
                    origin.calls += 1
                time.sleep(origin.delay)  # the RPC's own time
                key = int(body["input_prompt"].rsplit(" ", 1)[1])
                v = origin.version(key, time.monotonic())
                # Never empty: empty answers are not cached.
                self.reply({"snippets": [{"filename": f"churn_{key}.md", "snippet": f"key {key} version {v}"}],
                            "file": None, "chat_history": []})

            def reply(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def version(self, key, now):
        return int((now - self.t0) // self.period) if changing(key) else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # PR_SET_PDEATHSIG: the daemon gets SIGTERM even if this script is SIGKILLed.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def spawn(a, work, name, origin, adaptive):
    """A daemon: memory tier only, never evicting, no refresh-ahead or stale-while-
    revalidate, so the TTL alone decides when the origin is asked. stale_if_error_secs
    keeps its default (1 h): adaptive TTL compares a refresh with the expired entry the
    memory tier still holds for that long; the origin's delay stays well under the
    200 ms after which such an entry would be served instead."""
    port = free_port()
    conf = (f'[server]\nlisten = "127.0.0.1:{port}"\n[log]\nlevel = "warn"\n'
            f"[cache]\nttl_secs = {a.ttl}\nrefresh_ahead = 0.0\nstale_while_revalidate_secs = 0\n")
    if adaptive:
        conf += f"[cache.adaptive_ttl]\nenabled = true\nmin_secs = {a.min}\nmax_secs = {a.max}\n"
    conf += ('[[tiers]]\ntype = "memory"\nmax_entries = 1000000\nmax_bytes = 1073741824\n'
             f'[origin]\ntype = "supabase"\nurl = "http://127.0.0.1:{origin.port}"\napi_key = "bench"\n')
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write(conf)
    log = open(os.path.join(work, f"{name}.log"), "w")
    # preexec_fn forks: done before any thread of ours runs.
    proc = subprocess.Popen(shlex.split(a.server) + [a.bin, "serve", "--config", path],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    return proc, port, log.name


def wait_ready(proc, port, log):
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"daemon exited with {proc.returncode}:\n{open(log).read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"no answer from the daemon on port {port}")


def drive(a, port, origin, ranks, cum, start, j, out):
    """Client j of a daemon: a fixed schedule (a late request is sent at once, so both
    daemons get the same requests), keys drawn from a seeded Zipf, one kept-alive
    connection. Tallies into out[j]."""
    rng, tally = random.Random(a.seed * 1000 + j), collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    interval = a.clients / a.rate
    for n in range(int(a.duration / interval + 1)):
        due = start + (n + j / a.clients) * interval
        if due >= start + a.duration or STOP.is_set():
            break
        time.sleep(max(0.0, due - time.monotonic()))
        key = ranks[bisect.bisect(cum, rng.random() * cum[-1])]
        sent = time.monotonic()
        tally["requests"] += 1
        try:
            conn.request("POST", "/codette/context", json.dumps({"message": f"churn key {key}", "filename": None}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise ValueError(f"HTTP {r.status}: {body[:200]!r}")
            answer = json.loads(body)
            k, _, v = answer["context"]["snippets"][0]["snippet"].split()[1:]
            if int(k) != key:
                raise ValueError(f"asked key {key}, got {k}")
        except Exception as e:  # any failure or malformed answer is an error, counted
            tally["errors"] += 1
            if tally["errors"] <= 3 and not STOP.is_set():
                print(f"error: {e!r}", file=sys.stderr)
            conn.close()  # reconnects on the next request
            continue
        tally["answers"] += 1
        tally["stale"] += int(v) < origin.version(key, sent)
        tally["changing"] += changing(key)
        tally["source " + answer["cache"]["source"]] += 1
    out[j] = tally


def main():
    env = lambda name, default: type(default)(os.environ.get(name, default))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=env("BIN", "target/release/codette-cache"))
    p.add_argument("--server", default=env("SERVER", ""), help="prefix of the daemons' command, e.g. 'taskset -c 0'")
    p.add_argument("--duration", type=float, default=env("DURATION", 120.0), help="seconds of traffic (never scaled)")
    p.add_argument("--keys", type=int, default=env("KEYS", 1000))
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s")
    p.add_argument("--change-period", type=float, default=env("CHANGE_PERIOD", 10.0), help="seconds between versions of a changing key")
    p.add_argument("--ttl", type=float, default=env("TTL", 60.0), help="[cache] ttl_secs of both daemons")
    p.add_argument("--min", type=float, default=env("MIN_SECS", 30.0), help="adaptive min_secs")
    p.add_argument("--max", type=float, default=env("MAX_SECS", 3600.0), help="adaptive max_secs")
    p.add_argument("--time-scale", type=float, default=env("TIME_SCALE", 1.0),
                   help="divide change period, ttl, min and max by this: the same duration shows that many times as much of the scenario")
    p.add_argument("--delay-ms", type=float, default=env("DELAY_MS", 100.0), help="origin time per call")
    p.add_argument("--rate", type=float, default=env("RATE", 150.0), help="requests/s to each daemon")
    p.add_argument("--clients", type=int, default=env("CLIENTS", 8), help="client threads per daemon")
    p.add_argument("--seed", type=int, default=env("SEED", 1))
    p.add_argument("--work", help="folder for configs and daemon logs (default: a temporary one)")
    a = p.parse_args()
    for name in ("change_period", "ttl", "min", "max"):  # the daemon takes whole seconds
        setattr(a, name, max(1, round(getattr(a, name) / a.time_scale)))

    # Zipf by rank, ranks shuffled over the keys (seeded): otherwise the hottest key,
    # key 0, would be a changing one and their share of traffic would depend on it.
    weights = [1 / r ** a.zipf for r in range(1, a.keys + 1)]
    cum = list(itertools.accumulate(weights))
    ranks = list(range(a.keys))
    random.Random(a.seed).shuffle(ranks)
    churn_share = 100 * sum(w for w, k in zip(weights, ranks) if changing(k)) / cum[-1]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the daemons
    work = a.work or tempfile.mkdtemp(prefix="bench-churn-")
    os.makedirs(work, exist_ok=True)
    procs = []
    try:
        modes = [(f"fixed TTL {a.ttl} s", False), (f"adaptive TTL {a.min}-{a.max} s", True)]
        origins = [Origin(a.change_period, a.delay_ms / 1000) for _ in modes]
        for i, (_, adaptive) in enumerate(modes):
            procs.append(spawn(a, work, f"daemon{i}", origins[i], adaptive))
        for o in origins:
            o.start()
        for proc, port, log in procs:
            wait_ready(proc, port, log)

        start = time.monotonic() + 0.2
        for o in origins:
            o.t0 = start  # one clock: both daemons see the same versions at the same time
        results, threads = [[None] * a.clients for _ in modes], []
        for i, o in enumerate(origins):
            for j in range(a.clients):
                threads.append(threading.Thread(target=drive, daemon=True,
                                                args=(a, procs[i][1], o, ranks, cum, start, j, results[i])))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        print(f"\n## time scale {a.time_scale:g}: {a.duration:g} s of traffic, ~{a.duration * a.time_scale / 60:.3g} min of the scenario")
        print(f"{a.keys} keys, Zipf s={a.zipf:g}, {a.rate:g} req/s to each daemon from {a.clients} clients; "
              f"10 % of the keys ({churn_share:.1f} % of requests) change every {a.change_period} s, the rest never; "
              f"origin {a.delay_ms:g} ms a call\n")
        print("| mode | requests | origin calls | stale answers % | errors |\n|---|---:|---:|---:|---:|")
        notes = []
        for (name, _), o, res in zip(modes, origins, results):
            t = sum(res, collections.Counter())
            calls = json.load(urllib.request.urlopen(f"http://127.0.0.1:{o.port}/calls"))["calls"]
            print(f"| {name} | {t['requests']} | {calls} | {100 * t['stale'] / max(1, t['answers']):.1f} | {t['errors']} |")
            sources = ", ".join(f"{k[7:]} {v}" for k, v in sorted(t.items()) if k.startswith("source "))
            notes.append(f"{name}: answers by cache.source: {sources}; stale among the changing keys' answers "
                         f"{100 * t['stale'] / max(1, t['changing']):.1f} %")
        sys.stdout.flush()
        print("\n".join(notes), file=sys.stderr)  # after the table, which is pasted as is
    finally:
        STOP.set()
        for proc, _, _ in procs:
            proc.terminate()
        for proc, _, _ in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not a.work:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
