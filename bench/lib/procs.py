"""Processes the benchmark starts, and what /proc says about them.

Every server is started in its own session (process group), recorded here,
and stopped by `Registry.stop_all`: first politely, then with SIGKILL for the
group and for every descendant seen while it ran (Courser's PHP workers live in
process groups of their own). Nothing else on the machine is touched.
"""

import os
import signal
import socket
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stat(pid):
    """(ppid, utime+stime in ticks) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]) + int(fields[12])


def rss(pid):
    """Resident set size in bytes, or 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss(pid):
    """Proportional set size in bytes (shared pages divided among the processes
    that map them), or 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def ppid_map():
    """pid -> ppid for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st:
                out[int(d)] = st[0]
    return out


def descendants(root, pmap=None):
    """Every descendant of `root` (not `root` itself)."""
    pmap = pmap if pmap is not None else ppid_map()
    kids = {}
    for p, pp in pmap.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], list(kids.get(root, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def machine_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class Registry:
    """The processes this run started."""

    def __init__(self):
        self.started = []  # (name, Popen, stop signal)
        self.seen = set()  # descendants seen while sampling
        self.lock = threading.Lock()

    def start(self, name, argv, cwd=None, env=None, log=None, stop_signal=signal.SIGTERM):
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            start_new_session=True,
        )
        with self.lock:
            self.started.append((name, p, stop_signal))
        return p

    def remember(self, pids):
        with self.lock:
            self.seen.update(pids)

    def stop(self, p, timeout=8.0):
        """Stops one process we started and everything below it."""
        with self.lock:
            entry = next((e for e in self.started if e[1] is p), None)
        if entry is None:
            return
        name, p, sig = entry
        below = descendants(p.pid) if p.poll() is None else []
        self.remember(below)
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        for pid in [p.pid] + below:
            self._kill(pid)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            pass
        with self.lock:
            self.started = [e for e in self.started if e[1] is not p]

    def _kill(self, pid):
        st = stat(pid)
        if st is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self):
        for _, p, _ in list(reversed(self.started)):
            self.stop(p, timeout=5.0)
        # Workers of servers that were killed hard (their parent pid is gone).
        with self.lock:
            seen = list(self.seen)
        for pid in seen:
            st = stat(pid)
            # Only our own leftovers: reparented to init or to a subreaper.
            if st is not None and st[0] in (0, 1):
                self._kill(pid)


class Sampler:
    """Samples the processes of a server's two groups ("server" and "php")
    every `interval` seconds: peak summed RSS and CPU ticks per group."""

    def __init__(self, groups, registry, interval=0.2):
        # groups: name -> callable(pmap) returning the list of pids now.
        self.groups = groups
        self.registry = registry
        self.interval = interval
        self.peak = {g: 0 for g in groups}
        self.peak_pss = {g: 0 for g in groups}
        self.first = {g: {} for g in groups}  # pid -> ticks when first seen
        self.last = {g: {} for g in groups}
        self.stop_ev = threading.Event()
        self.thread = None

    def sample(self):
        pmap = ppid_map()
        for g, fn in self.groups.items():
            pids = fn(pmap)
            self.registry.remember(pids)
            total = total_pss = 0
            for pid in pids:
                st = stat(pid)
                if st is None:
                    continue
                total += rss(pid)
                total_pss += pss(pid)
                self.first[g].setdefault(pid, st[1])
                self.last[g][pid] = st[1]
            self.peak[g] = max(self.peak[g], total)
            self.peak_pss[g] = max(self.peak_pss[g], total_pss)

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()
        self.sample()

    def cpu_seconds(self, g):
        """CPU used by a group while sampled (processes that exited in between
        are counted up to their last sample)."""
        return sum(self.last[g][p] - self.first[g][p] for p in self.last[g]) / HZ

    def pids(self, g):
        return sorted(self.last[g])


def wait_http(url, seconds, proc=None):
    """Waits until `url` answers with a status below 500."""
    import urllib.error
    import urllib.request

    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return None
                last = f"status {r.status}"
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return None
            last = f"status {e.code}: {e.read()[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    return last or "no answer"
