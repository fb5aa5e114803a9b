"""The relying-party check: :func:`verify_credential` (offline), composed from the modules beside it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Mapping, Sequence

from ..errors import VerificationError
from .binding import check_binding, check_workload_binding
from .ear import verify_ear
from .logged_policy import check_logged_policies
from .parse import parse_credential
from .policies import CredentialVerification, Policy, StatusAffirming
from .records import classify, decode_record, statement_rid
from .signature import verify_wit_signature, verify_x509_signature
from .status import check_statuses
from .trust import TrustConfig, norm_url
from .wire import INTOTO_STATEMENT_TYPE


def verified_receipts(ts: bytes, st: Any, trust: TrustConfig, accepted_logs: list[str], what: str) -> list[Any]:
    from .. import transparent as vtransparent

    keys = trust.statement_keys()
    key = keys.get(st.kid) if st.kid is not None else None
    if key is None:
        raise VerificationError(f"{what}.issuer-key", "the statement's kid names no trusted issuer key")
    try:
        results = vtransparent.verify_transparent_statement(ts, trust.log_keys, issuer_key=key)
    except VerificationError as e:
        raise VerificationError(f"{what}.signature", f"{e.check}: {e.detail}") from None
    ok = [r for r in results if r.ok]
    if not ok:
        detail = "; ".join(f"{r.check}: {r.detail}" for r in results)
        raise VerificationError(f"{what}.receipt", f"no receipt verifies with the trusted log keys ({detail})")
    if accepted_logs:
        ok = [r for r in ok if r.issuer is not None and norm_url(r.issuer) in accepted_logs]
        if not ok:
            raise VerificationError(f"{what}.log", f"no verified receipt from the log(s) {accepted_logs}")
    return ok


def verify_wprs(rec: dict[str, Any], wpr_statements: list[tuple[bytes, Any]], trust: TrustConfig,
                 accepted_logs: list[str], documents: Sequence[bytes] = ()) -> list[dict[str, Any]]:
    """The Workload Provenance statements the record links (by leaf digest), verified. A private
    WPR (hash envelope) counts only with its document (``documents``, matched by SHA-256)."""
    out = []
    by_hash = {hashlib.sha256(d).digest(): d for d in documents}
    for rd in rec.get("workload_provenance") or []:
        want = (rd.get("digest") or {}).get("sha256") if isinstance(rd, Mapping) else None
        for ts, st in wpr_statements:
            if st.leaf_input.hex() != want:
                continue
            verified_receipts(ts, st, trust, accepted_logs, "wpr")
            private = st.hash_envelope is not None
            if private:
                if st.hash_envelope[0] != -16:
                    raise VerificationError("wpr.hash-alg", "only SHA-256 (-16) hash envelopes are supported")
                payload = by_hash.get(st.payload)
                if payload is None:
                    continue  # the document was not given: policy (e.g. SbomPresent) decides
            else:
                payload = st.payload
            try:
                doc = json.loads(payload)
            except (TypeError, ValueError) as e:
                raise VerificationError("wpr.payload", f"workload provenance is not JSON: {e}") from None
            if not isinstance(doc, dict) or doc.get("_type") != INTOTO_STATEMENT_TYPE:
                raise VerificationError("wpr.payload", "workload provenance is not an in-toto Statement v1")
            wid = (doc.get("predicate") or {}).get("workload_id") if isinstance(doc.get("predicate"), dict) else None
            if not private and st.sub != wid:  # a private WPR's subject is an opaque id
                raise VerificationError("binding.workload-mismatch",
                                        "the workload provenance statement's sub differs from its predicate's workload_id")
            out.append(doc)
    return out


def external_candidates(info: Any, cprs: list[tuple[bytes, Any]], trust: TrustConfig,
                        accepted: list[str]) -> list[tuple[bytes, Any]]:
    """External binding (draft 5.3.3.1): the credential has no pointer; its record is a public
    CPR, verified (trusted issuer key, receipt from an accepted log), that names its identifiers
    ((iss, jti) for a WIT, (issuer DN, serial) for an SVID). A record found by the identifiers
    that names another credential then fails the binding (``binding.digest``);
    records that do not verify are no account of this credential and are passed over."""
    out = []
    for ts, st in cprs:
        if st.hash_envelope is not None:
            continue  # private records are found by record id only
        try:
            c = decode_record(st.payload)["credential"]
        except VerificationError:
            continue
        ids = (info.iss, info.jti, c.get("iss"), c.get("jti")) if info.format == "wit" else \
            (info.issuer_dn, info.serial, c.get("issuer_dn"), c.get("serial"))
        if not (all(ids) and ids[:2] == ids[2:]):
            continue  # (a record naming this credential's digest names its identifiers too)
        try:
            verified_receipts(ts, st, trust, accepted, "record")
        except VerificationError:
            continue
        out.append((ts, st))
    if not out:
        raise VerificationError("binding.record-missing", "no verified Credential Provenance record names this credential")
    return out


def verify_credential_signature(info: Any, trust: TrustConfig, now: float, check_time: bool = True,
                                leeway: int = 60) -> Any:
    """The credential's own signature and validity; returns the issuer key that verified it."""
    if info.format == "wit":
        return verify_wit_signature(info, trust, now, check_time, leeway)
    return verify_x509_signature(info, trust, now, check_time, leeway)


def _signed_by(st: Any, key: Any) -> bool:
    from .. import keys as vkeys

    try:
        if st.kid != vkeys.thumbprint(key):
            return False
        st.verify(key)
        return True
    except (VerificationError, ValueError, TypeError):
        return False


def _content(st: Any) -> bytes:
    """What identifies a claim: the digest of the signed content (the leaf when detached)."""
    return st.signed_content_digest() or st.leaf_input


def verify_credential(credential: bytes | str, statements: Sequence[bytes], trust: TrustConfig, *,
                      policy: Policy | None = None, record: bytes | None = None, now: float | None = None,
                      check_time: bool = True, leeway: int = 60, wpt: bytes | str | None = None,
                      wpt_audience: str | None = None, wpr_documents: Sequence[bytes] = (),
                      check_policies: bool = False) -> CredentialVerification:
    """Verify a credential against its transparent provenance statement(s); see the module doc.

    ``record``: the plaintext Credential Provenance record, needed when the log holds only
    a hash envelope (private records). Raises VerificationError on any failure.
    """
    from ..statement import SignedStatement

    t = time.time() if now is None else float(now)
    info = parse_credential(credential)
    ikey = verify_credential_signature(info, trust, t, check_time, leeway)
    wpt_claims = None
    if wpt is not None:
        from .wpt import verify_wpt

        wpt_claims = verify_wpt(wpt, info, now=t, audience=wpt_audience, leeway=leeway)
    cprs, wprs, statuses, pols = [], [], [], []
    for ts in statements:
        st = SignedStatement.parse(ts)
        kind = classify(st)
        if kind == "cpr":
            cprs.append((ts, st))
        elif kind == "wpr":
            wprs.append((ts, st))
        elif kind == "status":
            statuses.append((ts, st))
        elif kind == "policy":
            pols.append((ts, st))
    if info.pointer is not None:
        accepted = [norm_url(u) for u in trust.logs] or [norm_url(info.pointer.log)]
        mine = [(ts, st) for ts, st in cprs if statement_rid(st) == info.pointer.rid]
        if not mine:
            raise VerificationError("binding.record-missing",
                                    f"no Credential Provenance statement for record {info.pointer.rid}")
    else:
        if not trust.logs:
            raise VerificationError("binding.no-pointer", "the credential carries no provenance pointer; name the "
                                    "log that holds its record (--log URL) to find it by its identifiers")
        accepted = [norm_url(u) for u in trust.logs]
        mine = external_candidates(info, cprs, trust, accepted)
    # only records signed by the credential's issuer count (the key that verified the credential:
    # the issuer signs its WITs, or is the CA of its SVIDs, and its provenance statements with
    # one key); if there is none, the checks below say what is wrong with the others
    mine = [(ts, st) for ts, st in mine if _signed_by(st, ikey)] or mine
    # statements with the same signed content are one claim (re-encodings, re-signatures)
    if len({_content(st) for _, st in mine}) > 1:
        raise VerificationError("binding.ambiguous", f"{len({_content(st) for _, st in mine})} different "
                                f"statements claim the record of this credential")
    last_err: VerificationError | None = None
    for ts, st in mine:  # copies of one claim (e.g. with different receipts): the first that verifies
        try:
            receipts = verified_receipts(ts, st, trust, accepted, "record")
            break
        except VerificationError as e:
            last_err = e
    else:
        assert last_err is not None
        raise last_err
    private = st.hash_envelope is not None
    if private:
        if st.hash_envelope[0] != -16:
            raise VerificationError("record.hash-alg", "only SHA-256 (-16) hash envelopes are supported")
        if record is None:
            raise VerificationError("record.private", "the log holds a hash envelope; the plaintext record is needed")
        if hashlib.sha256(record).digest() != st.payload:
            raise VerificationError("record.digest", "the plaintext record does not match the logged hash")
        data = record
    else:
        data = st.payload
        if record is not None and record != data:
            raise VerificationError("record.digest", "the supplied record differs from the logged one")
    rec = decode_record(data)
    check_binding(info, rec, st, private)
    status_found = check_statuses(rec["rid"], st, (rec.get("issuer") or {}).get("id"), statuses,
                                  lambda ts_, st_: verified_receipts(ts_, st_, trust, accepted, "status"))
    policies = check_logged_policies(rec, (rec.get("issuer") or {}).get("id"), pols,
                                     lambda ts_, st_: verified_receipts(ts_, st_, trust, accepted, "policy")) \
        if check_policies else {}
    ear_ok, ear_claims = verify_ear(rec, trust)
    wpr_docs = verify_wprs(rec, wprs, trust, accepted, wpr_documents)
    check_workload_binding(info, rec, wpr_docs, ear_claims)
    res = CredentialVerification(credential=info, record=rec, record_statement=st, receipts=receipts,
                                 workload_provenance=wpr_docs,
                                 ear_verified=ear_ok, ear_claims=ear_claims, now=t, private=private,
                                 wpt_claims=wpt_claims, statuses=status_found,
                                 policies=policies)
    (policy or StatusAffirming()).verify(res)
    return res
