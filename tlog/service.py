"""The log service: registration, receipts, proofs and lookups, below the HTTP layer.

One :class:`LogService` per process (each gunicorn worker opens its own; the core serialises
integration across processes through the shared database).

Entry ids: the lowercase hex of the leaf input (SHA-256 of the statement bytes, 64 characters).
It is known before integration, so the 303 Location of an asynchronous registration is final;
the decimal index of an integrated entry is accepted too.

One claim, one entry: the log admits only the shortest (deterministic) CBOR encoding of a
COSE_Sign1's outer items and deduplicates on the digest of the signed content (the
Sig_structure: protected header bytes and payload), so a re-encoding or re-signature of an
admitted claim (e.g. the ECDSA (r, n-s) twin) answers with the ORIGINAL entry (its id, index
and receipt), and a second, different claim holding a value of the personality's unique
attributes (TWI: a Credential Provenance record for a record id the same issuer already
registered) is refused (409), before the queue and, for claims sent at the same instant, in the
commit (``Log.unique_attrs``). The personality (:mod:`tlog.personality`) is given by the
composition; the service imports none.

Receipts: one COSE signature per tree size, :mod:`tlog.receipts`. The parts of the service that
are not about registering and reading live apart, each a mix-in of :class:`LogService`:
:mod:`tlog.receipts` (receipt signatures), :mod:`tlog.discovery` (transparency configuration,
JWKS), :mod:`tlog.operations` (health, metrics); entry ids and lookup attributes are in
:mod:`tlog.attrs`, the request errors in :mod:`tlog.errors`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass

from verifier import VerificationError
from verifier import transparent as vtransparent
from verifier.statement import SignedStatement

from tlog.storage import StorageUnavailable, open_storage

from .attrs import (
    ATTR_ISS,
    ATTR_ISS_SUB,
    ATTR_KIND,
    ATTR_PAYLOAD_HASH,
    ATTR_POLICY,
    ATTR_SUB,
    entry_id_of,
    iss_sub_key,
)
from .discovery import Discovery
from .errors import BadRequest, Unavailable
from .operations import Operations
from .receipts import ReceiptSigning
from .config import Config
from .integrator import IntegratorUnavailable
from .log import LogSealed
from .keys import LogKeys, TrustStore, make_dirs
from .logstate import LiveState, check_policy_agrees, configured_policy, open_identity
from .metrics import Metrics  # aggregated across the server's processes (tlog.metrics)
from . import shard
from .log import SEALED_REFUSAL, Refused, refusal
from .pending import Entry
from .personality import PLAIN, Personality
from .policy import Policy, Rejection, classify
from .shard import LogClosed

log = logging.getLogger("tlog.service")



@dataclass
class Registration:
    entry_id: str
    index: int | None = None
    tree_size: int | None = None
    receipt: bytes | None = None
    duplicate: bool = False


@dataclass
class Submission:
    """A registration handed to the integrator, not yet answered (:meth:`LogService.register_submit`)."""

    entry_id: str
    pending: object  # tlog.pending.Pending
    t_start: float
    t0: float
    # ((key, value) pairs of the personality's unique attributes, claim digest), if any
    record: tuple | None = None


# ---- the service -----------------------------------------------------------------------------


def _serialize_integrations(storage, lock_path, metrics=None) -> None:
    """Queue the worker processes' integrations on a blocking file lock (SQLite only).

    SQLite's own writer lock is taken with BEGIN IMMEDIATE and, when busy, polled by SQLite's
    busy handler with sleeps of 1, 2, 5, 10 ... 100 ms: with several gunicorn workers the
    sequencers then sleep past each other and integration latency reaches hundreds of ms. An
    flock() taken first makes the waiting process wake as soon as the other commits. The
    SQLite lock still guards correctness; this only changes how the wait is done.
    """
    import contextlib
    import fcntl

    inner = storage.integration
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    local = threading.Lock()  # flock is per open file: serialise this process's threads too

    def integration():
        @contextlib.contextmanager
        def cm():
            t0 = time.monotonic()
            with local:
                fcntl.flock(fd, fcntl.LOCK_EX)
                t1 = time.monotonic()
                try:
                    with inner() as tx:
                        yield tx
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    if metrics is not None:
                        metrics.integration_tx(t1 - t0, time.monotonic() - t1)

        return cm()

    storage.integration = integration


class LogService(ReceiptSigning, Discovery, Operations):
    def __init__(self, config: Config, *, log_factory=None, integrator: str | None = None,
                 check_policy: bool = True, role: str = "full", personality: Personality = PLAIN) -> None:
        """``integrator``: "thread" (the core's sequencer thread in this process) or "process";
        default ``config.integrator``, where "auto" means thread (the server entry points
        choose process). "process" on SQLite: a separate integrator process per worker
        (tlog.integrator); on PostgreSQL: the log's one lease-holding integrator, fed through
        the durable queue (tlog.queued), with an integrator candidate process per worker
        (tlog.leader). ``check_policy``: refuse (StartupError) when the policy settings given
        disagree with the policy in force.

        ``role="integrator"``: the service of an integrator candidate process (tlog.leader):
        a Log without a sequencer, no policy start-up, no integrator of its own.

        ``personality``: the lookup attributes and unique values the statements of the log's
        application add (tlog.personality; the server composes tlog.twi.TWI); default none."""
        from tlog.log import Log

        if role not in ("full", "integrator"):
            raise ValueError(f"unknown role {role!r}")
        self.config = config
        self.personality = personality
        TrustStore.load(config.issuer_keys, config.trust_anchors)  # a bad file is refused first
        self._lock = threading.Lock()
        self._outstanding: collections.deque = collections.deque()  # (Pending, t0) of timed-out waits
        self._inflight = 0
        self._init_receipt_signing()
        self.metrics = Metrics()
        mode = integrator or config.integrator
        leased = config.database_url is not None and (mode == "process" or role == "integrator")
        if config.database_url is None:
            make_dirs(config.data_path)
        opts = config.storage_options()
        if role == "integrator":
            # a paused integrator's open transaction is ended (its locks released) by the server
            opts["idle_in_transaction_timeout"] = config.lease_ttl
            opts["application_name"] = "tlog-integrator"  # its expired sessions are ended on takeover
        storage = open_storage(config.storage_url(), **opts)
        self._storage = storage
        try:
            ident = open_identity(storage, config)
        except BaseException:
            storage.close()
            raise
        self.state = LiveState(storage, config, ident.keys)
        self.origin = ident.keys.origin
        self.issuer = ident.issuer
        if config.issuer is None:  # the stored issuer, also as the default public URL
            config.issuer = self.issuer
        if config.database_url is None:
            _serialize_integrations(storage, config.data_path / "integration.lock", self.metrics)
        if log_factory is None:
            self.log = Log.open(
                storage,
                origin=self.origin,
                note_signer=self.keys.note_signer,
                head_signer=self.sign_head,
                max_batch=config.max_batch,
                max_wait=config.max_wait,
                sequencer=not leased,
            )
        else:
            self.log = log_factory(storage, self)
        # batches integrated by this process (the integrator process's own LogService under
        # tlog serve: its batches reach /metrics through the multiprocess directory)
        self.log.on_batch = self.metrics.batch
        if personality.unique_attrs:
            # one claim per unique value (TWI: one record per (issuer, record id)): enforced in
            # the commit (issue 11), whatever the check before the queue saw
            self.log.unique_attrs = frozenset(personality.unique_attrs)
        self.witnessing = None  # set by tlog.witnessing.attach
        self._remote = None
        self._candidate = None
        if role == "integrator":
            self.integrator_mode = "integrator"
            self.state.start()  # the key set it signs heads with follows rotations
            return
        self.integrator_mode = "lease" if leased else "process" if mode == "process" else "thread"
        try:
            if self.integrator_mode == "lease":
                from .leader import Candidate
                from .queued import QueueClient

                self._remote = QueueClient(storage, self.log, max_batch=config.max_batch)
                self._candidate = Candidate(config)
            elif self.integrator_mode == "process":
                from .integrator import IntegratorClient

                self._remote = IntegratorClient(config, self.log)
            self._init_policy(check_policy)
            self.state.start()
        except BaseException:
            self.close()
            raise

    @property
    def keys(self) -> LogKeys:
        """The receipt key set and note signer in force (log-wide state, re-read every second
        by a background thread)."""
        return self.state.keys

    @property
    def policy(self) -> Policy:
        """The registration policy in force (the latest policy entry, re-read every second)."""
        return self.state.policy[2]

    @property
    def policy_id(self) -> str:
        return self.state.policy[1]

    def _submit(self, leaf: bytes, data: bytes, attrs, key: bytes | None = None):
        """Hand a checked statement to the sequencer (this process's, or the integrator's);
        ``key``: the dedup key (the digest of the signed content)."""
        return (self._remote or self.log).submit(leaf, data, attrs, key)

    def answers_in_loop(self, loop) -> None:
        """Have the integrator process's answers read in ``loop`` (the worker's event loop that
        waits for them: tlog.server.front), not by a reader thread; SQLite's integrator
        process only (the other integrators answer through the storage)."""
        read_in_loop = getattr(self._remote, "read_in_loop", None)
        if read_in_loop is not None:
            read_in_loop(loop)

    def close(self) -> None:
        try:
            self.state.stop()
            if self._remote is not None:
                self._remote.close()
            if self._candidate is not None:
                self._candidate.close()
        finally:
            try:
                self.log.close()
            finally:
                self._storage.close()

    # ---- registration policy as an entry ----------------------------------------------------
    def _init_policy(self, check: bool) -> None:
        """The first start of a log registers the configured policy; later starts use the policy
        in force, and refuse settings that disagree with it (``tlog policy set`` changes it)."""
        self.log.refresh()
        self.state.refresh()
        shard.check_predecessor_setting(self._storage, self.config.shard_predecessor)  # as preflight does
        if self.state._policy is None:
            if self.config.shard_predecessor and self.log.size == 0:
                self._register_shard_statement()  # a successor's entry 0, before its first policy
            self.set_policy(configured_policy(self.config))
        elif check:
            check_policy_agrees(self.state._policy, self.config)

    def set_policy(self, policy: Policy) -> str:
        """Register ``policy`` as the policy in force (unless it already is); its entry id."""
        cur = self.state._policy
        if cur is not None and cur[2].digest() == policy.digest():
            return cur[1]
        previous = cur[1] if cur is not None else None
        keys = self.state._keys
        data = policy.statement(keys, self.issuer, previous)
        st = SignedStatement.parse(data)
        # the log authenticates its own statement like any other (own receipt key)
        st.verify(keys.receipt.private.public_key(), allowed_algs=[keys.receipt.alg])
        attrs = {ATTR_KIND: "policy", ATTR_ISS: st.iss, ATTR_SUB: st.sub, ATTR_ISS_SUB: iss_sub_key(st.iss, st.sub)}
        if previous:
            attrs[ATTR_POLICY] = previous
        pending = self._submit(st.leaf_input, st.statement_bytes, sorted(attrs.items()), st.signed_content_digest())
        entry = pending.wait(60.0)
        if entry is None:
            raise RuntimeError("the registration policy statement was not integrated within 60 s")
        if not getattr(entry, "duplicate", False):  # logged once: by the process that registered it
            from .policy import describe_change

            log.info("policy changed", extra={"fields": {
                "entry": entry_id_of(st.leaf_input), "index": entry.index, "previous": previous,
                "changes": describe_change(cur[2].document(previous) if cur is not None else None,
                                           policy.document(previous))}})
        self.state.refresh()
        return entry_id_of(st.leaf_input)

    # ---- shards (tlog.shard) ----------------------------------------------------------------------

    def _close_if_due(self) -> dict | None:
        """Close the log when its settings say so (shard_close_size / shard_close_at)."""
        cfg = self.config
        if not (cfg.shard_close_size or cfg.shard_close_at):
            return None
        why = shard.due(cfg, self.log.size)
        if why is None:
            return None
        self.state.closed = rec = shard.close(self._storage, successor=cfg.shard_successor, reason=why)
        log.info("log closed", extra={"fields": {"reason": why, "size": self.log.size,
                                                 "successor": rec.get("successor")}})
        return rec

    def _register_shard_statement(self) -> None:
        """At the creation of a successor: entry 0 records the predecessor's final checkpoint."""
        rec = shard.read_predecessor(self.config.shard_predecessor)
        keys = self.state._keys
        data = shard.shard_statement(keys, self.issuer, rec)
        st = SignedStatement.parse(data)
        st.verify(keys.receipt.private.public_key(), allowed_algs=[keys.receipt.alg])
        attrs = {ATTR_KIND: "shard", ATTR_ISS: st.iss, ATTR_SUB: st.sub, ATTR_ISS_SUB: iss_sub_key(st.iss, st.sub)}
        entry = self._submit(st.leaf_input, st.statement_bytes, sorted(attrs.items()),
                             st.signed_content_digest()).wait(60.0)
        if entry is None:
            raise RuntimeError("the shard statement was not integrated within 60 s")
        if entry.index != 0:
            raise shard.StartupError(f"the shard statement landed at index {entry.index}, not 0")
        log.info("shard statement registered", extra={"fields": {
            "entry": entry_id_of(st.leaf_input), "predecessor": rec["origin"],
            "final_size": rec["checkpoint"].split("\n")[1]}})

    # ---- registration ------------------------------------------------------------------------
    def queue_depth(self) -> int:
        with self._lock:
            while self._outstanding and self._outstanding[0][0].done():
                self._outstanding.popleft()
            return self._inflight + len(self._outstanding)

    def parse(self, body: bytes) -> SignedStatement:
        if not body:
            raise Rejection("Malformed request", "The request could not be parsed (empty body)", "empty")
        try:
            return SignedStatement.parse(
                body, max_size=self.config.max_statement_size + 65536, max_depth=self.config.max_depth
            )
        except VerificationError as e:
            raise classify(e) from None

    def register(self, body: bytes, *, detached_payload: bytes | None = None) -> Registration:
        """Authenticate, apply the policy, append; wait (bounded) for integration."""
        sub = self.register_submit(body, detached_payload=detached_payload)
        return self.register_result(sub, self.config.register_wait)

    def register_submit(self, body: bytes, *, detached_payload: bytes | None = None) -> "Submission":
        """The first half of :meth:`register`: authenticate, apply the policy and hand the
        statement to the integrator, without waiting. ``register_result`` finishes it (always
        call it: it ends the submission's accounting). ``sub.pending.on_done`` tells when
        ``register_result(sub, 0)`` will not block (no spill to the durable queue)."""
        t_start = time.monotonic()
        closed = self.state.closed or self._close_if_due()
        if closed is not None:  # a closed shard (tlog.shard): 410 naming the successor
            self.metrics.rejected("closed")
            raise LogClosed(closed)
        try:
            st = self.parse(body)
            if not st.outer_is_deterministic():
                raise Rejection("Malformed request", "the COSE_Sign1's byte strings must use the shortest CBOR "
                                "length encoding (RFC 8949 4.2.1): the log admits one encoding of each claim",
                                "encoding")
            _, policy_id, policy = self.state.policy  # one snapshot: checked under, recorded as
            # statements of the log's own types, or under any of its kids, current or retired, are
            # refused by the policy (issue 11 item 4)
            policy.check(st, detached_payload=detached_payload, log_kids=self.keys.kids())
        except Rejection as r:
            self.metrics.rejected(r.reason)
            raise
        if self.queue_depth() >= self.config.queue_limit:
            self.metrics.rejected("queue-full")
            raise Unavailable("the integration queue is full", self.config.retry_after)
        # no kind=statement row: only kind=policy is ever looked up (every other entry is a
        # statement), and a row per entry is index and WAL work in every integration
        attrs = {
            ATTR_POLICY: policy_id,
            ATTR_ISS: st.iss,
            # no separate "sub" row: lookups are by iss or by (iss, sub); a random-keyed index
            # row costs a page write per entry in each small batch's commit
            ATTR_ISS_SUB: iss_sub_key(st.iss, st.sub),
        }
        payload = st.payload if st.payload is not None else detached_payload
        if payload is not None:
            import hashlib

            attrs[ATTR_PAYLOAD_HASH] = hashlib.sha256(payload).hexdigest()
        attr_list = sorted(attrs.items())
        claim = st.signed_content_digest(payload)
        try:  # the personality's (tlog.personality), e.g. the TWI record id
            extra = [a for a in self.personality.attributes(st) if a[0] not in attrs]
        except VerificationError:
            extra = []
        attr_list += extra
        unique = [a for a in extra if a[0] in self.personality.unique_attrs]
        for key, value in unique:
            self._check_unique(key, value, claim)
        eid = entry_id_of(st.leaf_input)
        t0 = time.monotonic()
        with self._lock:
            self._inflight += 1
            self.metrics.queue_depth(self._inflight + len(self._outstanding))
        try:
            pending = self._submit(st.leaf_input, st.statement_bytes, attr_list, claim)
        except BaseException as e:
            self._submitted_end()
            self._unavailable(e)
            raise
        return Submission(eid, pending, t_start, t0, (unique, claim) if unique else None)

    def _refused(self, sub: "Submission", e: Refused) -> None:
        """The commit refused the submission (tlog.claims): a record for this record id came
        first, maybe in the same batch; the 409 names that entry, committed by now."""
        if sub.record is not None:
            unique, claim = sub.record
            for key, value in unique:
                self._check_unique(key, value, claim)
        self.metrics.rejected("record-id")
        raise Rejection("Conflict", f"refused at integration: {e}", "record-id", 409) from None

    def _submitted_end(self) -> None:
        with self._lock:
            self._inflight -= 1
            self.metrics.queue_depth(self._inflight + len(self._outstanding))

    def _closed_now(self) -> dict:
        return self.state.closed or shard.closed_state(self._storage) or {}

    def _unavailable(self, e: BaseException) -> None:
        """Raise Unavailable for the integrator's and the storage's "retry later" failures (and
        the 410 for a registration the integration refused because the log is sealed)."""
        if isinstance(e, LogSealed):  # the final checkpoint was recorded first: nothing stored
            self.metrics.rejected("closed")
            raise LogClosed(self._closed_now()) from None
        if isinstance(e, IntegratorUnavailable):
            self.metrics.rejected("integrator-unavailable")
            raise Unavailable(str(e), self.config.retry_after) from None
        if isinstance(e, StorageUnavailable):
            self.metrics.rejected("storage-unavailable")
            raise Unavailable(str(e), self.config.retry_after) from None
        if isinstance(e, Exception):  # the core's queue-full signal, whatever its class
            if "full" in type(e).__name__.lower() or "full" in str(e).lower():
                self.metrics.rejected("queue-full")
                raise Unavailable("the integration queue is full", self.config.retry_after) from None

    def register_result(self, sub: "Submission", timeout: float) -> Registration:
        """The second half of :meth:`register`: wait up to ``timeout`` seconds for the
        integration of ``sub``; a wait that runs out makes the submission durable (a storage
        write) and answers without a receipt (303)."""
        pending, t0 = sub.pending, sub.t0
        try:
            try:
                entry = pending.wait(timeout)
            except Refused as e:
                self._refused(sub, e)
            except BaseException as e:
                self._unavailable(e)
                raise
        finally:
            self._submitted_end()
        eid = sub.entry_id
        # (no storage read here: a registration whose wait ran out answers 303 at once, also
        # while the database is slow; a re-encoding of a claim that was itself still pending
        # names its own entry id, which the integration records as an alias of the claim's
        # entry, see resolve(); documented in docs/ARCHITECTURE.md)
        if entry is None:
            with self._lock:
                self._outstanding.append((pending, t0))
            self.metrics.registered("pending")
            return Registration(eid)
        if getattr(entry, "duplicate", False):
            # the original entry of this claim (another encoding or signature, maybe)
            eid = entry_id_of(self.log.leaf_input(entry.index))
        t_int = time.monotonic()
        self.metrics.integration_latency(t_int - t0)
        self.metrics.registered("duplicate" if getattr(entry, "duplicate", False) else "integrated")
        receipt = getattr(entry, "receipt", None) or self.inclusion_receipt(entry.index, entry.tree_size)
        self.metrics.phases(
            check=t0 - sub.t_start,
            integration=t_int - t0,
            receipt=time.monotonic() - t_int,
        )
        return Registration(eid, entry.index, entry.tree_size, receipt, bool(getattr(entry, "duplicate", False)))

    def _check_unique(self, key: str, value: str, claim: bytes | None) -> None:
        """409 if another claim holds ``value`` under the unique attribute ``key`` (TWI: ``iss``
        already registered a different record under the record id; the same claim again is a
        duplicate, answered with the original entry)."""
        for idx in self.log.lookup(key, value)[:16]:
            data = self.log.entry_data(idx)
            try:
                other = SignedStatement.parse(data, max_size=max(len(data), 1), max_depth=self.config.max_depth)
            except VerificationError:
                continue
            if claim is None or other.signed_content_digest() != claim:
                self.metrics.rejected("record-id")
                raise Rejection("Conflict", f"{self.personality.conflict(key, value)} "
                                f"(entry {entry_id_of(other.leaf_input)})", "record-id", 409)

    # ---- reads -------------------------------------------------------------------------------
    def tree_size(self) -> int:
        self.log.refresh()  # heads may come from other worker processes
        return self.log.size

    def latest(self):
        self.log.refresh()
        return self.log.latest()

    def resolve(self, entry_id: str):
        """Entry id (64 hex) or decimal index -> (leaf_input, Entry | "pending" | None)."""
        s = entry_id
        if len(s) == 64 and all(c in "0123456789abcdefABCDEF" for c in s):
            leaf = bytes.fromhex(s)
            st = self.log.status(leaf)
            why = refusal(self._storage, leaf) if st is None else None  # answered 303, then refused
            if why == SEALED_REFUSAL:
                raise LogClosed(self._closed_now())
            if why is not None:  # another record holds its record id
                raise Rejection("Conflict", f"refused at integration: {why}", "record-id", 409)
            if isinstance(st, Entry) and st.duplicate:
                # another encoding of a claim, queued while the claim was pending: the claim's entry
                leaf = self.log.leaf_input(st.index) or leaf
            return leaf, st
        if s.isascii() and s.isdigit() and len(s) <= 20 and (s == "0" or not s.startswith("0")):
            idx = int(s)
            size = self.tree_size()
            if idx >= size:
                return None, None
            leaf = self.log.leaf_input(idx)
            return leaf, self.log.status(leaf)
        raise BadRequest("Invalid locator", "Operation locator is not in a valid form")

    def entry_receipt(self, entry, size: int | None = None) -> bytes:
        if size is None:
            size = entry.tree_size
        current = self.tree_size()
        if not (entry.index < size <= current):
            raise BadRequest(
                "Malformed request",
                f"size must satisfy {entry.index} < size <= {current} for entry {entry.index}",
            )
        return self.inclusion_receipt(entry.index, size)

    def transparent_statement(self, entry) -> bytes:
        stmt = self.log.entry_data(entry.index)
        return vtransparent.attach_receipts(stmt, [self.inclusion_receipt(entry.index, entry.tree_size)])

    def lookup(self, key: str, value: str, *, after: int = -1, limit: int | None = None) -> list[int]:
        limit = min(limit or self.config.lookup_limit, self.config.lookup_limit)
        found = sorted(i for i in self.log.lookup(key, value) if i > after)
        return found[:limit]
