"""Fixtures for the tlog core tests on both backends (import with ``from tests.tlog_fixtures import *``).

PostgreSQL: set TLOG_TEST_PG_URL (CI does). Each test session creates its own database
``tlog_test_<pid>_<random>`` (dropped at the end) and each test its own schema in it, so
concurrent sessions of other engineers never collide.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from verifier.note import Signer

PG_URL = os.environ.get("TLOG_TEST_PG_URL")
ORIGIN = "test.example/log"
SQLITE_MERGE_EVERY = 64  # tlog.storage.sqlite: recent dedup keys are merged every 64 entries

__all__ = ["pg_database", "fresh_pg_database", "storage_factory", "backend", "signer", "PG_URL", "ORIGIN", "pg_skip_reason"]

pg_skip_reason = "TLOG_TEST_PG_URL is not set: PostgreSQL backend tests skipped (CI sets it)"


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "tlog_test"):
    """A new, empty PostgreSQL database (its URL), dropped afterwards; skips without PG_URL."""
    if not PG_URL:
        pytest.skip(pg_skip_reason)
    import psycopg
    from urllib.parse import urlsplit, urlunsplit

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    u = urlsplit(PG_URL)
    try:
        yield urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_database():
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture
def storage_factory(backend, tmp_path, request):
    """Returns open() -> a new Storage on this test's log (call it again for a 'restart' or a
    second process's view of the same log); all are closed at teardown."""
    opened = []
    if backend == "postgres":
        url = request.getfixturevalue("pg_database")
        schema = "t_" + uuid.uuid4().hex[:12]

        def open_():
            from tlog.storage.postgres import PostgresStorage

            s = PostgresStorage(url, schema=schema)
            opened.append(s)
            return s
        open_.url = url
        open_.schema = schema
    else:
        path = tmp_path / "log.sqlite"

        def open_():
            from tlog.storage import open_storage

            # a small dedup merge interval: most tests cross several merge boundaries
            s = open_storage(path, merge_every=SQLITE_MERGE_EVERY)
            opened.append(s)
            return s
        open_.path = path
    open_.backend = backend
    yield open_
    for s in opened:
        s.close()


@pytest.fixture(scope="session")
def signer():
    return Signer.generate(ORIGIN)
