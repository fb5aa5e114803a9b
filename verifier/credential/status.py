"""Status statements: the issuer's signed, logged word that a Credential Provenance record's
credential is withdrawn (``status.*`` checks).

A status statement is a Signed Statement by the issuer, content type
:data:`STATUS_MEDIA_TYPE`, CWT ``sub`` = the record id, payload (deterministic CBOR)::

    {"type": STATUS_TYPE, "rid": tstr, "record": {"sha256": hex},   ; leaf input d(i) of the CPR statement
     "status": "revoked", ? "reason": tstr, "time": uint}              ; when it took effect (seconds)

It counts for a record only when it verifies like the record itself (a trusted issuer key, a
receipt from an accepted log), its ``iss`` is the record's issuer, and it names the leaf digest
of the very statement that was verified (the rid is for the log's index, ``twi.status.rid``,
which needs ``sub`` = ``rid``). Anything else is
not evidence and is ignored (a forged or foreign status cannot withdraw a credential).

What the absence of a status statement means: see docs/credential-provenance.md section 9.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..errors import VerificationError
from .wire import STATUS_MEDIA_TYPE, STATUS_TYPE

STATUSES = ("revoked",)


@dataclass(frozen=True)
class Status:
    rid: str
    record_sha256: str
    status: str
    time: int
    reason: str | None
    iss: str
    statement: Any  # SignedStatement

    def describe(self) -> str:
        when = dt.datetime.fromtimestamp(self.time, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"record {self.rid} {self.status} at {when} by {self.iss}" + (f": {self.reason}" if self.reason else "")


def is_status(st: Any) -> bool:
    return st.content_type == STATUS_MEDIA_TYPE


def parse_status(st: Any) -> Status:
    """Decode a status statement's payload (no signature check); raises ``status.malformed``."""
    from .. import cbor

    try:
        p = cbor.loads(st.payload, max_depth=4)
    except (VerificationError, TypeError) as e:
        raise VerificationError("status.malformed", f"status payload is not CBOR: {e}") from None
    if not isinstance(p, dict) or p.get("type") != STATUS_TYPE:
        raise VerificationError("status.malformed", f"not a {STATUS_TYPE} statement")
    rid, rec, status, t, reason = p.get("rid"), p.get("record"), p.get("status"), p.get("time"), p.get("reason")
    digest = rec.get("sha256") if isinstance(rec, dict) else None
    if not isinstance(rid, str) or not isinstance(digest, str) or status not in STATUSES \
            or isinstance(t, bool) or not isinstance(t, int) or (reason is not None and not isinstance(reason, str)):
        raise VerificationError("status.malformed", "status needs rid, record.sha256, status, time (and text reason)")
    return Status(rid=rid, record_sha256=digest, status=status, time=t, reason=reason, iss=st.iss, statement=st)


def check_statuses(rid: str, record_statement: Any, record_issuer: str, candidates: list[tuple[bytes, Any]],
                   verify_receipts) -> list[Status]:
    """The verified status statements of this record; raises ``status.revoked`` if one revokes it.

    ``verify_receipts(ts, st)`` raises VerificationError unless the statement is signed by a
    trusted issuer key and carries a receipt from an accepted log."""
    found = []
    leaf = record_statement.leaf_input.hex()
    for ts, st in candidates:
        try:
            s = parse_status(st)
        except VerificationError:
            continue
        if s.record_sha256 != leaf or s.iss != record_issuer:
            continue  # about another record (the leaf names one statement), or another issuer's word
        try:
            verify_receipts(ts, st)
        except VerificationError:
            continue
        found.append(s)
    for s in found:
        if s.status == "revoked":
            raise VerificationError("status.revoked", s.describe())
    return found
