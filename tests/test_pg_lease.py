"""The integrator's lease on PostgreSQL (tlog.leader): one holder at a time, a fencing token
checked inside every integration transaction, so a former holder never commits after losing
the lease, even when it was paused inside its transaction."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid

import pytest

from tlog.log import Log
from tlog.storage import LeaseLost

from .tlog_fixtures import ORIGIN, pg_database, signer  # noqa: F401 - fixtures

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(pg_database):  # noqa: F811
    """Two storages of one log (two integrator processes' views), limits of 2 s."""
    from tlog.storage.postgres import PostgresStorage

    schema = "l_" + uuid.uuid4().hex[:12]
    a = PostgresStorage(pg_database, schema=schema, statement_timeout=2, lock_timeout=2)
    b = PostgresStorage(pg_database, schema=schema, statement_timeout=2, lock_timeout=2)
    yield a, b
    a.close()
    b.close()


def _item(i):
    d = hashlib.sha256(b"lease %d" % i).digest()
    return (d, b"statement %d" % i, ())


def test_only_an_expired_lease_is_taken_and_the_token_grows(two):
    a, b = two
    ta = a.acquire_lease("a", 1.0)
    assert ta is not None
    assert b.acquire_lease("b", 1.0) is None  # held
    assert a.renew_lease(ta, 1.0)
    time.sleep(1.2)
    assert not a.renew_lease(ta, 1.0)  # expired: no renewal under the old token
    tb = b.acquire_lease("b", 1.0)
    assert tb == ta + 1
    holder, token, left = a.lease()
    assert (holder, token) == ("b", tb) and 0 < left <= 1.0
    b.release_lease(tb)
    assert a.acquire_lease("a", 1.0) == tb + 1  # released: taken at once


def test_a_former_holder_cannot_commit(two, signer):  # noqa: F811
    a, b = two
    la = Log.open(a, origin=ORIGIN, note_signer=signer, sequencer=False)
    lb = Log.open(b, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        ta = a.acquire_lease("a", 0.5)
        a.fence = (ta, 0.5)
        la.append([_item(0)])
        time.sleep(0.7)
        tb = b.acquire_lease("b", 5.0)
        b.fence = (tb, 5.0)
        lb.append([_item(1)])
        with pytest.raises(LeaseLost):
            la.append([_item(2)])
        with pytest.raises(LeaseLost):
            la.integrate_pending()
        # nothing of the former holder after the takeover: the log is 0, 1 and b's entry
        assert lb.find(_item(2)[0]) is None and b.state()[0] == 2
        lb.append([_item(3)])
        assert b.state()[0] == 3
    finally:
        la.close()
        lb.close()


def test_a_holder_paused_inside_its_transaction_past_expiry_rolls_back(two, signer):  # noqa: F811
    """The renewal at the end of the transaction fails: the lease ran out while it was open
    (the row lock kept anybody else from taking it meanwhile)."""
    a, b = two
    la = Log.open(a, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        ta = a.acquire_lease("a", 0.5)
        a.fence = (ta, 0.5)
        before = a.state()
        taken = []

        def other():  # tries to take the lease while a's transaction is open: waits for it
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    t = b.acquire_lease("b", 5.0)
                except Exception:  # noqa: BLE001 - the lease row is locked (lock timeout)
                    t = None
                if t is not None:
                    taken.append((t, time.monotonic()))
                    return
                time.sleep(0.05)

        with pytest.raises(LeaseLost):
            with a.integration() as tx:
                tx.set_state(before[0] + 100, b"\x01" * 32)  # what must never be committed
                th = threading.Thread(target=other)
                th.start()
                time.sleep(1.0)  # "paused" past the lease's expiry
                t_end = time.monotonic()
        th.join()
        assert a.state() == before
        assert taken and taken[0][0] == ta + 1 and taken[0][1] >= t_end  # only after a's rollback
    finally:
        la.close()


def test_frontends_hand_over_through_the_queue_and_learn_by_notification(tmp_path, monkeypatch):
    """Two services (two workers or hosts) on one PostgreSQL: each has an integrator candidate,
    one holds the lease and integrates both frontends' submissions; with the fallback sweep
    pushed out of reach every 201 comes from the NOTIFY of the integrator's commit."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tlog.config import Config
    from tlog.queued import QueueClient
    from tlog.service import LogService
    from verifier import receipt as vreceipt

    from .test_server_support import bound, statement, write_public
    from .tlog_fixtures import fresh_pg_database

    monkeypatch.setattr(QueueClient, "SWEEP", 60.0)
    key = ec.generate_private_key(ec.SECP256R1())
    with fresh_pg_database("tlog_fe") as url:
        svcs = []
        try:
            for n in range(2):
                cfg = Config.load(env={}, overrides=dict(
                    data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
                    origin="lease.example/log", issuer="https://lease.example", register_wait=5.0,
                    database_url=url, lease_ttl=1.0))
                svcs.append(LogService(cfg, integrator="process"))
            assert all(s.integrator_mode == "lease" for s in svcs)
            regs = []
            lock = threading.Lock()

            def run(svc, i):
                t0 = time.monotonic()
                r = svc.register(statement(key, sub=f"fe/{i}"))
                with lock:
                    regs.append((r, time.monotonic() - t0))

            ts = [threading.Thread(target=run, args=(svcs[i % 2], i)) for i in range(30)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            assert len(regs) == 30 and all(r.receipt is not None for r, _ in regs)
            assert max(t for _, t in regs) < 3.0
            keys = {svcs[0].keys.receipt.kid: svcs[0].keys.receipt.private.public_key()}
            for r, _ in regs:
                vreceipt.verify_inclusion_receipt(r.receipt, bytes.fromhex(r.entry_id), keys)
            assert len({r.index for r, _ in regs}) == 30
            holder, token, left = svcs[0]._storage.lease()
            assert left > 0 and holder.endswith(tuple(f":{s._candidate.pid}" for s in svcs))
            assert sum(s._remote.notifications for s in svcs) > 0
        finally:
            for s in svcs:
                s.close()


def test_attribute_values_that_text_copy_would_escape_round_trip(two, signer):  # noqa: F811
    """Attributes go in with a text COPY unless a value holds a tab, newline, CR or backslash;
    both paths store exactly the strings given, non-ASCII included."""
    a, _ = two
    lg = Log.open(a, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        plain = [("iss", "https://issuer.example/é"), ("iss-sub", '["a","b c"]')]
        odd = [("iss", "tab\there"), ("iss-sub", "nl\nbs\\N\r")]
        a.enqueue([(_item(10)[0], b"ten", plain)])
        assert lg.integrate_pending() == 1
        a.enqueue([(_item(11)[0], b"eleven", odd)])
        assert lg.integrate_pending() == 1
        i10, i11 = lg.find(_item(10)[0]), lg.find(_item(11)[0])
        for k, v in plain:
            assert lg.lookup(k, v) == [i10]
        for k, v in odd:
            assert lg.lookup(k, v) == [i11]
        lg.append([(_item(12)[0], b"twelve", [("kind", "x\\y")])])
        assert lg.lookup("kind", "x\\y") == [lg.find(_item(12)[0])]
    finally:
        lg.close()


def test_a_queued_twin_is_answered_with_the_entry_of_its_signed_content(two, signer):  # noqa: F811
    """Two submissions of one signed content (different leaves, one dedup key) queued together:
    the integrator keeps the first; the frontend answers the second with that entry too."""
    from tlog.queued import QueueClient

    a, b = two
    fe = Log.open(a, origin=ORIGIN, note_signer=signer, sequencer=False)
    integ = Log.open(b, origin=ORIGIN, note_signer=signer, sequencer=False)
    q = QueueClient(a, fe)
    try:
        key = hashlib.sha256(b"signed content").digest()
        p1 = q.submit(_item(20)[0], b"first encoding", (), key)
        p2 = q.submit(_item(21)[0], b"second encoding", (), key)
        deadline = time.monotonic() + 10
        while a._read(lambda c: c.execute("SELECT count(*) FROM pending").fetchone()[0]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        tok = b.acquire_lease("b", 5.0)
        b.fence = (tok, 5.0)
        assert integ.integrate_pending() == 2
        e1, e2 = p1.wait(5.0), p2.wait(5.0)
        assert e1 is not None and e2 is not None and e1.index == e2.index
        assert b.state()[0] == 1  # one entry
    finally:
        q.close()
        fe.close()
        integ.close()


def test_taking_over_ends_the_session_of_a_holder_paused_inside_its_transaction(pg_database, signer):  # noqa: F811
    """A paused holder's open transaction keeps the lease row (and the integration lock) until
    its session ends, and a session blocked writing to a paused client is not ended by any
    timeout; the next holder ends it once the lease has expired, instead of waiting."""
    from tlog.storage import StorageUnavailable
    from tlog.storage.postgres import PostgresStorage

    schema = "l_" + uuid.uuid4().hex[:12]
    a = PostgresStorage(pg_database, schema=schema, statement_timeout=5, lock_timeout=5,
                        application_name="tlog-integrator")  # idle-in-transaction limit: 16 s
    b = PostgresStorage(pg_database, schema=schema, statement_timeout=5, lock_timeout=5,
                        application_name="tlog-integrator")
    la = Log.open(a, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        before = a.state()
        ta = a.acquire_lease("a", 1.5)
        a.fence = (ta, 1.5)
        la.integrate_pending()  # a committed integration records the holder's session
        got = {}
        with pytest.raises(StorageUnavailable) as e:
            with a.integration() as tx:
                tx.set_state(before[0] + 100, b"\x01" * 32)
                time.sleep(1.8)  # "paused", lease expired, row locked
                t0 = time.monotonic()
                try:
                    got["token"] = b.acquire_lease("b", 5.0)
                except StorageUnavailable as x:  # waited for the row lock until the lock timeout
                    got["error"] = x
                got["took"] = time.monotonic() - t0
                tx.c.execute("SELECT 1")  # a's session was ended: this fails
        assert got.get("token") == ta + 1 and got["took"] < 2.0, got
        assert not isinstance(e.value, LeaseLost)  # ended by the server, not by its own check
        assert b.state() == before
    finally:
        la.close()
        a.close()
        b.close()
