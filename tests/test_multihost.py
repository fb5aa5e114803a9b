"""Several hosts on one PostgreSQL, following the README's procedure (issue 12): ``tlog init`` once,
``keys/`` copied to every host, ``tlog serve`` on each with only the data dir and the database.
Three real servers (``tlog serve``, granian) on one database; a key rotation on one host is seen
by all of them, and every receipt verifies against every host's published key set throughout."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import cose
from verifier import keys as vkeys
from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from .test_server_support import bound, bound_arg, statement, write_public
from .tlog_fixtures import PG_URL, fresh_pg_database, pg_skip_reason

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(PG_URL is None, reason=pg_skip_reason)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _tlog(*argv, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "tlog.cli", *argv], cwd=str(ROOT), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


class Host:
    def __init__(self, data_dir: Path, db: str, log_path: Path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(data_dir), "--database-url", db,
             "--port", str(self.port), "--workers", "1", "--threads", "4"],
            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=open(log_path, "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.2)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers={"Content-Type": "application/cose"} if body else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def keyset(self) -> dict[bytes, object]:
        status, body = self.get("/.well-known/scitt-keys")
        assert status == 200
        return {k[2]: vkeys.public_key_from_cose_key(k) for k in vkeys.decode_keyset(body)}

    def register(self, data: bytes) -> bytes:
        status, body = self.request("POST", "/entries", data)
        assert status == 201, (status, body)
        return body

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _until(pred, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def test_three_hosts_one_database_and_a_rotation(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_pem = bound_arg(write_public(tmp_path / "issuer.pem", key))
    with fresh_pg_database("tlog_multihost") as db:
        a, b, c = (tmp_path / n for n in ("a", "b", "c"))
        # 1. init once (origin, issuer and policy fixed here, stored in the database)
        _tlog("init", "--data-dir", str(a), "--database-url", db, "--origin", "multi.example/log",
              "--issuer", "https://multi.example", "--issuer-key", issuer_pem)
        # a host without the keys refuses to start, and makes none
        out = _tlog("serve", "--data-dir", str(b), "--database-url", db, "--port", str(_free_port()), check=False)
        assert out.returncode == 2 and "receipt.pem" in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert not (b / "keys").exists()
        # 2. the keys reach every host (here: a copy, as scp/rsync or a secret store would)
        for h in (b, c):
            shutil.copytree(a / "keys", h / "keys")
        # 3. start each: no origin, issuer or policy options needed
        hosts = [Host(d, db, tmp_path / f"{d.name}.log") for d in (a, b, c)]
        try:
            for h in hosts:
                h.wait_ready()
            import cbor2

            fields = ("issuer", "checkpoint_origin", "checkpoint_vkey", "registration_policy")
            confs = {tuple(cbor2.loads(h.get("/.well-known/transparency-configuration")[1]).get(f) for f in fields)
                     for h in hosts}
            assert len(confs) == 1  # one log, as every host describes it (URLs aside)
            assert next(iter(confs))[:2] == ("https://multi.example", "multi.example/log")
            sts = [statement(key, sub=f"before/{i}") for i in range(3)]
            before = [(h.register(st), st) for h, st in zip(hosts, sts)]
            old = {cose.decode_sign1(r).protected[4] for r, _ in before}
            assert len(old) == 1
            for h in hosts:
                ks = h.keyset()
                for r, st in before:
                    vreceipt.verify_inclusion_receipt(r, SignedStatement.parse(st).leaf_input, ks)

            # 4. rotate on one host: every host publishes both keys within the refresh interval,
            # before the new private key reached them
            shutil.copy2(c / "keys" / "receipt.pem", tmp_path / "old-receipt.pem")
            out = _tlog("rotate-key", "--data-dir", str(a), "--database-url", db)
            new = bytes.fromhex(out.stdout.split()[3])
            for h in hosts:
                _until(lambda h=h: set(h.keyset()) == old | {new})
            mid = [(h.register(statement(key, sub=f"mid/{i}")), i) for i, h in enumerate(hosts)]
            for h in hosts:
                ks = h.keyset()
                for r, _ in mid + [(r, None) for r, _ in before]:
                    assert cose.decode_sign1(r).protected[4] in ks
            # 5. the new key copied to the other hosts: all sign with it, no restart
            for h in (b, c):
                shutil.copy2(a / "keys" / "receipt.pem", h / "keys" / "receipt.pem")

            def all_new():
                rs = [(h.register(statement(key, sub=f"after/{time.monotonic()}/{i}")), i)
                      for i, h in enumerate(hosts)]
                return all(cose.decode_sign1(r).protected[4] == new for r, _ in rs)

            _until(all_new, 20)
            # a restart of a host with the retired key is refused, naming what to copy
            hosts[2].stop()
            shutil.copy2(tmp_path / "old-receipt.pem", c / "keys" / "receipt.pem")
            out = _tlog("serve", "--data-dir", str(c), "--database-url", db, "--port", str(_free_port()), check=False)
            assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
            assert "retired receipt key" in out.stderr and "rotate-key" in out.stderr
        finally:
            for h in hosts:
                h.stop()
