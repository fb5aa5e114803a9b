"""Replaying a logged appraisal (``twi-issuer replay``): an auditor takes a Credential
Provenance record from the log, the EAR it embeds and the appraisal policy it references (also
from the log, checked against the record's digest) and appraises the EAR again under that
policy, at the record's time, with the Verifier keys the auditor trusts. Any decision the
policy would not have made is reported: a refusal, another status, other submodule results.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from verifier import VerificationError
from verifier import transparent as vtransparent
from verifier.credential.logged_policy import check_logged_policies, policy_refs
from verifier.credential.records import classify, decode_record, statement_rid
from verifier.statement import SignedStatement

from .appraisal import AppraisalPolicy, VerifierKeys, appraise
from .client import ScrapiClient
from .errors import IssuerError


def _verify(ts: bytes, log_keys: Any, issuer_key: Any, what: str) -> None:
    try:
        results = vtransparent.verify_transparent_statement(ts, log_keys, issuer_key=issuer_key)
    except VerificationError as e:
        raise IssuerError(f"replay.{what}", f"the {what} statement does not verify: {e}") from None
    if not any(r.ok for r in results):
        raise IssuerError(f"replay.{what}", f"the {what} statement has no receipt that verifies")


def replay(rid: str, *, client: ScrapiClient, log_keys: Any, issuer_key: Any, verifier_keys: VerifierKeys,
           record: bytes | None = None) -> dict[str, Any]:
    """Replay the appraisal of record ``rid``; returns a report whose ``discrepancies`` is empty
    when the logged policy makes the recorded decision. ``record``: the plaintext of a private record."""
    import hashlib

    found = [(ts, SignedStatement.parse(ts)) for ts in client.lookup(rid=rid)]
    mine = [(ts, st) for ts, st in found if classify(st) == "cpr" and statement_rid(st) == rid]
    if not mine:
        raise IssuerError("replay.record-missing", f"the log has no record {rid}")
    ts, st = mine[0]
    _verify(ts, log_keys, issuer_key, "record")
    if st.hash_envelope is not None:
        if record is None or hashlib.sha256(record).digest() != st.payload:
            raise IssuerError("replay.private", "a private record: give its plaintext (it must match the logged hash)")
        data = record
    else:
        data = st.payload
    try:
        rec = decode_record(data)
    except VerificationError as e:
        raise IssuerError("replay.record", str(e)) from None
    att = rec["attestation"]
    ar = att.get("ar")
    if not (isinstance(ar, list) and len(ar) >= 2 and isinstance(ar[1], bytes)):
        raise IssuerError("replay.no-ear", "the record does not embed the EAR (issuance policy embed_ear): "
                                           "nothing to replay")
    cands = []
    for ref in policy_refs(rec).values():
        if isinstance(ref.get("entry"), str):
            pts = client.statement(ref["entry"])
            cands.append((pts, SignedStatement.parse(pts)))
    try:
        docs = check_logged_policies(rec, st.iss, cands, lambda t_, s_: _verify(t_, log_keys, issuer_key, "policy"))
    except (VerificationError, IssuerError) as e:
        raise IssuerError(getattr(e, "check", "replay.policy"), getattr(e, "detail", str(e))) from None
    raw = docs["appraisal"]
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = tomllib.loads(raw.decode())
    policy = AppraisalPolicy.from_obj(obj, raw)
    recorded = {"decision": (rec.get("appraisal") or {}).get("decision"), "status": att.get("ear_status"),
                "submods": att.get("submods"), "policy": policy.id}
    report: dict[str, Any] = {"rid": rid, "recorded": recorded, "replayed": None, "discrepancies": []}
    try:
        a = appraise(ar[1].decode("ascii"), policy, verifier_keys, nonce=att.get("eat_nonce"), now=rec.get("iat"))
    except IssuerError as e:
        report["discrepancies"].append(f"the logged policy would have refused: {e.check}: {e.detail}")
        return report
    report["replayed"] = {"decision": "accepted", "status": a.status, "submods": a.submods, "policy": a.policy_id}
    for k in ("decision", "status", "submods"):
        if report["replayed"][k] != recorded[k]:
            report["discrepancies"].append(f"{k}: recorded {recorded[k]!r}, the logged policy gives "
                                           f"{report['replayed'][k]!r}")
    if a.ear_sha256 != (att.get("ar_digest") or {}).get("sha256"):
        report["discrepancies"].append("the embedded EAR is not the one whose digest the record carries")
    return report
