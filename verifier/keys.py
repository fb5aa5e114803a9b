"""COSE_Key (RFC 9052 7) <-> `cryptography` keys, RFC 9679 thumbprints, COSE_KeySet, key files.

Supported: EC2 P-256/P-384/P-521, OKP Ed25519, RSA. The thumbprint is SHA-256 over the
deterministic CBOR encoding of the required members only (RFC 9679 section 4):
EC2 ``{1: 2, -1: crv, -2: x, -3: y}``, OKP ``{1: 1, -1: crv, -2: x}``, RSA ``{1: 3, -1: n, -2: e}``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import cbor
from .cose import alg_for_key
from .errors import VerificationError

__all__ = [
    "PublicKey",
    "cose_key_from_public",
    "public_key_from_cose_key",
    "thumbprint",
    "encode_keyset",
    "decode_keyset",
    "alg_for_key",
    "load_public_keys",
    "load_private_key",
    "parse_public_keys",
]

PublicKey = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey]

KTY_OKP, KTY_EC2, KTY_RSA = 1, 2, 3
_CRV = {"secp256r1": (1, 32), "secp384r1": (2, 48), "secp521r1": (3, 66)}
_CRV_BY_ID = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}
CRV_ED25519 = 6


def _int_bytes(i: int) -> bytes:
    """Unsigned big-endian, no leading zeros (RFC 9052 7.1 / RFC 8230 for n and e)."""
    return i.to_bytes(max(1, (i.bit_length() + 7) // 8), "big")


def _public(key: Any) -> PublicKey:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        return key.public_key()
    if isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        return key
    raise VerificationError("key.type", f"unsupported key type {type(key).__name__}")


def _required_members(pub: PublicKey) -> dict:
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in _CRV:
            raise VerificationError("key.type", f"unsupported curve {pub.curve.name}")
        crv, size = _CRV[pub.curve.name]
        nums = pub.public_numbers()
        return {1: KTY_EC2, -1: crv, -2: nums.x.to_bytes(size, "big"), -3: nums.y.to_bytes(size, "big")}
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {1: KTY_OKP, -1: CRV_ED25519, -2: raw}
    nums = pub.public_numbers()
    return {1: KTY_RSA, -1: _int_bytes(nums.n), -2: _int_bytes(nums.e)}


def cose_key_from_public(pub: Any, *, kid: bytes | None = None, alg: int | None = None) -> dict:
    """COSE_Key map for a public (or private: its public half) key; optional kid (2) and alg (3)."""
    d = _required_members(_public(pub))
    if kid is not None:
        d[2] = bytes(kid)
    if alg is not None:
        d[3] = alg
    return d


def public_key_from_cose_key(d: dict) -> PublicKey:
    """The `cryptography` public key for a COSE_Key map; raises VerificationError("key.cose", ...)."""
    if not isinstance(d, dict):
        raise VerificationError("key.cose", "COSE_Key is not a map")
    kty = d.get(1)
    try:
        if kty == KTY_EC2:
            crv = d.get(-1)
            if crv not in _CRV_BY_ID:
                raise VerificationError("key.cose", f"unsupported EC2 curve {cbor.brief(crv)}")
            x, y = d.get(-2), d.get(-3)
            size = {1: 32, 2: 48, 3: 66}[crv]
            if not isinstance(x, bytes) or not isinstance(y, bytes) or len(x) != size or len(y) != size:
                raise VerificationError("key.cose", "EC2 key needs x and y byte strings of the curve size")
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), _CRV_BY_ID[crv]
            ).public_key()
        if kty == KTY_OKP:
            if d.get(-1) != CRV_ED25519:
                raise VerificationError("key.cose", f"unsupported OKP curve {cbor.brief(d.get(-1))}")
            x = d.get(-2)
            if not isinstance(x, bytes) or len(x) != 32:
                raise VerificationError("key.cose", "Ed25519 key needs a 32-byte x")
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
        if kty == KTY_RSA:
            n, e = d.get(-1), d.get(-2)
            if not isinstance(n, bytes) or not isinstance(e, bytes) or not n or not e:
                raise VerificationError("key.cose", "RSA key needs n and e byte strings")
            return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
    except VerificationError:
        raise
    except (ValueError, TypeError) as exc:
        raise VerificationError("key.cose", f"invalid key: {exc}") from None
    raise VerificationError("key.cose", f"unsupported kty {cbor.brief(kty)}")


def thumbprint(key_or_cose_key: Any) -> bytes:
    """RFC 9679 COSE Key Thumbprint (SHA-256) of a key object or a COSE_Key map."""
    if isinstance(key_or_cose_key, dict):
        key_or_cose_key = public_key_from_cose_key(key_or_cose_key)
    return hashlib.sha256(cbor.dumps(_required_members(_public(key_or_cose_key)))).digest()


def encode_keyset(keys: list[dict]) -> bytes:
    """COSE_KeySet: a CBOR array of COSE_Key maps (deterministic encoding)."""
    return cbor.dumps(list(keys))


def decode_keyset(data: bytes) -> list[dict]:
    """Decode a COSE_KeySet; each entry must be a map (not validated as a key here)."""
    obj = cbor.loads(data, max_depth=4)
    if not isinstance(obj, list) or not all(isinstance(k, dict) for k in obj):
        raise VerificationError("key.keyset", "COSE_KeySet must be an array of maps")
    return obj


def parse_public_keys(data: bytes) -> dict[bytes, PublicKey]:
    """Keys from bytes: PEM public key(s), PEM certificate(s), DER, COSE_Key or COSE_KeySet.

    Returns kid -> key. For a COSE_Key with a bstr kid (label 2) that kid is used; for
    everything else the kid is the RFC 9679 thumbprint.
    """
    out: dict[bytes, PublicKey] = {}
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        for block in _pem_blocks(stripped):
            if b"CERTIFICATE-----" in block.split(b"\n", 1)[0]:
                pub = x509.load_pem_x509_certificate(block).public_key()
            else:
                pub = serialization.load_pem_public_key(block)
            pub = _public(pub)
            out[thumbprint(pub)] = pub
        if not out:
            raise VerificationError("key.file", "no PEM key found")
        return out
    try:
        obj = cbor.loads(data, max_depth=4)
    except VerificationError:
        obj = None
    if isinstance(obj, dict):
        obj = [obj]
    if isinstance(obj, list) and obj and all(isinstance(k, dict) for k in obj):
        for d in obj:
            pub = public_key_from_cose_key(d)
            kid = d.get(2)
            if isinstance(kid, str):
                kid = kid.encode()
            out[kid if isinstance(kid, bytes) and kid else thumbprint(pub)] = pub
        return out
    for loader in (serialization.load_der_public_key, lambda b: x509.load_der_x509_certificate(b).public_key()):
        try:
            pub = _public(loader(data))
            return {thumbprint(pub): pub}
        except (ValueError, TypeError, VerificationError):
            continue
    raise VerificationError("key.file", "not a PEM/DER public key, certificate, COSE_Key or COSE_KeySet")


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks, cur = [], []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            cur = [line]
        elif cur:
            cur.append(line)
            if line.startswith(b"-----END"):
                blocks.append(b"".join(cur))
                cur = []
    return blocks


def load_public_keys(path: str | Path) -> dict[bytes, PublicKey]:
    """Read a key file (see :func:`parse_public_keys`); raises VerificationError("key.file", ...)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VerificationError("key.file", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse_public_keys(data)
    except VerificationError:
        raise
    except (ValueError, TypeError) as exc:
        raise VerificationError("key.file", f"{path}: {exc}") from None


def load_private_key(path: str | Path, password: bytes | None = None) -> Any:
    """Load a PEM (or DER) private key: EC P-256/384/521, Ed25519 or RSA."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VerificationError("key.file", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise VerificationError("key.file", f"{path}: not a private key: {exc}") from None
    _public(key)  # type check
    return key
