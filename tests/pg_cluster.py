"""Several log instances (gunicorn ``tlog.server.wsgi:app``) on one PostgreSQL database, on
loopback: for the fault tests (tests/test_pg_faults.py) and tools/bench_scaleout.py.

Every instance has its own data directory holding the same keys (copied from the first, as a
second host would have them); the log's identity and policy live in the database.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Instance", "Cluster", "Client", "LeaseWatch", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Instance:
    """One ``tlog serve``-like instance: a gunicorn master, its workers, their integrator candidates."""

    def __init__(self, env: dict, log: Path, *, workers: int = 1, threads: int = 8, server_args=()) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gthread", "--workers", str(workers), "--threads", str(threads),
             "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3", *server_args, "tlog.server.wsgi:app"],
            cwd=str(ROOT), env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.log_path.read_text()[-3000:])
            try:
                if self.request("GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + self.log_path.read_text()[-3000:])
            time.sleep(0.1)

    def request(self, method, path, body=None, headers=None, timeout=20.0):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()

    def get(self, path, timeout=20.0):
        return self.request("GET", path, timeout=timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        return [p for p in _children(self.proc.pid) if "candidate_main" not in _cmdline(p)]

    def candidates(self) -> list[int]:
        return [c for w in self.workers() for c in _children(w) if "candidate_main" in _cmdline(c)]

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # what is left of the group (candidates of killed workers)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


class Cluster:
    """``n`` instances on the database ``database_url``, keys shared, started one after the other."""

    def __init__(self, tmp: Path, database_url: str, issuer_key_pem: Path, *, n: int = 3, workers: int = 1,
                 threads: int = 8, settings: dict | None = None, server_args=()) -> None:
        self.tmp = Path(tmp)
        self.instances: list[Instance] = []
        base = {
            "TLOG_DATABASE_URL": database_url,
            "TLOG_ISSUER_KEYS": json.dumps([{"path": str(issuer_key_pem), "iss": ["https://issuer.example"]}]),
            "TLOG_ORIGIN": "cluster.example/log",
            "TLOG_ISSUER": "https://cluster.example",
            "TLOG_INTEGRATOR": "process",
        }
        base.update({"TLOG_" + k.upper(): str(v) for k, v in (settings or {}).items()})
        # the log made once, before any worker starts (`tlog init`: keys, identity, policy)
        subprocess.run([sys.executable, "-m", "tlog.cli", "init"], cwd=str(ROOT), check=True,
                       env={**os.environ, **base, "TLOG_DATA_DIR": str(self.tmp / "data0"), "PYTHONPATH": str(ROOT)},
                       stdout=subprocess.DEVNULL, timeout=120)
        try:
            for i in range(n):
                d = self.tmp / f"data{i}"
                if i > 0:
                    shutil.copytree(self.tmp / "data0" / "keys", d / "keys")
                inst = Instance({**base, "TLOG_DATA_DIR": str(d)}, self.tmp / f"server{i}.log", workers=workers,
                                threads=threads, server_args=server_args)
                self.instances.append(inst)
                inst.wait_ready()  # the first creates the keys and the log
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for inst in self.instances:
            inst.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Client(threading.Thread):
    """A keep-alive HTTP client posting statements to one instance, recording the answers."""

    def __init__(self, inst: Instance, bodies, *, timeout: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.inst = inst
        self.bodies = bodies
        self.timeout = timeout
        self.stop = threading.Event()
        self.results: list[tuple[bytes, int, bytes, float, float]] = []  # body, status, data, t, seconds

    def run(self) -> None:
        conn = None
        for body in self.bodies:
            if self.stop.is_set():
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.inst.port, timeout=self.timeout)
            t0 = time.monotonic()
            try:
                conn.request("POST", "/entries", body=body, headers={"Content-Type": "application/cose"})
                r = conn.getresponse()
                data = r.read()
                status = r.status
                if status == 303:
                    data = r.getheader("Location").encode()
            except (OSError, http.client.HTTPException):
                status, data = 0, b""  # connection lost (a killed frontend): not acknowledged
                conn.close()
                conn = None
                time.sleep(0.05)
            self.results.append((body, status, data, t0, time.monotonic() - t0))
            if status == 503:
                time.sleep(0.05)
        if conn is not None:
            conn.close()


class LeaseWatch(threading.Thread):
    """Polls the lease row: (time, holder, token) at every change."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.changes: list[tuple[float, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        last = None
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=1)
                r = conn.execute("SELECT holder, token FROM lease WHERE id = 1").fetchone()
                if r is not None and r[1] != last:
                    last = r[1]
                    self.changes.append((time.monotonic(), r[0], r[1]))
            except Exception:  # noqa: BLE001 - the server is down or paused: try again
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn = None
            self.stop.wait(0.05)

    def holder_pid(self) -> int:
        return int(self.changes[-1][1].rsplit(":", 1)[1])

    def takeover_after(self, t0: float, token: int, limit: float = 15.0) -> float:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for t, _, tok in self.changes:
                if tok > token:
                    return t - t0
            time.sleep(0.05)
        raise AssertionError(f"no takeover within {limit} s: {self.changes[-3:]}")
