"""The log's own keys and the keys it trusts.

Layout of ``<data-dir>/keys`` (created on first start, files mode 0600, directory 0700)::

    receipt.pem           ES256 (P-256) private key that signs receipts; kid = RFC 9679 thumbprint
    retired/<kid-hex>.pem public keys of earlier receipt keys (still listed in /.well-known/scitt-keys)
    checkpoint.skey       Ed25519 C2SP note signer key (Go "PRIVATE+KEY+<origin>+..." encoding)
    checkpoint.vkey       its verifier key string (<origin>+<keyid>+<base64>)

``rotate_receipt_key`` retires the active receipt key (its public key stays listed, so receipts
signed with it still verify) and creates a new one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from verifier import cose as vcose
from verifier import keys as vkeys
from verifier import note as vnote

ALG_ES256 = -7
RECEIPT_KEY = "receipt.pem"
RETIRED_DIR = "retired"
NOTE_SKEY = "checkpoint.skey"
NOTE_VKEY = "checkpoint.vkey"


class KeyError_(Exception):
    """A key file is missing, unreadable or inconsistent with the configuration."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    # link() fails if another process created the key meanwhile: first writer wins.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sign_es256_deterministic(key: ec.EllipticCurvePrivateKey, tbs: bytes) -> bytes:
    """ES256 signature (r||s, 64 bytes) with RFC 6979 deterministic nonces.

    Used for the log's own policy statements: identical content gives identical bytes, so two
    worker processes registering the same policy at the same time produce one log entry.
    """
    der = key.sign(tbs, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sig_structure(protected_raw: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """RFC 9052 Sig_structure for COSE_Sign1."""
    return cbor2.dumps(["Signature1", protected_raw, external_aad, payload])


@dataclass
class ReceiptKey:
    private: ec.EllipticCurvePrivateKey
    kid: bytes
    alg: int = ALG_ES256

    def sign(self, tbs: bytes) -> bytes:
        return vcose.sign_tbs(self.private, self.alg, tbs)


@dataclass
class LogKeys:
    """The log's signing keys (receipt key, retired keys, checkpoint note signer)."""

    receipt: ReceiptKey
    retired: dict[bytes, Any]  # kid -> public key
    note_signer: Any  # verifier.note.Signer
    origin: str
    _keyset_cache: bytes | None = field(default=None, repr=False)

    @property
    def vkey(self) -> str:
        return self.note_signer.vkey

    def cose_keys(self) -> list[dict]:
        out = [vkeys.cose_key_from_public(self.receipt.private.public_key(), kid=self.receipt.kid, alg=self.receipt.alg)]
        for kid in sorted(self.retired):
            pub = self.retired[kid]
            out.append(vkeys.cose_key_from_public(pub, kid=kid, alg=vcose.alg_for_key(pub)))
        return out

    def keyset_bytes(self) -> bytes:
        if self._keyset_cache is None:
            self._keyset_cache = vkeys.encode_keyset(self.cose_keys())
        return self._keyset_cache

    def public_keys(self) -> dict[bytes, Any]:
        """kid -> public key of every receipt key (active and retired), for verification."""
        out = dict(self.retired)
        out[self.receipt.kid] = self.receipt.private.public_key()
        return out

    def find(self, kid: bytes) -> dict | None:
        for k in self.cose_keys():
            if k.get(2) == kid:
                return k
        return None


def _kid_of(pub) -> bytes:
    return vkeys.thumbprint(vkeys.cose_key_from_public(pub))


def load_or_create(data_dir: str | os.PathLike, origin: str | None) -> LogKeys:
    """Load the log's keys from ``<data_dir>/keys``, creating any that are missing.

    ``origin`` None means "whatever the existing checkpoint key is named" (or the caller's default
    for a new log; pass it then). A configured origin that differs from the existing key's name is
    an error: a log cannot change its origin.
    """
    kdir = Path(data_dir) / "keys"
    kdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(kdir, 0o700)
    except OSError:
        pass

    rpath = kdir / RECEIPT_KEY
    if not rpath.exists():
        priv = ec.generate_private_key(ec.SECP256R1())
        pem = priv.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(rpath, pem)
    priv = serialization.load_pem_private_key(rpath.read_bytes(), password=None)
    if not isinstance(priv, ec.EllipticCurvePrivateKey) or priv.curve.name != "secp256r1":
        raise KeyError_(f"{rpath}: the receipt key must be a P-256 EC private key")
    receipt = ReceiptKey(priv, _kid_of(priv.public_key()))

    retired: dict[bytes, Any] = {}
    rdir = kdir / RETIRED_DIR
    if rdir.is_dir():
        for p in sorted(rdir.glob("*.pem")):
            pub = serialization.load_pem_public_key(p.read_bytes())
            kid = _kid_of(pub)
            if kid != receipt.kid:
                retired[kid] = pub

    spath = kdir / NOTE_SKEY
    if not spath.exists():
        if not origin:
            raise KeyError_("no checkpoint key yet and no origin given")
        signer = vnote.Signer.generate(origin)
        _write_private(spath, signer.skey.encode() + b"\n")
    signer = vnote.Signer.from_skey(spath.read_text().strip())
    name = getattr(signer, "name", None) or signer.vkey.split("+", 1)[0]
    if origin and name != origin:
        raise KeyError_(
            f"{spath} signs for origin {name!r} but the configured origin is {origin!r}; "
            "a log cannot change its origin"
        )
    vpath = kdir / NOTE_VKEY
    if not vpath.exists() or vpath.read_text().strip() != signer.vkey:
        _write_public(vpath, signer.vkey.encode() + b"\n")
    return LogKeys(receipt=receipt, retired=retired, note_signer=signer, origin=name)


def existing_origin(data_dir: str | os.PathLike) -> str | None:
    p = Path(data_dir) / "keys" / NOTE_VKEY
    if p.exists():
        return p.read_text().strip().split("+", 1)[0] or None
    return None


def rotate_receipt_key(data_dir: str | os.PathLike) -> tuple[bytes, bytes]:
    """Retire the active receipt key and create a new one. Returns (old kid, new kid)."""
    kdir = Path(data_dir) / "keys"
    rpath = kdir / RECEIPT_KEY
    old = serialization.load_pem_private_key(rpath.read_bytes(), password=None)
    old_kid = _kid_of(old.public_key())
    pub_pem = old.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_public(kdir / RETIRED_DIR / f"{old_kid.hex()}.pem", pub_pem)
    new = ec.generate_private_key(ec.SECP256R1())
    pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = rpath.with_name("receipt.pem.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, rpath)
    return old_kid, _kid_of(new.public_key())


# ---- trusted issuers ------------------------------------------------------------------------


@dataclass
class TrustStore:
    """Issuer keys (by RFC 9679 thumbprint) and X.509 trust anchors the policy admits."""

    issuer_keys: dict[bytes, Any] = field(default_factory=dict)
    anchors: list[x509.Certificate] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, issuer_key_paths: list[str], anchor_paths: list[str]) -> "TrustStore":
        ts = cls()
        for p in issuer_key_paths:
            try:
                ts.issuer_keys.update(load_issuer_keys(p))
            except (OSError, ValueError) as e:
                raise KeyError_(f"issuer key {p}: {e}") from None
        for p in anchor_paths:
            try:
                data = Path(p).read_bytes()
                certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                    x509.load_der_x509_certificate(data)
                ]
            except (OSError, ValueError) as e:
                raise KeyError_(f"trust anchor {p}: {e}") from None
            ts.anchors.extend(certs)
        return ts

    def anchor_fingerprints(self) -> list[bytes]:
        return sorted(c.fingerprint(hashes.SHA256()) for c in self.anchors)


def load_issuer_keys(path: str) -> dict[bytes, Any]:
    """Public keys (PEM/DER keys or certificates, COSE_Key/KeySet) in ``path`` -> {RFC 9679 thumbprint: key}."""
    from verifier import VerificationError

    try:
        found = vkeys.load_public_keys(path)
    except VerificationError as e:
        raise ValueError(e.detail or e.check) from None
    # statements name the issuer by the RFC 9679 thumbprint, whatever kid a COSE_Key file carried
    return {_kid_of(pub): pub for pub in found.values()}


def kid_candidates(s: str) -> list[bytes]:
    """A kid in a URL path: base64url without padding (RFC 4648 section 5), hex, or the raw kid."""
    cands: list[bytes] = []
    try:
        pad = "=" * (-len(s) % 4)
        if all(c.isalnum() or c in "-_" for c in s):
            cands.append(base64.urlsafe_b64decode(s + pad))
    except ValueError:
        pass
    if len(s) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in s):
        cands.append(bytes.fromhex(s))
    cands.append(s.encode("utf-8", "surrogatepass"))
    return cands


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()
