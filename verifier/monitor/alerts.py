"""What the monitor and the audit report: alerts (:class:`MonitorAlert`), an unreachable log
(:class:`Unreachable`), and the output of events (:class:`Reporter`: one JSON line on stdout, a
human line on stderr)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class MonitorAlert(Exception):
    """Something a monitor must report: the log misbehaved (or is unreachable too long)."""

    def __init__(self, kind: str, detail: str, evidence: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.evidence = evidence or {}
        super().__init__(f"{kind}: {detail}")

    def event(self, origin: str | None = None) -> dict[str, Any]:
        return {"event": "alert", "kind": self.kind, "origin": origin, "detail": self.detail,
                "evidence": self.evidence, "time": int(time.time())}


class Unreachable(Exception):
    """The log (or a peer) could not be reached or answered with a server error."""


class Reporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def event(self, ev: dict[str, Any], human: str | None = None) -> None:
        self.out.write(json.dumps(ev, sort_keys=True) + "\n")
        self.out.flush()
        if human:
            self.err.write(human + "\n")
            self.err.flush()

    def alert(self, a: MonitorAlert, origin: str | None) -> None:
        self.event(a.event(origin), f"ALERT [{a.kind}] {origin}: {a.detail}")
