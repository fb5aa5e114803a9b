"""Credential Provenance records: classifying statements, decoding records, private records (COSE_Encrypt0)."""

from __future__ import annotations

from typing import Any

from ..errors import VerificationError
from .wire import CPR_MEDIA_TYPE, CPR_TYPE, INTOTO_MEDIA_TYPE, POLICY_MEDIA_TYPES, STATUS_MEDIA_TYPE


def encode_encrypt0(protected: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Tagged COSE_Encrypt0 ``16([protected, {5: iv}, ciphertext])``."""
    from .. import cbor

    return b"\xd0\x83" + cbor.encode_bstr(protected) + cbor.dumps({5: iv}) + cbor.encode_bstr(ciphertext)


def decrypt_record(blob: bytes, key: bytes, rid: str) -> bytes:
    """Open an encrypted Credential Provenance record (COSE_Encrypt0, A256GCM, AAD = rid)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from .. import cbor

    if not blob.startswith(b"\xd0\x83"):
        raise VerificationError("record.encrypt0", "not a tagged COSE_Encrypt0")
    try:
        arr = cbor.loads(blob[1:], max_depth=4)  # skip the tag byte, decode the array
    except VerificationError as e:
        raise VerificationError("record.encrypt0", e.detail) from None
    if not (isinstance(arr, list) and len(arr) == 3 and isinstance(arr[0], bytes) and isinstance(arr[1], dict)
            and isinstance(arr[2], bytes)):
        raise VerificationError("record.encrypt0", "COSE_Encrypt0 must be [bstr, map, bstr]")
    prot = cbor.loads(arr[0]) if arr[0] else {}
    if prot.get(1) != 3:
        raise VerificationError("record.encrypt0", "only A256GCM (3) is supported")
    iv = arr[1].get(5)
    if not isinstance(iv, bytes) or len(iv) != 12:
        raise VerificationError("record.encrypt0", "IV (5) must be 12 bytes")
    if len(key) != 32:
        raise VerificationError("record.key", "record key must be 32 bytes")
    aad = cbor.dumps(["Encrypt0", arr[0], rid.encode()])
    try:
        return AESGCM(key).decrypt(iv, arr[2], aad)
    except InvalidTag:
        raise VerificationError("record.decrypt", "wrong key, wrong record id or tampered ciphertext") from None


def classify(st: Any) -> str | None:
    if st.content_type == STATUS_MEDIA_TYPE:
        return "status"
    if st.content_type in POLICY_MEDIA_TYPES:
        return "policy"
    if st.content_type == CPR_MEDIA_TYPE or (st.hash_envelope is not None and st.hash_envelope[1] == CPR_MEDIA_TYPE):
        return "cpr"
    if st.content_type == INTOTO_MEDIA_TYPE or (st.hash_envelope is not None and st.hash_envelope[1] == INTOTO_MEDIA_TYPE):
        return "wpr"
    return None


def statement_rid(st: Any) -> str | None:
    cti = st.cwt_claims.get(7)
    if isinstance(cti, bytes):
        try:
            return cti.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def decode_record(data: bytes) -> dict[str, Any]:
    from .. import cbor

    rec = cbor.loads(data, max_depth=12)
    if not isinstance(rec, dict) or rec.get("type") != CPR_TYPE:
        raise VerificationError("record.type", f"not a {CPR_TYPE} record")
    for k in ("rid", "credential", "attestation", "issuer", "iat"):
        if k not in rec:
            raise VerificationError("record.schema", f"record member {k!r} missing")
    if not isinstance(rec["credential"], dict) or not isinstance(rec["attestation"], dict):
        raise VerificationError("record.schema", "credential and attestation must be maps")
    return rec
