"""C2SP signed notes, checkpoints and cosignatures.

Implements, with the strictness of the Go reference (golang.org/x/mod/sumdb/note):

- signed-note v1.0.0: notes (parse, open = verify, sign), key IDs, verifier keys
  (``name+hexid+base64(type||pubkey)``) and Go's private-key encoding
  (``PRIVATE+KEY+name+hexid+base64(type||seed)``);
- tlog-checkpoint v1.0.0: :class:`Checkpoint` (origin, size, root, extension lines);
- tlog-cosignature v1.0.1: timestamped Ed25519 cosignatures, signature type 0x04,
  signed message ``"cosignature/v1\\ntime <t>\\n" + checkpoint body``.

Every failure raises :class:`verifier.VerificationError` with a dotted ``check``:
``note.syntax``, ``note.bad-signature``, ``note.no-verified-signature``, ``note.text``,
``checkpoint.syntax``, ``vkey.malformed``, ``skey.malformed``, ``cosignature.*``.

Deliberate differences from Go (all stricter, none rejects anything a conforming signer emits):
base64 must be canonical (no non-zero padding bits), and every signature by a known key is
verified, duplicates included (Go skips repeated signatures of one key without checking them).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import VerificationError

__all__ = [
    "ALG_ED25519",
    "ALG_COSIGNATURE_V1",
    "MAX_SIGNATURES",
    "Signer",
    "CosignatureSigner",
    "NoteVerifier",
    "NoteSignature",
    "Note",
    "Checkpoint",
    "CheckpointNote",
    "key_id",
    "parse_note",
    "open_note",
    "open_checkpoint",
    "sign_note",
    "add_signatures",
    "signature_line",
    "parse_signature_line",
    "cosignature_message",
    "verify_cosignature",
]

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100  # the Go reference rejects notes with more signature lines
MAX_NOTE_SIZE = 1 << 20  # bound the work on hostile input (a checkpoint is ~200 bytes)
MAX_TIMESTAMP = (1 << 63) - 1

_SIG_PREFIX = "\u2014 "  # em dash, space
_SIG_PREFIX_B = _SIG_PREFIX.encode()
_COSIG_LABEL = b"cosignature/v1\n"

# Unicode White_Space characters (what Go's unicode.IsSpace reports) -- names must not contain them.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_HEX8 = re.compile(r"[0-9a-fA-F]{8}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")


# ---------------------------------------------------------------------------- helpers


def _b64decode(s: str, check: str, what: str) -> bytes:
    """Strict, canonical standard base64 (padding required, no stray bits)."""
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise VerificationError(check, f"{what} is not valid base64") from e
    if base64.b64encode(raw).decode("ascii") != s:
        raise VerificationError(check, f"{what} is not canonical base64")
    return raw


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def is_valid_name(name: str) -> bool:
    """Key names: non-empty, no Unicode spaces, no '+', no control characters."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(c in _SPACES or c < "\x20" for c in name)
    )


def key_id(name: str, alg: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || alg || public key)[:4] as a big-endian uint32."""
    h = sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(h[:4], "big")


def _check_text_chars(s: str, check: str) -> None:
    for c in s:
        if c < "\x20" and c != "\n":
            raise VerificationError(check, f"control character U+{ord(c):04X} in note")


def _to_str(data: str | bytes, check: str) -> str:
    """Decode/validate a note (or note text): strict UTF-8, no control characters but newline."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        if len(data) > MAX_NOTE_SIZE:
            raise VerificationError(check, f"note larger than {MAX_NOTE_SIZE} bytes")
        try:
            s = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise VerificationError(check, "note is not valid UTF-8") from e
    elif isinstance(data, str):
        s = data
        if len(s) > MAX_NOTE_SIZE:
            raise VerificationError(check, f"note larger than {MAX_NOTE_SIZE} characters")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise VerificationError(check, "note is not valid UTF-8 (lone surrogate)") from e
    else:
        raise VerificationError(check, f"note must be str or bytes, not {type(data).__name__}")
    _check_text_chars(s, check)
    return s


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_seed(priv: Ed25519PrivateKey) -> bytes:
    return priv.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def cosignature_message(checkpoint_text: str | bytes, timestamp: int) -> bytes:
    """The message a tlog-cosignature/v1 signs: label, time line, checkpoint body."""
    if isinstance(checkpoint_text, str):
        checkpoint_text = checkpoint_text.encode("utf-8")
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise VerificationError("cosignature.timestamp", f"timestamp {timestamp!r} out of range")
    return _COSIG_LABEL + b"time " + str(timestamp).encode() + b"\n" + bytes(checkpoint_text)


# ---------------------------------------------------------------------------- keys


class _NoteKey:
    """Fields both ends of a note key expose: its name, its 32-bit key ID, the Ed25519 public key."""

    _name: str
    _key_id: int
    _pub: Ed25519PublicKey

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._pub


class Signer(_NoteKey):
    """An Ed25519 note signer (signature type 0x01)."""

    ALG = ALG_ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_name(name):
            raise VerificationError("skey.malformed", f"invalid key name {name!r}")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise VerificationError("skey.malformed", "not an Ed25519 private key")
        self._name = name
        self._priv = private_key
        self._pub = private_key.public_key()
        self._pub_raw = _raw_public(self._pub)
        self._key_id = key_id(name, self.ALG, self._pub_raw)

    # constructors
    @classmethod
    def generate(cls, name: str):
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, name: str, private_key: Ed25519PrivateKey):
        return cls(name, private_key)

    @classmethod
    def from_skey(cls, skey: str):
        """Parse Go's ``PRIVATE+KEY+<name>+<hex id>+base64(type || seed)``."""
        if not isinstance(skey, str):
            raise VerificationError("skey.malformed", "skey must be a string")
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise VerificationError("skey.malformed", "not PRIVATE+KEY+<name>+<id>+<key>")
        name, hex_id, key64 = parts[2], parts[3], parts[4]
        if not is_valid_name(name) or not _HEX8.match(hex_id):
            raise VerificationError("skey.malformed", "bad name or key ID")
        raw = _b64decode(key64, "skey.malformed", "private key")
        if len(raw) != 33:
            raise VerificationError("skey.malformed", f"private key is {len(raw)} bytes, want 33")
        alg = raw[0]
        if alg not in cls._accepted_skey_algs():
            raise VerificationError("skey.malformed", f"unsupported key type 0x{alg:02x}")
        priv = Ed25519PrivateKey.from_private_bytes(raw[1:])
        if key_id(name, alg, _raw_public(priv.public_key())) != int(hex_id, 16):
            raise VerificationError("skey.malformed", "key ID does not match the key")
        return cls(name, priv)

    @classmethod
    def _accepted_skey_algs(cls) -> tuple[int, ...]:
        return (ALG_ED25519,)

    # properties
    @property
    def type(self) -> int:
        return self.ALG

    @property
    def public_key_bytes(self) -> bytes:
        return self._pub_raw

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._priv

    @property
    def skey(self) -> str:
        seed = _raw_seed(self._priv)
        return f"PRIVATE+KEY+{self._name}+{self._key_id:08x}+{_b64(bytes([self.ALG]) + seed)}"

    @property
    def vkey(self) -> str:
        return f"{self._name}+{self._key_id:08x}+{_b64(bytes([self.ALG]) + self._pub_raw)}"

    def verifier(self) -> "NoteVerifier":
        return NoteVerifier.from_vkey(self.vkey)

    def sign(self, msg: bytes) -> bytes:
        """The raw signature of ``msg`` (no key ID)."""
        return self._priv.sign(bytes(msg))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id:08x})"


class CosignatureSigner(Signer):
    """A tlog-cosignature/v1 signer (timestamped Ed25519, signature type 0x04).

    ``from_skey`` accepts a type 0x04 skey (what :attr:`skey` emits) and, like
    transparency-dev/formats, a plain Ed25519 (type 0x01) skey whose key ID matches type 0x01.
    """

    ALG = ALG_COSIGNATURE_V1

    @classmethod
    def _accepted_skey_algs(cls) -> tuple[int, ...]:
        return (ALG_ED25519, ALG_COSIGNATURE_V1)

    def sign(self, msg: bytes, timestamp: int | None = None) -> bytes:
        """72 bytes: big-endian u64 timestamp || Ed25519 signature of the cosignature message.

        ``msg`` is the checkpoint body (the note text); ``timestamp`` defaults to now.
        """
        if timestamp is None:
            timestamp = int(time.time())
        m = cosignature_message(bytes(msg), timestamp)
        return timestamp.to_bytes(8, "big") + self._priv.sign(m)

    def cosign(self, checkpoint_text: str, timestamp: int | None = None) -> str:
        """The cosignature line ``"— name base64(keyid || u64 ts || sig)\\n"``."""
        body = _to_str(checkpoint_text, "note.text")
        if not body.endswith("\n"):
            raise VerificationError("note.text", "checkpoint text does not end in newline")
        Checkpoint.parse(body)  # only checkpoints are cosigned
        sig = self.sign(body.encode("utf-8"), timestamp)
        return signature_line(self._name, self._key_id, sig)


class NoteVerifier(_NoteKey):
    """A note verifier key: Ed25519 (0x01) or tlog-cosignature/v1 (0x04)."""

    def __init__(self, name: str, alg: int, public_key: bytes) -> None:
        if not is_valid_name(name):
            raise VerificationError("vkey.malformed", f"invalid key name {name!r}")
        if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise VerificationError("vkey.malformed", f"unsupported signature type 0x{alg:02x}")
        if len(public_key) != 32:
            raise VerificationError("vkey.malformed", f"Ed25519 key is {len(public_key)} bytes, want 32")
        try:
            self._pub = Ed25519PublicKey.from_public_bytes(bytes(public_key))
        except ValueError as e:
            raise VerificationError("vkey.malformed", "invalid Ed25519 public key") from e
        self._name = name
        self._alg = alg
        self._pub_raw = bytes(public_key)
        self._key_id = key_id(name, alg, self._pub_raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> "NoteVerifier":
        if not isinstance(vkey, str):
            raise VerificationError("vkey.malformed", "vkey must be a string")
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise VerificationError("vkey.malformed", "not <name>+<hex id>+<base64 key>")
        name, hex_id, key64 = parts
        if not is_valid_name(name):
            raise VerificationError("vkey.malformed", f"invalid key name {name!r}")
        if not _HEX8.match(hex_id):
            raise VerificationError("vkey.malformed", "key ID is not 8 hex digits")
        raw = _b64decode(key64, "vkey.malformed", "key")
        if len(raw) == 0:
            raise VerificationError("vkey.malformed", "empty key")
        v = cls(name, raw[0], raw[1:])
        if v._key_id != int(hex_id, 16):
            raise VerificationError("vkey.malformed", "key ID does not match name and key")
        return v

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes, alg: int = ALG_ED25519):
        if isinstance(public_key, Ed25519PublicKey):
            public_key = _raw_public(public_key)
        return cls(name, alg, public_key)

    @property
    def type(self) -> int:
        return self._alg

    @property
    def vkey(self) -> str:
        return f"{self._name}+{self._key_id:08x}+{_b64(bytes([self._alg]) + self._pub_raw)}"

    @property
    def is_cosigner(self) -> bool:
        return self._alg == ALG_COSIGNATURE_V1

    def timestamp_of(self, sig: bytes) -> int | None:
        """The timestamp carried by a cosignature (None for plain Ed25519 or malformed)."""
        if self._alg != ALG_COSIGNATURE_V1 or len(sig) != 72:
            return None
        t = int.from_bytes(sig[:8], "big")
        return t if t <= MAX_TIMESTAMP else None

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Check ``sig`` (without key ID) over the note text ``msg``."""
        msg = bytes(msg)
        sig = bytes(sig)
        if self._alg == ALG_COSIGNATURE_V1:
            if len(sig) != 72:
                return False
            t = int.from_bytes(sig[:8], "big")
            if t > MAX_TIMESTAMP:
                return False
            msg = cosignature_message(msg, t)
            sig = sig[8:]
        elif len(sig) != 64:
            return False
        try:
            self._pub.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoteVerifier) and self.vkey == other.vkey

    def __hash__(self) -> int:
        return hash(self.vkey)

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey!r})"


# ---------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line. ``sig`` excludes the 4-byte key ID. ``timestamp`` is set on
    cosignatures (type 0x04) once verified."""

    name: str
    key_id: int
    sig: bytes
    timestamp: int | None = None

    def line(self) -> str:
        return signature_line(self.name, self.key_id, self.sig)


@dataclass
class Note:
    text: str
    signatures: list[NoteSignature] = field(default_factory=list)
    verified: list[NoteSignature] = field(default_factory=list)

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def verified_by(self, verifier: NoteVerifier) -> NoteSignature | None:
        for s in self.verified:
            if s.name == verifier.name and s.key_id == verifier.key_id:
                return s
        return None


def signature_line(name: str, kid: int, sig: bytes) -> str:
    return f"{_SIG_PREFIX}{name} {_b64(kid.to_bytes(4, 'big') + bytes(sig))}\n"


def parse_signature_line(line: str) -> NoteSignature:
    """Parse one signature line (with or without its final newline)."""
    if line.endswith("\n"):
        line = line[:-1]
    if not line.startswith(_SIG_PREFIX):
        raise VerificationError("note.syntax", "signature line does not start with em dash and space")
    rest = line[len(_SIG_PREFIX):]
    name, sep, b64 = rest.partition(" ")
    if not sep or not is_valid_name(name) or b64 == "":
        raise VerificationError("note.syntax", "malformed signature line")
    raw = _b64decode(b64, "note.syntax", "signature")
    if len(raw) < 5:
        raise VerificationError("note.syntax", "signature shorter than 5 bytes")
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signatures; syntax checks only (nothing verified)."""
    s = _to_str(note, "note.syntax")
    split = s.rfind("\n\n")
    if split < 0:
        raise VerificationError("note.syntax", "no blank line before the signatures")
    text, sigs = s[: split + 1], s[split + 2 :]
    if sigs == "" or not sigs.endswith("\n"):
        raise VerificationError("note.syntax", "no signatures, or signatures not ending in newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError("note.syntax", f"more than {MAX_SIGNATURES} signatures")
    return Note(text, [parse_signature_line(ln) for ln in lines], [])


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse and verify: every signature by a known key (name and ID) must verify, at least
    one must; unknown signatures are ignored. Returns the note with ``verified`` filled."""
    n = parse_note(note)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise TypeError("verifiers must be NoteVerifier instances")
        known[(v.name, v.key_id)] = v
    text = n.text.encode("utf-8")
    seen: set[tuple[str, int]] = set()
    for sig in n.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text, sig.sig):
            raise VerificationError(
                "note.bad-signature", f"signature by {sig.name}+{sig.key_id:08x} does not verify"
            )
        if (sig.name, sig.key_id) in seen:
            continue
        seen.add((sig.name, sig.key_id))
        n.verified.append(
            NoteSignature(sig.name, sig.key_id, sig.sig, v.timestamp_of(sig.sig))
        )
    if not n.verified:
        raise VerificationError("note.no-verified-signature", "no signature by a known key")
    return n


def _check_note_text(text: str | bytes) -> str:
    t = _to_str(text, "note.text")
    if not t.endswith("\n"):
        raise VerificationError("note.text", "note text does not end in newline")
    return t


def _sign_lines(text: str, signers: Sequence[Signer]) -> list[NoteSignature]:
    out = []
    body = text.encode("utf-8")
    for s in signers:
        if not isinstance(s, Signer):
            raise TypeError("signers must be Signer instances")
        out.append(NoteSignature(s.name, s.key_id, s.sign(body)))
    return out


def sign_note(text: str | bytes, signers: Sequence[Signer]) -> str:
    """Sign a note text (which must end in newline) with each signer."""
    t = _check_note_text(text)
    if not signers:
        raise VerificationError("note.text", "no signers")
    if len(signers) > MAX_SIGNATURES:
        raise VerificationError("note.text", f"more than {MAX_SIGNATURES} signers")
    return Note(t, _sign_lines(t, signers)).to_text()


def add_signatures(note: str | bytes, signers: Sequence[Signer]) -> str:
    """Add signatures to a signed note; an existing signature by the same key (name and ID)
    is replaced in place, the others are kept as they are."""
    n = parse_note(note)
    new = _sign_lines(n.text, signers)
    by_key = {(s.name, s.key_id): s for s in new}
    sigs: list[NoteSignature] = []
    for s in n.signatures:
        k = (s.name, s.key_id)
        if k in by_key:
            sigs.append(by_key.pop(k))
        else:
            sigs.append(s)
    sigs.extend(s for s in new if (s.name, s.key_id) in by_key)
    if len(sigs) > MAX_SIGNATURES:
        raise VerificationError("note.text", f"more than {MAX_SIGNATURES} signatures")
    return Note(n.text, sigs).to_text()


# ---------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or self.origin == "" or any(
            c < "\x20" for c in self.origin
        ):
            raise VerificationError("checkpoint.syntax", "origin must be a non-empty line")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size < 1 << 64:
            raise VerificationError("checkpoint.syntax", f"bad tree size {self.size!r}")
        if not isinstance(self.root, (bytes, bytearray)) or len(self.root) != 32:
            raise VerificationError("checkpoint.syntax", "root must be 32 bytes")
        object.__setattr__(self, "root", bytes(self.root))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for e in self.extensions:
            if not isinstance(e, str) or e == "" or any(c < "\x20" for c in e):
                raise VerificationError("checkpoint.syntax", "extension lines must be non-empty lines")

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str | bytes) -> "Checkpoint":
        """Parse a checkpoint body (the note text, ending in newline)."""
        t = _to_str(text, "checkpoint.syntax")
        if not t.endswith("\n"):
            raise VerificationError("checkpoint.syntax", "checkpoint does not end in newline")
        lines = t[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError("checkpoint.syntax", "fewer than three lines")
        if any(ln == "" for ln in lines):
            raise VerificationError("checkpoint.syntax", "empty line in checkpoint")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not _DECIMAL.match(size_s):
            raise VerificationError("checkpoint.syntax", f"tree size {size_s!r} is not canonical decimal")
        size = int(size_s)
        if size >= 1 << 64:
            raise VerificationError("checkpoint.syntax", "tree size exceeds 64 bits")
        root = _b64decode(root_s, "checkpoint.syntax", "root hash")
        if len(root) != 32:
            raise VerificationError("checkpoint.syntax", f"root hash is {len(root)} bytes, want 32")
        return cls(origin, size, root, tuple(lines[3:]))


@dataclass
class CheckpointNote:
    """A verified checkpoint: the parsed body, the opened note, and the cosignatures that
    verified (cosigner name -> timestamp)."""

    checkpoint: Checkpoint
    note: Note
    raw: str
    cosignatures: dict[str, int] = field(default_factory=dict)


def open_checkpoint(
    note: str | bytes,
    log_verifier: NoteVerifier,
    cosigners: Iterable[NoteVerifier] = (),
    *,
    origin: str | None = None,
) -> CheckpointNote:
    """Verify a checkpoint note: the log's signature must verify (``note.no-verified-signature``
    otherwise), any signature by a known key must verify, and the body must be a checkpoint
    whose origin is ``origin`` (default: the log key's name)."""
    raw = _to_str(note, "note.syntax")
    cos = list(cosigners)
    n = open_note(raw, [log_verifier, *cos])
    if n.verified_by(log_verifier) is None:
        raise VerificationError("note.no-verified-signature", f"no signature by the log key {log_verifier.name}")
    cp = Checkpoint.parse(n.text)
    want = log_verifier.name if origin is None else origin
    if cp.origin != want:
        raise VerificationError("checkpoint.origin", f"origin {cp.origin!r}, want {want!r}")
    cosigs = {}
    for v in cos:
        s = n.verified_by(v)
        if s is not None and s.timestamp is not None:
            cosigs[v.name] = s.timestamp
    return CheckpointNote(cp, n, raw, cosigs)


def verify_cosignature(checkpoint_text: str | bytes, line: str, verifier: NoteVerifier) -> int:
    """Verify one cosignature line over a checkpoint body; returns its timestamp."""
    if verifier.type != ALG_COSIGNATURE_V1:
        raise VerificationError("cosignature.key", "verifier is not a cosignature (type 0x04) key")
    body = _check_note_text(checkpoint_text)
    sig = parse_signature_line(line)
    if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
        raise VerificationError("cosignature.key", f"line is by {sig.name}+{sig.key_id:08x}, not {verifier.name}")
    if not verifier.verify(body.encode("utf-8"), sig.sig):
        raise VerificationError("cosignature.bad-signature", f"cosignature by {sig.name} does not verify")
    ts = verifier.timestamp_of(sig.sig)
    assert ts is not None
    return ts
