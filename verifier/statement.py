"""SCITT Signed Statements (RFC 9943): header validation, signature and x5chain checks.

The statement bytes and leaf input follow docs/ARCHITECTURE.md (WIRE.md 3.6): the received
COSE_Sign1 with its unprotected map replaced by ``a0``, every other byte as received;
leaf input = SHA-256(statement bytes).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

from cryptography import x509 as cx509

from . import cbor, cose
from .errors import VerificationError
from .x509 import cert_hash, validate_chain

__all__ = ["SignedStatement", "HashEnvelope", "HDR_ALG", "HDR_CTY", "HDR_KID", "HDR_CWT", "HDR_TYP", "HDR_X5CHAIN", "HDR_X5T"]

HDR_ALG, HDR_CTY, HDR_KID, HDR_CWT, HDR_TYP, HDR_X5CHAIN, HDR_X5T = 1, 3, 4, 15, 16, 33, 34
HDR_PAYLOAD_HASH_ALG, HDR_PREIMAGE_CTY, HDR_PAYLOAD_LOCATION = 258, 259, 260
MAX_ISS_LEN = 8192
MAX_X5CHAIN = 16  # certificates in one x5chain (path validation allows depth 8)
# The protected labels a Signed Statement's checks process: the only ones ``crit`` may name.
UNDERSTOOD_LABELS = frozenset(
    {HDR_ALG, HDR_CTY, HDR_KID, HDR_CWT, HDR_TYP, HDR_X5CHAIN, HDR_X5T,
     HDR_PAYLOAD_HASH_ALG, HDR_PREIMAGE_CTY, HDR_PAYLOAD_LOCATION}
)


class HashEnvelope(NamedTuple):
    """RFC 9995 hash-envelope headers: 258, 259 (optional), 260 (optional)."""

    hash_alg: int
    preimage_content_type: str | int | None
    location: str | None


@dataclass
class SignedStatement:
    """A parsed and header-validated Signed Statement."""

    sign1: cose.Sign1
    alg: int
    iss: str
    sub: str
    kid: bytes | None
    x5chain: list[bytes]
    x5t: tuple[Any, bytes] | None
    content_type: str | int | None
    typ: str | int | None
    hash_envelope: HashEnvelope | None
    statement_bytes: bytes
    leaf_input: bytes

    @property
    def payload(self) -> bytes | None:
        """The attached payload (None when detached)."""
        return self.sign1.payload

    @property
    def cwt_claims(self) -> dict:
        """The CWT Claims map (label 15)."""
        return self.sign1.protected[HDR_CWT]

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = 1 << 20, max_depth: int = 16) -> "SignedStatement":
        """Decode ``data`` strictly and validate the RFC 9943 / RFC 9995 header rules."""
        msg = cose.decode_sign1(data, max_size=max_size, max_depth=max_depth)
        return cls.from_sign1(msg)

    @classmethod
    def from_sign1(cls, msg: cose.Sign1) -> "SignedStatement":
        """Validate the headers of an already decoded COSE_Sign1."""
        p, u = msg.protected, msg.unprotected
        try:
            cose.check_crit(p, UNDERSTOOD_LABELS)
        except VerificationError as exc:
            raise VerificationError("statement.crit", exc.detail) from None
        alg = msg.alg
        if alg is None:
            raise VerificationError("statement.alg", "alg (1) must be an int in the protected header")
        claims = p.get(HDR_CWT)
        if not isinstance(claims, dict):
            raise VerificationError("statement.cwt-claims", "CWT Claims (15) map missing from the protected header")
        iss, sub = claims.get(1), claims.get(2)
        if not isinstance(iss, str) or not isinstance(sub, str):
            raise VerificationError("statement.cwt-claims", "CWT Claims need iss (1) and sub (2) text strings")
        kid = p.get(HDR_KID)
        if kid is not None and not isinstance(kid, bytes):
            raise VerificationError("statement.kid", "kid (4) must be a byte string")
        x5chain = _x5chain(p.get(HDR_X5CHAIN)) if HDR_X5CHAIN in p else []
        x5t = _x5t(p[HDR_X5T]) if HDR_X5T in p else None
        # Identity comes from the protected header only: RFC 9943 lets an x5chain sit in the
        # unprotected header beside a protected x5t, but the log stores the statement with that
        # header emptied, so such a chain could never be checked again (issue 11 item 4). It is
        # ignored here; a statement identified only by x5t then has no chain to validate.
        x509_id = HDR_X5CHAIN in p or HDR_X5T in p
        if not x509_id and kid is None:
            raise VerificationError("statement.kid", "kid (4) required when neither x5t nor x5chain is protected")
        if x509_id:
            _check_iss_uri(iss)
        if x5t is not None and x5chain:
            if cert_hash(x5t[0], x5chain[0]) != x5t[1]:
                raise VerificationError("statement.x5t", "x5t does not match the x5chain leaf")
        hash_env = _hash_envelope(p, u)
        cty = p.get(HDR_CTY)
        if cty is not None and not isinstance(cty, (str, int)):
            raise VerificationError("statement.content-type", "content type (3) must be tstr or uint")
        stmt = msg.statement_bytes()
        return cls(
            sign1=msg,
            alg=alg,
            iss=iss,
            sub=sub,
            kid=kid,
            x5chain=x5chain,
            x5t=x5t,
            content_type=cty,
            typ=p.get(HDR_TYP),
            hash_envelope=hash_env,
            statement_bytes=stmt,
            leaf_input=hashlib.sha256(stmt).digest(),
        )

    def signed_content_digest(self, payload: bytes | None = None) -> bytes | None:
        """SHA-256 of what the signature covers: the Sig_structure ``["Signature1", protected,
        h'', payload]`` (RFC 9052 4.4). Two statements with the same digest make the same
        claim (same protected header bytes, same payload) whatever their outer CBOR encoding,
        unprotected header or signature (an ECDSA (r, n-s) twin, or a fresh signature). A
        detached payload must be given as ``payload``; None when there is none."""
        if payload is None:
            payload = self.sign1.payload
        if payload is None:
            return None
        prot = self.sign1.protected_raw
        h = hashlib.sha256(cose.sig_structure(prot, b"")[:-1])  # everything up to the payload's head
        h.update(cbor.encode_head(2, len(payload)))
        h.update(payload)
        return h.digest()

    def outer_is_deterministic(self) -> bool:
        """True when the heads of the COSE_Sign1's outer items (protected, payload and
        signature byte strings) use the shortest form (RFC 8949 4.2.1); the tag and array
        heads are checked by the decoder, the unprotected map is not part of the statement."""
        m = self.sign1
        n = 2 + _head_len(len(m.protected_raw)) + len(m.protected_raw) + 1
        n += 1 if m.payload is None else _head_len(len(m.payload)) + len(m.payload)
        n += _head_len(len(m.signature)) + len(m.signature)
        return n == len(self.statement_bytes)

    def verify(
        self,
        key: Any = None,
        *,
        trust_anchors: Sequence[cx509.Certificate] | None = None,
        payload: bytes | None = None,
        at_time: datetime.datetime | None = None,
        allowed_algs: Iterable[int] | None = None,
    ) -> None:
        """Verify the issuer signature with ``key``, or with the x5chain leaf after path
        validation to ``trust_anchors``. A detached payload must be supplied as ``payload``.
        """
        if self.sign1.payload is None and payload is None:
            raise VerificationError("statement.payload-missing", "payload is detached and was not supplied")
        if key is None:
            if not trust_anchors:
                raise VerificationError("statement.no-key", "neither a key nor trust anchors were given")
            if not self.x5chain:
                raise VerificationError("statement.x5chain", "no x5chain to validate against trust anchors")
            key = validate_chain(self.x5chain, trust_anchors, at_time=at_time).public_key()
        try:
            cose.verify_sign1(self.sign1, key, payload=payload, allowed_algs=allowed_algs)
        except VerificationError as exc:
            raise VerificationError(exc.check.replace("cose.", "statement.", 1), exc.detail) from None


def _head_len(n: int) -> int:
    """Bytes of the shortest CBOR head for argument ``n``."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _x5chain(v: Any) -> list[bytes]:
    if isinstance(v, bytes):
        return [v]
    if isinstance(v, list) and 1 <= len(v) <= MAX_X5CHAIN and all(isinstance(c, bytes) for c in v):
        # RFC 9360 says an array holds 2 or more; a 1-element array is tolerated on input.
        return list(v)
    raise VerificationError("statement.x5chain", f"x5chain (33) must be a bstr or an array of 1..{MAX_X5CHAIN} bstr")


def _x5t(v: Any) -> tuple[Any, bytes]:
    if (
        isinstance(v, list)
        and len(v) == 2
        and isinstance(v[0], (int, str))
        and not isinstance(v[0], bool)
        and isinstance(v[1], bytes)
    ):
        return v[0], v[1]
    raise VerificationError("statement.x5t", "x5t (34) must be [hashAlg, hashValue]")


def _check_iss_uri(iss: str) -> None:
    if not 1 <= len(iss) <= MAX_ISS_LEN:
        raise VerificationError("statement.iss", f"iss must be 1..{MAX_ISS_LEN} characters")
    scheme, sep, rest = iss.partition(":")
    if (
        not sep
        or not rest
        or not scheme[:1].isalpha()
        or not all(c.isalnum() or c in "+-." for c in scheme)
        or not scheme.isascii()
        or any(c.isspace() for c in iss)
    ):
        raise VerificationError("statement.iss", "iss must be a URI when x5t/x5chain identify the issuer")


def _hash_envelope(p: dict, u: dict) -> HashEnvelope | None:
    for label in (HDR_PAYLOAD_HASH_ALG, HDR_PREIMAGE_CTY, HDR_PAYLOAD_LOCATION):
        if label in u:
            raise VerificationError("statement.hash-envelope", f"label {label} must not be unprotected")
    present = [lbl for lbl in (HDR_PAYLOAD_HASH_ALG, HDR_PREIMAGE_CTY, HDR_PAYLOAD_LOCATION) if lbl in p]
    if not present:
        return None
    if HDR_PAYLOAD_HASH_ALG not in p:
        raise VerificationError("statement.hash-envelope", "258 (payload hash alg) required with 259/260")
    if HDR_CTY in p or HDR_CTY in u:
        raise VerificationError("statement.hash-envelope", "content type (3) must be absent in a hash envelope")
    halg = p[HDR_PAYLOAD_HASH_ALG]
    if not isinstance(halg, int) or isinstance(halg, bool):
        raise VerificationError("statement.hash-envelope", "258 must be an int")
    pct = p.get(HDR_PREIMAGE_CTY)
    if pct is not None and not isinstance(pct, (str, int)):
        raise VerificationError("statement.hash-envelope", "259 must be tstr or uint")
    loc = p.get(HDR_PAYLOAD_LOCATION)
    if loc is not None and not isinstance(loc, str):
        raise VerificationError("statement.hash-envelope", "260 must be tstr")
    return HashEnvelope(halg, pct, loc)
