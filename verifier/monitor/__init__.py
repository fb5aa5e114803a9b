"""Monitor and auditor of a C2SP tiled transparency log (issue 6).

``monitor``: follow a log's checkpoints (``GET <log>/checkpoint``), verify the log's signature,
check each new checkpoint against the last verified one with a consistency proof computed from
the log's tiles (verified with :mod:`verifier.merkle`), compare with the checkpoints other
parties saw (``--peer`` URLs serving a checkpoint note, ``--witness`` URLs of a witness,
``twi-witness``, serving ``GET <witness>/checkpoint?origin=``), and keep the last verified checkpoint in a state
file written crash-safely (temp file, fsync, rename, fsync of the directory).

``audit``: fetch every entry bundle and every hash tile of the tree, recompute every leaf hash,
every tile and the root independently of the server's tree code, and compare with the signed
checkpoint; resumable (a state file records the audited prefix as the pending node hashes per
tile level, and the policies seen so far), with progress output. ``--statements`` also fetches
every statement and judges it by the registration policy in force when it was registered
(:class:`StatementChecker`, :mod:`verifier.policy`).

Alerts: one JSON event line on stdout (``{"event": "alert", "kind": ...}``), a human line on
stderr, exit status 1. Kinds: ``bad-signature``, ``inconsistent``, ``size-regressed``,
``split-view``, ``unreachable``, ``tiles-missing``, ``audit-mismatch``, ``origin-mismatch``,
``bad-state``, and with ``audit --statements``: ``policy-violation`` (an entry the registration
policy in force would have refused; evidence: its index, entry id and reason) and ``bad-policy``
(a policy statement that does not verify or breaks the ``previous`` chain). How the policy in force
is decided: :mod:`verifier.policy` and docs/ARCHITECTURE.md. The first checkpoint seen (no state
yet) is trusted on first use.
Exit 0: all good; 1: alert; 2: usage / configuration error.

The package, one concern a module: :mod:`.alerts` (alerts, reporter), :mod:`.httplog` (the HTTP
client), :mod:`.state` (the monitor's state file), :mod:`.checks` (checkpoint checks, split views),
:mod:`.follow` (the monitor loop), :mod:`.audit` (the tree audit), :mod:`.statements` (the statement
audit), :mod:`.cli` (the subcommands).
"""

from __future__ import annotations

from .alerts import MonitorAlert, Reporter, Unreachable
from .audit import AuditState, Auditor, Progress
from .checks import check_consistent, check_new_checkpoint, compare_views
from .cli import add_parser, main
from .follow import Monitor
from .httplog import MAX_CHECKPOINT_BYTES, MAX_TILE_BYTES, HttpLog
from .state import MonitorState, load_state, save_state, write_atomic
from .statements import StatementChecker

__all__ = [
    "MonitorAlert",
    "Unreachable",
    "Reporter",
    "HttpLog",
    "MonitorState",
    "load_state",
    "save_state",
    "write_atomic",
    "check_consistent",
    "check_new_checkpoint",
    "compare_views",
    "Monitor",
    "Auditor",
    "AuditState",
    "Progress",
    "StatementChecker",
    "add_parser",
    "main",
    "MAX_CHECKPOINT_BYTES",
    "MAX_TILE_BYTES",
]
