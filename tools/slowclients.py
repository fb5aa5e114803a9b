"""Slow clients against the production setup (issue 11): one command.

    python tools/slowclients.py                       # tlog serve, 256 trickling connections, 20 s
    python tools/slowclients.py --server gunicorn     # the setup before: gunicorn gthread (no read timeout)
    python tools/slowclients.py --target witness      # twi-witness under the same server

Starts the server on 127.0.0.1 (``tlog serve --workers 2 --threads 16``, fresh data dir, one
trusted ES256 issuer key; or, ``--server gunicorn``, ``gunicorn -k gthread --workers 2 --threads
16 tlog.server.wsgi:app``, the README's production command before), measures registrations/s
with ``--clients`` keep-alive clients for ``--duration`` seconds, then opens ``--slow``
connections that trickle (half send a request head one header line per ``--interval`` seconds,
half send a head announcing a 64 KiB body and then one body byte per interval; a connection the
server closes is opened again, as an attacker would) and measures, during another
``--duration`` seconds: the latency of ``GET /health`` (one probe per 0.2 s, 5 s client
timeout; a timeout counts as 5 s), and registrations/s with the same clients.

Pass: every ``/health`` within 1 s and registrations going on. Loopback only; every loop is
bounded in time. ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.loadgen import drive, free_port, sign_statements  # noqa: E402


# ---- the trickling connections ----------------------------------------------------------------


class Trickler:
    """``n`` connections to 127.0.0.1:port that never finish their request (bounded by time)."""

    def __init__(self, port: int, n: int, *, interval: float = 1.0, mode: str = "mixed",
                 path: str = "/entries", host: str = "127.0.0.1") -> None:
        self.port, self.n, self.interval, self.mode, self.path, self.host = port, n, interval, mode, path, host
        self.socks: list[tuple[socket.socket, str]] = []
        self.opened = 0
        self.reopened = 0
        self.open_failures = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def _kind(self, i: int) -> str:
        if self.mode == "mixed":
            return "headers" if i % 2 == 0 else "body"
        return "headers" if self.mode == "headers" else "body"

    def _open(self, kind: str) -> socket.socket | None:
        try:
            s = socket.create_connection((self.host, self.port), timeout=2)
            if kind == "body":
                s.sendall(f"POST {self.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/cose\r\n"
                          f"Content-Length: 65536\r\n\r\n".encode())
            else:
                s.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n".encode())
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            self.open_failures += 1
            return None

    def start(self) -> "Trickler":
        for i in range(self.n):
            k = self._kind(i)
            s = self._open(k)
            if s is not None:
                self.socks.append((s, k))
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            keep = []
            for s, k in self.socks:
                try:
                    s.send(b"a" if k == "body" else b"X-Slow: 1\r\n")
                    keep.append((s, k))
                    continue
                except BlockingIOError:
                    keep.append((s, k))
                    continue
                except OSError:
                    s.close()
                s2 = self._open(k)  # the server closed it: come back
                if s2 is not None:
                    self.reopened += 1
                    keep.append((s2, k))
            self.socks = keep

    def alive(self) -> int:
        return len(self.socks)

    def stop(self) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join(10)
        for s, _ in self.socks:
            s.close()
        self.socks = []


def probe(port: int, path: str, duration: float, every: float = 0.2, timeout: float = 5.0,
          host: str = "127.0.0.1") -> dict:
    """GET ``path`` on a fresh connection every ``every`` s for ``duration`` s: latencies."""
    lat, fails, statuses = [], 0, {}
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            c = http.client.HTTPConnection(host, port, timeout=timeout)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            lat.append(time.perf_counter() - t0)
        except (OSError, http.client.HTTPException):
            fails += 1
            lat.append(max(time.perf_counter() - t0, timeout))
        time.sleep(every)
    lat.sort()
    return {
        "probes": len(lat),
        "failures": fails,
        "status": statuses,
        "max_s": round(lat[-1], 3) if lat else None,
        "p50_s": round(lat[len(lat) // 2], 4) if lat else None,
        "p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4) if lat else None,
        "over_1s": sum(1 for x in lat if x > 1.0),
    }


# ---- servers ------------------------------------------------------------------------------------


def start_log(server: str, work: Path, port: int, *, workers: int, threads: int, env: dict) -> subprocess.Popen:
    if server == "granian":
        cmd = [sys.executable, "-m", "tlog.cli", "serve", "--port", str(port), "--workers", str(workers),
               "--threads", str(threads)]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--workers", str(workers), "--threads", str(threads),
               "-b", f"127.0.0.1:{port}", "--log-level", "warning", "tlog.server.wsgi:app"]
    return subprocess.Popen(cmd, cwd=str(ROOT), env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=open(work / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def start_witness(work: Path, port: int, log_vkey: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "witness", "--data-dir", str(work / "witness"), "--log-vkey", log_vkey,
           "--port", str(port)]
    return subprocess.Popen(cmd, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=open(work / "witness.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status < 500:
                c.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the process group we started
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


# ---- main -------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
    ap.add_argument("--target", choices=("log", "witness"), default="log")
    ap.add_argument("--slow", type=int, default=256, help="trickling connections")
    ap.add_argument("--mode", choices=("mixed", "headers", "body"), default="mixed")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between trickled bytes")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each measurement")
    ap.add_argument("--clients", type=int, default=4, help="registering clients")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (0 < args.duration <= 300) or not (0 <= args.slow <= 4000):
        ap.error("bounded runs only: 0 < duration <= 300, slow <= 4000")
    work = Path(tempfile.mkdtemp(prefix="tlog-slow-"))
    report: dict = {"conditions": {"server": args.server, "target": args.target, "slow": args.slow, "mode": args.mode,
                                   "interval_s": args.interval, "duration_s": args.duration, "clients": args.clients,
                                   "workers": args.workers, "threads": args.threads,
                                   "loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}}
    proc = None
    try:
        if args.target == "witness":
            from verifier.note import Signer

            port = free_port()
            proc = start_witness(work, port, Signer.generate("slow.example/log").vkey)
            path = "/checkpoint?origin=slow.example/log"
            wait_ready(proc, port, path)
            report["before"] = {"probe": probe(port, path, min(5.0, args.duration))}
            tr = Trickler(port, args.slow, interval=args.interval, mode=args.mode, path="/add-checkpoint").start()
            report["during"] = {"probe": probe(port, path, args.duration)}
        else:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            key = ec.generate_private_key(ec.SECP256R1())
            (work / "issuer.pem").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            env = {"TLOG_DATA_DIR": str(work / "data"), "TLOG_ISSUER_KEYS": json.dumps([{"path": str(work / "issuer.pem"),
                                                                         "iss": ["https://loadgen.example"]}]),
                   "TLOG_ORIGIN": "slow.example/log", "TLOG_RATE_LIMIT": "0"}
            n = int(args.clients * args.duration * 400) + 100
            sts = sign_statements(key, 2 * n, f"slow-{os.getpid()}")
            port = free_port()
            proc = start_log(args.server, work, port, workers=args.workers, threads=args.threads, env=env)
            wait_ready(proc, port, "/health")
            before = drive(port, sts[:n], args.clients, args.duration)
            before.pop("_result")
            report["before"] = {"registrations": before}
            tr = Trickler(port, args.slow, interval=args.interval, mode=args.mode).start()
            time.sleep(min(2.0, args.interval * 2))  # let them take what they can
            got: dict = {}
            t = threading.Thread(target=lambda: got.update(probe(port, "/health", args.duration)))
            t.start()
            during = drive(port, sts[n:], args.clients, args.duration)
            t.join(args.duration + 30)
            during.pop("_result")
            report["during"] = {"registrations": during, "probe": got}
        report["slow_connections"] = {"opened": tr.opened, "reopened_after_close": tr.reopened,
                                      "open_failures": tr.open_failures, "alive_at_end": tr.alive()}
        tr.stop()
    finally:
        if proc is not None:
            stop(proc)
        report["conditions"]["loadavg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    d = report["during"]
    ok = d["probe"]["max_s"] is not None and d["probe"]["max_s"] <= 1.0 and (
        args.target == "witness" or d["registrations"]["ok"] > 0)
    report["pass"] = ok
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        c = report["conditions"]
        print(f"{c['target']} under {c['server']}, {c['slow']} slow connections ({c['mode']}, a byte per "
              f"{c['interval_s']} s), load {c['loadavg_start'][0]:.1f} -> {c['loadavg_end'][0]:.1f}")
        for phase in ("before", "during"):
            p = report[phase]
            line = f"  {phase:6}: "
            if "registrations" in p:
                r = p["registrations"]
                line += f"{r['per_s']} registrations/s (p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms) "
            if "probe" in p:
                q = p["probe"]
                line += (f"probe max {q['max_s']} s p50 {q['p50_s']} s, {q['over_1s']} of {q['probes']} over 1 s, "
                         f"{q['failures']} failed")
            print(line)
        print(f"  slow connections: {report['slow_connections']}")
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
