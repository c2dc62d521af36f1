#!/usr/bin/env python3
"""Proves the Grafana dashboards work: starts redis-server, the daemon (sample origin,
memory + redis tiers) and a real Prometheus scraping it every second on loopback ports,
drives a little traffic, waits for scrapes, then evaluates every panel's PromQL (template
variables substituted) through Prometheus's HTTP API. Fails if a dashboard is not
importable JSON (schemaVersion, unique panel ids, units), names a metric the daemon does
not export, or has an expression that errors or returns no series.

Usage: scripts/check-dashboards.py [path/to/codette-cache]   (default target/debug/codette-cache)
"""
import glob, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/codette-cache")
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, "grafana/dashboards/*.json")))
SUBST = {"$job": "codette-cache", "$instance": ".*", "$__rate_interval": "1m", "$__interval": "15s"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what, check, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"check-dashboards: timed out waiting for {what}")


def static_checks(exported):
    problems, exprs = [], []
    for path in DASHBOARDS:
        name = os.path.basename(path)
        with open(path) as f:
            d = json.load(f)
        if not d.get("schemaVersion"):
            problems.append(f"{name}: schemaVersion missing")
        ids = [p["id"] for p in d["panels"]]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: duplicate panel ids {ids}")
        names = {v["name"] for v in d.get("templating", {}).get("list", [])}
        if not {"job", "instance"} <= names:
            problems.append(f"{name}: template variables job and instance missing")
        for p in d["panels"]:
            if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.append(f"{name}: panel {p['title']!r} has no unit")
            for t in p["targets"]:
                expr = t["expr"]
                for metric in set(re.findall(r"codette_cache_[a-z_]+", expr)):
                    base = re.sub(r"_(bucket|count|sum)$", "", metric)
                    if metric not in exported and base not in exported:
                        problems.append(f"{name}: {p['title']!r} uses {metric}, which the daemon does not export")
                for k, v in SUBST.items():
                    expr = expr.replace(k, v)
                exprs.append((name, p["title"], expr))
    return problems, exprs


def main():
    for tool in ("prometheus", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"check-dashboards: {tool} is not installed")
    work = tempfile.mkdtemp(prefix="codette-dash-")
    procs = []
    try:
        redis_port, daemon_port, prom_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL))
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{daemon_port}"\n[cache]\nttl_secs = 1\n'
                    f'[[tiers]]\ntype = "memory"\n[[tiers]]\ntype = "redis"\nurl = "redis://127.0.0.1:{redis_port}/0"\n'
                    f'[origin]\ntype = "sample"\n'
                    # The proxy's panels: an upstream nothing listens on; its requests
                    # still count (as pass-through answered 502).
                    f'[proxy]\nupstream = "http://127.0.0.1:{free_port()}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CODETTE_CACHE_", "REDIS_", "VITE_SUPABASE", "SUPABASE_"))}
        procs.append(subprocess.Popen([BINARY, "serve", "--config", config], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w")))
        base = f"http://127.0.0.1:{daemon_port}"
        wait_for("the daemon", lambda: get(base + "/healthz") is not None, 20)
        wait_for("the redis tier", lambda: '"connected"' in get(base + "/codette/cache/status"), 10)

        def traffic():
            for i in range(30):
                q = urllib.parse.quote(f"reverb in mixing {i % 5}")
                get(f"{base}/codette/context?message={q}")
                try:
                    get(f"{base}/rest/v1/rpc/anything")
                except urllib.error.HTTPError:
                    pass
        traffic()

        prom_config = os.path.join(work, "prometheus.yml")
        with open(prom_config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"scrape_configs:\n  - job_name: codette-cache\n    static_configs:\n      - targets: ['127.0.0.1:{daemon_port}']\n")
        prom = f"http://127.0.0.1:{prom_port}"
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def query(expr):
            return json.loads(get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))

        def scrapes():
            r = query('count_over_time(up{job="codette-cache"}[1m])')
            return r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) >= 3
        wait_for("three scrapes", scrapes, 60)
        traffic()  # after expiry (ttl 1 s): misses again, so rates and quantiles move
        time.sleep(3)

        exported = set(re.findall(r"^# TYPE (codette_cache_\w+)", get(base + "/metrics"), re.M))
        problems, exprs = static_checks(exported)
        for name, title, expr in exprs:
            r = query(expr)
            if r.get("status") != "success":
                problems.append(f"{name}: {title!r}: ERROR {r.get('error')} in {expr}")
                print(f"ERROR {name}: {title}: {expr}")
            elif not r["data"]["result"]:
                problems.append(f"{name}: {title!r}: EMPTY {expr}")
                print(f"EMPTY {name}: {title}: {expr}")
            else:
                print(f"OK    {name}: {title} ({len(r['data']['result'])} series)")
        if problems:
            print("\n".join(problems), file=sys.stderr)
            sys.exit(f"check-dashboards: {len(problems)} problem(s)")
        print(f"check-dashboards: {len(exprs)} expressions in {len(DASHBOARDS)} dashboards return data")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
