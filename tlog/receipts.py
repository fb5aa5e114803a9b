"""Receipt signatures: one COSE signature per tree size, made once by the sequencer for every new
tree head (:meth:`ReceiptSigning.sign_head`, stored as ``CBOR [protected_raw, signature]`` with the
head) and reused by every receipt at that size (inclusion for any entry, and consistency receipts
ending at that size): the Sig_structure is the same (protected header, detached payload = root).
Sizes that are not published tree heads are refused (400) rather than signed on demand.

:class:`ReceiptSigning` is a part of :class:`tlog.service.LogService` (it uses the service's
``keys``, ``issuer``, ``origin``, ``log`` and ``tree_size``).
"""

from __future__ import annotations

import collections
import threading
import time

import cbor2

from verifier import cbor as vcbor
from verifier import cose as vcose
from verifier import receipt as vreceipt

from .errors import BadRequest

__all__ = ["VDS_RFC9162_SHA256", "ReceiptSigning", "fast_inclusion_receipts", "fast_receipt"]

VDS_RFC9162_SHA256 = 1


def fast_receipt(protected_raw: bytes, signature: bytes, vdp_label: int, proof: list) -> bytes:
    """The bytes of ``verifier.receipt.assemble_receipt`` with one proof, built with cbor2's C
    encoder (the structures are arrays of uints and bstrs and one-entry maps, so the encoding
    is the deterministic one; tests check the bytes are equal)."""
    return b"".join(
        (
            b"\xd2\x84",
            cbor2.dumps(protected_raw),
            cbor2.dumps({396: {vdp_label: [cbor2.dumps(proof)]}}),
            b"\xf6",
            cbor2.dumps(signature),
        )
    )


def fast_inclusion_receipts(protected_raw: bytes, signature: bytes, size: int, indexes, paths) -> list[bytes]:
    """``fast_receipt(protected_raw, signature, -1, [size, i, path])`` for each index and path:
    the receipt's head (tag, protected header) and tail (payload nil, signature) are the same
    for every receipt of one tree size, encoded once (a batch's receipts)."""
    head = b"\xd2\x84" + cbor2.dumps(protected_raw)
    tail = b"\xf6" + cbor2.dumps(signature)
    dumps = cbor2.dumps
    return [head + dumps({396: {-1: [dumps([size, i, path])]}}) + tail for i, path in zip(indexes, paths)]


class ReceiptSigning:
    """The receipt-signing part of :class:`tlog.service.LogService`."""

    def _init_receipt_signing(self) -> None:
        self._sig_cache: collections.OrderedDict[int, tuple[bytes, bytes]] = collections.OrderedDict()
        self._sig_lock = threading.Lock()
        self._protected_last: tuple | None = None  # ((alg, kid, issuer, origin, iat), header bytes)

    def _protected(self, iat: int, receipt_key=None) -> bytes:
        k = receipt_key or self.keys.receipt
        # the same header for every batch of one second (and key): encoded once
        memo = (k.alg, k.kid, self.issuer, self.origin, iat)
        last = self._protected_last
        if last is not None and last[0] == memo:
            return last[1]
        raw = vreceipt.receipt_protected(
            alg=k.alg,
            kid=k.kid,
            issuer=self.issuer,
            subject=self.origin,
            iat=iat,
            vds=VDS_RFC9162_SHA256,
        )
        self._protected_last = (memo, raw)
        return raw

    def sign_head(self, size: int, root: bytes) -> bytes:
        """Head signer for the core: the one receipt signature of this tree size."""
        k = self.keys.receipt  # one key for the header and the signature, across a rotation
        protected_raw = self._protected(int(time.time()), k)
        sig = k.sign(vcose.sig_structure(protected_raw, root))
        return vcbor.dumps([protected_raw, sig])

    def head_signature(self, size: int) -> tuple[bytes, bytes]:
        """(protected_raw, signature) of the receipt signature at ``size``."""
        with self._sig_lock:
            hit = self._sig_cache.get(size)
            if hit is not None:
                self._sig_cache.move_to_end(size)
                return hit
        # the head this process's sequencer just committed is in memory (every entry of a batch
        # asks for it at once): no database read; other sizes come from storage
        head = self.log.latest()
        if head is None or head.size != size:
            head = self.log.tree_head(size)
        extra = getattr(head, "extra", None) if head is not None else None
        if not extra:
            # Only published tree heads carry a receipt signature (one per size, made once by
            # the sequencer); signing other sizes on demand would give several signatures for
            # one size across workers. Every checkpoint and every receipt names a head size.
            raise BadRequest(
                "Malformed request", f"tree size {size} is not a published tree head (use a checkpoint size)"
            )
        p, s = vcbor.loads(extra)
        val = (p, s)
        with self._sig_lock:
            self._sig_cache[size] = val
            while len(self._sig_cache) > 4096:
                self._sig_cache.popitem(last=False)
        return val

    def inclusion_receipt(self, index: int, size: int) -> bytes:
        p, sig = self.head_signature(size)
        path = self.log.inclusion_proof(index, size)
        return fast_receipt(p, sig, -1, [size, index, list(path)])

    def inclusion_receipts(self, indexes: list[int], size: int) -> list[bytes]:
        """:meth:`inclusion_receipt` of each of ``indexes`` at ``size`` (one batch's entries):
        one signature lookup, one tile load for all the proofs, the common bytes encoded once."""
        p, sig = self.head_signature(size)
        return fast_inclusion_receipts(p, sig, size, indexes, self.log.inclusion_proofs(indexes, size))

    def consistency_receipt(self, size1: int, size2: int) -> bytes:
        current = self.tree_size()
        if not (1 <= size1 <= size2 <= current):
            raise BadRequest(
                "Malformed request", f"need 1 <= from <= to <= {current} (the current tree size)"
            )
        p, sig = self.head_signature(size2)
        path = self.log.consistency_proof(size1, size2) if size1 < size2 else []
        return fast_receipt(p, sig, -2, [size1, size2, list(path)])
