"""Attributes the log indexes for TWI Credential Provenance statements (external binding).

The log core stores ``(key, value)`` text pairs per entry and answers ``Log.lookup(key, value)``.
At registration the log service asks its personality (:data:`tlog.twi.TWI`), which calls
:func:`attrs_for_statement`, and adds the pairs to the entry; ``tlog.twi.routes`` answers ``GET /twi/v1/cpr`` from them. Keys:

* ``twi.cpr.rid``        record id (CWT ``cti`` (7) of the protected header; the payload's
                         ``rid`` must agree for public records). Also indexed for private
                         (hash-envelope) records: it is what the credential's pointer names.
* ``twi.cred.iss_jti``   ``JSON [iss, jti]`` of a WIT (public records only)
* ``twi.cred.dn_serial`` ``JSON [issuer DN (RFC 4514), serial (lowercase hex)]`` of an X.509 SVID
* ``twi.cred.sha256``    lowercase hex SHA-256 of the credential bytes (for WITs, the WPT ``wth``)
* ``twi.cpr.iss_rid``    ``JSON [iss, rid]``: added by the TWI personality (tlog.twi.TWI) with
                         the record id, so that a second, different record for a record id the same
                         issuer (CWT ``iss``) already registered is refused (409)
* ``twi.status.rid``     record id named by a status statement (``verifier.credential.status``,
                         content type ``STATUS_MEDIA_TYPE``, CWT ``sub`` = the record id); lookups
                         return a record's status statements after the record

Private records only expose the record id: the log never sees the credential's identifiers.
Nothing here authenticates anything (the server has already checked the issuer signature;
relying parties verify everything again); malformed payloads simply yield fewer attributes.
"""

from __future__ import annotations

import json
from typing import Any

from verifier import VerificationError
from verifier import cbor as vcbor
from verifier.credential import CPR_MEDIA_TYPE, CPR_TYPE, STATUS_MEDIA_TYPE, STATUS_TYPE

ATTR_RID = "twi.cpr.rid"
ATTR_ISS_JTI = "twi.cred.iss_jti"
ATTR_DN_SERIAL = "twi.cred.dn_serial"
ATTR_SHA256 = "twi.cred.sha256"
ATTR_ISS_RID = "twi.cpr.iss_rid"
ATTR_STATUS_RID = "twi.status.rid"
MAX_VALUE = 4096


def pair_key(a: str, b: str) -> str:
    """Unambiguous text value for a pair of strings (compact JSON array)."""
    return json.dumps([a, b], separators=(",", ":"), ensure_ascii=False)


def _text(v: Any) -> str | None:
    if isinstance(v, str) and v and "\x00" not in v and len(v) <= MAX_VALUE:
        return v
    return None


def is_cpr(statement: Any) -> bool:
    he = getattr(statement, "hash_envelope", None)
    return statement.content_type == CPR_MEDIA_TYPE or (he is not None and he[1] == CPR_MEDIA_TYPE)


def attrs_for_statement(statement: Any) -> list[tuple[str, str]]:
    """Index pairs for a parsed ``verifier.statement.SignedStatement`` (empty if not a CPR or a
    status statement)."""
    if statement.content_type == STATUS_MEDIA_TYPE:
        return _status_attrs(statement)
    if not is_cpr(statement):
        return []
    cti = statement.cwt_claims.get(7)
    try:
        rid = _text(cti.decode("utf-8")) if isinstance(cti, bytes) else None
    except UnicodeDecodeError:
        rid = None
    if statement.hash_envelope is not None:
        return [(ATTR_RID, rid)] if rid else []
    payload = statement.payload
    if payload is None:
        return [(ATTR_RID, rid)] if rid else []
    try:
        rec = vcbor.loads(payload, max_depth=12)
    except VerificationError:
        return [(ATTR_RID, rid)] if rid else []
    if not isinstance(rec, dict) or rec.get("type") != CPR_TYPE:
        return [(ATTR_RID, rid)] if rid else []
    out: list[tuple[str, str]] = []
    if rid and rec.get("rid") == rid:
        out.append((ATTR_RID, rid))
    cred = rec.get("credential")
    if not isinstance(cred, dict):
        return out
    iss, jti = _text(cred.get("iss")), _text(cred.get("jti"))
    if iss and jti:
        out.append((ATTR_ISS_JTI, pair_key(iss, jti)))
    dn, serial = _text(cred.get("issuer_dn")), _text(cred.get("serial"))
    if dn and serial:
        out.append((ATTR_DN_SERIAL, pair_key(dn, serial.lower())))
    dg = cred.get("digest")
    h = _text(dg.get("sha256")) if isinstance(dg, dict) else None
    if h and len(h) == 64 and all(c in "0123456789abcdef" for c in h):
        out.append((ATTR_SHA256, h))
    return out


def _status_attrs(statement: Any) -> list[tuple[str, str]]:
    try:
        p = vcbor.loads(statement.payload, max_depth=4) if statement.payload is not None else None
    except VerificationError:
        return []
    if not isinstance(p, dict) or p.get("type") != STATUS_TYPE:
        return []
    rid = _text(p.get("rid"))
    return [(ATTR_STATUS_RID, rid)] if rid and rid == statement.sub else []
