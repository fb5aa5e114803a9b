"""PostgreSQL faults under the log service: terminated sessions, a held lock, a paused server
(SIGSTOP) and a restart. Lost connections are reopened without a restart of the log; while the
database cannot answer, registrations get 503 + Retry-After (or 303 once durably queued) and
reads 503, within the configured time limits, never a hang or a 500.

The shared test server is only used for what does not disturb other sessions (terminating this
test's own sessions, a lock on this test's own database); restarts and pauses use a throwaway
server (tests/pg_throwaway.py)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.config import Config
from tlog.server import create_app

from .test_server_support import bound, bound_arg, statement, write_public
from .tlog_fixtures import PG_URL, fresh_pg_database, pg_skip_reason

pytestmark = pytest.mark.postgres

LIMITS = dict(db_connect_timeout=1.0, db_statement_timeout=1.0, db_lock_timeout=1.0)


@pytest.fixture
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _app(tmp_path, key, url, **kw):
    settings = dict(data_dir=str(tmp_path / "data"), issuer_keys=[bound(write_public(tmp_path / "iss.pem", key))],
                    origin="recovery.example/log", issuer="https://recovery.example", register_wait=5.0,
                    database_url=url, **LIMITS)
    integrator = kw.pop("integrator", None)
    settings.update(kw)
    return create_app(Config.load(env={}, overrides=settings), integrator=integrator)


def _post(client, body):
    return client.post("/entries", data=body, headers={"Content-Type": "application/cose"})


def _until_201(client, key, what: str, limit: float) -> tuple[float, list[int]]:
    """Register fresh statements until one gets 201: (seconds, the statuses before)."""
    t0 = time.monotonic()
    seen = []
    i = 0
    while time.monotonic() - t0 < limit:
        r = _post(client, statement(key, sub=f"{what}/{i}"))
        if r.status_code == 201:
            return time.monotonic() - t0, seen
        assert r.status_code in (303, 503), (r.status_code, r.data)
        if r.status_code == 503:
            assert r.headers["Retry-After"]
        seen.append(r.status_code)
        i += 1
        time.sleep(0.1)
    raise AssertionError(f"no 201 within {limit} s after {what}: {seen}")


def _terminate_sessions(dbname: str) -> int:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as c:
        return len(c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall())


def test_terminated_sessions_are_reopened_without_an_error(tmp_path, key):
    with fresh_pg_database("tlog_rec") as url:
        app = _app(tmp_path, key, url)
        try:
            client = app.test_client()
            assert _post(client, statement(key, sub="before")).status_code == 201
            assert client.get("/checkpoint").status_code == 200
            assert _terminate_sessions(url.rsplit("/", 1)[1]) >= 2  # the writer and readers
            # the next read and the next registration each find their connection gone and
            # open a new one: no 500, no 503
            assert client.get("/checkpoint").status_code == 200
            assert client.get("/entries/1").status_code == 200
            r = _post(client, statement(key, sub="after"))
            assert r.status_code == 201, r.data
        finally:
            app.extensions["tlog.service"].close()


def test_a_held_integration_lock_gives_503_within_the_lock_timeout(tmp_path, key):
    import psycopg

    with fresh_pg_database("tlog_rec") as url:
        app = _app(tmp_path, key, url)
        try:
            client = app.test_client()
            assert _post(client, statement(key, sub="before")).status_code == 201
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("SELECT pg_advisory_lock(hashtext('tlog:' || current_schema()))")
                t0 = time.monotonic()
                r = _post(client, statement(key, sub="locked"))
                took = time.monotonic() - t0
                assert r.status_code == 503 and r.headers["Retry-After"], (r.status_code, r.data)
                assert took < 4.0, took  # lock timeout 1 s, not the 5 s register wait
                assert client.get("/checkpoint").status_code == 200  # reads need no lock
            # the lock is gone with its session: registrations succeed again
            assert _post(client, statement(key, sub="locked")).status_code == 201
        finally:
            app.extensions["tlog.service"].close()


@pytest.fixture(scope="module")
def throwaway_pg():
    if not PG_URL:
        pytest.skip(pg_skip_reason)
    from .pg_throwaway import ThrowawayPostgres, pg_bin

    if pg_bin() is None:
        pytest.skip("no PostgreSQL binaries to start a throwaway server")
    pg = ThrowawayPostgres()
    yield pg
    pg.close()


@pytest.mark.parametrize("integrator", ["thread", "process"])
def test_paused_and_restarted_postgresql(tmp_path, key, throwaway_pg, integrator):
    import psycopg

    pg = throwaway_pg
    name = f"rec_{integrator}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    app = _app(tmp_path, key, url, register_wait=1.0, integrator=integrator)
    try:
        client = app.test_client()
        assert _post(client, statement(key, sub="before")).status_code == 201
        # paused: answers within the limits (1 s connect/statement/lock, 1 s register wait)
        pg.pause()
        try:
            for i in range(2):
                t0 = time.monotonic()
                r = _post(client, statement(key, sub=f"paused/{i}"))
                took = time.monotonic() - t0
                assert r.status_code == 503 and r.headers["Retry-After"], (r.status_code, r.data)
                assert took < 8.0, took
                t0 = time.monotonic()
                r = client.get("/checkpoint")
                took = time.monotonic() - t0
                assert r.status_code == 503 and r.headers["Retry-After"], r.status_code
                assert took < 4.0, took
        finally:
            pg.resume()
        took, seen = _until_201(client, key, "resumed", 10.0)
        print(f"{integrator}: 201 {took:.2f} s after the resume ({seen})")
        # restarted: every connection is gone; 201 again within 10 s of the server being back
        pg.restart()
        took, seen = _until_201(client, key, "restarted", 10.0)
        print(f"{integrator}: 201 {took:.2f} s after the restart ({seen})")
        assert client.get("/checkpoint").status_code == 200
    finally:
        app.extensions["tlog.service"].close()


def test_a_worker_started_while_postgresql_is_down_waits_for_it(tmp_path, key, throwaway_pg):
    """A worker (re)started by gunicorn during a PostgreSQL restart must not fail its boot (gunicorn
    would stop the whole instance): the service start is retried until the database is back."""
    import threading

    import psycopg

    pg = throwaway_pg
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS rec_boot")
        c.execute("CREATE DATABASE rec_boot")
    url = pg.url.rsplit("/", 1)[0] + "/rec_boot"
    _app(tmp_path, key, url).extensions["tlog.service"].close()  # the log exists
    pg.stop()
    got = []
    try:
        t = threading.Thread(target=lambda: got.append(_app(tmp_path, key, url, integrator="process")))
        t.start()
        time.sleep(2.0)
        assert t.is_alive() and not got  # waiting, not failed
    finally:
        pg.start()
    t.join(60)
    assert got, "the service did not start once PostgreSQL was back"
    app = got[0]
    try:
        took, _ = _until_201(app.test_client(), key, "booted", 20.0)
    finally:
        app.extensions["tlog.service"].close()
