"""End to end: the real server (`tlog serve`: granian, several workers) on loopback, kill -9 under load.

Every receipt handed out before the crash must still prove inclusion against the checkpoint
served after the restart, through a consistency receipt from the receipt's tree size.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import keys as vkeys
from verifier import note as vnote
from verifier import receipt as vreceipt
from verifier import transparent as vtransparent
from verifier.statement import SignedStatement

from .test_server_support import bound, bound_arg, statement, write_public

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``tlog serve`` (the production server) with settings from ``env``."""

    def __init__(self, env: dict, log: Path, workers: int = 3, threads: int = 8) -> None:
        self.port = _free_port()
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tlog.cli", "serve", "--workers", str(workers), "--threads", str(threads),
             "--port", str(self.port)],
            cwd=str(ROOT), env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, "server exited: " + log.read_text()[-2000:]
            try:
                if self.get("/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, body):
        return self.request("POST", "/entries", body, {"Content-Type": "application/cose"})

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # master and workers: the group we started
            self.proc.wait(15)
        self.log.close()


def _register(srv, st, timeout=20.0):
    """POST, following a 303 to the receipt (bounded): returns (201, receipt, headers)."""
    status, body, hdrs = srv.post(st)
    if status != 303:
        return status, body, hdrs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s2, b2, h2 = srv.get(hdrs["location"])
        if s2 == 200:
            return 201, b2, hdrs
        assert s2 in (302, 202), (s2, b2)
        time.sleep(0.1)
    raise AssertionError("registration not integrated in time")


@pytest.mark.slow
def test_served_register_read_kill9_restart(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    env = {
        "TLOG_DATA_DIR": str(tmp_path / "data"),
        "TLOG_ISSUER_KEYS": json.dumps([bound(write_public(tmp_path / "issuer.pem", key))]),
        "TLOG_ORIGIN": "e2e.example/log",
        "TLOG_ISSUER": "https://e2e.example",
        "TLOG_REGISTER_WAIT": "0.02",  # a mix of 201 and 303 (spilled to the durable queue) answers
    }
    srv = Served(env, tmp_path / "server.log")
    try:
        conf = cbor2.loads(srv.get("/.well-known/transparency-configuration")[1])
        vkey = conf["checkpoint_vkey"]
        ks = vkeys.decode_keyset(srv.get("/.well-known/scitt-keys")[1])
        keys = {k[2]: vkeys.public_key_from_cose_key(k) for k in ks}
        # only one policy entry although three workers started at once
        assert json.loads(srv.get("/health")[1])["tree_size"] == 1

        # register and read back
        st = statement(key, sub="e2e/first")
        status, receipt, hdrs = _register(srv, st)
        assert status == 201, receipt
        leaf = SignedStatement.parse(st).leaf_input
        vreceipt.verify_inclusion_receipt(receipt, leaf, keys)
        assert srv.get(hdrs["location"])[:2] == (200, receipt)
        status, ts, _ = srv.get(hdrs["location"] + "/statement")
        assert status == 200
        vreceipt.verify_inclusion_receipt(vtransparent.extract_receipts(ts)[0], SignedStatement.parse(ts).leaf_input, keys)

        # load from 8 keep-alive clients, then kill -9 the whole server
        acked: list[tuple[bytes, bytes]] = []
        accepted: list[tuple[bytes, str]] = []
        lock = threading.Lock()
        stop = threading.Event()
        pre = [[statement(key, sub=f"e2e/{c}/{i}") for i in range(400)] for c in range(8)]

        def client(c):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            for body in pre[c]:
                if stop.is_set():
                    break
                try:
                    conn.request("POST", "/entries", body=body, headers={"Content-Type": "application/cose"})
                    r = conn.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException):
                    break  # the server is gone
                with lock:
                    if r.status == 201:
                        acked.append((SignedStatement.parse(body).leaf_input, data))
                    elif r.status == 303:
                        accepted.append((SignedStatement.parse(body).leaf_input, r.getheader("Location")))
                    else:
                        raise AssertionError(f"unexpected status {r.status}")
            conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(acked) + len(accepted) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.kill(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(15)
        acked.append((leaf, receipt))
        assert len(acked) + len(accepted) >= 50, "too few registrations before the kill"
        print(f"acknowledged before kill: {len(acked)} (201), {len(accepted)} (303)")
    finally:
        srv.kill()

    srv2 = Served(env, tmp_path / "server.log")
    try:
        # the pending (303) ones are integrated after the restart
        deadline = time.monotonic() + 20
        for lf, loc in accepted:
            while True:
                status, body, _ = srv2.get(loc)
                if status == 200:
                    acked.append((lf, body))
                    break
                assert status in (302, 202) and time.monotonic() < deadline, (status, body)
                time.sleep(0.2)
        cp_text = srv2.get("/checkpoint")[1]
        cp = vnote.Checkpoint.parse(vnote.open_note(cp_text, [vnote.NoteVerifier.from_vkey(vkey)]).text)
        indexes = {}
        for lf, rec in acked:
            info = vreceipt.verify_inclusion_receipt(rec, lf, keys)
            assert indexes.setdefault(info.index, lf) == lf, "two statements at one index"
            assert info.size <= cp.size
            if info.size == cp.size:
                assert info.root == cp.root
                continue
            status, cr, _ = srv2.get(f"/consistency?from={info.size}&to={cp.size}")
            assert status == 200
            c = vreceipt.verify_consistency_receipt(cr, size1=info.size, root1=info.root, keys=keys)
            assert (c.size2, c.root2) == (cp.size, cp.root)
            # and a fresh receipt at the checkpoint size proves inclusion against it directly
        lf, rec = acked[0]
        idx = vreceipt.verify_inclusion_receipt(rec, lf, keys).index
        status, r2, _ = srv2.get(f"/entries/{idx}/receipt?size={cp.size}")
        assert status == 200 and vreceipt.verify_inclusion_receipt(r2, lf, keys).root == cp.root
        # every acknowledged statement is in the log exactly once
        assert len(indexes) == len({lf for lf, _ in acked})
        # the log still registers after the crash
        status, body, _ = _register(srv2, statement(key, sub="e2e/after"))
        assert status == 201
    finally:
        srv2.kill(signal.SIGTERM)


@pytest.mark.slow
def test_tlog_serve_cli_creates_keys_and_serves(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = write_public(tmp_path / "issuer.pem", key)
    (tmp_path / "tlog.toml").write_text(f'origin = "cli.example/log"\nissuer_keys = [{{path = "{issuer}", iss = ["https://issuer.example"]}}]\npending_status = 202\n')
    port = _free_port()
    log = open(tmp_path / "cli.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--config", str(tmp_path / "tlog.toml"), "--workers", "2", "--threads", "4"],
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "cli.log").read_text()[-2000:]
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        kdir = tmp_path / "d" / "keys"
        for name in ("receipt.pem", "checkpoint.skey"):
            assert (kdir / name).stat().st_mode & 0o777 == 0o600
        assert kdir.stat().st_mode & 0o777 == 0o700
        st = statement(key)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/entries", body=st, headers={"Content-Type": "application/cose"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 201
        # an oversized chunked body (no Content-Length) is refused with 413 too, without reading it all
        # (the server may close the connection before the client has sent it all: then the
        # client sees a reset instead of the 413; either way nothing is stored)
        try:
            c.request("POST", "/entries", body=iter([b"\xd2" + b"\x00" * 65535] * 40),
                      headers={"Content-Type": "application/cose"}, encode_chunked=True)
            r = c.getresponse()
            assert r.status == 413 and cbor2.loads(r.read())[-1] == "Payload Too Large"
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/health")
        assert json.loads(c.getresponse().read())["tree_size"] == 2  # policy + the one statement
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/.well-known/transparency-configuration")
        conf = cbor2.loads(c.getresponse().read())
        assert conf["checkpoint_origin"] == "cli.example/log"
        c.request("GET", "/.well-known/scitt-keys")
        ks = vkeys.decode_keyset(c.getresponse().read())
        vreceipt.verify_inclusion_receipt(body, SignedStatement.parse(st).leaf_input,
                                          {k[2]: vkeys.public_key_from_cose_key(k) for k in ks})
        c.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        log.close()
    # init on the existing data dir prints the same keys; a different origin is refused
    out = subprocess.run([sys.executable, "-m", "tlog.cli", "init", "--data-dir", str(tmp_path / "d")],
                         cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert out.returncode == 0 and "cli.example/log" in out.stdout and conf["checkpoint_vkey"] in out.stdout
    out = subprocess.run([sys.executable, "-m", "tlog.cli", "init", "--data-dir", str(tmp_path / "d"),
                          "--origin", "other.example/log"],
                         cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert out.returncode == 2 and "the log's origin is 'cli.example/log'" in out.stderr
