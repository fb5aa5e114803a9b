"""Issue 11, enforced in the integration commit (both backends):

- a second, different record for a record id its issuer already holds is refused inside the
  commit that assigns entries (not only by the check before the queue), so two such records
  posted at the same instant cannot both be admitted: the later one gets 409, nothing is stored
  for it;
- a re-encoding (another signature of the same signed content) of a claim that is itself still
  pending, answered 303, resolves: its operation leads to the one entry of the claim.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.log import Log, Refused
from tlog.policy import Rejection
from tlog.service import LogService
from tlog.twi import TWI  # the personality the server composes (tlog.server.app)
from tlog.server import create_app
from verifier import cose
from verifier.credential import CPR_MEDIA_TYPE
from verifier.statement import SignedStatement

from .test_server_support import ISS, bound, statement, write_public
from .tlog_fixtures import ORIGIN, backend, fresh_pg_database, pg_database, signer, storage_factory  # noqa: F401

UNIQUE = "twi.cpr.iss_rid"


# ---- the core: Log.unique_attrs -----------------------------------------------------------------
def _item(n: int, value: str | None, key: bytes | None = None):
    leaf = hashlib.sha256(b"leaf %d" % n).digest()
    attrs = ((UNIQUE, value),) if value is not None else ()
    return leaf, b"data %d" % n, attrs, key or hashlib.sha256(b"key %d" % n).digest()


def _open(storage, signer_):
    log_ = Log.open(storage, origin=ORIGIN, note_signer=signer_, sequencer=False)
    log_.unique_attrs = frozenset({UNIQUE})
    return log_


def test_unique_attribute_refused_in_the_commit(storage_factory, signer):  # noqa: F811
    log_ = _open(storage_factory(), signer)
    try:
        a, b, c = _item(1, "iss|rid-1"), _item(2, "iss|rid-1"), _item(3, "iss|rid-2")
        # one batch: the first holder of the value wins, the second is refused, the rest go on
        out = log_.append([a, b, c])
        assert not isinstance(out[0], Refused) and not isinstance(out[2], Refused)
        assert isinstance(out[1], Refused) and out[1].value == "iss|rid-1"
        assert log_.size == 2 and log_.find(b[0]) is None and log_.find_key(b[3]) is None
        assert log_.lookup(UNIQUE, "iss|rid-1") == [out[0].index]
        # a later batch: refused against the stored holder; the holder's own claim again is a duplicate
        d = _item(4, "iss|rid-1")
        again = (hashlib.sha256(b"another encoding").digest(), b"x", a[2], a[3])
        out2 = log_.append([d, again])
        assert isinstance(out2[0], Refused)
        assert not isinstance(out2[1], Refused) and out2[1].duplicate and out2[1].index == out[0].index
        # a duplicate of the refused one in the same batch is refused with it, not admitted
        e1, e2 = _item(5, "iss|rid-3"), _item(6, "iss|rid-3")
        e2dup = (hashlib.sha256(b"e2 twin").digest(), b"y", e2[2], e2[3])
        out3 = log_.append([e1, e2, e2dup])
        assert not isinstance(out3[0], Refused) and all(isinstance(o, Refused) for o in out3[1:])
        # through the durable queue (another frontend's submission): dropped, nothing stored
        f = _item(7, "iss|rid-2")
        log_.storage.enqueue([f])
        assert log_.integrate_pending() == 1
        assert log_.find(f[0]) is None and not log_.storage.has_pending()
        assert log_.size == 3
    finally:
        log_.close()


def test_refusal_survives_the_integrator_process_pipe():
    """The refusal crosses the worker <-> integrator pipe (pickle) intact."""
    import pickle

    r = pickle.loads(pickle.dumps(Refused(UNIQUE, "v")))
    assert isinstance(r, Refused) and (r.key, r.value) == (UNIQUE, "v")


def test_re_encoding_of_a_pending_claim_resolves(storage_factory, signer):  # noqa: F811
    """Two leaves with one dedup key, both in the durable queue (each answered 303 with its own
    id): the first becomes the entry, the second's id resolves to it (an alias row)."""
    log_ = _open(storage_factory(), signer)
    try:
        key = hashlib.sha256(b"one claim").digest()
        a = (hashlib.sha256(b"encoding a").digest(), b"a", (), key)
        b = (hashlib.sha256(b"encoding b").digest(), b"b", (), key)
        log_.storage.enqueue([a, b])
        assert log_.status(b[0]) == "pending"
        log_.integrate_pending()
        sa, sb = log_.status(a[0]), log_.status(b[0])
        assert sa.index == sb.index and sb.duplicate and not sa.duplicate
        assert log_.find(b[0]) is None  # not an entry of its own
        # the claim already integrated, a queued re-encoding (answered 303) resolves as well
        c = (hashlib.sha256(b"encoding c").digest(), b"c", (), key)
        log_.storage.enqueue([c])
        log_.integrate_pending()
        assert log_.status(c[0]).index == sa.index
        # an in-memory batch taking the entry while the re-encoding waits in the queue
        k2 = hashlib.sha256(b"claim two").digest()
        d = (hashlib.sha256(b"encoding d").digest(), b"d", (), k2)
        e = (hashlib.sha256(b"encoding e").digest(), b"e", (), k2)
        log_.storage.enqueue([e])
        [got] = log_.append([d])
        assert log_.status(e[0]).index == log_.status(d[0]).index
        assert got.index == log_.status(d[0]).index or log_.status(d[0]).index == log_.status(e[0]).index
        # unknown stays unknown
        assert log_.status(hashlib.sha256(b"nobody").digest()) is None
    finally:
        log_.close()


# ---- the service, with the integration held ------------------------------------------------------
KEY = ec.generate_private_key(ec.SECP256R1())


def _cpr(payload: bytes, rid: bytes = b"rid-1") -> bytes:
    return statement(KEY, sub="cpr", cty=CPR_MEDIA_TYPE, payload=payload, extra={15: {1: ISS, 2: "cpr", 7: rid}})


def _resign(stmt: bytes) -> bytes:
    m = cose.decode_sign1(stmt)
    return cose.encode_sign1(m.protected_raw, {}, m.payload, cose.sign_tbs(KEY, -7, m.tbs()))


@pytest.fixture
def service_config(backend, tmp_path, monkeypatch):  # noqa: F811
    """(Config, mode): SQLite with the in-process sequencer, PostgreSQL with the production path
    (durable queue, lease-holding integrator) whose integrator candidate never starts here: the
    test integrates the queue itself, when it chooses."""
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "k.pem", KEY))],
                    origin="commit.example/log", issuer="https://commit.example", register_wait=5.0,
                    max_wait=0.001)
    if backend == "postgres":
        import tlog.leader

        class _NoCandidate:
            def __init__(self, *a, **k):
                pass

            def close(self):
                pass

        monkeypatch.setattr(tlog.leader, "Candidate", _NoCandidate)
        with fresh_pg_database("tlog_commit") as url:
            settings |= {"database_url": url}
            LogService(Config.load(env={}, overrides=settings), integrator="thread").close()  # log + policy
            yield settings, "process"
    else:
        yield settings, "thread"


class _Held:
    """Integration held: SQLite, the sequencer's integration lock; PostgreSQL, nobody integrates
    the durable queue until :meth:`release` does it once."""

    def __init__(self, svc: LogService) -> None:
        self.svc = svc
        self.lease = svc.integrator_mode == "lease"
        self.fd = None
        if svc.integrator_mode == "process":
            # the SQLite integrator process: held on the integration file lock it takes first
            import fcntl
            import os

            self.fd = os.open(svc.config.data_path / "integration.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        elif not self.lease:
            svc.log._int_lock.acquire()

    def release(self) -> None:
        if self.lease:
            while self.svc._storage.has_pending():
                self.svc.log.integrate_pending()
        elif self.fd is not None:
            import os

            os.close(self.fd)
        else:
            self.svc.log._int_lock.release()


def _wait_for(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_two_records_for_one_record_id_at_the_same_instant(service_config):
    settings, mode = service_config
    _race(LogService(Config.load(env={}, overrides=settings), integrator=mode, personality=TWI))


def test_two_records_for_one_record_id_through_the_integrator_process(tmp_path):
    """SQLite under tlog serve: the refusal crosses the integrator process's pipe."""
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "k.pem", KEY))],
                    origin="commit.example/log", issuer="https://commit.example", register_wait=5.0,
                    max_wait=0.001)
    svc = LogService(Config.load(env={}, overrides=settings), integrator="process", personality=TWI)
    assert svc.integrator_mode == "process"
    _race(svc)


def _race(svc: LogService) -> None:
    """Two different records for one record id, both past the check before the queue while the
    integration is held: exactly one is admitted, the other gets 409 naming it."""
    try:
        size = svc.tree_size()
        held = _Held(svc)
        results: dict[int, object] = {}

        def post(i: int, body: bytes) -> None:
            try:
                results[i] = svc.register(body)
            except Rejection as r:
                results[i] = r

        threads = [threading.Thread(target=post, args=(i, _cpr(b"record %d" % i))) for i in range(2)]
        for t in threads:
            t.start()
        # both passed the check before the queue (nothing is committed yet) and are submitted
        if held.lease:
            _wait_for(lambda: len(svc._remote._enqueued) == 2, "both queued")
        else:
            _wait_for(lambda: svc._inflight == 2, "both submitted")
        held.release()
        for t in threads:
            t.join(30)
        kinds = sorted(type(r).__name__ for r in results.values())
        assert kinds == ["Registration", "Rejection"], results
        won = next(r for r in results.values() if not isinstance(r, Rejection))
        lost = next(r for r in results.values() if isinstance(r, Rejection))
        assert lost.status == 409 and lost.reason == "record-id" and "rid-1" in lost.detail
        assert won.entry_id in lost.detail  # names the entry holding the record id
        svc.log.refresh()
        assert svc.tree_size() == size + 1
    finally:
        svc.close()


def test_re_encoding_of_a_pending_claim_answered_303_resolves(service_config):
    """register_wait 0: every registration is answered 303 at once. The original and a re-signature
    of it, both still pending: the re-signature's Location resolves to the original's entry."""
    settings, mode = service_config
    svc = LogService(Config.load(env={}, overrides=settings | {"register_wait": 0.0}), integrator=mode, personality=TWI)
    app = create_app(svc.config, service=svc)
    client = app.test_client()
    try:
        held = _Held(svc)
        first = statement(KEY, sub="pending/claim")
        again = _resign(first)
        assert SignedStatement.parse(first).leaf_input != SignedStatement.parse(again).leaf_input
        r1 = client.post("/entries", data=first, content_type="application/cose")
        r2 = client.post("/entries", data=again, content_type="application/cose")
        assert r1.status_code == r2.status_code == 303
        loc1, loc2 = r1.headers["Location"], r2.headers["Location"]
        held.release()
        path1, path2 = (loc.split("://", 1)[-1].split("/", 1)[1] for loc in (loc1, loc2))

        def done(path):
            return client.get("/" + path).status_code == 200
        _wait_for(lambda: done(path1) and done(path2), "both locations resolve")
        g1, g2 = client.get("/" + path1), client.get("/" + path2)
        assert g1.headers["Location"] == g2.headers["Location"] == loc1  # the one entry: the original's
        svc.log.refresh()
        st = svc.log.status(SignedStatement.parse(again).leaf_input)
        assert st.index == svc.log.find(SignedStatement.parse(first).leaf_input)
    finally:
        svc.close()


def test_record_answered_303_then_refused_in_the_commit_resolves_to_409(service_config):
    """register_wait 0: both records for one record id are answered 303 before the commit sees
    them; the one the commit refuses resolves to a 409 problem naming the conflict, not to an
    unknown id (404), and nothing is stored for it."""
    settings, mode = service_config
    svc = LogService(Config.load(env={}, overrides=settings | {"register_wait": 0.0}), integrator=mode, personality=TWI)
    app = create_app(svc.config, service=svc)
    client = app.test_client()
    try:
        size = svc.tree_size()
        held = _Held(svc)
        bodies = [_cpr(b"record %d" % i, rid=b"rid-303") for i in range(2)]
        posted = [client.post("/entries", data=b, content_type="application/cose") for b in bodies]
        assert [r.status_code for r in posted] == [303, 303]
        paths = ["/" + r.headers["Location"].split("://", 1)[-1].split("/", 1)[1] for r in posted]
        held.release()
        _wait_for(lambda: sorted(client.get(p).status_code for p in paths) == [200, 409], "one entry, one refusal")
        got = {client.get(p).status_code: client.get(p) for p in paths}
        problem = got[409]
        assert problem.content_type.startswith("application/concise-problem-details+cbor") or \
            problem.content_type.startswith("application/problem+json")
        assert b"rid-303" in problem.data
        svc.log.refresh()
        assert svc.tree_size() == size + 1
        refused = next(b for b, p in zip(bodies, paths) if client.get(p).status_code == 409)
        assert svc.log.find(SignedStatement.parse(refused).leaf_input) is None
    finally:
        svc.close()


@pytest.mark.parametrize("personality", ["twi", "plain"])
def test_second_record_for_a_record_id_is_refused_before_the_queue(tmp_path, personality):
    """The one-record-per-(issuer, record id) rule comes from the personality (tlog.personality):
    with TWI's, a second, different record for a registered record id is refused by the check
    before the queue (nothing submitted; the 409 in the personality's words, naming the entry);
    a plain log has no such rule and admits both."""
    from tlog.personality import PLAIN

    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "k.pem", KEY))],
                    origin="commit.example/log", issuer="https://commit.example", register_wait=5.0)
    svc = LogService(Config.load(env={}, overrides=settings), integrator="thread",
                     personality=TWI if personality == "twi" else PLAIN)
    submitted = []
    submit = svc._submit
    svc._submit = lambda *a: submitted.append(a[0]) or submit(*a)
    try:
        first = svc.register(_cpr(b"record 0", rid=b"rid-seq"))
        assert first.index is not None
        if personality == "plain":
            assert svc.register(_cpr(b"record 1", rid=b"rid-seq")).index == first.index + 1
            return
        with pytest.raises(Rejection) as e:
            svc.register(_cpr(b"record 1", rid=b"rid-seq"))
        assert e.value.status == 409 and e.value.reason == "record-id"
        assert e.value.detail == (f"issuer {ISS!r} already registered a different record with id 'rid-seq' "
                                  f"(entry {first.entry_id})")
        assert len(submitted) == 1  # the refused record never reached the sequencer
        assert svc.tree_size() == first.index + 1
    finally:
        svc.close()
