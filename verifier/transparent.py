"""Transparent statements (RFC 9942 / SCRAPI): a signed statement carrying its receipts in the
unprotected header (label 394). Attach and extract receipts without touching the other bytes,
and check every receipt (:mod:`verifier.receipt`) and, when asked, the issuer's signature.

Leaf input of a statement = SHA-256(statement bytes), statement bytes = the statement with its
unprotected map replaced by ``a0``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import cbor, cose
from .errors import VerificationError
from .receipt import HDR_RECEIPTS, VDS_RFC9162_SHA256, Receipt, ReceiptInfo, verify_inclusion_receipt
from .statement import UNDERSTOOD_LABELS, SignedStatement

__all__ = [
    "ReceiptResult",
    "TransparentStatementReport",
    "attach_receipts",
    "extract_receipts",
    "check_transparent_statement",
    "verify_transparent_statement",
]


def extract_receipts(ts: bytes) -> list[bytes]:
    """The receipts under 394 (bstr-wrapped ones unwrapped; inline tagged ones as received)."""
    msg = cose.decode_sign1(ts)
    return _receipt_items(msg)


def _receipt_items(msg: cose.Sign1) -> list[bytes]:
    raw = msg.raw
    if HDR_RECEIPTS not in msg.unprotected:
        return []
    decoded = msg.unprotected[HDR_RECEIPTS]
    if isinstance(decoded, list) and all(type(x) is bytes for x in decoded):
        return list(decoded)  # the usual bstr-wrapped receipts: contents as received
    pairs, _ = cbor.map_spans(raw, msg.unprotected_start, msg.unprotected_end)
    for (ks, ke), (vs, ve) in pairs:
        if raw[ks:ke] != b"\x19\x01\x8a":  # key 394
            continue
        if raw[vs] >> 5 != 4:
            raise VerificationError("receipt.receipts-header", "receipts (394) must be an array")
        spans, _ = cbor.array_spans(raw, vs, ve)
        out = []
        for s, e in spans:
            if raw[s] >> 5 == 2:
                major, ln, p = cbor.head(raw, s, e)
                out.append(raw[p : p + ln])
            elif raw[s] == 0xD2:
                out.append(raw[s:e])
            else:
                raise VerificationError("receipt.receipts-header", "a receipt must be a bstr or a tagged COSE_Sign1")
        return out
    raise VerificationError("receipt.receipts-header", "receipts (394) label not in canonical form")


def attach_receipts(statement: bytes, receipts: list[bytes]) -> bytes:
    """Add receipts (bstr-wrapped) to 394 of the unprotected header; other bytes kept as received."""
    msg = cose.decode_sign1(statement)
    existing = _receipt_items(msg) if HDR_RECEIPTS in msg.unprotected else []
    unprot = dict(msg.unprotected)
    unprot[HDR_RECEIPTS] = existing + [bytes(r) for r in receipts]
    raw = msg.raw
    return raw[: msg.unprotected_start] + cbor.dumps(unprot) + raw[msg.unprotected_end :]


@dataclass
class ReceiptResult:
    """Outcome for one receipt in a transparent statement."""

    index: int
    status: str  # "ok" | "unsupported" | "failed"
    check: str | None = None
    detail: str = ""
    vds: Any = None
    kid: bytes | None = None
    issuer: str | None = None
    info: ReceiptInfo | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict:
        """A JSON-friendly dict."""
        d: dict[str, Any] = {"index": self.index, "status": self.status, "vds": _jsonable(self.vds)}
        if self.check:
            d["check"] = self.check
            d["detail"] = self.detail
        if self.kid is not None:
            d["kid"] = self.kid.hex()
        if self.issuer is not None:
            d["issuer"] = self.issuer
        if self.info is not None:
            d.update(tree_size=self.info.size, leaf_index=self.info.index, root=self.info.root.hex(),
                     iat=_jsonable(self.info.iat))
        return d


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (int, str, bool, float)):
        return v
    return str(v)


@dataclass
class TransparentStatementReport:
    """Everything checked on a transparent statement."""

    leaf_input: bytes
    receipts: list[ReceiptResult] = field(default_factory=list)
    issuer_checked: bool = False
    issuer_error: VerificationError | None = None

    @property
    def ok(self) -> bool:
        """True when one receipt verified and (if checked) the issuer signature did."""
        return any(r.ok for r in self.receipts) and self.issuer_error is None


def check_transparent_statement(
    ts: bytes, log_keys: Any, *, issuer_key: Any = None, trust_anchors: Any = None, payload: bytes | None = None
) -> TransparentStatementReport:
    """Check every receipt (and the issuer signature when a key or anchors are given).

    Never raises for a bad receipt: each gets a ReceiptResult. Raises VerificationError
    only when the transparent statement itself cannot be decoded.
    """
    msg = cose.decode_sign1(ts)
    try:
        cose.check_crit(msg.protected, UNDERSTOOD_LABELS)  # RFC 9052 3.1: reject the message
    except VerificationError as exc:
        raise VerificationError("statement.crit", exc.detail) from None
    leaf_input = hashlib.sha256(msg.statement_bytes()).digest()
    report = TransparentStatementReport(leaf_input=leaf_input)
    if issuer_key is not None or trust_anchors:
        report.issuer_checked = True
        report.issuer_error = _check_issuer(msg, issuer_key, trust_anchors, payload)
    try:
        items = _receipt_items(msg)
    except VerificationError as exc:
        report.receipts.append(ReceiptResult(0, "failed", exc.check, exc.detail))
        return report
    if not items:
        report.receipts.append(ReceiptResult(0, "failed", "receipt.none", "no receipts (394) in the statement"))
    for i, raw in enumerate(items):
        report.receipts.append(_check_one(i, raw, leaf_input, log_keys))
    return report


def _check_issuer(msg: cose.Sign1, key: Any, anchors: Any, payload: bytes | None) -> VerificationError | None:
    try:
        # the header rules of a Signed Statement first (kid/x5chain, CWT claims, iss, hash
        # envelope), as the log applies them when it admits one
        st = SignedStatement.from_sign1(msg)
        if key is not None:
            keys = list(key.values()) if isinstance(key, Mapping) else key if isinstance(key, (list, tuple)) else [key]
            if not keys:  # an empty key list or map trusts no one: never "verified" by no key
                raise VerificationError("statement.no-key", "the issuer key list is empty")
            if msg.payload is None and payload is None:
                raise VerificationError("statement.payload-missing", "payload is detached and was not supplied")
            last = None
            for k in keys:
                try:
                    cose.verify_sign1(msg, k, payload=payload)
                    last = None
                    break
                except VerificationError as exc:
                    last = VerificationError(exc.check.replace("cose.", "statement.", 1), exc.detail)
            if last is not None:
                raise last
        else:
            st.verify(trust_anchors=anchors, payload=payload)
    except VerificationError as exc:
        return exc
    return None


def _check_one(i: int, raw: bytes, leaf_input: bytes, log_keys: Any) -> ReceiptResult:
    try:
        r = Receipt.parse(raw)
    except VerificationError as exc:
        return ReceiptResult(i, "failed", exc.check, exc.detail)
    res = ReceiptResult(i, "failed", vds=r.vds, kid=r.kid, issuer=r.issuer)
    if r.vds != VDS_RFC9162_SHA256:
        res.status, res.check = "unsupported", "receipt.unsupported-vds"
        res.detail = f"verifiable data structure {cbor.brief(r.vds)} is not supported"
        return res
    try:
        res.info = verify_inclusion_receipt(r, leaf_input, log_keys)
        res.status = "ok"
    except VerificationError as exc:
        res.check, res.detail = exc.check, exc.detail
    return res


def verify_transparent_statement(
    ts: bytes, log_keys: Any, *, issuer_key: Any = None, trust_anchors: Any = None, payload: bytes | None = None
) -> list[ReceiptResult]:
    """Per-receipt results; raises VerificationError when the issuer check (if requested) fails."""
    report = check_transparent_statement(
        ts, log_keys, issuer_key=issuer_key, trust_anchors=trust_anchors, payload=payload
    )
    if report.issuer_error is not None:
        raise report.issuer_error
    return report.receipts
