"""The two ways of serving an app: nginx + PHP-FPM, and Courser.

Both listen on 127.0.0.1 only and keep their files in the run's temp dir.
"""

import os
import shutil
import signal
import subprocess

from procs import descendants, free_port, wait_http

# opcache for both sides: on, JIT off (Debian's default), files never re-checked
# (the production setting; FPM would otherwise stat every file it includes).
OPCACHE = {
    "opcache.enable": "1",
    "opcache.enable_cli": "1",  # only the CLI (Courser's workers) reads it
    "opcache.validate_timestamps": "0",
    "opcache.jit": "off",
}


def php_version():
    out = subprocess.run(
        ["php", "-r", 'echo PHP_MAJOR_VERSION . "." . PHP_MINOR_VERSION;'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def fpm_binary():
    for name in (f"php-fpm{php_version()}", "php-fpm"):
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("php-fpm not found (apt-get install php-fpm)")


class App:
    """An app served both ways.

    fpm_root: nginx's document root; front: the front controller in it;
    routes: (label, path) pairs benchmarked; worker: Courser's worker script.
    """

    def __init__(self, name, fpm_root, front, routes, worker, try_files, env=None):
        self.name = name
        self.fpm_root = fpm_root
        self.front = front
        self.routes = routes
        self.worker = worker
        self.try_files = try_files
        self.env = env or {}


class Fpm:
    """nginx in front of a PHP-FPM pool (pm = static, `workers` children)."""

    label = "fpm"

    def __init__(self, reg, tmp, app, workers):
        self.reg, self.app, self.workers = reg, app, workers
        self.dir = os.path.join(tmp, f"fpm-{app.name}")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.nginx = self.fpm = None

    def config(self):
        d, app = self.dir, self.app
        sock = os.path.join(d, "fpm.sock")
        env = "".join(f"env[{k}] = {v}\n" for k, v in app.env.items())
        with open(os.path.join(d, "fpm.conf"), "w") as f:
            f.write(
                f"""[global]
pid = {d}/fpm.pid
error_log = {d}/fpm.log
daemonize = no
[bench]
listen = {sock}
listen.backlog = 4096
pm = static
pm.max_children = {self.workers}
pm.max_requests = 0
clear_env = no
{env}"""
            )
        script = os.path.join(app.fpm_root, app.front)
        if app.try_files:
            # The documented front-controller setup (Slim, Laravel): files first.
            locations = f"""
    location / {{ try_files $uri /{app.front}$is_args$args; }}
    location = /{app.front} {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
      fastcgi_param SCRIPT_NAME /{app.front};
      fastcgi_pass unix:{sock};
    }}"""
        else:
            # One script answers everything: no file lookups.
            locations = f"""
    location / {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME {script};
      fastcgi_param SCRIPT_NAME /{app.front};
      fastcgi_pass unix:{sock};
    }}"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(
                f"""user root root;
worker_processes auto;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx.err error;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path {d}/body;
  fastcgi_temp_path {d}/fastcgi;
  proxy_temp_path {d}/proxy;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    root {app.fpm_root};{locations}
  }}
}}
"""
            )

    def start(self):
        self.config()
        self.fpm = self.reg.start(
            "php-fpm",
            [fpm_binary(), "-R", "-F", "-y", os.path.join(self.dir, "fpm.conf")]
            + [a for k, v in OPCACHE.items() if k != "opcache.enable_cli" for a in ("-d", f"{k}={v}")],
            log=os.path.join(self.dir, "fpm.out"),
            stop_signal=signal.SIGQUIT,
        )
        self.nginx = self.reg.start(
            "nginx",
            ["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-e", os.path.join(self.dir, "nginx.err")],
            log=os.path.join(self.dir, "nginx.out"),
            stop_signal=signal.SIGTERM,
        )
        err = wait_http(self.url(self.app.routes[0][1]), 30, self.nginx)
        if err:
            raise RuntimeError(f"nginx + php-fpm for {self.app.name} did not answer: {err}; {self.tail()}")

    def tail(self):
        out = []
        for f in ("fpm.log", "nginx.err"):
            p = os.path.join(self.dir, f)
            if os.path.exists(p):
                with open(p, errors="replace") as fh:
                    out.append(f"{f}: " + " | ".join(fh.read().splitlines()[-3:]))
        return "; ".join(out)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def groups(self):
        ng, fp = self.nginx.pid, self.fpm.pid
        return {
            "server": lambda pm: [ng] + descendants(ng, pm),
            "php": lambda pm: [fp] + descendants(fp, pm),
        }

    def stop(self):
        for p in (self.nginx, self.fpm):
            if p is not None:
                self.reg.stop(p)


class Courser:
    """Courser with `workers` PHP workers running the app's worker script."""

    def __init__(self, reg, tmp, binary, app, workers, label="courser", worker=None, relay="pipes", codec="json", env=None, prefix=""):
        self.reg, self.app, self.workers, self.binary = reg, app, workers, binary
        self.env, self.prefix = env, prefix
        self.label = label
        self.worker = worker or app.worker
        self.relay, self.codec = relay, codec
        self.dir = os.path.join(tmp, f"{label}-{app.name}-{relay}-{codec}")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.proc = None

    def config(self):
        relay = {
            "pipes": "pipes",
            "unix": f"unix://{self.dir}/relay.sock",
            "tcp": f"tcp://127.0.0.1:{free_port()}",
        }[self.relay]
        ini = " ".join(f"-d {k}={v}" for k, v in OPCACHE.items())
        env = "".join(f'    {k}: "{v}"\n' for k, v in self.app.env.items())
        with open(os.path.join(self.dir, ".rr.yaml"), "w") as f:
            f.write(
                f"""version: "3"
server:
  command: "{self.prefix}php {ini} {self.worker}"
  relay: "{relay}"
{"  env:" + chr(10) + env if env else ""}http:
  address: "127.0.0.1:{self.port}"
  codec: {self.codec}
  pool:
    num_workers: {self.workers}
logs:
  level: error
"""
            )

    def start(self):
        self.config()
        self.proc = self.reg.start(
            "courser",
            [self.binary, "serve", "-c", os.path.join(self.dir, ".rr.yaml")],
            cwd=self.dir,
            env=(os.environ | self.env) if self.env else None,
            log=os.path.join(self.dir, "courser.log"),
            stop_signal=signal.SIGTERM,
        )
        err = wait_http(self.url(self.app.routes[0][1]), 60, self.proc)
        if err:
            raise RuntimeError(f"courser ({self.label}) for {self.app.name} did not answer: {err}; {self.tail()}")

    def tail(self):
        p = os.path.join(self.dir, "courser.log")
        if not os.path.exists(p):
            return ""
        with open(p, errors="replace") as fh:
            return "courser.log: " + " | ".join(fh.read().splitlines()[-3:])

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def groups(self):
        c = self.proc.pid
        return {
            "server": lambda pm: [c],
            "php": lambda pm: descendants(c, pm),
        }

    def stop(self):
        if self.proc is not None:
            self.reg.stop(self.proc)
