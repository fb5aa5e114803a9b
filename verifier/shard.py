"""Shards by time: a chain of logs, each closed log's final checkpoint recorded in its successor.

A log is closed at a size or a date; it then refuses registrations and keeps serving reads,
proofs, checkpoints and tiles. Its successor is a new log with its own origin and its own keys.
Entry 0 of the successor is the **shard statement**: a Signed Statement of the log's own type
``application/vnd.twi.tlog-shard+cbor``, signed by the successor's statement-signing (receipt)
key and registered by the log itself (registrants are refused statements of the log's own types,
issue 11), whose payload records the predecessor::

    18([ << {1: -7, 3: "application/vnd.twi.tlog-shard+cbor", 4: <successor kid>,
             15: {1: <successor issuer>, 2: "<successor origin>/predecessor"}} >>,
         {},
         << {"version": 1,
             "predecessor": {
               "origin": tstr, "url": tstr,            ; the closed log and where it is served
               "checkpoint": tstr,                     ; its final checkpoint, signed note text
               "vkey": tstr,                           ; its checkpoint verifier key
               "receipt-keys": [COSE_Key bstr...],     ; its statement/receipt keys, current and retired
               "closed": uint}} >>,                    ; when it was closed (seconds)
         signature ])

Trust follows the chain backwards: a party that trusts the current shard (its vkey or receipt
keys) verifies the shard statement at its index 0 (inclusion in a checkpoint it verified, and
the log's signature), which names the predecessor's keys and final checkpoint; the predecessor's
final checkpoint must verify with that vkey; the predecessor's own index 0 may name another.
A predecessor that serves a checkpoint other than its final one (larger: it kept growing after
it was closed; same size, other root: a fork) is caught by comparing with the recorded final
checkpoint (:func:`check_closed_log`).

Used by the monitor and the audit (``twi-verify monitor|audit --shards``), by
:func:`discover_chain` (``twi-verify shards``: the verified key set of every shard, for
relying parties) and by the registration-policy audit (index 0 of a successor is the log's
own statement, not an entry judged by a policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import cbor
from .errors import VerificationError
from .keys import public_key_from_cose_key, thumbprint
from .note import Checkpoint, CheckpointNote, NoteVerifier, open_checkpoint
from .statement import SignedStatement

SHARD_CONTENT_TYPE = "application/vnd.twi.tlog-shard+cbor"
SHARD_SUB_SUFFIX = "/predecessor"
SHARD_VERSION = 1
MAX_CHAIN = 64  # shards followed backwards at most

__all__ = [
    "SHARD_CONTENT_TYPE",
    "SHARD_SUB_SUFFIX",
    "ShardLink",
    "is_shard_statement",
    "open_shard_statement",
    "shard_document",
    "check_closed_log",
]


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise VerificationError("shard.document", what)


@dataclass
class ShardLink:
    """What a successor's index 0 says about its predecessor (verified)."""

    successor_origin: str
    origin: str  # the predecessor's
    url: str
    vkey: str
    final: CheckpointNote  # the predecessor's final checkpoint, verified with ``vkey``
    receipt_keys: dict[bytes, Any] = field(default_factory=dict)  # kid (thumbprint) -> public key
    closed: int = 0
    entry_id: str = ""  # the shard statement's entry id in the successor

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_vkey(self.vkey)

    @property
    def final_checkpoint(self) -> Checkpoint:
        return self.final.checkpoint

    def summary(self) -> dict[str, Any]:
        cp = self.final.checkpoint
        return {"successor": self.successor_origin, "origin": self.origin, "url": self.url, "vkey": self.vkey,
                "final_size": cp.size, "receipt_kids": sorted(k.hex() for k in self.receipt_keys),
                "closed": self.closed, "entry_id": self.entry_id}


def shard_document(*, origin: str, url: str, checkpoint: str, vkey: str, receipt_keys: list[bytes],
                   closed: int) -> dict[str, Any]:
    """The shard statement's payload (the log encodes it with :func:`verifier.cbor.dumps`)."""
    return {"version": SHARD_VERSION, "predecessor": {
        "origin": origin, "url": url, "checkpoint": checkpoint, "vkey": vkey,
        "receipt-keys": list(receipt_keys), "closed": int(closed)}}


def is_shard_statement(st: SignedStatement, log_keys: dict[bytes, Any]) -> bool:
    """The log's own shard statement: the shard content type under one of the log's kids."""
    return st.content_type == SHARD_CONTENT_TYPE and st.kid is not None and st.kid in log_keys


def open_shard_statement(st: SignedStatement, log_keys: dict[bytes, Any], *, origin: str | None = None) -> ShardLink:
    """Verify a shard statement with the log's key its kid names and the predecessor's final
    checkpoint with the predecessor's vkey it records; ``origin``: the successor's origin (its
    ``sub`` must be ``<origin>/predecessor``). Raises VerificationError (``shard.*``)."""
    if st.content_type != SHARD_CONTENT_TYPE:
        raise VerificationError("shard.statement", "not a shard statement (content type)")
    key = log_keys.get(st.kid) if st.kid is not None else None
    if key is None:
        raise VerificationError("shard.statement", "kid is not one of the log's statement-signing keys")
    if st.payload is None:
        raise VerificationError("shard.statement", "shard payload is detached")
    try:
        st.verify(key)
    except VerificationError as e:
        raise VerificationError("shard.signature", f"shard statement signature: {e.detail}") from None
    if not st.sub.endswith(SHARD_SUB_SUFFIX):
        raise VerificationError("shard.statement", f"sub {cbor.brief(st.sub)} does not end in {SHARD_SUB_SUFFIX!r}")
    succ = st.sub[: -len(SHARD_SUB_SUFFIX)]
    if origin is not None and succ != origin:
        raise VerificationError("shard.statement", f"sub {cbor.brief(st.sub)}, want {origin + SHARD_SUB_SUFFIX!r}")
    doc = cbor.loads(st.payload, max_depth=8, max_size=len(st.payload))
    _need(isinstance(doc, dict) and doc.get("version") == SHARD_VERSION, "unsupported shard statement version")
    p = doc.get("predecessor")
    _need(isinstance(p, dict), "predecessor must be a map")
    for k in ("origin", "url", "checkpoint", "vkey"):
        _need(isinstance(p.get(k), str) and p[k] != "", f"predecessor {k} must be a non-empty text string")
    _need(type(p.get("closed", 0)) is int, "closed must be an int")
    rks = p.get("receipt-keys", [])
    _need(isinstance(rks, list) and all(isinstance(k, bytes) for k in rks), "receipt-keys must be COSE_Key bstrs")
    keys: dict[bytes, Any] = {}
    for raw in rks:
        try:
            pub = public_key_from_cose_key(cbor.loads(raw, max_depth=4, max_size=len(raw)))
        except VerificationError as e:
            raise VerificationError("shard.document", f"receipt key: {e.detail}") from None
        keys[thumbprint(pub)] = pub
    try:
        ver = NoteVerifier.from_vkey(p["vkey"])
    except VerificationError as e:
        raise VerificationError("shard.document", f"predecessor vkey: {e.detail}") from None
    if ver.name != p["origin"]:
        raise VerificationError("shard.document", f"the vkey names {ver.name!r}, the predecessor is {p['origin']!r}")
    if p["origin"] == succ:
        raise VerificationError("shard.document", "the predecessor has the successor's origin")
    try:
        final = open_checkpoint(p["checkpoint"], ver)
    except VerificationError as e:
        raise VerificationError("shard.checkpoint",
                                f"the predecessor's final checkpoint does not verify with its vkey: {e.detail}") from None
    return ShardLink(succ, p["origin"], p["url"].rstrip("/"), p["vkey"], final, keys, p.get("closed", 0),
                     st.leaf_input.hex())


def check_closed_log(link: ShardLink, note: str) -> CheckpointNote:
    """The checkpoint a closed log serves now must be its final one: same size and root.

    Raises VerificationError: ``shard.grew`` (a larger tree: it kept appending after it was
    closed), ``shard.fork`` (another tree: a rewritten or forked predecessor), or a signature
    check of ``note``."""
    got = open_checkpoint(note, link.verifier)
    cp, final = got.checkpoint, link.final.checkpoint
    if cp.size > final.size:
        raise VerificationError("shard.grew", f"the closed log {link.origin} serves size {cp.size}, beyond its "
                                f"final checkpoint of size {final.size} recorded by {link.successor_origin}")
    if cp.size != final.size or cp.root != final.root:
        raise VerificationError("shard.fork", f"the closed log {link.origin} serves size {cp.size} with another "
                                f"root than its final checkpoint (size {final.size}) recorded by {link.successor_origin}")
    return got


def first_entry_statement(get: Callable[[str], bytes], leaf_input: bytes) -> SignedStatement:
    """The statement behind leaf input ``leaf_input`` (``GET entries/<hex>/statement``), checked
    to hash to it."""
    data = get(f"entries/{leaf_input.hex()}/statement")
    st = SignedStatement.parse(data)
    if st.leaf_input != leaf_input:
        raise VerificationError("shard.statement", "the statement served for entry 0 does not hash to its leaf")
    return st
