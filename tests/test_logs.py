"""Logs (issue 10 item 4): one format, request ids, access records with the reason of refusals,
policy changes logged once with what changed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from serving.logs import JSONFormatter, PlainFormatter
from tlog.server import create_app

from .test_server_support import bound, bound_arg, statement, write_public

ROOT = Path(__file__).resolve().parent.parent


def _record(msg="request", fields=None, level=logging.INFO, name="tlog.access"):
    r = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    if fields is not None:
        r.fields = fields
    return r


def test_plain_format_is_key_value_with_quoting():
    line = PlainFormatter().format(_record(fields={"id": "abc", "path": "/entries", "reason": 'Malformed "x" = y',
                                                   "changes": {"allowed-algs": {"added": 1}}}))
    assert line.startswith("ts=") and " level=info " in line and f" pid={os.getpid()} " in line
    assert " logger=tlog.access msg=request id=abc path=/entries " in line
    assert ' reason="Malformed \\"x\\" = y" ' in line
    assert line.endswith(' changes="{\\"allowed-algs\\":{\\"added\\":1}}"')


def test_json_format_has_the_same_keys():
    doc = json.loads(JSONFormatter().format(_record(fields={"status": 400, "ms": 1.5})))
    assert doc["level"] == "info" and doc["logger"] == "tlog.access" and doc["msg"] == "request"
    assert doc["status"] == 400 and doc["ms"] == 1.5 and doc["pid"] == os.getpid() and doc["ts"].endswith("Z")


@pytest.fixture
def app(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    cfg = Config.load(env={}, overrides=dict(data_dir=str(tmp_path / "d"), origin="logs.example/log",
                                             issuer_keys=[bound(write_public(tmp_path / "i.pem", key))]))
    a = create_app(cfg)
    a.config["issuer_key"] = key
    yield a
    a.extensions["tlog.service"].close()


def _access(caplog):
    return [r for r in caplog.records if r.name == "tlog.access"]


def test_request_id_echoed_and_refusal_reason_logged(app, caplog):
    c = app.test_client()
    with caplog.at_level(logging.INFO, logger="tlog.access"):
        r = c.post("/entries", data=b"\xa0", content_type="application/cose", headers={"X-Request-Id": "req-42"})
        assert r.status_code == 400 and r.headers["X-Request-Id"] == "req-42"
        r2 = c.get("/entries/zz")  # Flask route, not the registration front
        r3 = c.post("/entries", data=statement(app.config["issuer_key"]), content_type="application/cose",
                    headers={"X-Request-Id": "has space"})
        assert r3.status_code == 201
    recs = _access(caplog)
    assert [r.fields["status"] for r in recs] == [400, r2.status_code, 201]
    a = recs[0].fields
    assert a["id"] == "req-42" and a["method"] == "POST" and a["path"] == "/entries" and a["ms"] >= 0
    assert a["reason"].startswith("Malformed request")  # the problem details' title and detail
    assert recs[1].fields["reason"].startswith(("Invalid locator", "Malformed request", "Not Found"))
    assert recs[1].fields["id"] == r2.headers["X-Request-Id"] and len(recs[1].fields["id"]) == 16
    # an id that is not 1-128 visible ASCII characters is replaced
    assert recs[2].fields["id"] != "has space" and r3.headers["X-Request-Id"] == recs[2].fields["id"]
    assert "reason" not in recs[2].fields


def test_policy_change_logged_once_with_what_changed(tmp_path, caplog):
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    p1, p2 = write_public(tmp_path / "1.pem", k1), write_public(tmp_path / "2.pem", k2)

    def cfg(keys, algs=None):
        over = dict(data_dir=str(tmp_path / "d"), origin="logs.example/log", issuer_keys=[bound(p) for p in keys])
        if algs:
            over["allowed_algs"] = algs
        return Config.load(env={}, overrides=over)

    def start(keys):
        return create_app(cfg(keys))

    def changes():
        return [r.fields for r in caplog.records if r.name == "tlog.service" and r.getMessage() == "policy changed"]

    with caplog.at_level(logging.INFO, logger="tlog.service"):
        start([p1]).extensions["tlog.service"].close()
        assert len(changes()) == 1 and changes()[0]["changes"] == {"first": True}
        start([p1]).extensions["tlog.service"].close()  # unchanged: nothing logged
        assert len(changes()) == 1
        svc = start([p1]).extensions["tlog.service"]
        try:  # `tlog policy set` with another key and fewer algorithms
            from tlog.logstate import configured_policy

            svc.set_policy(configured_policy(cfg([p1, p2], algs=[-7])))
        finally:
            svc.close()
    ch = changes()
    assert len(ch) == 2
    assert ch[1]["changes"]["issuer-keys"] == {"added": 1, "removed": 0}
    assert ch[1]["changes"]["allowed-algs"]["removed"] >= 1 and ch[1]["previous"] == ch[0]["entry"]


def _not_plain(lines: list[str]) -> list[str]:
    """The lines that are not records of the plain format."""
    return [ln for ln in lines if not (ln.startswith("ts=") and " level=" in ln and " logger=" in ln)]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_every_process_of_tlog_serve_logs_in_one_format(tmp_path, fmt):
    """Master, worker, integrator and access records: every stderr line in the chosen format."""
    import http.client

    from tools.slowclients import stop, wait_ready

    key = ec.generate_private_key(ec.SECP256R1())
    from tools.loadgen import free_port

    port = free_port()
    logf = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--issuer-key", bound_arg(write_public(tmp_path / "i.pem", key)), "--workers", "1", "--log-format", fmt],
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=open(logf, "wb"), start_new_session=True)
    try:
        wait_ready(proc, port, "/health")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/entries", body=b"\xa0", headers={"Content-Type": "application/cose", "X-Request-Id": "r1"})
        assert c.getresponse().status == 400
        c.close()
        time.sleep(0.3)
    finally:
        stop(proc)
    lines = [ln for ln in logf.read_text().splitlines() if ln.strip()]
    if fmt == "json":
        recs = []
        for ln in lines:  # every line is one JSON object
            try:
                recs.append(json.loads(ln))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {ln!r}\n" + "\n".join(lines)) from None
    else:
        bad = _not_plain(lines)
        assert not bad, "\n".join(["lines not in the plain format:"] + bad + ["of:"] + lines)
        recs = [dict(kv.split("=", 1) for kv in ln.split(" ") if "=" in kv) for ln in lines]
    loggers = {r["logger"] for r in recs}
    assert {"tlog.serve", "tlog.integrator", "tlog.access", "_granian"} <= loggers, loggers
    assert len({r["pid"] for r in recs}) >= 3  # master, worker, integrator
    access = [r for r in recs if r["logger"] == "tlog.access" and str(r.get("id")) == "r1"]
    assert len(access) == 1 and str(access[0]["status"]) == "400"
    starts = [r for r in recs if r["logger"] == "tlog.serve" and r["msg"] == "starting"]
    assert len(starts) == 1 and starts[0]["server"] == "granian"


_PYTHON_STDERR = r'''
import sys, threading, warnings
from serving.logs import setup_logging
setup_logging(sys.argv[1])
warnings.warn("W-ONE")
t = threading.Thread(target=lambda: 1 / 0, name="T-TWO")
t.start(); t.join()
class Bad:
    def __del__(self):
        raise ValueError("U-THREE")
Bad()
raise RuntimeError("M-FOUR")
'''


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_what_python_writes_to_stderr_is_in_the_format_too(fmt):
    """A warning, an uncaught exception in a thread and in the main thread, and an exception
    Python can only report ("Exception ignored in"): each one record in the format, none raw."""
    p = subprocess.run([sys.executable, "-c", _PYTHON_STDERR, fmt], cwd=str(ROOT), capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert p.returncode == 1  # the uncaught exception still ends the program as it would
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    if fmt == "json":
        recs = [json.loads(ln) for ln in lines]  # a raw line fails here
    else:
        assert not _not_plain(lines), p.stderr
        recs = [{"logger": ln.split(" logger=", 1)[1].split(" ", 1)[0], "line": ln} for ln in lines]
    text = [json.dumps(r) for r in recs]
    for marker, logger in (("W-ONE", "py.warnings"), ("T-TWO", "python"), ("U-THREE", "python"),
                           ("M-FOUR", "python")):
        hit = [r for r, t in zip(recs, text) if marker in t]
        assert len(hit) == 1 and hit[0]["logger"] == logger, (marker, p.stderr)
    assert len(recs) == 4, p.stderr
