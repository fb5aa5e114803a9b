"""Test fixture (no tests here): the real log (tlog.server.create_app on a data directory, the
SQLite default) served on loopback, and a *forked* copy of it.

``copy_log(src, dst)`` copies a running log's data directory: its keys and a consistent snapshot
of its SQLite database (the SQLite online backup API, safe while the log is serving).
``rewrite_history(dst, replace)`` then rewrites history in the copy: it reads every entry from the
copied database through the real core (``tlog.log.Log``), and integrates the entries again, in
order and with some of them replaced, into a new database in the copy's directory (no knowledge
of the storage schema), under the same log keys: the copy is a complete, well-formed log whose
tree and checkpoint (signed with the genuine checkpoint key) differ from the genuine ones. ``LogServer`` serves
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
from tlog.policy import POLICY_CONTENT_TYPE
from tlog.server import create_app
from tlog.service import LogService
from verifier.statement import SignedStatement

from .test_server_support import bound_arg, statement, write_public

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


def issuer_key_file(tmp_path: Path, key, name: str, *iss: str) -> str:
    """The public key written to ``<name>.pem``, as an ``--issuer-key`` value bound to ``iss``
    (default: test_server_support.ISS)."""
    return bound_arg(write_public(Path(tmp_path) / f"{name}.pem", key), *iss)


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


def _open_core(data_dir: Path):
    from tlog.keys import load_or_create
    from tlog.log import Log

    keys = load_or_create(data_dir, None)
    return Log.open(str(Path(data_dir) / DB_NAME), origin=keys.origin, note_signer=keys.note_signer), keys


def read_entries(data_dir: Path) -> list[bytes]:
    """The statement bytes of every entry of the log in ``data_dir``, in index order, read through
    the real core (tlog.log.Log) from its database."""
    lg, _ = _open_core(data_dir)
    try:
        return [lg.entry_data(i) for i in range(lg.size)]
    finally:
        lg.close()


def _attrs(data: bytes, log_kid: bytes, policy_id: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """The lookup attributes tlog.service records for an entry (kind, policy, iss, iss-sub, payload
    hash; sub for policy entries); returns them and the policy id in force after this entry."""
    from tlog.attrs import iss_sub_key

    st = SignedStatement.parse(data)
    attrs = [("iss", st.iss), ("iss-sub", iss_sub_key(st.iss, st.sub))]
    if st.content_type == POLICY_CONTENT_TYPE and st.kid == log_kid:
        attrs.append(("sub", st.sub))
        if policy_id:
            attrs.append(("policy", policy_id))
        return sorted(attrs + [("kind", "policy")]), st.leaf_input.hex()
    attrs += [("kind", "statement"), ("policy", policy_id or "")]
    if st.payload is not None:
        attrs.append(("payload-sha256", hashlib.sha256(st.payload).hexdigest()))
    return sorted(attrs), policy_id


def rewrite_history(data_dir: Path, replace: dict[int, bytes], **settings: Any) -> LogServer:
    """Rewrite the copied log in ``data_dir``: read every entry from its database, replace entry i
    by ``replace[i]`` (statement bytes), and integrate the rewritten history from entry 0 into a
    new database in the same directory with the real core and the log's own keys (checkpoints by
    its note key, receipt signatures by its receipt key: tlog.service's head signer). Returns the
    copy served by the real server. ``settings``: the log's configuration (issuer keys ...) as for
    the genuine log, so it registers no new policy."""
    data_dir = Path(data_dir)
    datas = read_entries(data_dir)
    from tlog.keys import load_or_create

    log_kid = load_or_create(data_dir, None).receipt.kid
    items, policy_id = [], None
    for i, data in enumerate(datas):
        data = SignedStatement.parse(replace[i]).statement_bytes if i in replace else data
        attrs, policy_id = _attrs(data, log_kid, policy_id)
        items.append((hashlib.sha256(data).digest(), data, attrs))
    for p in data_dir.glob(DB_NAME + "*"):  # the history is rewritten into a new database
        p.unlink()

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
