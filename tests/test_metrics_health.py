"""Metrics across processes, /health degraded, `twi-verify monitor --once` exit (issue 10 item 5)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.server import create_app
from verifier.note import Signer

from .test_server_support import bound, bound_arg, statement, write_public

ROOT = Path(__file__).resolve().parent.parent


def _metric(text: str, name: str) -> float | None:
    for ln in text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def make(tmp_path):
    apps = []
    key = ec.generate_private_key(ec.SECP256R1())

    def mk(**kw):
        over = dict(data_dir=str(tmp_path / "d"), origin="m.example/log",
                    issuer_keys=[bound(write_public(tmp_path / "i.pem", key))], **kw)
        a = create_app(Config.load(env={}, overrides=over))
        a.config["key"] = key
        apps.append(a)
        return a

    yield mk
    for a in apps:
        a.extensions["tlog.service"].close()


def test_health_degraded_when_registrations_wait_on_an_old_checkpoint(make, monkeypatch):
    app = make(health_max_checkpoint_age=0.2)
    c = app.test_client()
    svc = app.extensions["tlog.service"]
    assert c.post("/entries", data=statement(app.config["key"]), content_type="application/cose").status_code == 201
    time.sleep(0.3)
    r = c.get("/health")
    assert r.status_code == 200 and r.get_json()["status"] == "ok"  # old checkpoint, nothing waiting: fine
    # an integrator that stopped: submissions wait in the durable queue, the checkpoint ages
    monkeypatch.setattr(svc._storage, "has_pending", lambda: True)
    r = c.get("/health")
    body = r.get_json()
    assert r.status_code == 503 and body["status"] == "degraded" and body["checkpoint_age"] > 0.2
    assert "registrations waiting" in body["problems"][0]
    m = c.get("/metrics").data.decode()
    assert _metric(m, "tlog_checkpoint_age_seconds") > 0.2


def test_metrics_histograms_and_outcomes(make):
    app = make()
    c = app.test_client()
    key = app.config["key"]
    sts = [statement(key, sub=f"m/{i}") for i in range(3)]
    for st in sts:
        assert c.post("/entries", data=st, content_type="application/cose").status_code == 201
    c.post("/entries", data=sts[0], content_type="application/cose")  # duplicate
    c.post("/entries", data=b"\xa0", content_type="application/cose")  # refused
    m = c.get("/metrics").data.decode()
    assert _metric(m, 'tlog_registrations_total{outcome="integrated"}') == 3
    assert _metric(m, 'tlog_registrations_total{outcome="duplicate"}') == 1
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in m.splitlines() if ln.startswith("tlog_rejections_total{")) == 1
    assert _metric(m, "tlog_batch_size_count") >= 1 and _metric(m, "tlog_batch_size_sum") >= 4  # policy + 3
    assert _metric(m, 'tlog_http_request_duration_seconds_count{method="POST"}') == 5
    assert _metric(m, "tlog_integration_latency_seconds_count") == 4
    assert _metric(m, "tlog_queue_depth") == 0
    assert _metric(m, "tlog_tree_size") == 4


@pytest.mark.slow
def test_metrics_are_summed_over_workers_and_integrators(tmp_path):
    """`tlog serve --workers 2`: every scrape, whichever worker answers, counts every
    registration and the integrator processes' batches."""
    from tools.loadgen import free_port
    from tools.slowclients import stop, wait_ready

    key = ec.generate_private_key(ec.SECP256R1())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlog.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--issuer-key", bound_arg(write_public(tmp_path / "i.pem", key)), "--workers", "2", "--threads", "4"],
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"), start_new_session=True)
    try:
        wait_ready(proc, port, "/health")
        n = 12
        for i in range(n):  # a fresh connection each: both workers take some
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/entries", body=statement(key, sub=f"agg/{i}"), headers={"Content-Type": "application/cose"})
            assert c.getresponse().status == 201
            c.close()
        seen = []
        for _ in range(8):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/metrics")
            m = c.getresponse().read().decode()
            c.close()
            seen.append((_metric(m, 'tlog_registrations_total{outcome="integrated"}'),
                         _metric(m, "tlog_batch_size_sum"), _metric(m, 'tlog_http_responses_total{code="201"}')))
        # the same totals from every scrape; the batches integrated by the integrator processes
        # hold the n statements (the policy entry was integrated at the first start, before)
        assert set(seen) == {(float(n), float(n), float(n))}, seen
    finally:
        stop(proc)


def test_monitor_once_exits_nonzero_when_the_log_is_unreachable(tmp_path):
    from tools.loadgen import free_port

    port = free_port()  # nothing listens there
    vkey = Signer.generate("m.example/log").vkey
    r = subprocess.run([sys.executable, "-m", "verifier.cli", "monitor", "--once", "--log", f"http://127.0.0.1:{port}",
                        "--vkey", vkey, "--state", str(tmp_path / "s.json"), "--timeout", "2"],
                       cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
