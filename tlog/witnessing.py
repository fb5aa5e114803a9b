"""The log side of witnessing: collect C2SP tlog-witness cosignatures and serve them on /checkpoint.

Configuration (:class:`tlog.config.Config`): ``witnesses`` = list of ``{url, vkey}`` (``url`` is the
witness's submission prefix, ``POST <url>/add-checkpoint``; ``vkey`` its tlog-cosignature/v1 key,
type 0x04), ``witness_quorum`` = k, ``witness_interval`` = poll period in seconds.

Collector (one background daemon thread per server process, :meth:`Witnessing.start`):

- every ``witness_interval`` s it reads the log's latest signed checkpoint; for each witness whose
  last cosigned size is below it, it POSTs ``old <m>\\n`` + the consistency proof m -> n (base64
  lines, from ``Log.consistency_proof``; none when m = 0) + an empty line + the signed note;
- a ``409`` with ``text/x.tlog.size`` teaches the witness's size; the request is retried once with it;
- each returned line must be a tlog-cosignature/v1 signature by the witness's configured key over
  this checkpoint (``verifier.note.verify_cosignature``); invalid lines are dropped, a witness that
  returns no valid line, refuses (4xx) or is unreachable counts as nothing and is retried with an
  exponential backoff (0.5 s .. 60 s); HTTP timeouts are bounded (``TIMEOUT``);
- registration is never blocked: the thread only reads the log and writes its own store.

Several server workers: only the process holding an exclusive ``flock`` on
``<data_dir>/witnessing.lock`` runs the collector (the others retry the lock every few seconds,
so another worker takes over when the holder exits). Submitting twice would be harmless anyway
(the witness answers 409 or re-cosigns the same checkpoint, and the store is an upsert).

Store: a SQLite file ``<data_dir>/cosignatures.db`` (WAL), owned by this module, for both storage
backends (the keys live in the data dir for PostgreSQL too, so it exists). Tables
``cosignatures(size, witness, line, note)`` and ``witness_state(witness, size)`` keyed by the
witness vkey. With PostgreSQL and several hosts, each host collects for itself (documented limit).

Serving (:meth:`Witnessing.served_note`): with k = 0, the latest checkpoint plus whatever
cosignatures exist for its size; with k > 0, the newest checkpoint having >= k valid cosignatures
from distinct configured witnesses (older than the latest when the witnesses lag; receipts and
entries keep working at any size), 503 while no checkpoint has a quorum.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests

from verifier import VerificationError
from verifier.http import capped_response
from verifier.note import NoteVerifier, verify_cosignature

from .config import parse_witness  # noqa: F401 - where callers found it before

__all__ = ["WitnessConfig", "Witnessing", "parse_witness", "attach"]

log = logging.getLogger("tlog.witnessing")

TIMEOUT = (3.0, 5.0)  # connect, read (s)
MAX_ANSWER = 65536  # bytes of a witness answer (cosignature lines, a size, a short error)
MAX_BACKOFF = 60.0
SIZE_TYPE = "text/x.tlog.size"


@dataclass
class WitnessConfig:
    url: str
    verifier: NoteVerifier
    vkey: str
    size: int | None = None  # last cosigned size as we know it (None: unknown, try 0)
    fails: int = 0
    next_try: float = 0.0
    last_error: str = ""


@dataclass
class _Served:
    note: str
    size: int
    lines: list[str] = field(default_factory=list)


class Witnessing:
    def __init__(self, svc, witnesses: Iterable[Any], quorum: int, data_dir: str | os.PathLike,
                 *, interval: float = 1.0) -> None:
        self.svc = svc
        ws = [parse_witness(w) for w in witnesses]
        self.witnesses = [WitnessConfig(w["url"], NoteVerifier.from_vkey(w["vkey"]), w["vkey"]) for w in ws]
        if len({w.vkey for w in self.witnesses}) != len(self.witnesses):
            raise ValueError("a witness key is configured twice")
        if not 0 <= quorum <= len(self.witnesses):
            raise ValueError(f"witness_quorum {quorum} must be between 0 and {len(self.witnesses)}")
        self.quorum = quorum
        self.interval = max(0.05, float(interval))
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_path = str(self.dir / "cosignatures.db")
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._http = requests.Session()
        db = self._db()
        db.execute("CREATE TABLE IF NOT EXISTS cosignatures (size INTEGER NOT NULL, witness TEXT NOT NULL, "
                   "line TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (size, witness))")
        db.execute("CREATE TABLE IF NOT EXISTS witness_state (witness TEXT PRIMARY KEY, size INTEGER NOT NULL)")
        for w in self.witnesses:
            row = db.execute("SELECT size FROM witness_state WHERE witness=?", (w.vkey,)).fetchone()
            if row:
                w.size = row[0]

    # ------------------------------------------------------------------ store
    def _db(self) -> sqlite3.Connection:
        c = getattr(self._local, "db", None)
        if c is None:
            c = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            self._local.db = c
        return c

    def _store(self, w: WitnessConfig, size: int, line: str, note: str) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO cosignatures(size, witness, line, note) VALUES(?,?,?,?) "
                       "ON CONFLICT(size, witness) DO UPDATE SET line=excluded.line, note=excluded.note",
                       (size, w.vkey, line, note))
            db.execute("INSERT INTO witness_state(witness, size) VALUES(?,?) "
                       "ON CONFLICT(witness) DO UPDATE SET size=excluded.size", (w.vkey, size))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def cosignatures(self, size: int) -> list[str]:
        keys = [w.vkey for w in self.witnesses]
        if not keys:
            return []
        q = ",".join("?" * len(keys))
        rows = self._db().execute(
            f"SELECT line FROM cosignatures WHERE size=? AND witness IN ({q}) ORDER BY witness", (size, *keys)
        ).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ serving
    def served(self) -> _Served | None:
        if self.quorum == 0:
            head = self.svc.latest()
            note = head.checkpoint if isinstance(head.checkpoint, str) else head.checkpoint.decode()
            return _Served(note, head.size, self.cosignatures(head.size))
        keys = [w.vkey for w in self.witnesses]
        q = ",".join("?" * len(keys))
        row = self._db().execute(
            f"SELECT size FROM cosignatures WHERE witness IN ({q}) GROUP BY size "
            f"HAVING COUNT(DISTINCT witness) >= ? ORDER BY size DESC LIMIT 1", (*keys, self.quorum)
        ).fetchone()
        if row is None:
            return None
        size = row[0]
        note = self._db().execute("SELECT note FROM cosignatures WHERE size=? LIMIT 1", (size,)).fetchone()[0]
        return _Served(note, size, self.cosignatures(size))

    def served_note(self) -> str:
        """The note for GET /checkpoint: the log's signed checkpoint + collected cosignature lines."""
        s = self.served()
        if s is None:
            from .errors import Unavailable

            raise Unavailable(f"no checkpoint is cosigned by {self.quorum} witnesses yet", retry_after=5)
        return s.note + "".join(line + "\n" for line in s.lines)

    def lags(self, head, now: float) -> dict:
        """Per witness (by key name): the size it last cosigned and how long the log has had a
        checkpoint it has not cosigned (0 when current); the same for the quorum (k > 0). From
        the shared store and database, so every worker reports the same."""
        rows = dict(self._db().execute("SELECT witness, size FROM witness_state").fetchall())
        storage = self.svc.log.storage

        def lag(size: int) -> float:
            if head is None or size >= head.size:
                return 0.0
            first = storage.first_head_after(size)
            h = storage.head(first) if first is not None else None
            return round(max(0.0, now - h.timestamp), 3) if h is not None else 0.0

        sizes = {w.verifier.name: int(rows.get(w.vkey, 0)) for w in self.witnesses}
        out = {"size": sizes, "lag": {k: lag(v) for k, v in sizes.items()}, "quorum_lag": 0.0}
        if self.quorum > 0:
            s = self.served()
            out["quorum_lag"] = lag(s.size if s is not None else 0)
        return out

    # ------------------------------------------------------------------ collecting
    def _body(self, old: int, size: int, note: str) -> bytes:
        proof = self.svc.log.consistency_proof(old, size) if 0 < old < size else []
        lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
        return ("\n".join(lines) + "\n\n" + note).encode("utf-8")

    def submit(self, w: WitnessConfig, size: int, note: str, body_text: str) -> bool:
        """Submit the checkpoint (``note`` of tree ``size``, body ``body_text``) to ``w``; True if a
        valid cosignature was stored."""
        old = w.size or 0
        for attempt in range(2):
            if old > size:
                raise _Refused(f"witness is at size {old} > {size}")
            # bounded: connect/read timeouts, no redirects, at most MAX_ANSWER bytes read
            r = capped_response(self._http.post(w.url + "/add-checkpoint", data=self._body(old, size, note),
                                                timeout=TIMEOUT, allow_redirects=False, stream=True,
                                                headers={"Content-Type": "text/plain; charset=utf-8"}),
                                MAX_ANSWER, sum(TIMEOUT))
            if r.status_code == 409 and r.headers.get("Content-Type", "").startswith(SIZE_TYPE) and attempt == 0:
                try:
                    learned = int(r.text.strip())
                except ValueError:
                    raise _Refused(f"409 with a bad size body {r.text[:40]!r}") from None
                if learned == old:
                    raise _Refused("409 at the same size (different root: a fork?)")
                old = learned
                w.size = learned
                continue
            if r.status_code != 200:
                raise _Refused(f"HTTP {r.status_code}: {r.text[:200].strip()}")
            good = None
            for line in r.text.splitlines():
                if not line.strip():
                    continue
                try:
                    verify_cosignature(body_text, line, w.verifier)
                    good = line
                except VerificationError:
                    continue
            if good is None:
                raise _Refused("no valid cosignature by the configured key in the answer")
            self._store(w, size, good, note)
            w.size = size
            return True
        raise _Refused("witness kept answering 409")

    def collect_once(self) -> None:
        """One round: submit the latest checkpoint to every witness that is behind and due."""
        head = self.svc.latest()
        if head.size == 0:
            return
        note = head.checkpoint if isinstance(head.checkpoint, str) else head.checkpoint.decode()
        body_text = note.split("\n\n", 1)[0] + "\n"
        now = time.monotonic()
        for w in self.witnesses:
            if self._stop.is_set():
                return
            if w.size == head.size and w.fails == 0:
                continue
            if now < w.next_try:
                continue
            try:
                self.submit(w, head.size, note, body_text)
                w.fails, w.next_try, w.last_error = 0, 0.0, ""
                self.svc.metrics.witness(w.verifier.name, True)
            except (requests.RequestException, OSError, _Refused, ValueError) as e:
                self.svc.metrics.witness(w.verifier.name, False)
                w.fails += 1
                w.last_error = str(e)
                w.next_try = time.monotonic() + min(MAX_BACKOFF, 0.5 * 2 ** (w.fails - 1))
                log.warning("witness %s: %s (retry in %.1fs)", w.url, e, w.next_try - time.monotonic())

    def _try_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.dir / "witnessing.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._try_lock():
                    self.collect_once()
                    wait = self.interval
                else:
                    wait = max(self.interval, 5.0)
            except Exception as e:  # noqa: BLE001 - the collector must survive anything
                log.warning("witnessing round failed: %s", e)
                wait = max(self.interval, 2.0)
            self._stop.wait(wait)

    def start(self) -> "Witnessing":
        if self.witnesses and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tlog-witnessing", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


class _Refused(Exception):
    pass


def attach(app, svc, config) -> Witnessing | None:
    """Start witnessing for a server process when witnesses are configured (create_app hook)."""
    if not getattr(config, "witnesses", None):
        return None
    w = Witnessing(svc, config.witnesses, config.witness_quorum, config.data_dir,
                   interval=getattr(config, "witness_interval", 1.0)).start()
    app.extensions["tlog.witnessing"] = w
    svc.witnessing = w
    return w
