"""POST /entries is answered by tlog.server.front in front of Flask: same answers as the Flask
route (status, problem details, headers), and the unusual forms still reach Flask."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.server import create_app
from tlog.server.front import RegistrationFront
from verifier import cbor as vcbor
from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from .test_server_support import bound, bound_arg, statement, write_public


@pytest.fixture
def app(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    a = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
        max_statement_size=4096, max_body=8192, register_wait=5.0, origin="front.example/log",
        issuer="https://front.example", rate_limit=0)))
    a.issuer_key = key
    yield a
    a.extensions["tlog.service"].close()


def _call(wsgi, body: bytes, ctype: str = "application/cose", length: str | None = None, extra=None):
    env = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/entries", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)) if length is None else length,
        "REMOTE_ADDR": "127.0.0.1",
    }
    env.update(extra or {})
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = status, dict(headers)

    body = b"".join(wsgi(env, start_response))
    return int(out["status"].split()[0]), out["headers"], body


def test_plain_registration_is_served_by_the_front(app, monkeypatch):
    front = app.wsgi_app.app  # inside the access log (tlog.server.access)
    assert isinstance(front, RegistrationFront)
    calls = []
    orig = RegistrationFront._register
    monkeypatch.setattr(RegistrationFront, "_register", lambda self, *a: calls.append(1) or orig(self, *a))
    st = statement(app.issuer_key, sub="front/1")
    r = app.test_client().post("/entries", data=st, content_type="application/cose")
    assert calls == [1]
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/cose"
    leaf = SignedStatement.parse(st).leaf_input
    assert r.headers["Location"] == f"/entries/{leaf.hex()}"
    svc = app.extensions["tlog.service"]
    vreceipt.verify_inclusion_receipt(r.data, leaf, {svc.keys.receipt.kid: svc.keys.receipt.private.public_key()})


@pytest.mark.parametrize("case", ["ok", "garbage", "empty-ish", "untrusted", "oversized", "truncated"])
def test_front_and_flask_route_answer_alike(app, case):
    front = app.wsgi_app.app  # inside the access log (tlog.server.access)
    flask_only = front.app
    other = ec.generate_private_key(ec.SECP256R1())
    bodies = {
        "ok": (statement(app.issuer_key, sub="alike/1"), None),
        "garbage": (b"\xd2\x84\x01\x02", None),
        "empty-ish": (b"\x00", None),
        "untrusted": (statement(other, sub="alike/2"), None),
        "oversized": (b"\xd2" + b"\x00" * 9000, None),
        "truncated": (statement(app.issuer_key, sub="alike/3"), "5000"),
    }
    body, length = bodies[case]
    a = _call(front, body, length=length)
    b = _call(flask_only, body, length=length)
    assert a[0] == b[0], (case, a, b)
    if a[0] >= 400:
        assert a[1]["Content-Type"] == b[1]["Content-Type"] == "application/concise-problem-details+cbor"
        pa, pb = vcbor.loads(a[2]), vcbor.loads(b[2])
        assert pa[-1] == pb[-1]
    else:
        # the second registration of the same statement is a duplicate: same entry, same location
        assert a[1]["Location"] == b[1]["Location"]


def test_unusual_forms_pass_through_to_flask(app, monkeypatch):
    monkeypatch.setattr(RegistrationFront, "_register", lambda *a: pytest.fail("front must not answer"))
    st = statement(app.issuer_key, sub="pass/1")
    # other media type: Flask answers 415
    assert _call(app.wsgi_app, st, ctype="text/plain")[0] == 415
    # chunked (no Content-Length): Flask reads the stream
    code, _, _ = _call(app.wsgi_app, st, length="", extra={"HTTP_TRANSFER_ENCODING": "chunked",
                                                          "wsgi.input_terminated": True})
    assert code == 201
    # other methods and paths
    assert _call(app.wsgi_app, b"", extra={"REQUEST_METHOD": "PUT"})[0] == 405
    assert _call(app.wsgi_app, b"x", extra={"PATH_INFO": "/entries/"})[0] in (404, 405)


def test_front_applies_the_rate_limit(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    a = create_app(Config.load(env={}, overrides=dict(
        data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
        origin="rl.example/log", issuer="https://rl.example", rate_limit=1, rate_burst=1)))
    try:
        codes = [_call(a.wsgi_app, statement(key, sub=f"rl/{i}"))[0] for i in range(3)]
        assert codes[0] == 201 and 429 in codes[1:]
        code, headers, body = _call(a.wsgi_app, statement(key, sub="rl/x"))
        assert code == 429 and int(headers["Retry-After"]) >= 1
        assert vcbor.loads(body)[-1] == "Too Many Requests"
    finally:
        a.extensions["tlog.service"].close()
