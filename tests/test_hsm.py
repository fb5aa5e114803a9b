"""Signing keys in a PKCS#11 token (SoftHSM2): receipts and checkpoints signed in the token, the
private keys never in the data dir, rotation in the token, refusal when the token lacks the key,
and the forked gunicorn workers of ``tlog serve`` signing through it."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import cose
from verifier import keys as vkeys
from verifier import note as vnote
from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from tlog.cli import main as tlog_main
from tlog.config import Config
from tlog.keys import KeyError_
from tlog.service import LogService

from .test_server_support import bound, bound_arg, statement, write_public

ROOT = Path(__file__).resolve().parent.parent
MODULE = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
               if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MODULE is None or shutil.which("softhsm2-util") is None,
                                reason="SoftHSM2 is not installed (CI installs it: apt-get install softhsm2)")
ORIGIN = "hsm.example/log"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):
    """A SoftHSM2 configuration for this process (the library reads it once, at C_Initialize)."""
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


@pytest.fixture
def token(softhsm):
    """A fresh token; returns the settings that select it."""
    label = "t" + uuid.uuid4().hex[:12]
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", "1234", "--so-pin", "5678"],
                   check=True, capture_output=True, env={**os.environ})
    return {"pkcs11_module": MODULE, "pkcs11_token": label, "pkcs11_pin": "1234"}


def _argv(settings: dict) -> list[str]:
    return ["--pkcs11-module", settings["pkcs11_module"], "--pkcs11-token", settings["pkcs11_token"]]


def test_token_keys_sign_receipts_and_checkpoints(tmp_path, token, capsys, monkeypatch):
    key = ec.generate_private_key(ec.SECP256R1())
    iss = bound_arg(write_public(tmp_path / "iss.pem", key))
    data = tmp_path / "data"
    monkeypatch.setenv("TLOG_PKCS11_PIN", token["pkcs11_pin"])
    assert tlog_main(["init", "--data-dir", str(data), "--origin", ORIGIN, "--issuer-key", iss] + _argv(token)) == 0
    kid = bytes.fromhex(capsys.readouterr().out.split("receipt kid")[1].split()[0])
    # no private key in the data dir
    names = {p.name for p in data.rglob("*")}
    assert "receipt.pem" not in names and "checkpoint.skey" not in names
    for p in data.rglob("*"):
        if p.is_file():
            assert b"PRIVATE" not in p.read_bytes(), p
    cfg = Config.load(env={}, overrides=dict(data_dir=str(data), register_wait=5.0, **token))
    svc = LogService(cfg, integrator="thread")
    try:
        st = statement(key, sub="hsm")
        r = svc.register(st)
        assert cose.decode_sign1(r.receipt).protected[4] == kid
        ks = {k[2]: vkeys.public_key_from_cose_key(k) for k in vkeys.decode_keyset(svc.keys.keyset_bytes())}
        vreceipt.verify_inclusion_receipt(r.receipt, SignedStatement.parse(st).leaf_input, ks)
        cp = svc.latest().checkpoint
        vnote.open_note(cp, [vnote.NoteVerifier.from_vkey(svc.keys.vkey)])
        # rotation: a new key made in the token, recorded in storage, used without a restart
        assert tlog_main(["rotate-key", "--data-dir", str(data)] + _argv(token)) == 0
        new = bytes.fromhex(capsys.readouterr().out.split()[3])
        deadline = time.monotonic() + 5
        while svc.keys.receipt.kid != new and time.monotonic() < deadline:
            time.sleep(0.05)
        r2 = svc.register(statement(key, sub="hsm2"))
        assert cose.decode_sign1(r2.receipt).protected[4] == new
        assert {k[2] for k in vkeys.decode_keyset(svc.keys.keyset_bytes())} == {kid, new}
    finally:
        svc.close()
    assert "receipt.pem" not in {p.name for p in data.rglob("*")}


def test_token_without_the_key_is_refused(tmp_path, token, softhsm, capsys, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("TLOG_PKCS11_PIN", "1234")
    assert tlog_main(["init", "--data-dir", str(data), "--origin", ORIGIN] + _argv(token)) == 0
    capsys.readouterr()
    other = "t" + uuid.uuid4().hex[:12]
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", other, "--pin", "1234", "--so-pin", "5678"],
                   check=True, capture_output=True)
    assert tlog_main(["policy", "show", "--data-dir", str(data), "--pkcs11-module", MODULE,
                      "--pkcs11-token", other]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tlog-checkpoint" in err and other in err
    # nothing was made in the other token
    with pytest.raises(KeyError_):
        LogService(Config.load(env={}, overrides=dict(data_dir=str(data), pkcs11_module=MODULE,
                                                      pkcs11_token=other, pkcs11_pin="1234")))
    # the log's token without its active receipt key (destroyed): refused, naming the key
    from pkcs11 import ObjectClass

    from tlog import hsm

    cfg = Config.load(env={}, overrides=dict(data_dir=str(data), **token))
    with hsm.Token.of(cfg)._lock:
        for obj in hsm.Token.of(cfg)._objects(label=hsm.RECEIPT_LABEL, object_class=ObjectClass.PRIVATE_KEY):
            obj.destroy()
    assert tlog_main(["policy", "show", "--data-dir", str(data)] + _argv(token)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the receipt key" in err and "is not in" in err, err


def test_serve_forked_workers_sign_in_the_token(tmp_path, token):
    key = ec.generate_private_key(ec.SECP256R1())
    iss = bound_arg(write_public(tmp_path / "iss.pem", key))
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TLOG_PKCS11_PIN": "1234"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--origin", ORIGIN, "--issuer-key", iss, "--workers", "2", "--threads", "2"] + _argv(token),
        cwd=str(ROOT), env=env, stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        kids = set()
        while len(kids) < 1 or time.monotonic() < deadline - 55:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/entries", body=statement(key, sub=f"w/{time.monotonic()}"),
                          headers={"Content-Type": "application/cose"})
                r = c.getresponse()
                body = r.read()
                c.close()
            except OSError:
                time.sleep(0.2)
                continue
            assert r.status == 201, body
            kids.add(cose.decode_sign1(body).protected[4])
        assert len(kids) == 1
        assert not (tmp_path / "d" / "keys" / "receipt.pem").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
