"""Slow clients against the production server (issue 11 item 5): `tlog serve` and the witness.

Smaller than ``tools/slowclients.py`` (64 trickling connections, a few seconds), with fewer Python
threads than slow connections, so a server that reads heads or bodies in its request threads
(gunicorn gthread, Flask's development server: the setups before) fails these tests.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tools.slowclients import Trickler, probe, stop, wait_ready
from verifier.note import Signer

from .test_server_support import bound, bound_arg, statement, write_public

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, *extra, env=None):
    key = ec.generate_private_key(ec.SECP256R1())
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TLOG_DATA_DIR": str(tmp_path / "d"),
           "TLOG_ISSUER_KEYS": json.dumps([bound(write_public(tmp_path / "issuer.pem", key))]), "TLOG_ORIGIN": "slow.example/log",
           **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "tlog.cli", "serve", "--port", str(port), *extra],
                            cwd=str(ROOT), env=env, stdout=open(tmp_path / "serve.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(proc, port, "/health")
    except BaseException:
        stop(proc)
        raise
    return proc, port, key


def _post(port, body, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/entries", body=body, headers={"Content-Type": "application/cose"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.mark.slow
def test_tlog_serve_answers_and_registers_while_64_connections_trickle(tmp_path):
    proc, port, key = _serve(tmp_path, "--workers", "1", "--threads", "4")
    tr = Trickler(port, 64, interval=0.5).start()
    try:
        time.sleep(1.0)  # they hold whatever they can take
        got: dict = {}
        t = threading.Thread(target=lambda: got.update(probe(port, "/health", 3.0, every=0.1, timeout=3.0)))
        t.start()
        statuses = [_post(port, statement(key, sub=f"slow/{i}"))[0] for i in range(5)]
        t.join(20)
        assert tr.alive() >= 60  # the slow connections are still there (not simply refused)
        assert got["failures"] == 0 and got["max_s"] < 1.0, got
        assert statuses == [201] * 5
    finally:
        tr.stop()
        stop(proc)


@pytest.mark.slow
def test_slow_body_gets_408_and_slow_head_is_closed(tmp_path):
    proc, port, key = _serve(tmp_path, "--workers", "1", "--threads", "2", "--body-timeout", "1",
                             "--header-timeout", "1")
    try:
        # a body that stops after one byte: 408 problem details once body_timeout has passed
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/cose\r\nContent-Length: 100\r\n\r\n\xd2")
        t0 = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data
        assert 0.8 < time.monotonic() - t0 < 5
        assert b"application/concise-problem-details+cbor" in head.lower()
        n = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
        while len(rest) < n:
            rest += s.recv(4096)
        assert cbor2.loads(rest[:n])[-1] == "Request Timeout"
        s.close()
        # a head that never ends: the server closes the connection after header_timeout
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        while s.recv(4096):
            pass
        assert time.monotonic() - t0 < 5
        s.close()
        # nothing was stored, and the log still registers
        assert _post(port, statement(key))[0] == 201
    finally:
        stop(proc)


@pytest.mark.slow
def test_witness_serves_while_64_connections_trickle(tmp_path):
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "witness", "--data-dir", str(tmp_path / "w"),
                             "--log-vkey", Signer.generate("slow.example/log").vkey, "--port", str(port),
                             "--threads", "4"],
                            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=open(tmp_path / "w.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    path = "/checkpoint?origin=slow.example/log"
    try:
        wait_ready(proc, port, path)
        # served by the production server (before: Flask's development server, which 1,100 slow
        # connections stopped)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path)
        assert c.getresponse().getheader("server") == "granian"
        c.close()
        tr = Trickler(port, 64, interval=0.5, path="/add-checkpoint").start()
        try:
            time.sleep(1.0)
            got = probe(port, path, 3.0, every=0.1, timeout=3.0)
            assert tr.alive() >= 60
            assert got["failures"] == 0 and got["max_s"] < 1.0 and got["status"] == {404: got["probes"]}, got
        finally:
            tr.stop()
    finally:
        stop(proc)


@pytest.mark.slow
def test_memory_bounded_with_64_concurrent_1mib_registrations():
    """5 rounds of 64 concurrent statements of the maximum size (1 MiB): the worker and its
    integrator each stay under 300 MiB peak RSS (before: the SQLite writer's 256 MiB page cache
    took the integrator over 300 MiB; bodies are spooled to files while waiting for a thread)."""
    import io
    import json
    from contextlib import redirect_stdout

    from tools import bigbodies

    out = io.StringIO()
    with redirect_stdout(out):
        rc = bigbodies.main(["--rounds", "5", "--concurrent", "64", "--json"])
    report = json.loads(out.getvalue())
    assert report["status"] == {"201": 320}, report
    assert report["peak_rss_mib"]["worker"] < 300 and report["peak_rss_mib"]["integrator"] < 300, report
    assert rc == 0
