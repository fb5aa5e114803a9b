"""Shards by time: the final checkpoint stays the latest, enforced in the integration commit
(tlog.log.SEALED), whatever a worker's view of the close; and ``shard_predecessor`` only where it
creates a successor (tlog.startup / tlog.service). Both backends, the integrator process (SQLite)
and the durable queue with its lease-holding integrator (PostgreSQL)."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog import shard
from tlog.config import Config
from tlog.service import LogService
from tlog.shard import LogClosed
from verifier.note import NoteVerifier, open_checkpoint
from verifier.statement import SignedStatement

from .test_server_support import bound, statement, write_public

SUCC = "https://log-next.test.example"


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    if request.param == "sqlite":
        yield None
        return
    from .tlog_fixtures import PG_URL, fresh_pg_database

    if not PG_URL:
        pytest.skip("TLOG_TEST_PG_URL not set")
    with fresh_pg_database("tlog_seal") as url:
        yield url


def _config(tmp_path, key, db_url=None, **kw):
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
                    origin="seal.example/log", issuer="https://seal.example", register_wait=10.0)
    if db_url:
        settings["database_url"] = db_url
    settings.update(kw)
    return Config.load(env={}, overrides=settings)


def _size(svc) -> int:
    return svc._storage.state()[0]


def test_integration_refuses_to_append_past_the_final_checkpoint(tmp_path, key, db_url):
    svc = LogService(_config(tmp_path, key, db_url), integrator="process")
    try:
        svc.register(statement(key, sub="before"))
        svc.state.stop()  # this worker never sees the close: its view stays "open"
        closed = shard.close(svc._storage, successor=SUCC, reason="command")
        final = shard.record_final(svc._storage, url="https://seal.example", closed=closed)
        size = _size(svc)
        cp = open_checkpoint(final["checkpoint"], NoteVerifier.from_vkey(final["vkey"])).checkpoint
        assert cp.size == size and svc.state.closed is None

        # a registration the worker admits (it thinks the log open) is refused by the commit: 410
        st = statement(key, sub="after")
        with pytest.raises(LogClosed) as ei:
            svc.register(st)
        assert ei.value.status == 410 and ei.value.successor == SUCC
        assert _size(svc) == size and svc._storage.find(SignedStatement.parse(st).leaf_input) is None

        # a durably queued registration (a 303's spill) ends refused, resolvable as 410, not lost
        q = SignedStatement.parse(statement(key, sub="queued"))
        svc._storage.enqueue([(q.leaf_input, q.statement_bytes, (), q.signed_content_digest())])
        deadline = time.monotonic() + 30
        while True:
            try:
                svc.resolve(q.leaf_input.hex())
            except LogClosed as e:
                assert e.status == 410
                break
            assert time.monotonic() < deadline, "the queued registration was neither refused nor integrated"
            time.sleep(0.05)
        assert not svc._storage.has_pending()
        assert _size(svc) == size and svc._storage.find(q.leaf_input) is None
        latest = svc._storage.latest_head()
        assert latest.size == size
        assert (latest.checkpoint if isinstance(latest.checkpoint, str) else latest.checkpoint.decode()) == \
            final["checkpoint"]
    finally:
        svc.close()


def test_final_checkpoint_is_read_in_the_sealing_transaction(tmp_path, key, db_url, monkeypatch):
    """The head recorded as final is the one the sealing transaction sees, never one read before
    it (an integration may commit in between)."""
    svc = LogService(_config(tmp_path, key, db_url), integrator="thread")
    try:
        early = svc._storage.latest_head()
        svc.register(statement(key, sub="late"))  # commits after `early` was read
        monkeypatch.setattr(svc._storage, "latest_head", lambda: early)
        final = shard.record_final(svc._storage, url="https://seal.example",
                                   closed=shard.close(svc._storage, successor=None, reason="command"))
        cp = open_checkpoint(final["checkpoint"], NoteVerifier.from_vkey(final["vkey"])).checkpoint
        assert cp.size == _size(svc) == early.size + 1
    finally:
        svc.close()


def _closed_log(tmp_path, key, name: str) -> str:
    """A log with one statement, closed: the path of its predecessor record."""
    (tmp_path / name).mkdir(mode=0o700)
    svc = LogService(_config(tmp_path / name, key, origin=f"seal.example/{name}"), integrator="thread")
    try:
        svc.register(statement(key, sub=f"{name}/0"))
        closed = shard.close(svc._storage, successor=SUCC, reason="command")
        rec = shard.record_final(svc._storage, url=f"https://{name}.example", closed=closed)
    finally:
        svc.close()
    out = tmp_path / f"{name}.final.json"
    out.write_text(json.dumps(rec))
    return str(out)


def _init(tmp_path, key, name: str, predecessor: str | None) -> tuple[int, str]:
    from tlog.cli import main as tlog_main

    (tmp_path / name).mkdir(exist_ok=True, mode=0o700)
    cfg = {"data_dir": str(tmp_path / name / "data"), "origin": f"seal.example/{name}",
           "issuer": "https://seal.example", "issuer_keys": [bound(write_public(tmp_path / "iss.pem", key))]}
    if predecessor:
        cfg["shard_predecessor"] = predecessor
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = tlog_main(["init", "--config", str(tmp_path / f"{name}.json")])
    return code, err.getvalue()


def test_shard_predecessor_refused_for_an_existing_log_unless_it_is_the_recorded_one(tmp_path, key):
    pred, other = _closed_log(tmp_path, key, "a"), _closed_log(tmp_path, key, "a2")
    # an existing first shard given a predecessor: refused, one line naming the setting
    assert _init(tmp_path, key, "plain", None)[0] == 0
    code, err = _init(tmp_path, key, "plain", pred)
    assert code == 2 and err.count("\n") == 1 and err.startswith("tlog: shard_predecessor ")
    assert "records no predecessor" in err
    # a successor restarted with its own predecessor: accepted; with another one: refused
    assert _init(tmp_path, key, "succ", pred)[0] == 0
    assert _init(tmp_path, key, "succ", pred)[0] == 0
    code, err = _init(tmp_path, key, "succ", other)
    assert code == 2 and err.count("\n") == 1 and "records another predecessor" in err and "seal.example/a'" in err
    # each of the two checks on its own: the preflight (before any worker) and the service (a
    # worker started without it, e.g. under gunicorn)
    from tlog import startup

    cfg = json.loads((tmp_path / "plain.json").read_text())
    with pytest.raises(shard.StartupError, match="shard_predecessor"):
        startup.preflight(Config.load(env={}, overrides={**cfg, "shard_predecessor": pred}))
    with pytest.raises(shard.StartupError, match="shard_predecessor"):
        LogService(Config.load(env={}, overrides={**cfg, "shard_predecessor": pred}), integrator="thread")
