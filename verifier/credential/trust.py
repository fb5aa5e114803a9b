"""What a relying party trusts: :class:`TrustConfig` and RATS verifier keys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import VerificationError


@dataclass
class TrustConfig:
    """What a relying party trusts.

    ``log_keys``: kid -> public key of the transparency log (receipts).
    ``issuer_keys``: kid (RFC 9679 thumbprint) -> public key of credential issuers (WIT
    signatures and provenance statements). ``ca_certs``: X.509 CAs for SVIDs (their public
    keys also count as issuer keys). ``verifier_keys``: (developer, build, key) of RATS
    Verifiers whose EARs are accepted. ``logs``: accepted log URLs (receipt issuers); empty
    means "the log named by the credential's pointer".
    """

    log_keys: dict[bytes, Any]
    issuer_keys: dict[bytes, Any] = field(default_factory=dict)
    ca_certs: list[Any] = field(default_factory=list)
    verifier_keys: list[tuple[str | None, str | None, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def statement_keys(self) -> dict[bytes, Any]:
        from .. import keys as vkeys

        out = dict(self.issuer_keys)
        for ca in self.ca_certs:
            pub = ca.public_key()
            out[vkeys.thumbprint(pub)] = pub
        return out


def load_verifier_keys(obj: Mapping[str, Any]) -> list[tuple[str | None, str | None, Any]]:
    """``{"verifiers": [{"id": {"developer", "build"?}, "keys": [JWK]}]}`` or a JWKS."""
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    def load(jwk):
        cls = {"EC": ECAlgorithm, "OKP": OKPAlgorithm, "RSA": RSAAlgorithm}.get(jwk.get("kty"))
        if cls is None or "d" in jwk:
            raise VerificationError("trust.verifier-keys", "verifier keys must be public EC, OKP or RSA JWKs")
        return cls.from_jwk(json.dumps(jwk))

    out = []
    if "verifiers" in obj:
        for e in obj["verifiers"]:
            vid = e.get("id") or {}
            out += [(vid.get("developer"), vid.get("build"), load(j)) for j in e.get("keys", [])]
    elif "keys" in obj:
        out += [(None, None, load(j)) for j in obj["keys"]]
    else:
        raise VerificationError("trust.verifier-keys", "expected {'verifiers': [...]} or {'keys': [...]}")
    return out


def norm_url(u: str) -> str:
    return u.rstrip("/")
