"""The issuer's policies in the log (draft 5.3.2: the CPR binds the issuer and the issuance
policies in effect): checking that the policies a record references are logged, signed by the
record's issuer, and are the documents whose digests the record carries (``policy.*`` checks).

A record references each policy as ``{"id", "digest": {"sha256"}, "entry": "<log>/entries/<leaf hex>"}``
(``appraisal.policy`` and ``issuer.policy``). The policy statement: content type
``application/vnd.twi.{appraisal,issuance}-policy+{json,toml}`` (placeholders), CWT ``sub`` = the
policy id, payload = the policy document's bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from ..errors import VerificationError
from .wire import POLICY_MEDIA_TYPES


def policy_refs(rec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{"appraisal": ref, "issuance": ref}`` as the record states them."""
    out = {}
    for kind, ref in (("appraisal", (rec.get("appraisal") or {}).get("policy")),
                      ("issuance", (rec.get("issuer") or {}).get("policy"))):
        if isinstance(ref, Mapping):
            out[kind] = ref
    return out


def check_logged_policies(rec: Mapping[str, Any], record_issuer: str | None, candidates: list[tuple[bytes, Any]],
                          verify_receipts) -> dict[str, bytes]:
    """The documents of the record's policies, each found among ``candidates`` by its entry
    (leaf input), verified (``verify_receipts(ts, st)``), from the record's issuer, of the right
    kind and id, and hashing to the record's digest. Raises ``policy.missing`` /
    ``policy.unverified`` / ``policy.kind`` / ``policy.digest-mismatch``."""
    docs: dict[str, bytes] = {}
    for kind, ref in policy_refs(rec).items():
        entry = ref.get("entry")
        want = (ref.get("digest") or {}).get("sha256") if isinstance(ref.get("digest"), Mapping) else None
        if not isinstance(entry, str) or "/entries/" not in entry:
            raise VerificationError("policy.missing", f"the record references its {kind} policy by digest only "
                                                      f"(no log entry)")
        leaf = entry.rsplit("/entries/", 1)[1]
        mine = [(ts, st) for ts, st in candidates if st.leaf_input.hex() == leaf]
        if not mine:
            raise VerificationError("policy.missing", f"the logged {kind} policy {entry} was not given or fetched")
        ts, st = mine[0]
        try:
            verify_receipts(ts, st)
        except VerificationError as e:
            raise VerificationError("policy.unverified", f"the logged {kind} policy: {e}") from None
        if st.iss != record_issuer:
            raise VerificationError("policy.unverified", f"the logged {kind} policy is not the record issuer's")
        if POLICY_MEDIA_TYPES.get(st.content_type or "") != kind or st.sub != ref.get("id"):
            raise VerificationError("policy.kind", f"entry {entry} is not the {kind} policy {ref.get('id')!r}")
        if hashlib.sha256(st.payload or b"").hexdigest() != want:
            raise VerificationError("policy.digest-mismatch",
                                    f"the logged {kind} policy's SHA-256 is not the digest the record carries")
        docs[kind] = st.payload
    return docs
