"""witness (the witness package): the C2SP tlog-witness add-checkpoint endpoint."""

from __future__ import annotations

import base64
import threading

import pytest

from witness import Witness, create_app, parse_add_checkpoint
from verifier.note import CosignatureSigner, Signer, open_checkpoint, sign_note, Checkpoint
from verifier.tiles import TileHashReader

from .test_monitor_fixture import FixtureLog, make_entries


class Env:
    def __init__(self, tmp_path):
        self.log = FixtureLog("example.com/wlog")
        self.cosigner = CosignatureSigner.generate("witness.example")
        self.db = tmp_path / "w.db"
        self.witness = Witness(self.db, {self.log.origin: [self.log.signer.verifier()]}, [self.cosigner])
        self.client = create_app(self.witness).test_client()

    def proof(self, old: int, new: int, tiles=None) -> list[bytes]:
        if old == 0 or old == new:
            return []
        return TileHashReader((tiles or self.log.tiles).get, new).consistency_proof(old)

    def body(self, old: int, note: str, proof=()) -> bytes:
        return ("old %d\n" % old + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note).encode()

    def post(self, old, note, proof=None):
        if proof is None:
            proof = self.proof(old, Checkpoint.parse(note.split("\n\n")[0] + "\n").size)
        return self.client.post("/add-checkpoint", data=self.body(old, note, proof))


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_happy_path_and_cosignature(env):
    env.log.append(make_entries(10))
    r = env.post(0, env.log.note)
    assert r.status_code == 200, r.data
    line = r.data.decode()
    assert line.startswith("\u2014 witness.example ") and line.endswith("\n")
    cosigned = env.log.note + line
    got = open_checkpoint(cosigned, env.log.signer.verifier(), [env.cosigner.verifier()])
    assert "witness.example" in got.cosignatures
    # grow with a proof
    env.log.append(make_entries(500, salt=b"a"))
    r = env.post(10, env.log.note)
    assert r.status_code == 200, r.data
    assert env.witness.latest(env.log.origin)[0] == 510
    # GET extension: the latest cosigned checkpoint
    g = env.client.get("/checkpoint", query_string={"origin": env.log.origin})
    assert g.status_code == 200
    assert open_checkpoint(g.data.decode(), env.log.signer.verifier(), [env.cosigner.verifier()]).checkpoint.size == 510


def test_stale_old_size_gets_409_with_size(env):
    env.log.append(make_entries(10))
    assert env.post(0, env.log.note).status_code == 200
    env.log.append(make_entries(20, salt=b"b"))
    assert env.post(10, env.log.note).status_code == 200
    env.log.append(make_entries(5, salt=b"c"))
    r = env.post(10, env.log.note)  # stale: the witness is at 30
    assert r.status_code == 409
    assert r.headers["Content-Type"] == "text/x.tlog.size"
    assert r.data == b"30\n"
    r = env.post(0, env.log.note)  # the "old 0" trick to learn the size
    assert r.status_code == 409 and r.data == b"30\n"
    assert env.post(30, env.log.note).status_code == 200


def test_bad_proof_422(env):
    env.log.append(make_entries(100))
    assert env.post(0, env.log.note).status_code == 200
    env.log.append(make_entries(100, salt=b"d"))
    good = env.proof(100, 200)
    bad = [good[0][:-1] + bytes([good[0][-1] ^ 1])] + good[1:]
    assert env.post(100, env.log.note, bad).status_code == 422
    assert env.post(100, env.log.note, good[:-1]).status_code == 422
    assert env.witness.latest(env.log.origin)[0] == 100  # unchanged
    assert env.post(100, env.log.note, good).status_code == 200


def test_nonempty_proof_for_old_zero_is_422(tmp_path):
    e = Env(tmp_path)
    e.log.append(make_entries(4))
    assert e.post(0, e.log.note, [b"\x00" * 32]).status_code == 422


def test_forked_log_refused(env):
    env.log.append(make_entries(1000))
    assert env.post(0, env.log.note).status_code == 200
    fork = env.log.fork(500, make_entries(800, salt=b"evil"))  # same key, rewritten history
    # the fork's own proof (from its tiles) cannot link the witness's root to the fork's root
    r = env.post(1000, fork.note, env.proof(1000, 1300, fork.tiles))
    assert r.status_code == 422
    # same size, other root
    same = env.log.fork(500, make_entries(500, salt=b"evil2"))
    r = env.post(1000, same.note, [])
    assert r.status_code == 409 and r.data == b"1000\n"
    assert env.witness.latest(env.log.origin)[1] == env.log.tiles.root()


def test_status_codes_404_403_400(env):
    env.log.append(make_entries(3))
    other = Signer.generate("unknown.example/log")
    note = sign_note(Checkpoint("unknown.example/log", 3, env.log.tiles.root()).to_text(), [other])
    assert env.post(0, note).status_code == 404
    impostor = Signer.generate(env.log.origin)
    note = sign_note(Checkpoint(env.log.origin, 3, env.log.tiles.root()).to_text(), [impostor])
    assert env.post(0, note).status_code == 403
    # a trusted key whose signature fails
    good = env.log.note
    tampered = good.replace("\n3\n", "\n4\n", 1)
    assert env.post(0, tampered, []).status_code == 403
    # old > size
    assert env.post(5, good, []).status_code == 400
    for body in [b"", b"old 01\n\n" + good.encode(), b"old 1\nnotbase64\n\n" + good.encode(),
                 b"new 0\n\n" + good.encode(), b"old 0\n" + good.encode(), b"\xff\xfe",
                 b"old 0\n\nnot a note\n", ("old 0\n" + "A" * 43 + "=\n" * 64 + "\n").encode() + good.encode()]:
        r = env.client.post("/add-checkpoint", data=body)
        assert r.status_code == 400, body
    assert env.witness.latest(env.log.origin) is None


def test_state_persists_across_restart(env, tmp_path):
    env.log.append(make_entries(42))
    assert env.post(0, env.log.note).status_code == 200
    w2 = Witness(env.db, {env.log.origin: [env.log.signer.verifier()]}, [env.cosigner])
    c2 = create_app(w2).test_client()
    r = c2.post("/add-checkpoint", data=env.body(0, env.log.note))
    assert r.status_code == 409 and r.data == b"42\n"


def test_concurrent_requests_cannot_roll_back(env):
    env.log.append(make_entries(10))
    assert env.post(0, env.log.note).status_code == 200
    notes = []
    for k in range(8):
        env.log.append(make_entries(7, salt=bytes([k])))
        notes.append((env.log.tiles.size, env.log.note, env.proof(10, env.log.tiles.size)))
    results = []
    # one app per request, made before the threads start (building Flask apps is not
    # thread-safe); the apps share the witness and its store, which is what is under test
    clients = [create_app(env.witness).test_client() for _ in notes]

    def go(c, n):
        try:
            results.append(c.post("/add-checkpoint", data=env.body(10, n[1], n[2])).status_code)
        except Exception as e:  # noqa: BLE001 - a lost request must fail the test, not vanish
            results.append(repr(e))

    ts = [threading.Thread(target=go, args=(c, n)) for c, n in zip(clients, notes)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert sorted(results, key=str).count(200) == 1 and results.count(409) == 7, repr(results)
    size = env.witness.latest(env.log.origin)[0]
    assert size in [n[0] for n in notes]


def test_parse_add_checkpoint():
    old, proof, note = parse_add_checkpoint(b"old 5\n" + base64.b64encode(b"\x01" * 32) + b"\n\nnote\n")
    assert old == 5 and proof == [b"\x01" * 32] and note == "note\n"


def test_witness_cli_help():
    from witness import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert main(["--data-dir", "/nonexistent-never", "--log-vkey", "bad"]) == 2


def _serve_app(app):
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, t


def test_monitor_sees_split_view_through_witness(env, tmp_path):
    """The witness cosigned a fork; a monitor of the real history compares with it."""
    import io

    from verifier.monitor import HttpLog, Monitor, MonitorAlert, Reporter

    from .test_monitor_fixture import FixtureServer

    env.log.append(make_entries(300))
    fork = env.log.fork(100, make_entries(200, salt=b"w"))
    assert env.post(0, fork.note).status_code == 200  # the witness only ever saw the fork
    wsrv, wt = _serve_app(create_app(env.witness))
    try:
        with FixtureServer(env.log) as srv:
            m = Monitor(HttpLog(srv.url, timeout=5), env.log.signer.verifier(), tmp_path / "m.json",
                        witnesses=[f"http://127.0.0.1:{wsrv.server_port}"], reporter=Reporter(io.StringIO(), io.StringIO()))
            with pytest.raises(MonitorAlert) as e:
                m.poll()
            assert e.value.kind == "split-view"
            notes = {e.value.evidence["a"]["note"], e.value.evidence["b"]["note"]}
            assert env.log.note in notes
            assert any(n.startswith(fork.note) for n in notes)  # the witness's cosigned copy
    finally:
        wsrv.shutdown()
        wt.join(5)


def test_python_m_tlog_witness_serves(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    import requests

    log = FixtureLog("example.com/proc")
    log.append(make_entries(5))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "witness", "--data-dir", str(tmp_path / "wd"),
                          "--log-vkey", log.signer.vkey, "--port", str(port), "--name", "w.example"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = ("old 0\n\n" + log.note).encode()
        deadline = time.time() + 15
        while True:
            try:
                r = requests.post(f"http://127.0.0.1:{port}/add-checkpoint", data=body, timeout=2)
                break
            except requests.ConnectionError:
                if time.time() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200
        vkey = CosignatureSigner.from_skey((tmp_path / "wd" / "witness.skey").read_text().strip()).vkey
        from verifier.note import NoteVerifier

        open_checkpoint(log.note + r.text, log.signer.verifier(), [NoteVerifier.from_vkey(vkey)])
        r = requests.post(f"http://127.0.0.1:{port}/add-checkpoint", data=body, timeout=5)
        assert r.status_code == 409 and r.text == "5\n"
    finally:
        p.terminate()
        p.wait(10)


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 3))
def test_random_bodies_never_crash(tmp_path_factory, data, variant):
    e = _HYP_ENV.get("env")
    if e is None:
        e = _HYP_ENV["env"] = Env(tmp_path_factory.mktemp("hyp"))
        e.log.append(make_entries(20))
        e.good = e.body(0, e.log.note)
    body = [data, b"old 0\n\n" + data, e.good[: len(data)] + data, data + e.good][variant]
    r = e.witness.add_checkpoint(body)
    assert r.status in (200, 400, 403, 404, 409, 422)
    if r.status == 200:
        assert body.endswith(e.good[e.good.index(b"\n\n") + 2:]) or body == e.good


_HYP_ENV: dict = {}


def test_witness_imports_nothing_of_the_log():
    """The witness runs on other hosts: importing it (and the server it runs under) loads no tlog module."""
    import subprocess
    import sys

    code = ("import sys, witness, witness.cli, witness.core, witness.http, serving.httpd, serving.logs; "
            "bad = sorted(m for m in sys.modules if m == 'tlog' or m.startswith('tlog.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
