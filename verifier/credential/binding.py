"""The binding between a credential and its record, both directions (``binding.*`` checks)."""

from __future__ import annotations

from typing import Any

from ..errors import VerificationError
from .parse import CredentialInfo


def check_binding(info: CredentialInfo, rec: dict[str, Any], st: Any, private: bool) -> None:
    c = rec["credential"]
    ptr = info.pointer
    assert ptr is not None
    if rec.get("rid") != ptr.rid:
        raise VerificationError("binding.record-id", "the record's id is not the one the credential points at")
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
    if c.get("pointer") != {"rid": ptr.rid, "log": ptr.log}:
        raise VerificationError("binding.pointer", "the record's copy of the pointer differs from the credential's")
    iss_id = (rec.get("issuer") or {}).get("id")
    if st.iss != iss_id:
        raise VerificationError("binding.issuer", "statement iss and the record's issuer id differ")
    if not private and st.sub != info.sub:
        raise VerificationError("binding.sub", "statement sub differs from the credential's workload identifier")
