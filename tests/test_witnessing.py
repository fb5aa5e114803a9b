"""The log collects witness cosignatures (tlog.witnessing) and serves them on /checkpoint."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server

from tlog import keys as tkeys
from tlog.config import Config, ConfigError
from tlog.server import create_app
from witness import Witness, create_app as witness_app
from verifier.note import Checkpoint, CosignatureSigner, open_checkpoint, sign_note

from .test_server_support import bound, bound_arg, statement, write_public

ORIGIN = "test.example/wlog"


class WitnessServer:
    """A real witness app on 127.0.0.1 (werkzeug server thread); stop() takes it down."""

    def __init__(self, tmp_path, name: str, log_verifier):
        self.signer = CosignatureSigner.generate(name)
        self.witness = Witness(tmp_path / f"{name}.db", {ORIGIN: [log_verifier]}, [self.signer])
        self.srv = make_server("127.0.0.1", 0, witness_app(self.witness), threaded=True)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.up = True

    @property
    def verifier(self):
        return self.signer.verifier()

    def spec(self) -> str:
        return f"{self.url}={self.signer.vkey}"

    def stop(self):
        if self.up:
            self.srv.shutdown()
            self.srv.server_close()
            self.up = False


@pytest.fixture(scope="module")
def issuer_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def env(tmp_path, issuer_key):
    data = tmp_path / "data"
    data.mkdir()
    lk = tkeys.load_or_create(str(data), ORIGIN)  # keys first: the witnesses must trust the log key
    log_v = lk.note_signer.verifier()
    servers, apps = [], []

    class Env:
        log_verifier = log_v
        note_signer = lk.note_signer

        def witness(self, name):
            w = WitnessServer(tmp_path, name, log_v)
            servers.append(w)
            return w

        def app(self, witnesses, quorum, **kw):
            settings = dict(
                data_dir=str(data), issuer_keys=[bound(write_public(tmp_path / "iss.pem", issuer_key))],
                register_wait=5.0, origin=ORIGIN, issuer="https://test.example",
                witnesses=witnesses, witness_quorum=quorum, witness_interval=0.1,
            )
            settings.update(kw)
            a = create_app(Config.load(env={}, overrides=settings))
            apps.append(a)
            return a

    yield Env()
    for a in apps:
        w = a.extensions.get("tlog.witnessing")
        if w is not None:
            w.stop()
        a.extensions["tlog.service"].close()
    for s in servers:
        s.stop()


_n = [0]


def register(client, key) -> float:
    _n[0] += 1
    t0 = time.monotonic()
    r = client.post("/entries", data=statement(key, payload=b'{"n": %d}' % _n[0]), content_type="application/cose")
    assert r.status_code == 201, r.data
    return time.monotonic() - t0


def tree_size(app) -> int:
    return app.extensions["tlog.service"].tree_size()


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = pred()
        except AssertionError:  # e.g. 503 while no checkpoint has a quorum yet
            v = None
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def served(client, env, cosigners):
    r = client.get("/checkpoint")
    assert r.status_code == 200, r.data
    return open_checkpoint(r.data, env.log_verifier, cosigners)


def test_config_witnesses():
    s = CosignatureSigner.generate("w.example")
    cfg = Config.load(env={}, overrides={"witnesses": [f"http://w.example/=" + s.vkey], "witness_quorum": 1})
    assert cfg.witnesses == [{"url": "http://w.example", "vkey": s.vkey}]
    env_cfg = Config.load(env=cfg.to_env())
    assert env_cfg.witnesses == cfg.witnesses and env_cfg.witness_quorum == 1
    with pytest.raises(ConfigError):
        Config.load(env={}, overrides={"witnesses": [f"http://w.example={s.vkey}"], "witness_quorum": 2})
    from verifier.note import Signer

    with pytest.raises(ConfigError):  # an Ed25519 note key is not a cosignature key
        Config.load(env={}, overrides={"witnesses": [f"http://w.example={Signer.generate('x').vkey}"]})


def test_checkpoint_carries_cosignatures_and_size_is_learned(env, issuer_key):
    a, b = env.witness("wa.example"), env.witness("wb.example")
    app = env.app([a.spec(), b.spec()], 2)
    c = app.test_client()
    for _ in range(3):
        register(c, issuer_key)
    n = tree_size(app)
    cn = wait_for(lambda: (lambda x: x if x.checkpoint.size == n else None)(served(c, env, [a.verifier, b.verifier])))
    assert set(cn.cosignatures) == {"wa.example", "wb.example"}
    assert a.witness.latest(ORIGIN)[0] == n
    # forget what we know about witness A: the next submission gets 409 + size, and is retried
    wit = app.extensions["tlog.witnessing"]
    wa = wit.witnesses[0]
    wa.size = None
    register(c, issuer_key)
    n2 = tree_size(app)
    cn = wait_for(lambda: (lambda x: x if x.checkpoint.size == n2 else None)(served(c, env, [a.verifier, b.verifier])))
    assert set(cn.cosignatures) == {"wa.example", "wb.example"}
    assert wa.size == n2 and wa.fails == 0


def test_quorum_holds_checkpoint_while_a_witness_is_down(env, issuer_key):
    a, b = env.witness("wa.example"), env.witness("wb.example")
    app = env.app([a.spec(), b.spec()], 2)
    c = app.test_client()
    register(c, issuer_key)
    n = tree_size(app)
    wait_for(lambda: served(c, env, [a.verifier, b.verifier]).checkpoint.size == n)
    b.stop()
    for _ in range(3):
        assert register(c, issuer_key) < 2.0  # never blocked by the down witness
    n2 = tree_size(app)
    assert n2 > n
    wait_for(lambda: a.witness.latest(ORIGIN)[0] == n2)  # A cosigned the new size ...
    time.sleep(0.3)
    cn = served(c, env, [a.verifier, b.verifier])  # ... but the policy needs both: stays at n
    assert cn.checkpoint.size == n and set(cn.cosignatures) == {"wa.example", "wb.example"}
    # entries registered after the served checkpoint still have receipts
    assert c.get("/entries/%d" % (n2 - 1)).status_code == 200


def test_forked_witness_does_not_count(env, issuer_key):
    a, b = env.witness("wa.example"), env.witness("wb.example")
    # B already cosigned a different history of this log (size 1, another root): it refuses ours
    fake = sign_note(Checkpoint(ORIGIN, 1, os.urandom(32)).to_text(), [env.note_signer])
    assert b.witness.add_checkpoint(b"old 0\n\n" + fake.encode()).status == 200
    app = env.app([a.spec(), b.spec()], 1)
    c = app.test_client()
    for _ in range(2):
        register(c, issuer_key)
    n = tree_size(app)
    cn = wait_for(lambda: (lambda x: x if x.checkpoint.size == n else None)(served(c, env, [a.verifier, b.verifier])))
    assert set(cn.cosignatures) == {"wa.example"}
    wit = app.extensions["tlog.witnessing"]
    assert wit.witnesses[1].fails > 0 and wit.witnesses[1].last_error[:8] in ("HTTP 409", "HTTP 422")
    db = sqlite3.connect(wit.db_path)
    assert db.execute("SELECT COUNT(*) FROM cosignatures WHERE witness=?", (b.signer.vkey,)).fetchone()[0] == 0
    wit.quorum = 2  # 2 of 2 can never be met with B refusing
    r = c.get("/checkpoint")
    assert r.status_code == 503


def test_registration_not_blocked_when_no_witness_answers(env, issuer_key):
    a = env.witness("wa.example")
    a.stop()
    app = env.app([a.spec()], 1)
    c = app.test_client()
    for _ in range(3):
        assert register(c, issuer_key) < 2.0
    assert c.get("/checkpoint").status_code == 503  # nothing cosigned: not published
    assert c.get("/health").status_code == 200


def test_quorum_zero_serves_latest(env, issuer_key):
    a = env.witness("wa.example")
    app = env.app([a.spec()], 0)
    c = app.test_client()
    register(c, issuer_key)
    n = tree_size(app)
    cn = served(c, env, [a.verifier])
    assert cn.checkpoint.size == n  # served at once, cosigned or not
    cn = wait_for(lambda: (lambda x: x if x.cosignatures else None)(served(c, env, [a.verifier])))
    assert cn.checkpoint.size == n and set(cn.cosignatures) == {"wa.example"}


def test_health_degraded_while_the_witness_quorum_lags_and_metrics_say_why(env, issuer_key):
    """/health answers 503 "degraded" once the log has had a checkpoint without a quorum of
    cosignatures for longer than health_max_witness_age; 200 again when the witness cosigns."""
    w = env.witness("w1.example")
    port = w.srv.server_port
    w.stop()  # the witness is down at first
    app = env.app([w.spec()], 1, health_max_witness_age=0.3)
    c = app.test_client()
    register(c, issuer_key)
    wait_for(lambda: c.get("/health").status_code == 503, 10)
    h = c.get("/health").get_json()
    assert h["status"] == "degraded" and h["witness_quorum_lag"] > 0.3
    assert any("cosigned by 1 witnesses" in p for p in h["problems"])
    m = c.get("/metrics").data.decode()
    assert 'tlog_witness_failures_total{witness="w1.example"}' in m
    lag = [ln for ln in m.splitlines() if ln.startswith('tlog_witness_lag_seconds{witness="w1.example"}')]
    assert lag and float(lag[0].split()[-1]) > 0.3
    # the witness comes back (same port, same key): cosigned, healthy, lag 0
    w2 = WitnessServer.__new__(WitnessServer)
    w2.signer, w2.witness = w.signer, w.witness
    w2.srv = make_server("127.0.0.1", port, witness_app(w.witness), threaded=True)
    w2.url, w2.up = w.url, True
    w2.thread = threading.Thread(target=w2.srv.serve_forever, daemon=True)
    w2.thread.start()
    try:
        wit = app.extensions["tlog.witnessing"]
        for x in wit.witnesses:
            x.next_try = 0.0  # skip the backoff
        wait_for(lambda: c.get("/health").status_code == 200, 15)
        h = c.get("/health").get_json()
        assert h["status"] == "ok" and h["witness_quorum_lag"] == 0.0
        assert 'tlog_witness_cosignatures_total{witness="w1.example"}' in c.get("/metrics").data.decode()
    finally:
        w2.stop()


def test_explorer_overview_shows_the_cosigned_checkpoint_and_each_witness(env, issuer_key):
    """The explorer's overview (tlog.explorer) with witnesses: the served note carries the
    cosignatures, and the table has one row per witness with the size it last cosigned."""
    import html
    import re

    a, b = env.witness("wa.example"), env.witness("wb.example")
    app = env.app([a.spec(), b.spec()], 1)
    c = app.test_client()
    for _ in range(2):
        register(c, issuer_key)
    n = tree_size(app)
    wait_for(lambda: a.witness.latest(ORIGIN)[0] == n and b.witness.latest(ORIGIN)[0] == n)

    def overview() -> str:
        r = c.get("/explorer/", headers={"Accept": "text/html"})
        assert r.status_code == 200
        return html.unescape(r.get_data(as_text=True))

    row = r"<tr><td>([^<]+)</td><td>(\d+)</td><td>([^<]+)</td></tr>"
    seen = []

    def both_current() -> bool:
        seen[:] = [overview()]
        return seen[0].count("</td><td>current</td>") == 2

    # the witnesses hold the cosigned size before the log has recorded their answers: wait for the log
    try:
        wait_for(both_current)
    except AssertionError:  # say what the page showed last (a failure seen once in a full run)
        raise AssertionError(f"size {n}: rows last shown {re.findall(row, seen[0]) if seen else None}") from None
    body = overview()
    note = re.search(r'<pre class="note">(.*?)</pre>', body, re.S).group(1)
    assert "\u2014 wa.example " in note and "\u2014 wb.example " in note, note  # cosignature lines
    rows = re.findall(row, body)
    assert rows == [("wa.example", str(n), "current"), ("wb.example", str(n), "current")], rows
    assert "served once 1 witness(es) cosigned them" in body
