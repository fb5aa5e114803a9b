"""The audit of the statements behind the leaves (``twi-verify audit --statements``)."""

from __future__ import annotations

import threading
from typing import Any, Callable

from ..errors import VerificationError
from ..tiles import TileNotFound
from .alerts import MonitorAlert
from .httplog import HttpLog


def _receipt_time(stmt: Any) -> float | None:
    """The ``iat`` of the first receipt (394) the log returned with a statement: the time of the
    tree head the entry was integrated in (the receipt's signature is not checked here)."""
    from ..receipt import Receipt

    items = stmt.sign1.unprotected.get(394)
    if not isinstance(items, list):
        return None
    for r in items:
        if type(r) is not bytes:
            continue
        try:
            iat = Receipt.parse(r).iat
        except VerificationError:
            continue
        if type(iat) in (int, float):
            return float(iat)
    return None


class StatementChecker:
    """Audit of the statements behind the leaves. For each entry d(i), fetch
    ``GET <log>/entries/<hex d(i)>/statement`` (the transparent statement), parse it strictly
    (verifier.statement) and check d(i) = SHA-256(statement bytes) (docs/ARCHITECTURE.md).

    With ``policy`` (a :class:`verifier.policy.PolicyTracker`, the default of ``twi-verify audit
    --statements``): the log's registration-policy statements are recognised and verified with the
    log's statement-signing keys, their ``previous`` chain is checked, and every other entry is
    judged by the policy in force when it was registered (issuer key or x5chain trusted by that
    policy, signature, algorithm, content type, size); an entry the policy would have refused is a
    ``policy-violation`` alert with its index, a bad policy statement a ``bad-policy`` alert.
    Without it (``--no-policy``): statements carrying an x5chain have their signature verified
    against ``trust_anchors``; kid-only statements are counted as ``unverified``.

    Work is split for the auditor's thread pool: :meth:`prepare` (fetch, parse, leaf check, and
    the issuer signature when the key its kid names is already known; any thread) and
    :meth:`commit` (the policy decision, strictly in index order; the auditor's main thread).
    """

    def __init__(
        self,
        log: HttpLog,
        trust_anchors: list | None = None,
        *,
        policy: Any = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.log = log
        self.trust_anchors = trust_anchors or []
        self.policy = policy
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.next_index = 0
        self.checked = 0
        self.signature_verified = 0
        self.unverified = 0
        self.policies = 0
        self.races = 0
        self.presigned = 0  # signatures verified in prepare() (fetch threads), this run

    @property
    def mode(self) -> str:
        return "policy" if self.policy is not None else "signatures"

    def _emit(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def prepare(self, first_index: int, entries: list[bytes]) -> list[tuple]:
        from ..statement import SignedStatement

        out = []
        known = self.policy.known_keys if self.policy is not None else None
        for k, d in enumerate(entries):
            i = first_index + k
            if i < self.next_index:
                continue  # checked by an earlier (resumed) run
            try:
                data = self.log.get(f"entries/{d.hex()}/statement")
            except TileNotFound:
                raise MonitorAlert("audit-mismatch", f"entry {i}: the log does not serve its statement",
                                   {"index": i}) from None
            try:
                stmt = SignedStatement.parse(data)
            except VerificationError as e:
                raise MonitorAlert("audit-mismatch", f"entry {i}: statement does not parse: {e}",
                                   {"index": i}) from None
            if stmt.leaf_input != d:
                raise MonitorAlert("audit-mismatch", f"entry {i}: SHA-256(statement bytes) != leaf input",
                                   {"index": i})
            presigned = False
            if known is not None and stmt.kid is not None and stmt.payload is not None:
                key = known.get(stmt.kid)
                if key is not None:
                    try:
                        stmt.verify(key)
                        presigned = True
                    except VerificationError:
                        pass  # judged (and reported) in order by commit()
            out.append((i, stmt, _receipt_time(stmt) if self.policy is not None else None, presigned))
        return out

    def commit(self, prepared: list[tuple]) -> None:
        for i, stmt, t, presigned in prepared:
            if i < self.next_index:
                continue
            if i != self.next_index:
                raise MonitorAlert("bad-state", f"statements checked up to {self.next_index}, next is {i}")
            if self.policy is None:
                verified = self._check_x5chain(i, stmt)
            else:
                verified = self._check_policy(i, stmt, t, presigned)
            self.checked += 1
            self.presigned += presigned
            if verified:
                self.signature_verified += 1
            else:
                self.unverified += 1
            self.next_index = i + 1

    def _check_x5chain(self, i: int, stmt: Any) -> bool:
        if self.trust_anchors and stmt.x5chain and stmt.sign1.payload is not None:
            try:
                stmt.verify(trust_anchors=self.trust_anchors)
            except VerificationError as e:
                raise MonitorAlert("audit-mismatch", f"entry {i}: issuer signature: {e}", {"index": i}) from None
            return True
        return False

    def _check_policy(self, i: int, stmt: Any, t: float | None, presigned: bool) -> bool:
        from ..policy import PolicyViolation

        eid = stmt.leaf_input.hex()
        try:
            v = self.policy.observe(i, stmt, time=t, presigned=presigned)
        except PolicyViolation as e:
            raise MonitorAlert("policy-violation", f"entry {i}: {e.detail}",
                               {"index": i, "entry_id": eid, "reason": e.reason}) from None
        except VerificationError as e:
            raise MonitorAlert("bad-policy", f"entry {i}: registration policy statement: {e}",
                               {"index": i, "entry_id": eid, "check": e.check}) from None
        if v.kind == "policy":
            self.policies += 1
            rec = self.policy.current
            self._emit({"event": "policy", "index": i, "entry_id": eid, "fork": v.fork, **rec.policy.summary()})
        elif v.kind == "shard":
            self._emit({"event": "shard", "index": i, "entry_id": eid, **self.policy.shard.summary()})
        elif v.kind == "race":
            self.races += 1
            self._emit({"event": "policy-race", "index": i, "entry_id": eid, "policy_index": v.policy_index,
                        "detail": v.detail})
        return v.signature_verified

    # ---- resume ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        d = {"mode": self.mode, "next_index": self.next_index, "checked": self.checked,
             "signature_verified": self.signature_verified, "unverified": self.unverified,
             "policies": self.policies, "races": self.races}
        if self.policy is not None:
            d["policy"] = self.policy.state()
        return d

    def restore(self, d: dict[str, Any]) -> None:
        if d.get("mode") != self.mode:
            raise MonitorAlert("bad-state", f"the audit state checked statements in mode {d.get('mode')!r}, "
                               f"not {self.mode!r}: use another state file")
        for k in ("next_index", "checked", "signature_verified", "unverified", "policies", "races"):
            setattr(self, k, int(d.get(k, 0)))
        if self.policy is not None:
            try:
                self.policy.restore(d.get("policy", {}))
            except (VerificationError, ValueError, KeyError, TypeError) as e:
                raise MonitorAlert("bad-state", f"the audit state's policies do not verify: {e}") from None

    def counts(self) -> dict[str, int]:
        out = {"checked": self.checked, "signature_verified": self.signature_verified, "unverified": self.unverified}
        if self.policy is not None:
            out.update(policies=self.policies, races=self.races)
        return out

    def __call__(self, first_index: int, entries: list[bytes]) -> None:
        """Check one bundle's entries (they must be the next ones in index order)."""
        self.commit(self.prepare(first_index, entries))
