"""Time for ``tlog serve`` to start (until it answers /health) and to refuse a mistake.

    python3 tools/bench_startup.py [--rounds 3] [--entries 1000]

Makes a log in a temporary directory (SQLite; ``--entries`` statements registered through the
service), then times, each ``--rounds`` times, in a fresh process: a first start of an empty log,
a restart of the log (2 workers), and refusals (missing receipt key, mismatched checkpoint key,
a TLOG_* typo, an issuer key file that does not parse, policy options that disagree, a second
server on the data dir, the port in use). Prints the median seconds and the load average.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "tlog.cli", "serve", *args], cwd=str(ROOT),
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def time_start(data: Path, extra=()) -> float:
    port = free_port()
    t0 = time.monotonic()
    p = serve(["--data-dir", str(data), "--port", str(port), "--workers", "2", "--threads", "4", *extra])
    try:
        while True:
            if p.poll() is not None:
                raise SystemExit(f"serve exited: {p.stderr.read().decode()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.02)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)


def time_refuse(args, env=None) -> tuple[float, str]:
    t0 = time.monotonic()
    p = serve(args, env)
    _, err = p.communicate(timeout=120)
    dt = time.monotonic() - t0
    lines = err.decode().strip().splitlines()
    if p.returncode != 2 or len(lines) != 1:
        raise SystemExit(f"expected one line and exit 2, got {p.returncode}: {err.decode()[-2000:]}")
    return dt, lines[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--entries", type=int, default=1000)
    a = ap.parse_args()
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.test_server_support import statement, write_public
    from tlog.config import Config
    from tlog.service import LogService
    from tlog.startup import DataDirLock

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key = ec.generate_private_key(ec.SECP256R1())
        # trusted keys are bound to the identities they may claim (statement()'s iss)
        iss = json.dumps({"path": str(write_public(tmp / "iss.pem", key)), "iss": ["https://issuer.example"]})
        other = json.dumps({"path": str(write_public(tmp / "other.pem", ec.generate_private_key(ec.SECP256R1()))),
                            "iss": ["https://issuer.example"]})
        (tmp / "bad.pem").write_text("not a key\n")
        data = tmp / "log"
        svc = LogService(Config.load(env={}, overrides=dict(data_dir=str(data), origin="bench.example/log",
                                                            issuer_keys=[iss], max_wait=0.05)), integrator="thread")
        try:
            pend = [svc.log.submit(*_item(statement(key, sub=f"s/{i}"))) for i in range(a.entries)]
            for p in pend:
                p.wait(60)
        finally:
            svc.close()
        for r in range(a.rounds):
            results.setdefault("first start of an empty log", []).append(
                time_start(tmp / f"new{r}", ["--origin", "bench.example/new", "--issuer-key", iss]))
            results.setdefault(f"start of a log with {a.entries} entries", []).append(time_start(data))
            port = str(free_port())
            cases = {
                "refuse: TLOG_* typo": (["--data-dir", str(data), "--port", port], {"TLOG_PROT": "1"}),
                "refuse: issuer key file unparseable": (["--data-dir", str(data), "--port", port,
                                                         "--issuer-key", json.dumps(
                                                             {"path": str(tmp / "bad.pem"), "iss": ["x"]})], None),
                "refuse: policy options disagree": (["--data-dir", str(data), "--port", port,
                                                     "--issuer-key", other], None),
            }
            for name, (args, env) in cases.items():
                results.setdefault(name, []).append(time_refuse(args, env)[0])
            # missing receipt key
            rk = data / "keys" / "receipt.pem"
            shutil.move(rk, tmp / "receipt.bak")
            results.setdefault("refuse: receipt key missing", []).append(
                time_refuse(["--data-dir", str(data), "--port", port])[0])
            shutil.move(tmp / "receipt.bak", rk)
            held = DataDirLock(data).acquire()
            try:
                results.setdefault("refuse: data dir in use", []).append(
                    time_refuse(["--data-dir", str(data), "--port", port])[0])
            finally:
                held.release()
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            try:
                results.setdefault("refuse: port in use", []).append(
                    time_refuse(["--data-dir", str(data), "--port", str(s.getsockname()[1])])[0])
            finally:
                s.close()
    load = os.getloadavg()
    print(f"tlog serve, median of {a.rounds} (s); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name, v in results.items():
        print(f"  {name:45s} {statistics.median(v):6.2f}  (min {min(v):.2f})")
    return 0


def _item(data: bytes):
    from verifier.statement import SignedStatement

    st = SignedStatement.parse(data)
    return st.leaf_input, st.statement_bytes, [("kind", "statement")]


if __name__ == "__main__":
    sys.exit(main())
