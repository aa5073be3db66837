"""Running wrk and reading its report."""

import re
import resource
import subprocess

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse(out):
    r = {"rps": None, "p50_ms": None, "p90_ms": None, "p99_ms": None, "requests": 0, "non2xx": 0, "socket_errors": 0}
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"(50|75|90|99)(?:\.\d+)?%\s+(\S+)", line)
        if m and m.group(1) in ("50", "90", "99"):
            r[f"p{m.group(1)}_ms"] = ms(m.group(2))
        m = re.match(r"(\d+) requests in ([\d.]+)(\w+)", line)
        if m:
            r["requests"] = int(m.group(1))
        m = re.match(r"Requests/sec:\s+([\d.]+)", line)
        if m:
            r["rps"] = float(m.group(1))
        m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", line)
        if m:
            r["non2xx"] = int(m.group(1))
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line)
        if m:
            r["socket_errors"] = sum(int(x) for x in m.groups())
    return r


def run(url, conns, seconds, timeout_s=5):
    """Runs wrk; returns the parsed report plus the CPU wrk itself used."""
    threads = 1 if conns < 2 else 2
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", f"--timeout={timeout_s}s", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 20)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse(p.stdout)
    r["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if r["rps"] is None:
        r["error"] = (p.stdout + p.stderr).strip()[-300:]
    return r
