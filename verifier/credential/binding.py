"""The binding between a credential and its record, both directions (``binding.*`` checks)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import VerificationError
from .parse import CredentialInfo
from .records import statement_rid


def check_binding(info: CredentialInfo, rec: dict[str, Any], st: Any, private: bool) -> None:
    """Both directions: the record names this credential; the credential's pointer (internal
    binding) names this record; a credential without a pointer (external binding) has only the
    first direction, its record found by the credential's identifiers and digest (which covers
    the absence of a pointer)."""
    c = rec["credential"]
    ptr = info.pointer
    if ptr is not None and rec.get("rid") != ptr.rid:
        raise VerificationError("binding.record-id", "the record's id is not the one the credential points at")
    if ptr is None and statement_rid(st) != rec.get("rid"):
        raise VerificationError("binding.record-id", "the record's id is not the statement's (cti)")
    dg = (c.get("digest") or {}).get("sha256")
    if dg != info.sha256:
        raise VerificationError("binding.digest", "the record names a different credential (SHA-256 differs)")
    if c.get("format") != info.format:
        raise VerificationError("binding.format", f"record is for a {c.get('format')}, credential is a {info.format}")
    if c.get("sub") != info.sub:
        raise VerificationError("binding.sub", "the record's workload identifier differs from the credential's")
    if info.format == "wit":
        if not info.jti or c.get("jti") != info.jti:
            raise VerificationError("binding.jti", "the record's jti differs from the credential's")
        if c.get("iss") != info.iss:
            raise VerificationError("binding.iss", "the record's iss differs from the credential's")
    else:
        if c.get("serial") != info.serial or c.get("issuer_dn") != info.issuer_dn:
            raise VerificationError("binding.serial", "the record's issuer DN / serial differ from the certificate's")
    if ptr is not None and c.get("pointer") != {"rid": ptr.rid, "log": ptr.log}:
        raise VerificationError("binding.pointer", "the record's copy of the pointer differs from the credential's")
    iss_id = (rec.get("issuer") or {}).get("id")
    if st.iss != iss_id:
        raise VerificationError("binding.issuer", "statement iss and the record's issuer id differ")
    if not private and st.sub != info.sub:
        raise VerificationError("binding.sub", "statement sub differs from the credential's workload identifier")


def digest_matches(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two in-toto digest sets name the same artefact: at least one algorithm in common and
    every common algorithm's value equal."""
    common = set(a) & set(b)
    return bool(common) and all(isinstance(a[k], str) and isinstance(b[k], str) and a[k].lower() == b[k].lower()
                                for k in common)


def check_workload_binding(info: CredentialInfo, rec: Mapping[str, Any], wprs: Sequence[Mapping[str, Any]],
                           ear_claims: Mapping[str, Any] | None) -> None:
    """The linked Workload Provenance is this workload's, and the attested artefacts are its.

    * every verified WPR names the credential's workload (``binding.workload-mismatch``);
    * the record's ``attestation.artifacts`` are what the verified EAR attests, and each is
      among the subjects of every verified WPR (``binding.attestation-mismatch``).
    """
    for doc in wprs:
        wid = (doc.get("predicate") or {}).get("workload_id")
        if wid != info.sub:
            raise VerificationError("binding.workload-mismatch",
                                    f"the linked workload provenance is for {wid!r}, the credential for {info.sub!r}")
    arts = (rec.get("attestation") or {}).get("artifacts")
    if arts is not None and (not isinstance(arts, list) or not all(
            isinstance(a, Mapping) and isinstance(a.get("digest"), Mapping) for a in arts)):
        raise VerificationError("record.schema", "attestation.artifacts must be an array of {digest}")
    if ear_claims is not None:
        from .ear import attested_artifacts

        attested = attested_artifacts(ear_claims)
        if attested != (arts or []):
            raise VerificationError("binding.attestation-mismatch",
                                    "the record's attested artefacts differ from those the EAR attests")
    for doc in wprs:
        subjects = [s.get("digest") for s in doc.get("subject") or [] if isinstance(s, Mapping)]
        for a in arts or []:
            if not any(isinstance(s, Mapping) and digest_matches(a["digest"], s) for s in subjects):
                raise VerificationError("binding.attestation-mismatch",
                                        f"attested artefact {dict(a['digest'])} is not a subject of the workload provenance")
