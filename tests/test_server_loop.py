"""The plain POST /entries in granian's event loop (tlog.server.front.RegistrationFront.rsgi,
serving.httpd.WSGIOverRSGI's ``fast``): the same answers as the WSGI way, no thread of the
pool, a wait that runs out spilled to the durable queue (303), never a 201 before the commit."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.pending import Pending
from tlog.server import create_app
from tlog.server.front import RegistrationFront
from serving.httpd import WSGIOverRSGI
from tlog.service import LogService
from verifier import cbor as vcbor
from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from .test_server_front import _call
from .test_server_support import bound, statement, write_public


def _app(tmp_path, **kw):
    key = ec.generate_private_key(ec.SECP256R1())
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
                    max_statement_size=4096, max_body=8192, register_wait=20.0, origin="loop.example/log",
                    issuer="https://loop.example", rate_limit=0)
    settings.update(kw)
    a = create_app(Config.load(env={}, overrides=settings))
    a.issuer_key = key
    return a


@pytest.fixture
def app(tmp_path):
    a = _app(tmp_path)
    yield a
    a.extensions["tlog.service"].close()


def _rsgi(front, body, ctype="application/cose", length=None, extra=None):
    headers = {"content-type": ctype, "content-length": str(len(body)) if length is None else length}
    headers.update(extra or {})
    aw = front.rsgi("POST", "/entries", headers, body, "127.0.0.1")
    assert aw is not None, "the plain registration must be served in the loop"
    code, hdrs, out = asyncio.run(aw)
    return code, dict(hdrs), out


def _keys(svc):
    return {svc.keys.receipt.kid: svc.keys.receipt.private.public_key()}


def test_registration_in_the_loop_waits_for_the_commit_without_a_thread(app, monkeypatch, caplog):
    front = app.extensions["tlog.front"]
    svc = app.extensions["tlog.service"]
    monkeypatch.setattr(LogService, "register", lambda *a, **k: pytest.fail("the blocking way was taken"))
    st = statement(app.issuer_key, sub="loop/1")
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="tlog.access"):
        code, headers, body = _rsgi(front, st, extra={"x-request-id": "req-42"})
    assert time.monotonic() - t0 < 10  # woken by the commit, not by the end of the 20 s wait
    assert code == 201 and headers["Content-Type"] == "application/cose"
    leaf = SignedStatement.parse(st).leaf_input
    assert headers["Location"] == f"/entries/{leaf.hex()}"
    assert headers["X-Request-Id"] == "req-42" and headers["Content-Length"] == str(len(body))
    info = vreceipt.verify_inclusion_receipt(body, leaf, _keys(svc))
    assert svc.log.find(leaf) == info.index  # committed before the answer
    rec = [r for r in caplog.records if r.name == "tlog.access"]
    assert rec and rec[-1].fields["status"] == 201 and rec[-1].fields["id"] == "req-42"


@pytest.mark.parametrize("case", ["ok", "garbage", "untrusted", "oversized", "truncated"])
def test_loop_and_wsgi_answer_alike(app, case):
    front = app.extensions["tlog.front"]
    other = ec.generate_private_key(ec.SECP256R1())
    bodies = {
        "ok": (statement(app.issuer_key, sub="alike/1"), None),
        "garbage": (b"\xd2\x84\x01\x02", None),
        "untrusted": (statement(other, sub="alike/2"), None),
        "oversized": (b"", "9000"),  # over max_body: the adapter reads nothing
        "truncated": (statement(app.issuer_key, sub="alike/3"), "5000"),
    }
    body, length = bodies[case]
    a = _rsgi(front, body, length=length)
    b = _call(front, body, length=length)
    assert a[0] == b[0], (case, a, b)
    if a[0] >= 400:
        assert a[1]["Content-Type"] == b[1]["Content-Type"] == "application/concise-problem-details+cbor"
        assert vcbor.loads(a[2])[-1] == vcbor.loads(b[2])[-1]
    else:
        assert a[1]["Location"] == b[1]["Location"]


def test_unusual_forms_are_left_to_the_wsgi_app(app):
    front = app.extensions["tlog.front"]
    st = statement(app.issuer_key, sub="pass/1")
    h = {"content-type": "application/cose", "content-length": str(len(st))}
    assert front.rsgi("POST", "/entries", {**h, "content-type": "text/plain"}, st, "a") is None
    assert front.rsgi("POST", "/entries", {"transfer-encoding": "chunked"}, st, "a") is None
    assert front.rsgi("PUT", "/entries", h, st, "a") is None
    assert front.rsgi("POST", "/entries/", h, st, "a") is None
    assert front.rsgi("POST", "/entries", {**h, "content-length": "x"}, st, "a") is None
    with open(__file__, "rb") as f:  # a spooled (large) body goes to the pool's threads
        assert front.rsgi("POST", "/entries", h, f, "a") is None


def test_many_concurrent_registrations_in_one_loop(app):
    front = app.extensions["tlog.front"]
    svc = app.extensions["tlog.service"]
    sts = [statement(app.issuer_key, sub=f"many/{i}") for i in range(40)]

    async def go():
        h = lambda st: {"content-type": "application/cose", "content-length": str(len(st))}  # noqa: E731
        return await asyncio.gather(*(front.rsgi("POST", "/entries", h(st), st, "c") for st in sts))

    t0 = time.monotonic()
    answers = asyncio.run(go())
    assert time.monotonic() - t0 < 10  # every wait woken by its commit (register_wait is 20 s)
    assert [a[0] for a in answers] == [201] * len(sts)
    idx = {vreceipt.verify_inclusion_receipt(a[2], SignedStatement.parse(st).leaf_input, _keys(svc)).index
           for a, st in zip(answers, sts)}
    assert len(idx) == len(sts)


def test_a_wait_that_runs_out_answers_303_after_the_durable_spill(tmp_path, monkeypatch):
    app = _app(tmp_path, register_wait=0.3)
    svc = app.extensions["tlog.service"]
    front = app.extensions["tlog.front"]
    try:
        # the sequencer never answers this submission: the wait runs out in the loop
        monkeypatch.setattr(svc, "_submit", lambda leaf, data, attrs, key=None: Pending(svc.log, leaf, data, attrs, key))
        spilled = []
        orig = svc.log._spill
        monkeypatch.setattr(svc.log, "_spill", lambda p: (spilled.append(threading.current_thread()), orig(p)))
        st = statement(app.issuer_key, sub="late/1")
        t0 = time.monotonic()
        code, headers, body = _rsgi(front, st)
        assert code == 303 and body == b"" and headers["Retry-After"] == "1"
        assert time.monotonic() - t0 >= 0.3
        leaf = SignedStatement.parse(st).leaf_input
        assert headers["Location"] == f"/entries/{leaf.hex()}"
        # durable before the 303, and written by a thread, not by the event loop's
        assert len(spilled) == 1 and spilled[0] is not threading.main_thread()
        deadline = time.monotonic() + 30
        while svc.log.find(leaf) is None:  # the durable queue is integrated later
            assert time.monotonic() < deadline, "the spilled registration was never integrated"
            time.sleep(0.05)
    finally:
        svc.close()


def test_pending_on_done_runs_once_when_set_or_at_once():
    p = Pending(None, b"\x00" * 32, b"d", ())
    calls = []
    p.on_done(lambda: calls.append(1))
    assert calls == []
    p._resolve("entry")
    p._fail(RuntimeError("late"))  # the first result wins; no second call
    assert calls == [1]
    p.on_done(lambda: calls.append(2))
    assert calls == [1, 2]


class _Scope:
    proto, method, path, query_string = "http", "POST", "/entries", ""
    http_version, scheme, server, client, authority = "1.1", "http", "127.0.0.1:80", "127.0.0.1:5555", None

    def __init__(self, headers):
        self.headers = headers


class _Proto:
    def __init__(self, body):
        self.body, self.sent = body, None

    async def __call__(self):
        return self.body

    def response_bytes(self, status, headers, body):
        self.sent = (status, headers, body)


def test_the_adapter_serves_the_fast_path_in_the_loop_and_the_rest_on_threads():
    seen = []

    def wsgi(environ, start_response):
        seen.append(("wsgi", threading.current_thread() is threading.main_thread()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi"]

    def fast(method, path, headers, body, client):
        if path != "/entries":
            return None

        async def answer():
            seen.append(("fast", threading.current_thread() is threading.main_thread(), body, client))
            return 201, [("content-type", "application/cose")], b"fast"
        return answer()

    ad = WSGIOverRSGI(wsgi, threads=2, fast=fast)

    async def go():
        ad.__rsgi_init__(asyncio.get_running_loop())
        out = []
        for path in ("/entries", "/other"):
            s = _Scope({"content-length": "3"})
            s.path = path
            pr = _Proto(b"abc")
            await ad.__rsgi__(s, pr)
            out.append(pr.sent)
        return out

    try:
        out = asyncio.run(go())
    finally:
        ad.__rsgi_del__()
    assert out[0] == (201, [("content-type", "application/cose")], b"fast")
    assert out[1][0] == 200 and out[1][2] == b"wsgi"
    assert seen == [("fast", True, b"abc", "127.0.0.1"), ("wsgi", False)]


def test_a_cancelled_request_still_ends_its_submission(tmp_path, monkeypatch):
    app = _app(tmp_path)
    svc = app.extensions["tlog.service"]
    front = app.extensions["tlog.front"]
    try:
        monkeypatch.setattr(svc, "_submit", lambda leaf, data, attrs, key=None: Pending(svc.log, leaf, data, attrs, key))
        st = statement(app.issuer_key, sub="gone/1")

        async def go():
            t = asyncio.ensure_future(front.rsgi("POST", "/entries", {"content-type": "application/cose",
                                                                    "content-length": str(len(st))}, st, "c"))
            await asyncio.sleep(0.2)
            assert svc._inflight == 1
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            deadline = time.monotonic() + 20
            while svc._inflight != 0:  # ended (and spilled) off the loop
                assert time.monotonic() < deadline, "the cancelled submission was never ended"
                await asyncio.sleep(0.05)

        asyncio.run(go())
        leaf = SignedStatement.parse(st).leaf_input
        deadline = time.monotonic() + 30
        while svc.log.find(leaf) is None:  # spilled to the durable queue, integrated later
            assert time.monotonic() < deadline, "the cancelled registration was never integrated"
            time.sleep(0.05)
    finally:
        svc.close()


def test_a_failed_integration_is_never_a_201_in_the_loop(tmp_path, monkeypatch):
    from tlog.integrator import IntegratorUnavailable

    app = _app(tmp_path)
    svc = app.extensions["tlog.service"]
    front = app.extensions["tlog.front"]
    try:
        def submit(leaf, data, attrs, key=None):  # not committed: the integrator fails the batch later
            p = Pending(svc.log, leaf, data, attrs, key)
            threading.Timer(0.1, p._fail, [IntegratorUnavailable("the integrator process exited; retry")]).start()
            return p

        monkeypatch.setattr(svc, "_submit", submit)
        st = statement(app.issuer_key, sub="failed/1")
        code, headers, body = _rsgi(front, st)
        assert code == 503 and int(headers["Retry-After"]) >= 1
        assert vcbor.loads(body)[-1] == "Service Unavailable"
        assert svc.log.find(SignedStatement.parse(st).leaf_input) is None
        assert svc._inflight == 0
    finally:
        svc.close()


def test_the_integrator_process_answers_are_read_in_the_loop(tmp_path):
    """With the integrator process, the loop that waits for the answers reads them itself (no
    reader thread per batch): after the first answer the reader thread hands the socket to the
    loop; the integrator's death seen there starts a new one whose answers the loop reads too;
    once that loop is closed a thread reads them again, from where the loop stopped."""
    import os
    import signal

    app = _app(tmp_path, integrator="process")
    front, svc = app.extensions["tlog.front"], app.extensions["tlog.service"]
    remote = svc._remote
    sts = iter(statement(app.issuer_key, sub=f"inloop/{i}") for i in range(200))
    h = lambda st: {"content-type": "application/cose", "content-length": str(len(st))}  # noqa: E731

    async def register(n):
        return await asyncio.gather(*(front.rsgi("POST", "/entries", h(st), st, "c")
                                      for st in [next(sts) for _ in range(n)]))

    async def go():
        loop = asyncio.get_running_loop()
        assert [a[0] for a in await register(1)] == [201]
        for _ in range(100):  # the hand-over is scheduled on this loop
            if remote._handed is not None:
                break
            await asyncio.sleep(0.01)
        assert remote._handed[0] is loop and remote._handed[1] is remote._conn
        assert [a[0] for a in await register(20)] == [201] * 20
        old = remote.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while remote.restarts == 0 or remote._conn is None:  # seen by the loop: a new integrator
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        codes = []
        while not codes or codes[-1] != 201:
            assert time.monotonic() < deadline
            codes = [a[0] for a in await register(1)]
            assert codes[-1] in (201, 503)
        assert [a[0] for a in await register(20)] == [201] * 20
        assert remote.pid != old and remote._handed[0] is loop and remote._handed[1] is remote._conn

    try:
        asyncio.run(go())
        # the loop is closed now: the next submission has a thread read the answers again
        reg = svc.register(next(sts))
        assert reg.receipt is not None and remote._handed is None and remote._loop is None
        assert svc.tree_size() == reg.index + 1
    finally:
        svc.close()
