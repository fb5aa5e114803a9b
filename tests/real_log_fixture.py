"""Test fixture (no tests here): the real log (tlog.server.create_app on a data directory, the
SQLite default) served on loopback, and a *forked* copy of it.

``copy_log(src, dst)`` copies a running log's data directory: its keys and a consistent snapshot
of its SQLite database (the SQLite online backup API, safe while the log is serving).
``rewrite_history(dst, replace)`` then rewrites history in the copy: it reads every entry (statement
bytes and attributes) from the copied database, empties the tree tables and re-integrates the
entries in order through the real core (``tlog.log.Log``) with some of them replaced, under the
same log keys, so the copy is a complete, well-formed log whose tree and checkpoint (signed with
the genuine checkpoint key) differ from the genuine ones at the same size. ``LogServer`` serves
either directory with the real server (``tlog.server.create_app``, werkzeug on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

from werkzeug.serving import WSGIRequestHandler, make_server

from tlog.config import Config
from tlog.server import create_app
from tlog.service import LogService
from verifier.statement import SignedStatement

from .test_server_support import statement, write_public

DB_NAME = "log.sqlite"


class _Quiet(WSGIRequestHandler):
    def log_request(self, *a, **k):  # no access log on stderr
        pass


class LogServer:
    """The real log app on ``data_dir`` served on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, data_dir: Path, *, service: LogService | None = None, **settings: Any) -> None:
        self.data_dir = Path(data_dir)
        base = dict(data_dir=str(self.data_dir), register_wait=5.0, issuer="https://log.test.example")
        base.update(settings)
        self.config = Config.load(env={}, overrides=base)
        self.app = create_app(self.config, service=service)
        self.svc: LogService = self.app.extensions["tlog.service"]
        self.client = self.app.test_client()
        self.httpd = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.up = True

    @property
    def vkey(self) -> str:
        return self.svc.keys.vkey

    def checkpoint(self) -> str:
        r = self.client.get("/checkpoint")
        assert r.status_code == 200, r.data
        return r.data.decode()

    def register(self, key, **kw) -> int:
        """POST one statement signed by ``key`` (test_server_support.statement kwargs); its index."""
        data = statement(key, **kw)
        r = self.client.post("/entries", data=data, content_type="application/cose")
        assert r.status_code == 201, r.data
        return self.svc.log.find(SignedStatement.parse(data).leaf_input)

    def append_behind_policy(self, data: bytes, attrs: Iterable[tuple[str, str]] = ()) -> int:
        """Append a statement directly through the core (tlog.log.Log.append on the service's
        storage), bypassing the registration policy; its index."""
        st = SignedStatement.parse(data)
        attrs = sorted(set(attrs) | {("kind", "statement"), ("policy", self.svc.policy_id)})
        [entry] = self.svc.log.append([(st.leaf_input, st.statement_bytes, attrs)])
        return entry.index

    def stop(self) -> None:
        if self.up:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.svc.close()
            self.up = False

    def __enter__(self) -> "LogServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def issuer_key_file(tmp_path: Path, key, name: str) -> str:
    return str(write_public(Path(tmp_path) / f"{name}.pem", key))


def copy_log(src: Path, dst: Path) -> None:
    """Copy a (possibly serving) log's data directory: keys and other files as they are, the
    SQLite database through the online backup API (a consistent snapshot, WAL included)."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(f"{DB_NAME}*", "*.lock"))
    s = sqlite3.connect(src / DB_NAME)
    d = sqlite3.connect(dst / DB_NAME)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def read_entries(data_dir: Path) -> list[tuple[bytes, list[tuple[str, str]]]]:
    """(statement bytes, attrs) of every entry of the log in ``data_dir``, in index order."""
    db = sqlite3.connect(Path(data_dir) / DB_NAME)
    try:
        rows = db.execute("SELECT idx, data FROM entries ORDER BY idx").fetchall()
        attrs: dict[int, list[tuple[str, str]]] = {}
        for k, v, i in db.execute("SELECT key, value, idx FROM attrs"):
            attrs.setdefault(i, []).append((k, v))
    finally:
        db.close()
    assert [r[0] for r in rows] == list(range(len(rows)))
    return [(bytes(data), sorted(attrs.get(i, []))) for i, data in rows]


def rewrite_history(data_dir: Path, replace: dict[int, bytes], **settings: Any) -> LogServer:
    """Rewrite the copied log in ``data_dir``: entry i becomes ``replace[i]`` (statement bytes),
    the tree is re-integrated from entry 0 by the real core under the same keys, and the copy is
    served by the real server (returned). ``settings``: the log's configuration (issuer keys ...),
    as for the genuine log, so it registers no new policy."""
    data_dir = Path(data_dir)
    items = []
    for i, (data, attrs) in enumerate(read_entries(data_dir)):
        if i in replace:
            st = SignedStatement.parse(replace[i])
            keep = [(k, v) for k, v in attrs if k in ("kind", "policy")]
            items.append((st.leaf_input, st.statement_bytes,
                          sorted(keep + [("iss", st.iss), ("sub", st.sub),
                                         ("payload-sha256", hashlib.sha256(st.payload or b"").hexdigest())])))
        else:
            items.append((hashlib.sha256(data).digest(), data, attrs))
    # empty everything but the log's identity (meta): the core starts again from size 0
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            if t not in ("meta", "sqlite_sequence"):
                db.execute(f"DELETE FROM {t}")
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()

    def factory(storage, svc: LogService):
        from tlog.log import Log

        lg = Log.open(storage, origin=svc.origin, note_signer=svc.keys.note_signer, head_signer=svc.sign_head,
                      max_batch=svc.config.max_batch, max_wait=svc.config.max_wait)
        lg.append(items)  # one transaction: the rewritten tree, its head signed with the log's keys
        return lg

    base = dict(data_dir=str(data_dir), register_wait=5.0, issuer="https://log.test.example")
    base.update(settings)
    cfg = Config.load(env={}, overrides=base)
    return LogServer(data_dir, service=LogService(cfg, log_factory=factory), **settings)
