"""The EAR embedded in a record: digest, verifier id, signature by a trusted RATS Verifier."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from ..errors import VerificationError
from .trust import TrustConfig
from .wire import ATTESTED_ARTIFACTS_CLAIM

_HEX = re.compile(r"[0-9a-f]{32,128}")


def attested_artifacts(claims: Mapping[str, Any], check: str = "record.ear") -> list[dict[str, Any]]:
    """The artefact digests an EAR attests (:data:`ATTESTED_ARTIFACTS_CLAIM`, top level and in
    every submodule), normalised: ``[{"name"?, "digest": {alg: hex}}]`` sorted, duplicates dropped.
    An empty list: the EAR names no artefacts. A malformed claim raises ``check``."""
    found: list[Any] = []
    apps = [claims] + [a for a in (claims.get("submods") or {}).values() if isinstance(a, Mapping)]
    for app in apps:
        v = app.get(ATTESTED_ARTIFACTS_CLAIM)
        if v is None:
            continue
        if not isinstance(v, list) or not v:
            raise VerificationError(check, f"{ATTESTED_ARTIFACTS_CLAIM} must be a non-empty array")
        found += v
    out: dict[str, dict[str, Any]] = {}
    for a in found:
        dg = a.get("digest") if isinstance(a, Mapping) else None
        if not isinstance(dg, Mapping) or not dg or not all(
                isinstance(k, str) and isinstance(h, str) and _HEX.fullmatch(h) for k, h in dg.items()):
            raise VerificationError(check, f"{ATTESTED_ARTIFACTS_CLAIM}: each artefact needs digest {{alg: lowercase hex}}")
        name = a.get("name")
        if name is not None and not isinstance(name, str):
            raise VerificationError(check, f"{ATTESTED_ARTIFACTS_CLAIM}: name must be text")
        item = {"digest": dict(sorted(dg.items()))}
        if name is not None:
            item["name"] = name
        out[json.dumps(item, sort_keys=True)] = item
    return [out[k] for k in sorted(out)]


def verify_ear(rec: dict[str, Any], trust: TrustConfig) -> tuple[bool, dict[str, Any] | None]:
    att = rec["attestation"]
    ar = att.get("ar")
    if ar is None or not trust.verifier_keys:
        return False, None
    import jwt

    if not (isinstance(ar, list) and len(ar) >= 2 and isinstance(ar[1], bytes)):
        raise VerificationError("record.ear", "attestation.ar must be a CMW record [type, bstr, ind]")
    token = ar[1]
    if hashlib.sha256(token).hexdigest() != (att.get("ar_digest") or {}).get("sha256"):
        raise VerificationError("record.ear-digest", "the embedded EAR does not match ar_digest")
    try:
        tok = token.decode("ascii")
        header = jwt.get_unverified_header(tok)
        claims = jwt.decode(tok, options={"verify_signature": False})
    except (UnicodeDecodeError, jwt.PyJWTError) as e:
        raise VerificationError("record.ear", f"embedded EAR is not a JWT: {e}") from None
    vid = claims.get("ear_verifier_id", claims.get("ear.verifier-id"))
    if not isinstance(vid, Mapping) or dict(vid) != att.get("verifier_id"):
        raise VerificationError("record.ear-verifier", "the EAR's verifier id differs from the record's")
    alg = header.get("alg")
    if alg in (None, "none") or str(alg).startswith("HS"):
        raise VerificationError("record.ear", "bad EAR alg")
    for dev, build, key in trust.verifier_keys:
        if (dev is not None and dev != vid.get("developer")) or (build is not None and build != vid.get("build")):
            continue
        try:
            jwt.decode(tok, key, algorithms=[alg], options={"verify_exp": False, "verify_nbf": False,
                                                            "verify_iat": False, "verify_aud": False})
            return True, claims
        except jwt.PyJWTError:
            continue
    raise VerificationError("record.ear-signature", "the embedded EAR is not signed by a trusted verifier")
