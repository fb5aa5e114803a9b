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

from verifier import VerificationError
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


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so that the names created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike, mode: int = 0o700) -> Path:
    """Create ``path`` and its missing parents, each durably (the parent is fsynced after the
    mkdir), so that a directory the log relies on (the data dir, ``keys/``) survives power loss."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            pass
        fsync_dir(d.parent)
    return path


def _write_tmp(path: Path, data: bytes, mode: int) -> Path:
    make_dirs(path.parent)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _write_private(path: Path, data: bytes) -> bool:
    """Create a private key file (0600) unless it exists: data fsynced, linked in, directory
    fsynced. Returns False if another process created it meanwhile (first writer wins)."""
    tmp = _write_tmp(path, data, 0o600)
    try:
        os.link(tmp, path)
        made = True
    except FileExistsError:
        made = False
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return made


def write_durable(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: write a temporary file, fsync it, rename it over the
    old one, fsync the directory. A reader sees the old or the new content, never a mix, and
    after a crash the new content is there once this returns."""
    path = Path(path)
    tmp = _write_tmp(path, data, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)


_write_public = write_durable


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


def log_statement(receipt: "ReceiptKey", issuer: str, content_type: str, subject: str, payload: bytes) -> bytes:
    """A Signed Statement of one of the log's own types (its registration policy, its shard
    statement), signed by the log's receipt key with deterministic ES256: the same content gives
    the same bytes, so several processes registering it make one entry."""
    from verifier import cbor as vcbor

    protected_raw = vcbor.dumps({1: ALG_ES256, 3: content_type, 4: receipt.kid, 15: {1: issuer, 2: subject}})
    sig = sign_es256_deterministic(receipt.private, sig_structure(protected_raw, payload))
    return b"\xd2\x84" + vcbor.encode_bstr(protected_raw) + b"\xa0" + vcbor.encode_bstr(payload) + vcbor.encode_bstr(sig)


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
    _kids_cache: frozenset | None = field(default=None, repr=False)

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

    def kids(self) -> frozenset:
        """The kids of every receipt key (active and retired), made once per key set (checked
        by every registration: the log's own kids are refused, issue 11 item 4)."""
        if self._kids_cache is None:
            self._kids_cache = frozenset(self.retired) | {self.receipt.kid}
        return self._kids_cache

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


RESTORE = "restore it from the backup of this log's keys/ directory (or copy keys/ from another host of this log)"


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyError_(f"{path} ({what}) is missing: {RESTORE}") from None
    except OSError as e:
        raise KeyError_(f"{path} ({what}) is unreadable ({e.strerror}): {RESTORE}") from None


def load_receipt_key(path: Path) -> ReceiptKey:
    data = _read_key_file(path, "the receipt signing key")
    try:
        priv = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{path} (the receipt signing key) is not a PEM private key ({e}): {RESTORE}") from None
    if not isinstance(priv, ec.EllipticCurvePrivateKey) or priv.curve.name != "secp256r1":
        raise KeyError_(f"{path}: the receipt key must be a P-256 EC private key: {RESTORE}")
    return ReceiptKey(priv, _kid_of(priv.public_key()))


def load_note_signer(path: Path):
    data = _read_key_file(path, "the checkpoint signing key")
    try:
        return vnote.Signer.from_skey(data.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError, VerificationError) as e:
        raise KeyError_(f"{path} (the checkpoint signing key) is not a note signer key ({e}): {RESTORE}") from None


def load_retired(kdir: Path, active: bytes) -> dict[bytes, Any]:
    retired: dict[bytes, Any] = {}
    rdir = kdir / RETIRED_DIR
    if rdir.is_dir():
        for p in sorted(rdir.glob("*.pem")):
            try:
                pub = serialization.load_pem_public_key(p.read_bytes())
            except (OSError, ValueError) as e:
                raise KeyError_(f"{p} (a retired receipt key) is unreadable ({e}): {RESTORE}") from None
            kid = _kid_of(pub)
            if kid != active:
                retired[kid] = pub
    return retired


def load_keys(data_dir: str | os.PathLike, origin: str | None = None) -> LogKeys:
    """Load the log's keys from ``<data_dir>/keys``; never creates one. A missing, unreadable
    or malformed file is a :class:`KeyError_` naming the file and what to restore; so is a
    checkpoint key named for another origin than ``origin`` (when given)."""
    kdir = Path(data_dir) / "keys"
    receipt = load_receipt_key(kdir / RECEIPT_KEY)
    retired = load_retired(kdir, receipt.kid)
    spath = kdir / NOTE_SKEY
    signer = load_note_signer(spath)
    name = signer.name
    if origin and name != origin:
        raise KeyError_(
            f"{spath} signs for origin {name!r} but the configured origin is {origin!r}; "
            "a log cannot change its origin"
        )
    return LogKeys(receipt=receipt, retired=retired, note_signer=signer, origin=name)


def sync_vkey(data_dir: str | os.PathLike, keys: LogKeys) -> None:
    """``keys/checkpoint.vkey`` (derived from checkpoint.skey) rewritten, durably, if it differs;
    called once the keys are known to be the log's."""
    vpath = Path(data_dir) / "keys" / NOTE_VKEY
    try:
        current = vpath.read_text().strip()
    except (OSError, UnicodeDecodeError):
        current = None
    if current != keys.vkey:
        write_durable(vpath, keys.vkey.encode() + b"\n", 0o644)


def create_keys(data_dir: str | os.PathLike, origin: str) -> LogKeys:
    """Create the keys of a new log (those missing; a concurrent creator's files win), then
    load them. Only ``tlog init`` and the first start of a log whose storage is empty call this."""
    kdir = make_dirs(Path(data_dir) / "keys")
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
    spath = kdir / NOTE_SKEY
    if not spath.exists():
        if not origin:
            raise KeyError_("no checkpoint key yet and no origin given")
        _write_private(spath, vnote.Signer.generate(origin).skey.encode() + b"\n")
    keys = load_keys(data_dir, origin)
    sync_vkey(data_dir, keys)
    return keys


def load_or_create(data_dir: str | os.PathLike, origin: str | None) -> LogKeys:
    """The keys in ``data_dir``, created first when missing (tools and tests; the service
    creates keys only for a log whose storage is empty, see :mod:`tlog.logstate`)."""
    if origin is None:
        origin = existing_origin(data_dir)
    if origin is None:
        keys = load_keys(data_dir)
        sync_vkey(data_dir, keys)
        return keys
    return create_keys(data_dir, origin)


def existing_origin(data_dir: str | os.PathLike) -> str | None:
    p = Path(data_dir) / "keys" / NOTE_VKEY
    if p.exists():
        return p.read_text().strip().split("+", 1)[0] or None
    return None


def public_pem(pub) -> bytes:
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


NEXT_RECEIPT_KEY = "receipt.pem.next"


def prepare_rotation(data_dir: str | os.PathLike) -> tuple[ReceiptKey, ReceiptKey]:
    """Step 1 of a rotation: a new receipt key, durable in ``keys/receipt.pem.next`` (the
    active key is untouched). Returns (active, next). An earlier unfinished rotation's next key
    is reused, so a rotation interrupted anywhere converges on one new key."""
    kdir = Path(data_dir) / "keys"
    active = load_receipt_key(kdir / RECEIPT_KEY)
    npath = kdir / NEXT_RECEIPT_KEY
    if not npath.exists():
        new = ec.generate_private_key(ec.SECP256R1())
        pem = new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _write_private(npath, pem)
    return active, load_receipt_key(npath)


def finish_rotation(data_dir: str | os.PathLike) -> tuple[bytes, bytes] | None:
    """Step 2: retire the active key (its public key durable in ``retired/``) and only then
    install the next key as ``receipt.pem`` (rename, directory fsync). None if no rotation is
    prepared."""
    kdir = Path(data_dir) / "keys"
    npath = kdir / NEXT_RECEIPT_KEY
    if not npath.exists():
        return None
    new = load_receipt_key(npath)
    rpath = kdir / RECEIPT_KEY
    if rpath.exists():
        old = load_receipt_key(rpath)
        write_durable(kdir / RETIRED_DIR / f"{old.kid.hex()}.pem", public_pem(old.private.public_key()), 0o644)
        old_kid = old.kid
    else:
        old_kid = b""
    os.replace(npath, rpath)
    fsync_dir(kdir)
    return old_kid, new.kid


def rotate_receipt_key(data_dir: str | os.PathLike) -> tuple[bytes, bytes]:
    """Retire the active receipt key and create a new one (files only; ``tlog rotate-key``
    also records the new key set in the log's storage). Returns (old kid, new kid)."""
    active, _ = prepare_rotation(data_dir)
    old, new = finish_rotation(data_dir)
    return old, new


# ---- trusted issuers ------------------------------------------------------------------------


def trust_entry(entry: Any) -> tuple[str, list[str] | None]:
    """A configured issuer key or trust anchor: a path, or ``{"path": ..., "iss": [...]}`` (the
    issuer identities it may claim; a JSON object in a string is accepted too). Returns
    (path, iss list or None)."""
    if isinstance(entry, str) and entry.lstrip().startswith("{"):
        import json

        try:
            entry = json.loads(entry)
        except ValueError as e:
            raise KeyError_(f"bad trust entry {entry[:80]!r}: {e}") from None
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, dict) and isinstance(entry.get("path"), str) and set(entry) <= {"path", "iss"}:
        iss = entry.get("iss")
        if iss is None:
            return entry["path"], None
        if isinstance(iss, str):
            iss = [iss]
        if not isinstance(iss, list) or not iss or not all(isinstance(i, str) and i for i in iss):
            raise KeyError_(f"{entry['path']}: iss must be a non-empty list of issuer identities")
        return entry["path"], list(iss)
    raise KeyError_(f"bad trust entry {str(entry)[:80]!r}: want a path or {{path, iss}}")


@dataclass
class TrustStore:
    """Issuer keys (by RFC 9679 thumbprint) and X.509 trust anchors the policy admits, with the
    issuer identities (``iss``) each may claim where configured (keys by kid, anchors by the
    SHA-256 of their DER); see verifier/identity.py."""

    issuer_keys: dict[bytes, Any] = field(default_factory=dict)
    anchors: list[x509.Certificate] = field(default_factory=list)
    key_identities: dict[bytes, list[str]] = field(default_factory=dict)
    anchor_identities: dict[bytes, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, issuer_key_paths: list, anchor_paths: list) -> "TrustStore":
        ts = cls()
        for entry in issuer_key_paths:
            p, iss = trust_entry(entry)
            if iss is None:
                # issue 11 item 4: a key names no identity of its own, so it must be told which
                # ones it may claim (anchors need not: the x5chain leaf's SAN or did:x509 binds)
                raise KeyError_(
                    f"issuer key {p} is given without the issuer identities it may claim: give it as "
                    f'{{"path": "{p}", "iss": ["<issuer id>", ...]}} (TOML: {{path = "{p}", iss = [...]}})')
            try:
                found = load_issuer_keys(p)
            except (OSError, ValueError) as e:
                raise KeyError_(f"issuer key {p}: {e}") from None
            ts.issuer_keys.update(found)
            if iss is not None:
                for kid in found:
                    ts.key_identities[kid] = sorted(set(ts.key_identities.get(kid, [])) | set(iss))
        for entry in anchor_paths:
            p, iss = trust_entry(entry)
            try:
                data = Path(p).read_bytes()
                certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                    x509.load_der_x509_certificate(data)
                ]
            except (OSError, ValueError) as e:
                raise KeyError_(f"trust anchor {p}: {e}") from None
            ts.anchors.extend(certs)
            if iss is not None:
                for c in certs:
                    fp = c.fingerprint(hashes.SHA256())
                    ts.anchor_identities[fp] = sorted(set(ts.anchor_identities.get(fp, [])) | set(iss))
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
