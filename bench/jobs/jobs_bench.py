#!/usr/bin/env python3
"""Jobs through Courser, per driver: push N jobs over RPC (jobs.PushBatch), let
PHP workers consume them, and count pushed / acked / duplicates / lost, jobs/s,
push->ack latency and Courser's own CPU per job.

Scenarios (--scenario):
  plain        one Courser node, 4 PHP workers
  kill-workers the same while a random PHP consumer is kill -9'ed every 250 ms
  kill-node    two Courser nodes on the same pipeline; one is kill -9'ed once mid-run
               (broker drivers only; the survivor must consume everything)
  share        two nodes on one pipeline, no faults: how the work is split

Not a test: it reports figures. Everything listens on 127.0.0.1.
"""
import argparse, json, os, random, shutil, signal, socket, struct, subprocess, sys, tempfile, time, uuid, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))

# --- Goridge RPC + just enough protobuf (jobs.v1) -----------------------------------------
PROTO, ERROR = 0x80, 0x40


def frame(flags, opts, payload):
    h = bytes([0x10 | (3 + len(opts)), flags]) + struct.pack('<I', len(payload))
    return h + struct.pack('<I', zlib.crc32(h) & 0xffffffff) + b'\0\0' + b''.join(struct.pack('<I', o) for o in opts) + payload


class RPC:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=60)
        self.seq = 1

    def recv(self, n):
        b = b''
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise IOError('connection closed')
            b += c
        return b

    def call(self, method, body=b''):
        m = method.encode()
        self.s.sendall(frame(PROTO, [self.seq, len(m)], m + body))
        h = self.recv(12)
        hl, flags, n = h[0] & 0x0f, h[1], struct.unpack('<I', h[2:6])[0]
        opts = self.recv(4 * (hl - 3))
        payload = self.recv(n)
        mlen = struct.unpack('<II', opts[:8])[1]
        self.seq += 1
        if flags & ERROR:
            raise RuntimeError(payload[mlen:].decode(errors='replace'))
        return payload[mlen:]


def varint(n):
    out = b''
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def job_msg(jid, pipeline, payload=b''):
    opts = varint(1 << 3) + varint(10) + ld(2, pipeline)
    return ld(1, 'bench') + ld(2, jid) + ld(3, payload) + ld(5, opts)


# --- Courser nodes ---------------------------------------------------------------------------
def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pipeline_yaml(driver, tag, d):
    cfg = {
        'memory': '{priority: 10, prefetch: 10000}',
        'boltdb': '{file: %s/jobs.db, prefetch: 10000}' % d,
        'amqp': '{queue: %s, exchange: %s, routing_key: %s, durable: true, prefetch: 100}' % (tag, tag, tag),
        'nats': '{subject: %s, stream: %s, prefetch: 100, ack_wait: 5s}' % (tag, tag),
        'beanstalk': '{tube: %s, reserve_timeout: 1s, prefetch: 100}' % tag,
        'redis': '{addrs: ["127.0.0.1:6379"], stream: %s, group: courser, prefetch: 100, claim_idle: 3s}' % tag,
    }[driver]
    return '{driver: %s, config: %s}' % (driver, cfg)


class Node:
    def __init__(self, courser, d, name, driver, tag, workers, log, consumer, work_us):
        self.dir = os.path.join(d, name)
        os.makedirs(self.dir, exist_ok=True)
        self.rpc = free_port()
        self.metrics = free_port()
        with open(os.path.join(self.dir, '.rr.yaml'), 'w') as f:
            f.write('''version: "3"
rpc:
  listen: tcp://127.0.0.1:%d
server:
  command: "php %s"
  env:
    JOBS_LOG: %s
    JOBS_NODE: %s
    JOBS_WORK_US: "%d"
metrics:
  address: 127.0.0.1:%d
logs:
  level: warn
amqp:
  addr: amqp://guest:guest@127.0.0.1:5672/
nats:
  addr: nats://127.0.0.1:4222
beanstalk:
  addr: tcp://127.0.0.1:11300
endure:
  grace_period: 10s
jobs:
  num_pollers: %d
  timeout: 30
  pool:
    num_workers: %d
  consume: [p]
  pipelines:
    p: %s
''' % (self.rpc, consumer, log, name, work_us, self.metrics, workers, workers, pipeline_yaml(driver, tag, d)))
        self.courser = courser
        self.start()

    def start(self):
        out = open(os.path.join(self.dir, 'courser.log'), 'ab')
        self.proc = subprocess.Popen([self.courser, 'serve', '-c', os.path.join(self.dir, '.rr.yaml')],
                                     cwd=self.dir, stdout=out, stderr=out, start_new_session=True)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit('courser exited: ' + self.tail())
            try:
                RPC(self.rpc).call('jobs.List')
                return
            except Exception:
                if time.time() > deadline:
                    raise SystemExit('courser RPC never answered: ' + self.tail())
                time.sleep(0.1)

    def tail(self):
        try:
            return ' | '.join(open(os.path.join(self.dir, 'courser.log'), errors='replace').read().splitlines()[-3:])
        except OSError:
            return ''

    def cpu(self):
        """Courser's own CPU seconds (user + system), not its workers'."""
        try:
            f = open('/proc/%d/stat' % self.proc.pid).read().rsplit(')', 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
        except OSError:
            return 0.0

    def workers(self):
        try:
            out = subprocess.run(['pgrep', '-P', str(self.proc.pid)], capture_output=True, text=True).stdout
            return [int(p) for p in out.split()]
        except Exception:
            return []

    def kill9(self):
        pids = self.workers()
        try:
            self.proc.kill()
            self.proc.wait()
        except OSError:
            pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


def read_log(path):
    acks = {}
    try:
        for line in open(path):
            f = line.split()
            if len(f) >= 3 and f[0] == 'ack':
                acks.setdefault(f[1], []).append(float(f[2]))
    except FileNotFoundError:
        pass
    return acks


def quantile(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(args, driver):
    d = tempfile.mkdtemp(prefix='courser-jobs-bench-')
    log = os.path.join(d, 'jobs.log')
    tag = 'bench%s%d' % (driver, random.randrange(1 << 30))
    consumer = os.path.join(HERE, 'consumer.php')
    work_us = args.work_us if args.work_us is not None else (0 if args.scenario == 'plain' else 1000)
    nodes = [Node(args.courser, d, 'a', driver, tag, args.workers, log, consumer, work_us)]
    if args.scenario in ('kill-node', 'share'):
        nodes.append(Node(args.courser, d, 'b', driver, tag, args.workers, log, consumer, work_us))
    cpu0 = [n.cpu() for n in nodes]
    rpc = RPC(nodes[0].rpc)
    pushed_at = {}
    t0 = time.time()
    killed = 0
    node_killed = False
    next_kill = t0 + 0.25
    batch = []
    for i in range(args.jobs):
        jid = str(uuid.uuid4())
        batch.append(jid)
        if len(batch) == 100 or i == args.jobs - 1:
            now = time.time()
            rpc.call('jobs.PushBatch', b''.join(ld(1, job_msg(j, 'p')) for j in batch))
            for j in batch:
                pushed_at[j] = now
            batch = []
        if args.scenario == 'kill-workers' and time.time() >= next_kill:
            ws = nodes[0].workers()
            if ws:
                os.kill(random.choice(ws), signal.SIGKILL)
                killed += 1
            next_kill += 0.25
        if args.scenario == 'kill-node' and not node_killed and i >= args.jobs // 2:
            nodes[1].kill9()
            node_killed = True
    push_secs = time.time() - t0
    deadline = time.time() + args.timeout
    while True:
        acks = read_log(log)
        done = sum(1 for j in pushed_at if j in acks)
        if args.scenario == 'kill-workers' and time.time() >= next_kill and done < len(pushed_at):
            ws = nodes[0].workers()
            if ws:
                os.kill(random.choice(ws), signal.SIGKILL)
                killed += 1
            next_kill += 0.25
        if done == len(pushed_at) or time.time() > deadline:
            break
        time.sleep(0.05)
    secs = time.time() - t0
    acks = read_log(log)
    lat = [min(acks[j]) - pushed_at[j] for j in pushed_at if j in acks]
    cpu = sum(n.cpu() - c for n, c in zip(nodes, cpu0) if n.proc.poll() is None)
    share = None
    if len(nodes) == 2:
        share = {}
        for line in open(log):
            f = line.split()
            if len(f) >= 4 and f[0] == 'ack':
                share[f[3]] = share.get(f[3], 0) + 1
    for n in nodes:
        n.stop()
    lost = [j for j in pushed_at if j not in acks]
    if lost or args.keep:
        print('kept %s (logs, configs)' % d, file=sys.stderr)
    else:
        shutil.rmtree(d, ignore_errors=True)
    res = {
        'driver': driver, 'scenario': args.scenario, 'pushed': len(pushed_at),
        'acked': len(pushed_at) - len(lost), 'lost': len(lost),
        'duplicates': sum(len(v) - 1 for j, v in acks.items() if j in pushed_at),
        'jobs_per_s': round(len(pushed_at) / secs, 1), 'push_secs': round(push_secs, 2), 'secs': round(secs, 2),
        'p50_ms': round(quantile(lat, 0.5) * 1000, 1), 'p99_ms': round(quantile(lat, 0.99) * 1000, 1),
        'courser_cpu_us_per_job': round(cpu / max(1, len(pushed_at)) * 1e6, 1),
        'workers_killed': killed, 'node_killed': node_killed,
    }
    if share is not None:
        res['acks_by_node'] = share
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--courser', default=os.path.join(ROOT, 'target/release/courser'))
    ap.add_argument('--drivers', default='memory,boltdb,amqp,nats,beanstalk,redis')
    ap.add_argument('--scenario', default='plain', choices=['plain', 'kill-workers', 'kill-node', 'share'])
    ap.add_argument('--jobs', type=int, default=10000)
    ap.add_argument('--workers', type=int, default=4)
    ap.add_argument('--work-us', type=int, default=None,
                    help='microseconds each job sleeps in PHP (default 0 for plain, 1000 for the fault scenarios, '
                         'so that the run lasts long enough for the faults)')
    ap.add_argument('--timeout', type=float, default=180)
    ap.add_argument('--keep', action='store_true', help='keep the temp dir (configs, logs)')
    ap.add_argument('--json', help='append results to this file (one JSON object per line)')
    args = ap.parse_args()
    print('| driver | scenario | pushed | acked | lost | dups | jobs/s | p50 ms | p99 ms | Courser CPU µs/job | killed |')
    print('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--|')
    for drv in args.drivers.split(','):
        if args.scenario in ('kill-node', 'share') and drv in ('memory', 'boltdb'):
            continue
        r = run(args, drv)
        killed = r['workers_killed'] if args.scenario == 'kill-workers' else ('node b' if r['node_killed'] else '')
        extra = (' acks by node: %s' % r['acks_by_node']) if 'acks_by_node' in r else ''
        print('| %s | %s | %d | %d | %d | %d | %.0f | %.1f | %.1f | %.1f | %s |%s' % (
            drv, r['scenario'], r['pushed'], r['acked'], r['lost'], r['duplicates'], r['jobs_per_s'],
            r['p50_ms'], r['p99_ms'], r['courser_cpu_us_per_job'], killed, extra), flush=True)
        if args.json:
            with open(args.json, 'a') as f:
                f.write(json.dumps(r) + '\n')


if __name__ == '__main__':
    main()
