"""The integrator process (tlog.integrator): registrations answered by a separate process, its
death answered with 503 and a restart, no acknowledged entry lost, none twice."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.integrator import IntegratedEntry
from tlog.errors import Unavailable
from tlog.service import LogService
from verifier import receipt as vreceipt
from verifier.statement import SignedStatement

from .test_server_support import bound, bound_arg, statement, write_public


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _config(tmp_path, key, **kw):
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
                    origin="integrator.example/log", issuer="https://integrator.example", register_wait=10.0)
    settings.update(kw)
    return Config.load(env={}, overrides=settings)


def _keys(svc):
    return {svc.keys.receipt.kid: svc.keys.receipt.private.public_key()}


def test_registrations_are_integrated_by_the_integrator_process(tmp_path, key):
    svc = LogService(_config(tmp_path, key), integrator="process")
    try:
        assert svc.integrator_mode == "process" and svc._remote.pid != os.getpid()
        stmts = [statement(key, sub=f"p/{i}") for i in range(40)]
        regs = [None] * len(stmts)

        def run(i):
            regs[i] = svc.register(stmts[i])

        ts = [threading.Thread(target=run, args=(i,)) for i in range(len(stmts))]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert len({r.index for r in regs}) == len(stmts)
        for st, r in zip(stmts, regs):
            leaf = SignedStatement.parse(st).leaf_input
            info = vreceipt.verify_inclusion_receipt(r.receipt, leaf, _keys(svc))
            assert (info.index, info.size) == (r.index, r.tree_size)
        # the worker's own Log reads what the integrator wrote
        assert svc.tree_size() == 1 + len(stmts)  # + the registration policy
        # a duplicate gets its existing entry back
        again = svc.register(stmts[7])
        assert again.index == regs[7].index and again.duplicate
    finally:
        svc.close()
    # reopened in thread mode: the same log, nothing lost
    svc2 = LogService(_config(tmp_path, key), integrator="thread")
    try:
        assert svc2.tree_size() == 1 + len(stmts)
    finally:
        svc2.close()


def test_integrator_death_gives_503_then_a_new_integrator(tmp_path, key):
    svc = LogService(_config(tmp_path, key), integrator="process")
    try:
        first = svc.register(statement(key, sub="before"))
        old = svc._remote.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 60
        outcomes = []
        got = None
        i = 0
        while time.monotonic() < deadline:
            try:
                got = svc.register(statement(key, sub=f"after/{i}"))
                break
            except Unavailable as e:
                outcomes.append(str(e))
                time.sleep(0.05)
            i += 1
        assert got is not None and got.receipt is not None
        assert svc._remote.pid not in (None, old) and svc._remote.restarts == 1
        # every statement acknowledged before the kill is still there, at its index
        assert svc.log.leaf_input(first.index) == bytes.fromhex(first.entry_id)
        assert svc.tree_size() == got.index + 1
    finally:
        svc.close()


def test_a_wait_that_runs_out_is_spilled_to_the_durable_queue(tmp_path, key, monkeypatch):
    svc = LogService(_config(tmp_path, key, register_wait=0.0), integrator="process")
    try:
        st = statement(key, sub="slow")
        reg = svc.register(st)
        leaf = SignedStatement.parse(st).leaf_input
        if reg.receipt is None:  # 303: pending now, integrated later
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _, status = svc.resolve(leaf.hex())
                if status not in (None, "pending"):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the spilled submission was never integrated")
        # exactly one entry for the statement, whichever path integrated it first
        assert svc.log.find(leaf) is not None
        assert svc.tree_size() == 2
    finally:
        svc.close()


def test_integrator_start_failure_is_reported(tmp_path, key):
    cfg = _config(tmp_path, key)
    svc = LogService(cfg, integrator="thread")
    svc.close()
    cfg.database_url = "postgresql://nobody@127.0.0.1:1/none"  # the integrator cannot open it
    from tlog.integrator import IntegratorClient

    class _Log:
        pass

    with pytest.raises(RuntimeError, match="integrator failed to start"):
        IntegratorClient(cfg, _Log(), start_timeout=60)


def test_integrated_entry_carries_the_receipt():
    e = IntegratedEntry(3, 4, False, b"r")
    assert (e.index, e.tree_size, e.duplicate, e.receipt) == (3, 4, False, b"r")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(hst.text(max_size=40), hst.text(max_size=40))
def test_iss_sub_key_is_the_compact_json_array(iss, sub):
    import json

    from tlog.attrs import iss_sub_key

    assert iss_sub_key(iss, sub) == json.dumps([iss, sub], separators=(",", ":"), ensure_ascii=False)


@pytest.mark.postgres
def test_integrator_process_on_postgresql(tmp_path, key):
    from tests.tlog_fixtures import fresh_pg_database

    with fresh_pg_database("tlog_int") as url:
        svc = LogService(_config(tmp_path, key, database_url=url), integrator="process")
        try:
            stmts = [statement(key, sub=f"pg/{i}") for i in range(20)]
            regs = []
            ts = [threading.Thread(target=lambda s=s: regs.append(svc.register(s))) for s in stmts]
            [t.start() for t in ts]
            [t.join() for t in ts]
            assert len(regs) == 20 and len({r.index for r in regs}) == 20
            for r in regs:
                vreceipt.verify_inclusion_receipt(r.receipt, bytes.fromhex(r.entry_id), _keys(svc))
            assert svc.tree_size() == 21
        finally:
            svc.close()


def test_frames_take_every_queued_message_in_order_up_to_the_limit():
    """The integrator's reader (tlog.integrator.Frames) splits what one read returns into the
    worker's messages (Connection.send_bytes framing), keeps the rest for the next take, waits
    for a message split across reads, and ends with [] when the socket closes (a message cut
    off by the close is dropped, never handed on in part)."""
    import socket
    import struct
    from multiprocessing.connection import Connection

    from tlog.integrator import Frames

    a, b = socket.socketpair()
    tx, rx = Connection(a.detach()), Connection(b.detach())
    try:
        msgs = [bytes([i]) * (i * 37 % 300) for i in range(10)]  # an empty message among them
        for m in msgs:
            tx.send_bytes(m)
        frames = Frames(rx)
        assert frames.take(4) == msgs[:4]
        assert frames.take(100) == msgs[4:]
        # a message in two writes: the first take waits for its second part
        big = os.urandom(5000)
        raw = struct.pack("!i", len(big)) + big
        tx._send(raw[:3])
        threading.Timer(0.2, tx._send, args=(raw[3:],)).start()
        assert frames.take(10) == [big]
        # the long form (-1, then an 8-byte length), as send_bytes writes it for > 2 GiB
        tx._send(struct.pack("!i", -1) + struct.pack("!Q", 3) + b"xyz")
        assert frames.take(10) == [b"xyz"]
        # cut off by the close: dropped; then [] (the socket closed)
        tx._send(struct.pack("!i", 10) + b"abc")
        tx.close()
        assert frames.take(10) == []
        assert frames.take(10) == []
    finally:
        rx.close()
        if not tx.closed:
            tx.close()


def test_the_worker_checks_each_item_before_the_integrator_sees_it(tmp_path, key):
    """The integrator process appends what its worker sends without checking it again
    (Log.append(checked=True)): IntegratorClient.submit refuses a malformed item before sending
    it, so nothing of it reaches the log and the integrator goes on."""
    svc = LogService(_config(tmp_path, key), integrator="process")
    try:
        remote, size = svc._remote, svc.tree_size()
        pid = remote.pid
        good = bytes(range(32))
        for args in ((good[:31], b"x"), (good, "text"), (good, b"x", [("k", 1)]), (good, b"x", [("", "v")]),
                     (good, b"x", [("k", "v\x00")]), (good, b"x", (), b"short-key")):
            with pytest.raises(ValueError):
                remote.submit(*args)
        entry = remote.submit(good, b"x", [("k", "v")]).wait(10)
        assert (entry.index, svc.tree_size()) == (size, size + 1) and remote.pid == pid
    finally:
        svc.close()
