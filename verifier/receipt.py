"""COSE Receipts (RFC 9942) for RFC9162_SHA256 (vds 1), and transparent statements (394).

Inclusion receipt: protected ``{1: alg, 395: 1, ...}``, unprotected
``{396: {-1: [bstr .cbor [size, index, [path...]]]}}``, payload nil (detached root) or the
root itself. Verification recomputes the root from the leaf and the proof, then checks
the COSE signature over it. Consistency receipts carry ``-2: [bstr .cbor [size1, size2,
[path...]]]`` and are signed over root(size2).

Receipts of other verifiable data structures (vds 2 CCF, 3 MMR, ...) parse but are reported
unsupported (``receipt.unsupported-vds``). Transparent statements (a statement carrying its
receipts under 394) are :mod:`verifier.transparent`.
"""

from __future__ import annotations

from hashlib import sha256
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature as _dss

from . import cbor, cose, merkle
from .errors import VerificationError

__all__ = [
    "VDS_RFC9162_SHA256",
    "HDR_RECEIPTS",
    "HDR_VDS",
    "HDR_VDP",
    "Receipt",
    "ReceiptInfo",
    "ConsistencyInfo",
    "encode_inclusion_proof",
    "encode_consistency_proof",
    "receipt_protected",
    "assemble_receipt",
    "verify_inclusion_receipt",
    "verify_consistency_receipt",
    "confirm_with_checkpoint",
]

VDS_RFC9162_SHA256 = 1
HDR_RECEIPTS, HDR_VDS, HDR_VDP = 394, 395, 396
# The protected labels receipt verification processes (alg, kid, CWT claims, vds): the only
# ones a receipt's ``crit`` may name (RFC 9052 3.1).
RECEIPT_LABELS = frozenset({1, 4, 15, HDR_VDS})
VDP_INCLUSION, VDP_CONSISTENCY = -1, -2
MAX_PATH = 64  # a tree of 2**64 leaves has at most 64 proof nodes


# --- encoding (used by the log) ---------------------------------------------------------


def encode_inclusion_proof(size: int, index: int, path: Sequence[bytes]) -> bytes:
    """CBOR ``[tree_size, leaf_index, [path...]]`` (the content of the bstr)."""
    return cbor.dumps([size, index, [bytes(h) for h in path]])


def encode_consistency_proof(size1: int, size2: int, path: Sequence[bytes]) -> bytes:
    """CBOR ``[tree_size_1, tree_size_2, [path...]]`` (the content of the bstr)."""
    return cbor.dumps([size1, size2, [bytes(h) for h in path]])


def receipt_protected(*, alg: int, kid: bytes, issuer: str, subject: str, iat: int, vds: int = 1) -> bytes:
    """Deterministically encoded receipt protected header ``{1, 4, 15: {1, 2, 6}, 395}``."""
    return cbor.dumps({1: alg, 4: bytes(kid), 15: {1: issuer, 2: subject, 6: iat}, HDR_VDS: vds})


def assemble_receipt(
    protected_raw: bytes,
    signature: bytes,
    *,
    inclusion: list[bytes] | None = None,
    consistency: list[bytes] | None = None,
) -> bytes:
    """Tagged COSE_Sign1 receipt with detached payload and the proofs as bstrs under 396."""
    vdp: dict[int, list[bytes]] = {}
    if inclusion:
        vdp[VDP_INCLUSION] = [bytes(p) for p in inclusion]
    if consistency:
        vdp[VDP_CONSISTENCY] = [bytes(p) for p in consistency]
    if not vdp:
        raise ValueError("a receipt needs at least one inclusion or consistency proof")
    return cose.encode_sign1(protected_raw, {HDR_VDP: vdp}, None, signature)


# --- parsing ----------------------------------------------------------------------------


@dataclass
class Receipt:
    """A decoded receipt (any vds). Claims come from the protected CWT Claims (15)."""

    sign1: cose.Sign1
    vds: Any
    alg: int | None
    kid: bytes | None
    issuer: str | None
    subject: str | None
    iat: Any

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = 1 << 20, max_depth: int = 16) -> "Receipt":
        """Decode a receipt; does not validate its proofs (see the verify functions)."""
        if type(data) is bytes and max_size == 1 << 20 and max_depth == 16:
            fast = _fast_parse(data)
            if fast is not None:
                return fast
        msg = cose.decode_sign1(data, max_size=max_size, max_depth=max_depth)
        cose.check_crit(msg.protected, RECEIPT_LABELS)
        vds, kid, iss, sub, iat = _header_fields(msg.protected)
        return cls(sign1=msg, vds=vds, alg=msg.alg, kid=kid, issuer=iss, subject=sub, iat=iat)

    def require_vds1(self) -> None:
        """Raise unless this receipt is RFC9162_SHA256 (vds 1) with alg in the protected header."""
        if HDR_VDS not in self.sign1.protected:
            raise VerificationError("receipt.vds", "vds (395) missing from the protected header")
        if self.vds != VDS_RFC9162_SHA256:
            raise VerificationError("receipt.unsupported-vds", f"verifiable data structure {cbor.brief(self.vds)} is not supported")
        if self.alg is None:
            raise VerificationError("receipt.alg", "alg (1) missing from the protected header")

    def proofs(self, label: int) -> list[list]:
        """The decoded proofs under 396/label: each ``[a, b, [path...]]``, bstr-wrapped or inline."""
        vdp = self.sign1.unprotected.get(HDR_VDP)
        if not isinstance(vdp, dict):
            raise VerificationError("receipt.vdp", "vdp (396) map missing from the unprotected header")
        items = vdp.get(label)
        if not isinstance(items, list) or not items:
            what = "inclusion" if label == VDP_INCLUSION else "consistency"
            raise VerificationError("receipt.vdp", f"no {what} proofs in vdp (396)")
        return [_proof(item) for item in items]


# --- fast path for the common receipt shape ---------------------------------------------
#
#   d2 84 58 LL <protected> a1 19 01 8c a1 20 81 (58 LL | 59 LLLL) <proof> f6 58 40 <r||s>
#
# i.e. tag 18, protected bstr of 24..255 bytes, unprotected {396: {-1: [bstr]}}, detached
# payload, 64-byte signature. Anything else goes to the general strict decoder. The
# protected header is decoded by the same function the general decoder uses (same depth
# bound, same errors), once per distinct protected bstr: a log signs many receipts with
# one protected header per tree size. Only the *decoding* of those bytes is cached, never
# a verification result.

_PROT_CACHE: dict[bytes, tuple] = {}
_PROT_CACHE_MAX = 256
_SIG_PREFIX_32 = b"\x58\x20"  # the head of a 32-byte payload (the root)


def _copy(obj: Any) -> Any:
    """Copy the containers of a decoded header so callers cannot alter the cached one."""
    t = type(obj)
    if t is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if t is list:
        return [_copy(v) for v in obj]
    return obj


def _header_fields(p: dict) -> tuple:
    """(vds, kid, iss, sub, iat) of a receipt's protected header; wrong types read as None."""
    claims = p.get(15)
    if not isinstance(claims, dict):
        claims = {}
    kid = p.get(4)
    if isinstance(kid, str):
        kid = kid.encode()
    iss, sub = claims.get(1), claims.get(2)
    return (
        p.get(HDR_VDS),
        kid if isinstance(kid, bytes) else None,
        iss if isinstance(iss, str) else None,
        sub if isinstance(sub, str) else None,
        claims.get(6),
    )


def _protected_entry(protected_raw: bytes) -> tuple:
    """(decoded protected map, Receipt fields, Sig_structure prefix for a 32-byte root)."""
    ent = _PROT_CACHE.get(protected_raw)
    if ent is None:
        # depth 15 = decode_sign1's max_depth (16) - 1, as in the general path
        p = cose._decode_header_map(protected_raw, 15, "cose.protected")
        cose.check_crit(p, RECEIPT_LABELS)
        vds, kid, iss, sub, iat = _header_fields(p)
        alg = p.get(1)
        fields = (vds, alg if isinstance(alg, int) and not isinstance(alg, bool) else None, kid, iss, sub, iat)
        # sig_structure(protected_raw, root) == prefix + root for a 32-byte root
        prefix = cose.sig_structure(protected_raw, b"")[:-1] + _SIG_PREFIX_32
        ent = (p, fields, prefix)
        if len(_PROT_CACHE) >= _PROT_CACHE_MAX:
            _PROT_CACHE.pop(next(iter(_PROT_CACHE)))
        _PROT_CACHE[protected_raw] = ent
    return ent


def _fast_layout(data: bytes) -> tuple[int, int, int] | None:
    """Offsets (p, q, e) of the common receipt shape: protected bstr data[4:p], proof bstr
    data[q:e], 64-byte signature data[e+3:]; None on any deviation."""
    n = len(data)
    if n < 80 or data[0] != 0xD2 or data[1] != 0x84 or data[2] != 0x58:
        return None
    p = 4 + data[3]
    if data[p : p + 7] != _RECEIPT_VDP1 or p + 10 > n:
        return None
    b = data[p + 7]
    if b == 0x58:
        q = p + 9
        e = q + data[p + 8]
    elif b == 0x59:
        q = p + 10
        e = q + ((data[p + 8] << 8) | data[p + 9])
    else:
        return None
    if e + 67 != n or data[e] != 0xF6 or data[e + 1] != 0x58 or data[e + 2] != 0x40:
        return None
    return p, q, e


def _fast_parse(data: bytes) -> "Receipt | None":
    """Receipt.parse for the common shape by fixed offsets; None on any deviation."""
    lay = _fast_layout(data)
    if lay is None:
        return None
    p, q, e = lay
    protected_raw = data[4:p]
    prot, (vds, alg, kid, iss, sub, iat), _ = _protected_entry(protected_raw)
    msg = cose.Sign1(protected_raw, _copy(prot), {HDR_VDP: {VDP_INCLUSION: [data[q:e]]}}, None, data[e + 3 :],
                     data, p, e)
    return Receipt(msg, vds, alg, kid, iss, sub, iat)


_RECEIPT_VDP1 = b"\xa1\x19\x01\x8c\xa1\x20\x81"  # {396: {-1: [  (one array item)


def _fast_proof(b: bytes) -> list | None:
    """Decode the canonical shape ``83 <uint> <uint> 8n (58 20 <32 bytes>)*n`` directly.

    Returns None for any other encoding (the generic strict path then decides).
    """
    n = len(b)
    if n < 4 or b[0] != 0x83:
        return None
    try:
        p = 1
        ints = []
        for _ in (0, 1):
            ib = b[p]
            if ib < 0x18:
                ints.append(ib)
                p += 1
            elif ib <= 0x1B:
                w = 1 << (ib - 0x18)  # 1, 2, 4 or 8 bytes
                if p + 1 + w > n:
                    return None
                ints.append(int.from_bytes(b[p + 1 : p + 1 + w], "big"))
                p += 1 + w
            else:
                return None
        ib = b[p]
        if 0x80 <= ib < 0x98:
            count = ib - 0x80
            p += 1
        elif ib == 0x98:
            count = b[p + 1]
            p += 2
        else:
            return None
    except IndexError:
        return None
    if count > MAX_PATH or p + 34 * count != n:
        return None
    body = b[p:]
    if body[0::34] != b"\x58" * count or body[1::34] != b"\x20" * count:
        return None
    return [ints[0], ints[1], [b[i : i + 32] for i in range(p + 2, n, 34)]]


def _proof(item: Any) -> list:
    if isinstance(item, bytes):
        fast = _fast_proof(item)
        if fast is not None:
            return fast
        item = cbor.loads(item, max_depth=3)
    if (
        not isinstance(item, list)
        or len(item) != 3
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in item[:2])
        or not isinstance(item[2], list)
        or len(item[2]) > MAX_PATH
        or not all(isinstance(h, bytes) and len(h) == 32 for h in item[2])
    ):
        raise VerificationError("receipt.proof-format", "proof must be [uint, uint, [32-byte bstr...]]")
    return item


@dataclass
class ReceiptInfo:
    """What a verified inclusion receipt proves."""

    vds: int
    alg: int
    kid: bytes | None
    issuer: str | None
    subject: str | None
    iat: Any
    size: int
    index: int
    root: bytes
    path: list[bytes]
    leaf_hash: bytes


@dataclass
class ConsistencyInfo:
    """What a verified consistency receipt proves: root1 at size1 is a prefix of root2 at size2."""

    size1: int
    size2: int
    root1: bytes
    root2: bytes
    path: list[bytes]
    vds: int
    alg: int
    kid: bytes | None
    issuer: str | None
    subject: str | None
    iat: Any


def _candidate_keys(receipt: Receipt, keys: Any) -> list:
    """Keys to try: the kid's key when keys is a kid map and has it, else all of them.

    A kid that names no trusted key does not end the search: logs label keys in
    different ways (RFC 9679 thumbprints, SPKI hashes, names), the kid is only a hint,
    and every key in ``keys`` is trusted anyway.
    """
    if type(keys) is dict or isinstance(keys, Mapping):
        if receipt.kid is not None:
            k = keys.get(receipt.kid)
            if k is not None:
                return [k]
        cands = list(keys.values())
    elif isinstance(keys, (list, tuple)):
        cands = list(keys)
    else:
        cands = [keys]
    if not cands:
        raise VerificationError("receipt.unknown-key", "no trusted log keys")
    return cands


def _verify_signature(receipt: Receipt, keys: Any, root: bytes) -> None:
    msg = receipt.sign1
    if msg.payload is not None and msg.payload != root:
        raise VerificationError("receipt.root-mismatch", "attached payload differs from the computed root")
    ent = _PROT_CACHE.get(msg.protected_raw) if len(root) == 32 else None
    tbs = ent[2] + root if ent is not None else cose.sig_structure(msg.protected_raw, root)
    last: VerificationError | None = None
    for key in _candidate_keys(receipt, keys):
        try:
            cose.verify_tbs(key, receipt.alg, tbs, msg.signature)  # type: ignore[arg-type]
            return
        except VerificationError as exc:
            last = exc
    assert last is not None
    check = "receipt.signature" if last.check == "cose.signature" else last.check.replace("cose.", "receipt.", 1)
    detail = last.detail
    if isinstance(keys, Mapping) and receipt.kid is not None and receipt.kid not in keys:
        check = "receipt.unknown-key"
        detail = f"no trusted key has kid {receipt.kid.hex()}, and none of the {len(keys)} trusted keys verifies"
    raise VerificationError(check, detail)


def _root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 root computation, same result as merkle.root_from_inclusion_proof.

    Inlined for the receipt hot path: the path hashes were already checked to be 32
    bytes by :func:`_proof`, so the per-hash checks are not repeated here.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    if len(path) != inner + border:
        raise VerificationError(
            "receipt.inclusion-proof",
            f"proof has {len(path)} hashes, want {inner + border} for index {index} in size {size}",
        )
    # one-shot sha256(0x01 || a || b): cheaper than copying a pre-fed hash object
    r = leaf_hash
    idx = index
    for p in path[:inner]:
        r = sha256(b"\x01" + p + r).digest() if idx & 1 else sha256(b"\x01" + r + p).digest()
        idx >>= 1
    for p in path[inner:]:
        r = sha256(b"\x01" + p + r).digest()
    return r


def _fast_inclusion(data: bytes, leaf_input: bytes, keys: dict) -> ReceiptInfo | None:
    """verify_inclusion_receipt in one pass for the common shape: an ES256 receipt in the
    layout of :func:`_fast_parse` whose kid names a P-256 key of ``keys``.

    Returns None on any deviation *and* on any failed check: the general path then runs
    and raises the precise error, so this function only ever says "verified"; it makes
    the same checks as the general path (structure, vds 1, proof shape and length, root
    recomputed from the leaf, signature over that root), without building the COSE objects.
    """
    lay = _fast_layout(data)
    if lay is None:
        return None
    p, q, e = lay
    prot, (vds, alg, kid, iss, sub, iat), prefix = _protected_entry(data[4:p])
    if vds != VDS_RFC9162_SHA256 or alg != cose.ES256 or kid is None:
        return None
    key = keys.get(kid)
    if type(key) not in _EC_PUB or key.curve.name != "secp256r1":
        return None
    proof = _fast_proof(data[q:e])
    if proof is None:
        return None
    size, index, path = proof
    if size == 0 or index >= size or (not path and size != 1):
        return None
    inner = (index ^ (size - 1)).bit_length()
    if len(path) != inner + bin(index >> inner).count("1"):
        return None
    lh = sha256(b"\x00" + leaf_input).digest()
    r = _root_from_inclusion(index, size, lh, path)
    sig = data[e + 3 :]
    try:
        key.verify(_dss(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), prefix + r, _ES256_SIG)
    except InvalidSignature:
        return None
    return ReceiptInfo(vds, alg, kid, iss, sub, iat, size, index, r, path, lh)


def _ec_public_types() -> frozenset:
    """The concrete class(es) of EC public keys in this `cryptography` (an ABC isinstance
    check costs ~0.5 us; the curve is checked separately)."""
    k = ec.generate_private_key(ec.SECP256R1()).public_key()
    return frozenset({type(k)}) if isinstance(k, ec.EllipticCurvePublicKey) else frozenset()


_EC_PUB = _ec_public_types()
_ES256_SIG = ec.ECDSA(hashes.SHA256())


def verify_inclusion_receipt(receipt: bytes | Receipt, leaf_input: bytes, keys: Any) -> ReceiptInfo:
    """Verify an RFC9162_SHA256 inclusion receipt for ``leaf_input`` (the 32-byte d(i)).

    ``keys``: a dict kid -> public key (the receipt's kid selects the key; a receipt
    without kid is tried against all), a list of public keys, or one key.
    """
    if type(receipt) is bytes and type(keys) is dict and type(leaf_input) is bytes:
        info = _fast_inclusion(receipt, leaf_input, keys)
        if info is not None:
            return info
    r = receipt if isinstance(receipt, Receipt) else Receipt.parse(receipt)
    r.require_vds1()
    proofs = r.proofs(VDP_INCLUSION)
    if len(proofs) != 1:
        raise VerificationError("receipt.proof-count", "exactly one inclusion proof expected")
    size, index, path = proofs[0]
    if size == 0 or index >= size:
        raise VerificationError("receipt.proof-format", f"leaf index {index} not below tree size {size}")
    if not path and size != 1:
        raise VerificationError("receipt.proof-format", "empty inclusion path for a tree larger than 1")
    lh = merkle.leaf_hash(leaf_input)
    root = _root_from_inclusion(index, size, lh, path)
    _verify_signature(r, keys, root)
    return ReceiptInfo(
        vds=r.vds, alg=r.alg, kid=r.kid, issuer=r.issuer, subject=r.subject, iat=r.iat,  # type: ignore[arg-type]
        size=size, index=index, root=root, path=path, leaf_hash=lh,
    )


def verify_consistency_receipt(receipt: bytes | Receipt, *, size1: int, root1: bytes, keys: Any) -> ConsistencyInfo:
    """Verify a consistency receipt from (size1, root1) and return the newer tree head it proves."""
    r = receipt if isinstance(receipt, Receipt) else Receipt.parse(receipt)
    r.require_vds1()
    proofs = r.proofs(VDP_CONSISTENCY)
    if len(proofs) != 1:
        raise VerificationError("receipt.proof-count", "exactly one consistency proof expected")
    s1, s2, path = proofs[0]
    if s1 != size1:
        raise VerificationError("receipt.size-mismatch", f"receipt proves from size {s1}, expected {size1}")
    if not 0 < s1 <= s2:
        raise VerificationError("receipt.proof-format", f"invalid sizes {s1} -> {s2}")
    try:
        root2 = merkle.root_from_consistency_proof(s1, s2, path, root1)
    except VerificationError as exc:
        raise VerificationError("receipt.consistency-proof", exc.detail or exc.check) from None
    _verify_signature(r, keys, root2)
    return ConsistencyInfo(
        size1=s1, size2=s2, root1=root1, root2=root2, path=path, vds=r.vds, alg=r.alg,  # type: ignore[arg-type]
        kid=r.kid, issuer=r.issuer, subject=r.subject, iat=r.iat,
    )


def confirm_with_checkpoint(size: int, root: bytes, checkpoint_size: int, checkpoint_root: bytes) -> None:
    """Confirm the tree size a verified receipt claims with a verified signed checkpoint.

    RFC 9942 signs only the root: the tree size and leaf index in a receipt's proof are not
    signed, and other (size, index) pairs can recompute the same root from the same path
    (index 3 of size 6, 7 or 8, for instance). A signed checkpoint signs size and root. Pass the
    receipt's (size, root) (``ReceiptInfo.size/.root`` or ``ConsistencyInfo.size2/.root2``)
    and the checkpoint's; returns when they agree, after which the leaf index is bound too (for
    a fixed size, SHA-256 with RFC 9162 domain separation admits one leaf per position).
    Raises ``receipt.tree-size`` when the checkpoint has the receipt's root at another size
    (the receipt's size is false), ``receipt.checkpoint-mismatch`` when the checkpoint of the
    claimed size has another root (a fork, or a receipt whose size was altered: without a
    signed size no one can tell), and ``receipt.unconfirmed`` for a checkpoint of another
    size and root (it says nothing about this receipt)."""
    if root == checkpoint_root:
        if size != checkpoint_size:
            raise VerificationError(
                "receipt.tree-size",
                f"the receipt claims tree size {size}; the signed checkpoint with its root has size {checkpoint_size}")
        return
    if size == checkpoint_size:
        raise VerificationError(
            "receipt.checkpoint-mismatch",
            f"the signed checkpoint of size {size} has another root than the receipt: a fork, or a receipt "
            "whose unsigned tree size was altered")
    raise VerificationError(
        "receipt.unconfirmed", f"a checkpoint of size {checkpoint_size} cannot confirm a receipt claiming size {size}")
