"""Shards by time (issue 17 item 4): closing a log, and the first entry of its successor.

A log is closed by ``tlog shard close`` or by its settings (``shard_close_size``: the size at
which it closes; ``shard_close_at``: an ISO 8601 time), with ``shard_successor``, the URL of the
log that takes over. Closing records ``shard_closed`` in the log-wide ``meta`` table (JSON
``{"successor", "time", "reason"}``) that every worker of every host reads (tlog.logstate,
once a second); from then on ``POST /entries`` answers **410 Gone** with a problem naming the
successor (also in a ``Link: <successor>; rel="successor-version"`` header, RFC 5829) and the log
keeps serving reads, proofs, checkpoints and tiles. ``tlog shard close`` then waits until the
registrations admitted before the close are integrated and the tree stops changing, records the
final checkpoint (``shard_final``, the predecessor record below) and writes it to a file.

The predecessor record (JSON, what the successor needs)::

    {"origin", "url", "checkpoint" (signed note text), "vkey",
     "receipt_keys": [hex COSE_Key...] (current and retired), "closed": seconds}

A successor is a new log (own data dir or database, own origin, own keys) started with
``shard_predecessor = <that file>``: at its creation it registers, before its registration
policy, the shard statement (:mod:`verifier.shard`) at index 0, signed with its own receipt key.
Registrants can never submit it: statements of the log's own types are refused (issue 11).
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

from verifier import cbor as vcbor
from verifier.errors import VerificationError
from verifier.keys import cose_key_from_public
from verifier.note import NoteVerifier, open_checkpoint
from verifier.shard import SHARD_CONTENT_TYPE, SHARD_SUB_SUFFIX, shard_document

from .config import parse_time
from .keys import LogKeys, log_statement
from .log import SEALED as META_FINAL
from .logstate import META_CLOSED, META_VKEY, StartupError, stored_keyset
from .policy import Rejection

class LogClosed(Rejection):
    """A registration to a closed log: 410 with the successor's URL."""

    def __init__(self, closed: dict[str, Any]) -> None:
        succ = closed.get("successor")
        where = f": register at its successor {succ}" if succ else ""
        super().__init__("Log Closed", f"this log is closed to registrations (a shard closed "
                         f"{_when(closed.get('time'))}){where}; it keeps serving entries, proofs and checkpoints",
                         "closed", 410)
        self.successor = succ
        self.headers = {"Link": f'<{succ}>; rel="successor-version"'} if succ else {}


def _when(t: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return "earlier"


def closed_state(storage) -> dict[str, Any] | None:
    s = storage.meta(META_CLOSED)
    return None if s is None else json.loads(s)


def close(storage, *, successor: str | None, reason: str, now: float | None = None) -> dict[str, Any]:
    """Record the log as closed (once: a second close keeps the first record, and refuses another
    successor). Returns the record in force."""
    rec = {"successor": successor, "time": int(now if now is not None else time.time()), "reason": reason}
    with storage.integration() as tx:
        cur = tx.get_meta(META_CLOSED)
        if cur is not None:
            old = json.loads(cur)
            if successor and old.get("successor") and old["successor"] != successor:
                raise StartupError(f"the log is already closed with the successor {old['successor']}, not {successor}")
            if successor and not old.get("successor"):
                old["successor"] = successor
                tx.set_meta(META_CLOSED, json.dumps(old, sort_keys=True))
            return old
        tx.set_meta(META_CLOSED, json.dumps(rec, sort_keys=True))
    return rec


def due(config, size: int, now: float | None = None) -> str | None:
    """Why the settings close the log now (``size`` / ``date``), or None."""
    if config.shard_close_size and size >= config.shard_close_size:
        return "size"
    if config.shard_close_at and (now if now is not None else time.time()) >= parse_time(config.shard_close_at):
        return "date"
    return None


def settle(storage, *, quiet: float = 2.0, timeout: float = 120.0, poll: float = 0.25) -> int:
    """Wait until nothing is pending and the tree size did not change for ``quiet`` seconds
    (workers see the close within a second; registrations they admitted before are integrated
    meanwhile). Returns the final size."""
    t_end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        st = storage.state()
        size = st[0] if st else 0
        if size != last or storage.has_pending():
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return size
        if time.monotonic() > t_end:
            raise StartupError(f"the log did not settle within {timeout:.0f} s (entries still being integrated)")
        time.sleep(poll)


def predecessor_record(storage, *, url: str, closed: dict[str, Any], head=None) -> dict[str, Any]:
    """The final checkpoint (``head``, default the latest) and keys of this (closed, settled)
    log, for its successor."""
    head = head if head is not None else storage.latest_head()
    if head is None:
        raise StartupError("the log has no checkpoint yet")
    note = head.checkpoint if isinstance(head.checkpoint, str) else head.checkpoint.decode()
    vkey = storage.meta(META_VKEY)
    ks = stored_keyset(storage)
    keys = [] if ks is None else [vcbor.dumps(cose_key_from_public(k, kid=kid)).hex()
                                  for kid, k in sorted(ks.keys.items())]
    origin = NoteVerifier.from_vkey(vkey).name
    return {"origin": origin, "url": url.rstrip("/"), "checkpoint": note, "vkey": vkey, "receipt_keys": keys,
            "closed": int(closed.get("time", 0))}


def finish_close(storage, *, url: str, quiet: float = 2.0) -> dict[str, Any]:
    """After :func:`close`: settle, record the final checkpoint (``shard_final``); idempotent."""
    cur = storage.meta(META_FINAL)
    if cur is not None:
        return json.loads(cur)
    closed = closed_state(storage)
    if closed is None:
        raise StartupError("the log is not closed")
    settle(storage, quiet=quiet)
    return record_final(storage, url=url, closed=closed)


def record_final(storage, *, url: str, closed: dict[str, Any]) -> dict[str, Any]:
    """Record the latest signed checkpoint as the final one, and seal the log, in one step: the
    head is read in the integration transaction that records it (holding the log-wide writer
    lock), and every later integration transaction sees the record and appends nothing
    (tlog.log.SEALED), so no entry is ever committed past the final checkpoint."""
    with storage.integration() as tx:
        cur = tx.get_meta(META_FINAL)
        if cur is None:
            rec = predecessor_record(storage, url=url, closed=closed, head=tx.latest_head())
            cur = json.dumps(rec, sort_keys=True)
            tx.set_meta(META_FINAL, cur)
    return json.loads(cur)


def read_predecessor(path: str) -> dict[str, Any]:
    """The predecessor record file, checked: its final checkpoint verifies with its vkey."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        for k in ("origin", "url", "checkpoint", "vkey"):
            if not isinstance(rec.get(k), str) or not rec[k]:
                raise ValueError(f"{k} missing")
        if not isinstance(rec.get("receipt_keys", []), list):
            raise ValueError("receipt_keys must be a list")
    except (OSError, ValueError) as e:
        raise StartupError(f"shard_predecessor {path}: {e}") from None
    try:
        cp = open_checkpoint(rec["checkpoint"], NoteVerifier.from_vkey(rec["vkey"]))
    except VerificationError as e:
        raise StartupError(f"shard_predecessor {path}: the final checkpoint does not verify with its vkey: {e}") from None
    if cp.checkpoint.origin != rec["origin"]:
        raise StartupError(f"shard_predecessor {path}: the checkpoint is of {cp.checkpoint.origin!r}, not {rec['origin']!r}")
    return rec


def shard_statement(keys: LogKeys, issuer: str, rec: dict[str, Any]) -> bytes:
    """The successor's index 0: the predecessor record as a COSE_Sign1 signed by the log
    (deterministic bytes, so several starts register one entry)."""
    if rec["origin"] == keys.origin:
        raise StartupError(f"the successor must have its own origin (the predecessor is {rec['origin']!r})")
    doc = shard_document(origin=rec["origin"], url=rec["url"], checkpoint=rec["checkpoint"], vkey=rec["vkey"],
                         receipt_keys=[bytes.fromhex(k) for k in rec.get("receipt_keys", [])],
                         closed=int(rec.get("closed", 0)))
    return log_statement(keys.receipt, issuer, SHARD_CONTENT_TYPE, keys.origin + SHARD_SUB_SUFFIX, vcbor.dumps(doc))



def check_predecessor_setting(storage, path: str | None) -> None:
    """``shard_predecessor`` is used once, when the log is created (its entry 0). Given to a log
    that has entries it is refused (:class:`StartupError`, one line) unless it names exactly the
    predecessor that log's entry 0 records (a restart with unchanged settings): otherwise it would
    be silently ignored, and the operator would believe the log is that predecessor's successor."""
    if not path:
        return
    st = storage.state()
    size = st[0] if st else 0
    if size == 0:
        return  # a new log: its entry 0 will record it
    rec = read_predecessor(path)
    had = _recorded_predecessor(storage.entry_data(0))
    if had is None:
        raise StartupError(f"shard_predecessor {path}: this log already has {size} entries and its entry 0 records "
                           "no predecessor (a predecessor is recorded only when a log is created): start the "
                           "successor as a new log (own data dir or database, own origin), or remove the setting")
    want = {k: rec[k] for k in ("origin", "url", "checkpoint", "vkey")}
    if {k: had.get(k) for k in want} != want:
        diff = ", ".join(k for k in want if had.get(k) != want[k])
        raise StartupError(f"shard_predecessor {path}: this log's entry 0 records another predecessor "
                           f"({had.get('origin')!r} at {had.get('url')!r}; differs in {diff}): a log's predecessor "
                           "never changes, remove the setting or give the file it was created with")


def _recorded_predecessor(entry0: bytes | None) -> dict[str, Any] | None:
    """The predecessor document of a log's entry 0, None when it is not a shard statement."""
    from verifier.statement import SignedStatement

    if not entry0:
        return None
    st = SignedStatement.parse(entry0, max_size=max(len(entry0), 1))
    if st.content_type != SHARD_CONTENT_TYPE or st.payload is None:
        return None
    p = vcbor.loads(st.payload, max_depth=8, max_size=len(st.payload)).get("predecessor")
    return p if isinstance(p, dict) else None


def predecessor_of(entry0: bytes | None) -> dict[str, str]:
    """``{origin, url}`` of the predecessor a log's entry 0 records ({} when entry 0 is not a
    shard statement). Not verified here: clients verify the statement (verifier.shard)."""
    p = _recorded_predecessor(entry0)
    if p is None:
        return {}
    return {"origin": str(p.get("origin", "")), "url": str(p.get("url", ""))}

__all__ = ["LogClosed", "META_CLOSED", "META_FINAL", "check_predecessor_setting", "close", "closed_state", "due", "finish_close",
           "parse_time", "predecessor_of", "predecessor_record", "read_predecessor", "record_final", "settle",
           "shard_statement"]
