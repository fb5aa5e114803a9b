"""The log's operations view: ``/health`` (degraded when registrations wait on an old checkpoint
or the witness quorum lags) and the gauges of ``/metrics``, read from the shared database and the
cosignature store, so every worker answers the same.

:class:`Operations` is a part of :class:`tlog.service.LogService` (it uses the service's
``config``, ``_storage``, ``queue_depth``, ``witnessing``, ``metrics`` and ``origin``).
"""

from __future__ import annotations

import time

__all__ = ["Operations"]


class Operations:
    """The health and metrics part of :class:`tlog.service.LogService`."""

    def operations_state(self) -> dict:
        """What /health and /metrics report, read from the shared database (and the cosignature
        store): the same whichever worker answers. Ages in seconds."""
        now = time.time()
        head = self._storage.latest_head()
        backlog = self.queue_depth() > 0 or self._storage.has_pending()
        out = {
            "tree_size": head.size if head is not None else 0,
            "checkpoint_age": round(now - head.timestamp, 3) if head is not None else None,
            "backlog": backlog,
        }
        if self.witnessing is not None:
            out["witnesses"] = self.witnessing.lags(head, now)
        return out

    def health(self) -> tuple[bool, dict]:
        """(healthy, body) for /health: degraded when accepted registrations wait while the
        newest checkpoint is older than health_max_checkpoint_age, or when the witness quorum's
        newest cosigned checkpoint lags the log by more than health_max_witness_age."""
        st = self.operations_state()
        problems = []
        cfg = self.config
        age = st["checkpoint_age"]
        if cfg.health_max_checkpoint_age > 0 and st["backlog"] and age is not None and age > cfg.health_max_checkpoint_age:
            problems.append(f"checkpoint is {age:.1f} s old with registrations waiting "
                            f"(limit {cfg.health_max_checkpoint_age:g} s)")
        w = st.get("witnesses")
        if w is not None and cfg.witness_quorum > 0 and cfg.health_max_witness_age > 0:
            lag = w["quorum_lag"]
            if lag > cfg.health_max_witness_age:
                problems.append(f"no checkpoint cosigned by {cfg.witness_quorum} witnesses for {lag:.1f} s "
                                f"(limit {cfg.health_max_witness_age:g} s)")
        body = {"status": "degraded" if problems else "ok", "tree_size": st["tree_size"], "origin": self.origin,
                "checkpoint_age": age}
        if w is not None:
            body["witness_quorum_lag"] = w["quorum_lag"]
        if problems:
            body["problems"] = problems
        return not problems, body

    def metrics_text(self) -> bytes:
        from .metrics import gauge_text

        try:
            st = self.operations_state()
        except Exception:  # noqa: BLE001 - metrics must render even if storage hiccups
            st = {"tree_size": -1, "checkpoint_age": None}
        extra = gauge_text("tlog_tree_size", "Size of the latest tree head.", [({}, st["tree_size"])])
        if st.get("checkpoint_age") is not None:
            extra += gauge_text("tlog_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed.",
                                [({}, st["checkpoint_age"])])
        w = st.get("witnesses")
        if w is not None:
            extra += gauge_text("tlog_witness_lag_seconds",
                                "Seconds since the oldest checkpoint the witness has not cosigned was signed (0: current).",
                                [({"witness": k}, v) for k, v in sorted(w["lag"].items())])
            extra += gauge_text("tlog_witness_cosigned_size", "Latest tree size the witness cosigned.",
                                [({"witness": k}, v) for k, v in sorted(w["size"].items())])
            extra += gauge_text("tlog_witness_quorum_lag_seconds",
                                "Seconds since the oldest checkpoint without a quorum of cosignatures was signed.",
                                [({}, w["quorum_lag"])])
        return self.metrics.render(extra)
