"""COSE_Sign1 (RFC 9052) decode, encode, sign and verify, with `cryptography`.

Decoding is strict and keeps the received byte spans: the protected header, payload and
signature are never re-encoded, so the SCITT "statement bytes" (unprotected map replaced
by ``a0``) and the Sig_structure are built from exactly the bytes the signer produced.

Algorithms: ES256 (-7), ES384 (-35), ES512 (-36), ESP256/384/512 (-9/-51/-52, RFC 9864),
EdDSA (-8) and Ed25519 (-19, RFC 9864), PS256/384/512 (-37/-38/-39). ECDSA signatures are
the fixed-length ``r || s`` of RFC 9053, never DER.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from . import cbor
from .errors import VerificationError

__all__ = [
    "ES256",
    "ES384",
    "ES512",
    "EDDSA",
    "PS256",
    "ALG_NAMES",
    "Sign1",
    "decode_sign1",
    "encode_sign1",
    "sign1",
    "sign_tbs",
    "verify_tbs",
    "verify_sign1",
    "sig_structure",
    "alg_for_key",
    "check_crit",
    "HDR_CRIT",
]

ES256, ES384, ES512 = -7, -35, -36
ESP256, ESP384, ESP512 = -9, -51, -52
EDDSA, ED25519 = -8, -19
PS256, PS384, PS512 = -37, -38, -39
HDR_CRIT = 2

ALG_NAMES = {
    ES256: "ES256",
    ES384: "ES384",
    ES512: "ES512",
    ESP256: "ESP256",
    ESP384: "ESP384",
    ESP512: "ESP512",
    EDDSA: "EdDSA",
    ED25519: "Ed25519",
    PS256: "PS256",
    PS384: "PS384",
    PS512: "PS512",
}

# alg -> (curve name, hash, coordinate size)
_ECDSA = {
    ES256: ("secp256r1", hashes.SHA256, 32),
    ESP256: ("secp256r1", hashes.SHA256, 32),
    ES384: ("secp384r1", hashes.SHA384, 48),
    ESP384: ("secp384r1", hashes.SHA384, 48),
    ES512: ("secp521r1", hashes.SHA512, 66),
    ESP512: ("secp521r1", hashes.SHA512, 66),
}
_PSS = {PS256: hashes.SHA256, PS384: hashes.SHA384, PS512: hashes.SHA512}
_EDDSA = (EDDSA, ED25519)

_CURVE_ALG = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}

# Pre-built hash/padding objects: building them per call costs measurable time.
_ECDSA_OBJ = {alg: ec.ECDSA(h()) for alg, (_, h, _) in _ECDSA.items()}
_PSS_OBJ = {
    alg: (padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h()) for alg, h in _PSS.items()
}

_SIG1_PREFIX = b"\x84\x6aSignature1"
# {396: {-1: [ ... : the start of the usual RFC 9942 inclusion receipt's unprotected header
_RECEIPT_VDP1 = b"\xa1\x19\x01\x8c\xa1\x20\x81"


@dataclass
class Sign1:
    """A decoded COSE_Sign1 with the raw spans needed to rebuild signed bytes verbatim."""

    protected_raw: bytes
    protected: dict
    unprotected: dict
    payload: bytes | None
    signature: bytes
    raw: bytes = field(default=b"", repr=False)
    # raw[2:unprotected_start] is the protected bstr item; raw[unprotected_end:] is
    # the payload item followed by the signature item.
    unprotected_start: int = field(default=0, repr=False)
    unprotected_end: int = field(default=0, repr=False)

    def statement_bytes(self) -> bytes:
        """The message with its unprotected map replaced by ``a0``, other bytes as received."""
        if not self.raw:
            return encode_sign1(self.protected_raw, {}, self.payload, self.signature)
        raw = self.raw
        return b"\xd2\x84" + raw[2 : self.unprotected_start] + b"\xa0" + raw[self.unprotected_end :]

    def tbs(self, payload: bytes | None = None, external_aad: bytes = b"") -> bytes:
        """Sig_structure ``["Signature1", protected, external_aad, payload]`` (RFC 9052 4.4).

        ``payload`` is required when the message payload is detached (nil).
        """
        if payload is None:
            payload = self.payload
        if payload is None:
            raise VerificationError("cose.payload-missing", "detached payload and none supplied")
        return sig_structure(self.protected_raw, payload, external_aad)

    @property
    def alg(self) -> int | None:
        """The protected ``alg`` (label 1), if it is an int."""
        a = self.protected.get(1)
        return a if isinstance(a, int) and not isinstance(a, bool) else None


def sig_structure(protected_raw: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """Encode the Signature1 Sig_structure (the bytes that are signed)."""
    return b"".join(
        (
            _SIG1_PREFIX,
            cbor.encode_head(2, len(protected_raw)),
            protected_raw,
            cbor.encode_head(2, len(external_aad)),
            external_aad,
            cbor.encode_head(2, len(payload)),
            payload,
        )
    )


# --- decoding ---------------------------------------------------------------------------


def decode_sign1(data: bytes, *, max_size: int = 1 << 20, max_depth: int = 16) -> Sign1:
    """Strictly decode a tagged COSE_Sign1 (tag 18 encoded as the single byte ``d2``).

    Raises VerificationError (checks ``cose.*`` and ``cbor.*``) for anything else: wrong
    tag, not 4 items, protected header not a map in a bstr, unprotected not a map,
    payload not bstr/nil, signature not bstr, trailing bytes, indefinite lengths,
    oversize input, nesting deeper than ``max_depth``, duplicate header labels.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VerificationError("cose.type", "input is not bytes")
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n > max_size:
        raise VerificationError("cose.size", f"message larger than {max_size} bytes")
    if n < 2 or data[0] != 0xD2:
        raise VerificationError("cose.tag", "not a COSE_Sign1 (tag 18)")
    if data[1] != 0x84:
        raise VerificationError("cose.structure", "COSE_Sign1 must be an array of exactly 4 items")
    # protected: bstr
    major, ln, p = cbor.head(data, 2, n)
    if major != 2:
        raise VerificationError("cose.protected", "protected header is not a byte string")
    if ln > n - p:
        raise VerificationError("cbor.truncated", "protected header longer than the message")
    protected_raw = data[p : p + ln]
    p += ln
    protected = _decode_header_map(protected_raw, max_depth - 1, "cose.protected")
    # unprotected: map
    u_start = p
    if p >= n or data[p] >> 5 != 5:
        raise VerificationError("cose.unprotected", "unprotected header is not a map")
    if data[p] == 0xA0:
        unprotected: dict = {}
        p += 1
    elif data[p : p + 7] == _RECEIPT_VDP1 and p + 7 < n and data[p + 7] >> 5 == 2:
        # hot path: a receipt's {396: {-1: [bstr]}} (one bstr-wrapped inclusion proof)
        _, ln, q = cbor.head(data, p + 7, n)
        if ln > n - q:
            raise VerificationError("cbor.truncated", "proof longer than the message")
        unprotected = {396: {-1: [data[q : q + ln]]}}
        p = q + ln
    else:
        unprotected, q = _decode_map(data, p, n, max_depth - 1, "cose.unprotected")
        p = q
    u_end = p
    if HDR_CRIT in unprotected:
        raise VerificationError("cose.crit", "crit (2) must be in the protected header")
    # payload: bstr or nil
    if p >= n:
        raise VerificationError("cbor.truncated", "message ends before the payload")
    if data[p] == 0xF6:
        payload = None
        p += 1
    else:
        major, ln, p = cbor.head(data, p, n)
        if major != 2:
            raise VerificationError("cose.payload", "payload is neither a byte string nor nil")
        if ln > n - p:
            raise VerificationError("cbor.truncated", "payload longer than the message")
        payload = data[p : p + ln]
        p += ln
    # signature: bstr
    major, ln, p = cbor.head(data, p, n)
    if major != 2:
        raise VerificationError("cose.signature-format", "signature is not a byte string")
    if ln > n - p:
        raise VerificationError("cbor.truncated", "signature longer than the message")
    signature = data[p : p + ln]
    p += ln
    if p != n:
        raise VerificationError("cose.trailing-bytes", f"{n - p} bytes after the COSE_Sign1")
    return Sign1(protected_raw, protected, unprotected, payload, signature, data, u_start, u_end)


def _decode_header_map(raw: bytes, max_depth: int, check: str) -> dict:
    """Decode the serialized protected header map (empty bstr = empty map)."""
    if not raw:
        return {}
    if raw[0] >> 5 != 5:
        raise VerificationError(check, "protected header is not a CBOR map")
    if raw == b"\xa0":
        return {}
    hdr, end = _decode_map(raw, 0, len(raw), max_depth, check)
    if end != len(raw):
        raise VerificationError(check, "trailing bytes inside the protected header")
    if HDR_CRIT in hdr:
        _check_crit_form(hdr)
    return hdr


def _check_crit_form(hdr: dict) -> None:
    """RFC 9052 3.1 ``crit`` (2): a non-empty array of distinct int/tstr labels, each of them
    present in the protected header."""
    crit = hdr[HDR_CRIT]
    if not isinstance(crit, list) or not crit:
        raise VerificationError("cose.crit", "crit (2) must be a non-empty array of labels")
    seen = set()
    for label in crit:
        if not (type(label) is int or isinstance(label, str)):
            raise VerificationError("cose.crit", "crit (2) labels must be ints or text strings")
        if label in seen:
            raise VerificationError("cose.crit", f"crit (2) names label {cbor.brief(label)} twice")
        seen.add(label)
        if label not in hdr:
            raise VerificationError("cose.crit", f"crit (2) names label {cbor.brief(label)}, absent from the protected header")


def check_crit(protected: dict, understood: frozenset | set) -> None:
    """Refuse a message whose ``crit`` (2) names a label the application does not process
    (RFC 9052 3.1: "the recipient MUST ... reject the message"). The form of ``crit`` is
    already checked when the protected header is decoded."""
    crit = protected.get(HDR_CRIT)
    if crit is not None:
        for label in crit:
            if label not in understood:
                raise VerificationError("cose.crit", f"critical header label {cbor.brief(label)} is not understood")


def _decode_map(data: bytes, pos: int, end: int, max_depth: int, check: str) -> tuple[dict, int]:
    """Decode a header map at ``pos`` in header mode (RFC 9052: labels int/tstr in their
    shortest encoding, no duplicates at any depth, at most :data:`cbor.HEADER_MAX_LABELS`
    labels per map and :data:`cbor.HEADER_MAX_ITEMS` items in the header)."""
    if pos >= end or data[pos] >> 5 != 5:
        raise VerificationError(check, "header is not a map")
    try:
        hdr, q = cbor.decode_item(
            data, pos, end, max_depth=max_depth, max_items=cbor.HEADER_MAX_ITEMS,
            header_labels=cbor.HEADER_MAX_LABELS,
        )
    except VerificationError as exc:
        if exc.check in _HEADER_CHECKS:
            raise VerificationError(check, exc.detail) from None
        raise
    return hdr, q


# header-specific refusals reported under the header's check (cose.protected / cose.unprotected)
_HEADER_CHECKS = frozenset({"cbor.duplicate-key", "cbor.key-type", "cbor.labels", "cbor.non-shortest"})


# --- encoding ---------------------------------------------------------------------------


def encode_sign1(protected: dict | bytes, unprotected: dict, payload: bytes | None, signature: bytes) -> bytes:
    """Encode a tagged COSE_Sign1; a dict protected header gets deterministic encoding."""
    if isinstance(protected, dict):
        protected = encode_protected(protected)
    return b"".join(
        (
            b"\xd2\x84",
            cbor.encode_bstr(protected),
            cbor.dumps(unprotected or {}),
            b"\xf6" if payload is None else cbor.encode_bstr(payload),
            cbor.encode_bstr(signature),
        )
    )


def encode_protected(protected: dict) -> bytes:
    """The serialized protected header: empty map -> empty bstr content (RFC 9052 3)."""
    return cbor.dumps(protected) if protected else b""


def alg_for_key(key: Any) -> int:
    """Default COSE alg for a key: P-256 ES256, P-384 ES384, P-521 ES512, Ed25519 EdDSA, RSA PS256."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        try:
            return _CURVE_ALG[key.curve.name]
        except KeyError:
            raise VerificationError("cose.key", f"unsupported curve {key.curve.name}") from None
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return EDDSA
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return PS256
    raise VerificationError("cose.key", f"unsupported key type {type(key).__name__}")


def sign1(
    key: Any,
    protected: dict,
    payload: bytes | None,
    *,
    unprotected: dict | None = None,
    detached: bool = False,
    external_aad: bytes = b"",
) -> bytes:
    """Sign ``payload`` and return the tagged COSE_Sign1.

    ``alg`` comes from ``protected[1]``, else it is derived from the key and added to the
    protected header. ``detached=True`` signs the payload but emits nil.
    """
    protected = dict(protected)
    alg = protected.get(1)
    if alg is None:
        alg = alg_for_key(key)
        protected[1] = alg
    if payload is None:
        raise VerificationError("cose.payload-missing", "cannot sign without a payload")
    prot_raw = encode_protected(protected)
    sig = sign_tbs(key, alg, sig_structure(prot_raw, payload, external_aad))
    return encode_sign1(prot_raw, unprotected or {}, None if detached else payload, sig)


def sign_tbs(key: Any, alg: int, tbs: bytes) -> bytes:
    """Sign the to-be-signed bytes with ``alg`` (ECDSA output is fixed-length r||s)."""
    if alg in _ECDSA:
        curve, _, size = _ECDSA[alg]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
            raise VerificationError("cose.key", f"{ALG_NAMES[alg]} needs a {curve} private key")
        r, s = decode_dss_signature(key.sign(tbs, _ECDSA_OBJ[alg]))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg in _EDDSA:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise VerificationError("cose.key", "EdDSA needs an Ed25519 private key")
        return key.sign(tbs)
    if alg in _PSS:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise VerificationError("cose.key", f"{ALG_NAMES[alg]} needs an RSA private key")
        pad, h = _PSS_OBJ[alg]
        return key.sign(tbs, pad, h)
    raise VerificationError("cose.alg", f"unsupported algorithm {cbor.brief(alg)}")


_EC_PUB_TYPES: set[type] = set()


def _is_ec_public(key: Any) -> bool:
    """isinstance against the ABC, memoised per concrete type (ABC checks cost ~0.5 us)."""
    t = type(key)
    if t in _EC_PUB_TYPES:
        return True
    if isinstance(key, ec.EllipticCurvePublicKey):
        _EC_PUB_TYPES.add(t)
        return True
    return False


def verify_tbs(key: Any, alg: int, tbs: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``tbs``; raises VerificationError("cose.signature", ...)."""
    if alg in _ECDSA:
        curve, _, size = _ECDSA[alg]
        if not _is_ec_public(key) or key.curve.name != curve:
            raise VerificationError("cose.key", f"{ALG_NAMES[alg]} needs a {curve} public key")
        if len(signature) != 2 * size:
            raise VerificationError("cose.signature", f"{ALG_NAMES[alg]} signature must be {2 * size} bytes")
        der = encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        try:
            key.verify(der, tbs, _ECDSA_OBJ[alg])
        except InvalidSignature:
            raise VerificationError("cose.signature", "signature does not verify") from None
        return
    if alg in _EDDSA:
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise VerificationError("cose.key", "EdDSA needs an Ed25519 public key")
        try:
            key.verify(signature, tbs)
        except InvalidSignature:
            raise VerificationError("cose.signature", "signature does not verify") from None
        return
    if alg in _PSS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationError("cose.key", f"{ALG_NAMES[alg]} needs an RSA public key")
        if key.key_size < 2048:
            raise VerificationError("cose.key", "RSA keys shorter than 2048 bits are refused")
        pad, h = _PSS_OBJ[alg]
        try:
            key.verify(signature, tbs, pad, h)
        except InvalidSignature:
            raise VerificationError("cose.signature", "signature does not verify") from None
        return
    raise VerificationError("cose.alg", f"unsupported algorithm {cbor.brief(alg)}")


def verify_sign1(
    msg: Sign1,
    key: Any,
    *,
    payload: bytes | None = None,
    external_aad: bytes = b"",
    allowed_algs: Iterable[int] | None = None,
) -> None:
    """Verify a decoded COSE_Sign1 with a public key; alg must be in the protected header."""
    alg = msg.alg
    if alg is None:
        raise VerificationError("cose.alg", "no integer alg (label 1) in the protected header")
    if allowed_algs is not None and alg not in allowed_algs:
        raise VerificationError("cose.alg", f"algorithm {ALG_NAMES.get(alg, alg)} is not allowed")
    if msg.payload is not None and payload is not None and payload != msg.payload:
        raise VerificationError("cose.payload", "supplied payload differs from the attached one")
    verify_tbs(key, alg, msg.tbs(payload, external_aad), msg.signature)
