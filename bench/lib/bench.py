#!/usr/bin/env python3
"""Courser against nginx + PHP-FPM, side by side, on this machine.

Run it through bench/run (which installs the packages and builds Courser);
see bench/README.md for what is measured and how.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
import wrk  # noqa: E402
from procs import Registry, Sampler, machine_ticks, pss, rss  # noqa: E402
from servers import OPCACHE, App, Courser, Fpm, php_version  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NCPU = os.cpu_count() or 1

HELLO_PHP = """<?php
// Hello world under PHP-FPM: the same answer as examples/hello's GET /.
header('Content-Type: text/plain; charset=utf-8');
echo "Hello, World!\\n";
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def apps(args, tmp):
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "index.php"), "w") as f:
        f.write(HELLO_PHP)
    out = {
        "hello": App("hello", www, "index.php", [("/", "/")], os.path.join(ROOT, "examples/hello/worker.php"), try_files=False),
        "slim": App(
            "slim",
            os.path.join(ROOT, "examples/slim/public"),
            "index.php",
            [("/hello/{name}", "/hello/world"), ("/items", "/items")],
            os.path.join(ROOT, "examples/slim/worker.php"),
            try_files=True,
        ),
    }
    lara = os.path.join(ROOT, "examples/laravel")
    if os.path.exists(os.path.join(lara, "public/index.php")) and os.path.exists(os.path.join(lara, "worker.php")):
        out["laravel"] = App(
            "laravel",
            os.path.join(lara, "public"),
            "index.php",
            [("/hello/{name}", "/hello/world"), ("/items", "/items")],
            os.path.join(lara, "worker.php"),
            try_files=True,
            env=laravel_env(lara),
        )
    elif "laravel" in args.apps:
        log("note: examples/laravel/public/index.php (or worker.php) does not exist yet: the laravel app is skipped")
    return {k: v for k, v in out.items() if k in args.apps}


def laravel_env(d):
    """server.env of examples/laravel/.rr.yaml (simple `KEY: value` lines), so
    both servers run the app with the same environment."""
    env = {}
    p = os.path.join(d, ".rr.yaml")
    if not os.path.exists(p):
        return env
    inside = None
    for line in open(p):
        if re.match(r"^\s*env:\s*$", line):
            inside = len(line) - len(line.lstrip())
            continue
        if inside is not None:
            ind = len(line) - len(line.lstrip())
            if line.strip() and ind <= inside:
                inside = None
                continue
            m = re.match(r'^\s*([A-Za-z_][A-Za-z0-9_]*):\s*"?([^"#]*?)"?\s*$', line)
            if m:
                env[m.group(1)] = m.group(2)
    return env


def measure(reg, srv, path, conns, args):
    url = srv.url(path)
    if args.warmup > 0:
        wrk.run(url, conns, args.warmup)
    t0 = machine_ticks()
    with Sampler(srv.groups(), reg) as s:
        r = wrk.run(url, conns, args.duration)
    t1 = machine_ticks()
    n = max(r["requests"], 1)
    busy = (t1[0] - t0[0]) / max(t1[1] - t0[1], 1) * NCPU
    ours = (s.cpu_seconds("server") + s.cpu_seconds("php") + r["wrk_cpu_s"]) / args.duration
    r.update(
        server_rss=s.peak["server"],
        php_rss=s.peak["php"],
        server_pss=s.peak_pss["server"],
        php_pss=s.peak_pss["php"],
        server_us=s.cpu_seconds("server") * 1e6 / n,
        php_us=s.cpu_seconds("php") * 1e6 / n,
        wrk_us=r["wrk_cpu_s"] * 1e6 / n,
        cores_busy=round(busy, 2),
        other_cores=round(max(busy - ours, 0.0), 2),
        php_processes=len(s.pids("php")),
    )
    return r


def idle_rss(srv, settle):
    time.sleep(settle)
    g = srv.groups()
    from procs import ppid_map

    pm = ppid_map()
    out = {"php_processes": len(g["php"](pm))}
    for k, fn in g.items():
        out[f"{k}_rss"] = sum(rss(p) for p in fn(pm))
        out[f"{k}_pss"] = sum(pss(p) for p in fn(pm))
    return out


def fetch(url):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def check_answers(app, servers, results):
    """Every server must answer every route with 200 and the same body."""
    for label, path in app.routes:
        answers = {s.label: fetch(s.url(path)) for s in servers}
        ref = answers.get("fpm") or next(iter(answers.values()))
        for name, (status, body) in answers.items():
            same = body.strip() == ref[1].strip()
            results["checks"].append({"app": app.name, "route": label, "server": name, "status": status, "bytes": len(body), "same_body_as_fpm": same})
            if status != 200 or not same:
                log(f"  note: {app.name} {path} on {name}: status {status}, {len(body)} bytes{'' if same else ', body differs from FPM'}: {body[:80]!r}")


def fmt_cell(r):
    return f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms" if r.get("rps") else r.get("error", "no result")


def main_table(reg, args, tmp, app_map, courser_bin, results):
    lean = os.path.join(ROOT, "bench/php/hello-lean.php")
    for app in app_map.values():
        servers = [Fpm(reg, tmp, app, args.workers), Courser(reg, tmp, courser_bin, app, args.workers)]
        if app.name == "hello" and args.lean and os.path.exists(lean):
            servers.append(Courser(reg, tmp, courser_bin, app, args.workers, label="courser-lean", worker=lean))
        try:
            for s in servers:
                s.start()
            check_answers(app, servers, results)
            for s in servers:
                results["idle"].append({"app": app.name, "server": s.label} | idle_rss(s, 0.5))
            k = 0
            for label, path in app.routes:
                for c in args.conns:
                    for rnd in range(args.rounds):
                        order = servers[(k + rnd) % len(servers) :] + servers[: (k + rnd) % len(servers)]
                        for s in order:
                            r = measure(reg, s, path, c, args)
                            r.update(app=app.name, route=label, path=path, conns=c, server=s.label, round=rnd)
                            results["runs"].append(r)
                            log(f"  {app.name:8} {label:14} c={c:<4} {s.label:13} round {rnd + 1}: {fmt_cell(r)}")
                    k += 1
        finally:
            for s in servers:
                s.stop()


def relay_table(reg, args, tmp, app_map, courser_bin, results):
    app = app_map.get("hello") or App("hello", "", "", [("/", "/")], os.path.join(ROOT, "examples/hello/worker.php"), False)
    variants = [(r, c) for r in args.relays for c in args.codecs]
    for rnd in range(args.rounds):
        for relay, codec in variants if rnd % 2 == 0 else list(reversed(variants)):
            s = Courser(reg, tmp, courser_bin, app, args.workers, label=f"relay-{relay}-{codec}" if rnd == 0 else f"relay-{relay}-{codec}-{rnd}", relay=relay, codec=codec)
            try:
                s.start()
                r = measure(reg, s, "/", 32, args)
            finally:
                s.stop()
            r.update(relay=relay, codec=codec, round=rnd, conns=32)
            results["relays"].append(r)
            log(f"  relay {relay:6} codec {codec:6} round {rnd + 1}: {fmt_cell(r)}")


def perf_works():
    if not shutil.which("perf"):
        return False
    p = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"], capture_output=True, timeout=30)
    return p.returncode == 0


def profile(reg, args, tmp, app_map, courser_bin, results):
    """perf record of the Courser process (not its workers) under hello load, c=32."""
    if not perf_works():
        log("note: perf is not usable here (install linux-perf; needs perf_event_paranoid <= 1 or root): no profile")
        return
    lean = os.path.join(ROOT, "bench/php/hello-lean.php")
    app = app_map.get("hello") or App("hello", "", "", [("/", "/")], os.path.join(ROOT, "examples/hello/worker.php"), False)
    worker = lean if args.lean and os.path.exists(lean) else app.worker
    s = Courser(reg, tmp, courser_bin, app, args.workers, label="profile", worker=worker)
    data = os.path.join(tmp, "perf.data")
    try:
        s.start()
        wrk.run(s.url("/"), 32, 1)
        load = threading.Thread(target=lambda: results.__setitem__("profile_wrk", wrk.run(s.url("/"), 32, args.duration + 2)))
        load.start()
        time.sleep(1)
        subprocess.run(
            ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(s.proc.pid), "-o", data, "--", "sleep", str(args.duration)],
            capture_output=True,
            timeout=args.duration + 60,
        )
        load.join()
    finally:
        s.stop()

    def rep(*sort):
        p = subprocess.run(
            ["perf", "report", "-i", data, "--no-children", "--stdio", "--percent-limit", "0.3", *sort],
            capture_output=True,
            text=True,
            timeout=120,
        )
        rows = []
        for line in p.stdout.splitlines():
            m = re.match(r"^\s+([\d.]+)%\s+(.*?)\s*$", line)
            if m:
                text = re.sub(r"\s+-\s+-\s*$", "", m.group(2)).strip()
                rows.append((float(m.group(1)), re.sub(r"\s+", " ", text)))
        return rows

    results["profile"] = {
        "worker": os.path.relpath(worker, ROOT),
        "by_dso": rep("--sort", "dso")[:8],
        "symbols": rep("--sort", "dso,symbol")[:25],
    }


def machine():
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or subprocess.run(argv, capture_output=True, text=True, timeout=10).stderr.strip()
        except OSError:
            return ""

    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": NCPU,
        "cpu_model": model,
        "kernel": platform.release(),
        "php": cmd(["php", "-r", "echo PHP_VERSION;"]),
        "nginx": cmd(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": cmd(["wrk", "-v"]).splitlines()[0] if cmd(["wrk", "-v"]) else "",
        "courser_commit": cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "courser_dirty": bool(cmd(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "crates"])),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--workers", type=int, default=4, help="PHP workers / FPM children (default 4)")
    p.add_argument("--duration", type=int, default=5, help="whole seconds per measurement (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="whole warm-up seconds before each (default 1; 0: none)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per cell; the best is shown (default 2)")
    p.add_argument("--apps", type=csv, default=["hello", "slim", "laravel"], help="apps to compare (default hello,slim,laravel)")
    p.add_argument("--conns", type=lambda s: [int(x) for x in csv(s)], default=[1, 32, 256], help="wrk connections (default 1,32,256)")
    p.add_argument("--relays", type=csv, default=["pipes", "unix", "tcp"], help="relays in the relay table (default pipes,unix,tcp)")
    p.add_argument("--codecs", type=csv, default=["json", "proto"], help="codecs in the relay table (default json,proto)")
    p.add_argument("--no-lean", dest="lean", action="store_false", help="skip the lean hello worker (bench/php/hello-lean.php)")
    p.add_argument("--no-relays", dest="relays_table", action="store_false", help="skip the relay/codec table")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip perf")
    p.add_argument("--courser", default=None, help="the courser binary (default: $CARGO_TARGET_DIR or target/release/courser)")
    p.add_argument("--results", default=os.path.join(ROOT, "bench/results"), help="where the JSON and SVG go")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    courser_bin = args.courser or os.path.join(target, "release/courser")
    if not os.access(courser_bin, os.X_OK):
        raise SystemExit(f"no Courser binary at {courser_bin}: run cargo build --release")
    reg = Registry()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tmp = tempfile.mkdtemp(prefix="courser-bench-")
    os.chmod(tmp, 0o755)
    started = time.time()
    now = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "settings": {
            "workers": args.workers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "conns": args.conns,
            "opcache": OPCACHE,
            "php_version": php_version(),
            "courser_binary": courser_bin,
        },
        "runs": [],
        "checks": [],
        "idle": [],
        "relays": [],
    }
    try:
        app_map = apps(args, tmp)
        log(f"temp dir {tmp}; {args.workers} workers; {args.duration:g} s per run after {args.warmup:g} s of warm-up; {args.rounds} round(s)")
        main_table(reg, args, tmp, app_map, courser_bin, results)
        if args.relays_table:
            log("relays and codecs (Courser alone, hello, c=32):")
            relay_table(reg, args, tmp, app_map, courser_bin, results)
        if args.profile:
            log("profile (perf, Courser's process, hello c=32):")
            profile(reg, args, tmp, app_map, courser_bin, results)
    finally:
        reg.stop_all()
        results["elapsed_s"] = round(time.time() - started, 1)
        if os.environ.get("BENCH_KEEP_TMP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, now.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else ""))
    summary = report.summarize(results)
    results["summary"] = summary
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(stem + ".svg", "w") as f:
        f.write(report.svg(results, summary))
    print(report.text(results, summary))
    print(f"\nwritten: {os.path.relpath(stem, ROOT)}.json, {os.path.relpath(stem, ROOT)}.svg ({results['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
