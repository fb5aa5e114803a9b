"""Checks of checkpoints: signature, append-only consistency from the log's tiles, split views."""

from __future__ import annotations

import base64
import time
from typing import Any, Callable, Iterable

from ..errors import VerificationError
from ..merkle import verify_consistency
from ..note import Checkpoint, CheckpointNote, NoteVerifier, open_checkpoint
from ..tiles import TileHashReader, TileNotFound
from .alerts import MonitorAlert, Unreachable
from .state import MonitorState


def _verify_note(note: str, verifier: NoteVerifier, source: str) -> CheckpointNote:
    try:
        return open_checkpoint(note, verifier)
    except VerificationError as e:
        raise MonitorAlert(
            "bad-signature", f"checkpoint from {source} does not verify: {e}", {"note": note}
        ) from None


def check_consistent(
    old: Checkpoint, new: Checkpoint, fetch: Callable[[str], bytes], evidence: dict[str, Any]
) -> int:
    """Alert unless ``new`` extends ``old``: proof from ``new``'s tiles, checked with
    verifier.merkle. Returns the number of tiles fetched."""
    if old.origin != new.origin:
        raise MonitorAlert("origin-mismatch", f"{old.origin!r} != {new.origin!r}", evidence)
    if new.size < old.size:
        raise MonitorAlert("size-regressed", f"tree size went back from {old.size} to {new.size}", evidence)
    if new.size == old.size:
        if new.root != old.root:
            raise MonitorAlert("split-view", f"two different roots for tree size {new.size}", evidence)
        return 0
    if old.size == 0:
        return 0
    reader = TileHashReader(fetch, new.size)
    try:
        proof = reader.consistency_proof(old.size)
        verify_consistency(old.size, new.size, proof, old.root, new.root)
    except VerificationError as e:
        raise MonitorAlert(
            "inconsistent", f"size {old.size} -> {new.size} is not an append-only extension: {e}", evidence
        ) from None
    except TileNotFound as e:
        raise MonitorAlert(
            "tiles-missing", f"the log does not serve the tiles of its checkpoint of size {new.size} ({e})", evidence
        ) from None
    return reader.fetched


def check_new_checkpoint(
    state: MonitorState, note: str, verifier: NoteVerifier, fetch: Callable[[str], bytes]
) -> tuple[MonitorState, CheckpointNote, bool]:
    """Verify ``note`` and its consistency with the state; returns (new state, parsed, changed)."""
    cp = _verify_note(note, verifier, "the log")
    if cp.checkpoint.origin != state.origin:
        raise MonitorAlert("origin-mismatch", f"origin {cp.checkpoint.origin!r}, want {state.origin!r}", {"note": note})
    old = Checkpoint(state.origin, state.size, state.root_bytes)
    ev = {"previous": state.note, "current": note}
    check_consistent(old, cp.checkpoint, fetch, ev)
    changed = cp.checkpoint.size != state.size
    new = MonitorState(
        origin=state.origin, vkey=state.vkey, size=cp.checkpoint.size,
        root=base64.b64encode(cp.checkpoint.root).decode(),
        note=note if changed or not state.note else state.note,
        last_ok=time.time(), checked=state.checked + 1,
    )
    return new, cp, changed


def compare_views(
    views: Iterable[tuple[str, str]],
    verifier: NoteVerifier,
    fetch: Callable[[str], bytes] | None = None,
) -> list[dict[str, Any]]:
    """Split-view detection over checkpoints (source, signed note) of one log.

    Two validly signed checkpoints of the same size with different roots, or of different
    sizes whose consistency proof (from the log's tiles at the larger size) fails, give an
    alert event carrying both signed notes. Pairs whose proof cannot be fetched are reported as
    ``split-view-unresolved`` info events. Bad signatures are ``bad-signature`` alerts."""
    events: list[dict[str, Any]] = []
    good: list[tuple[str, str, Checkpoint]] = []
    for src, note in views:
        try:
            good.append((src, note, _verify_note(note, verifier, src).checkpoint))
        except MonitorAlert as a:
            events.append(a.event(verifier.name) | {"source": src})
    good.sort(key=lambda t: t[2].size)
    for i in range(len(good)):
        for j in range(i + 1, len(good)):
            (sa, na, a), (sb, nb, b) = good[i], good[j]
            ev = {"a": {"source": sa, "note": na}, "b": {"source": sb, "note": nb}}
            if a.size == b.size:
                if a.root != b.root:
                    events.append(MonitorAlert(
                        "split-view", f"{sa} and {sb} saw different roots for size {a.size}", ev
                    ).event(a.origin))
                continue
            if a.size == 0 or fetch is None:
                continue
            try:
                check_consistent(a, b, fetch, ev)
            except MonitorAlert as al:
                if al.kind == "tiles-missing":
                    events.append({"event": "split-view-unresolved", "origin": a.origin,
                                   "detail": al.detail, "a": sa, "b": sb})
                else:
                    al.kind = "split-view"
                    al.detail = f"{sa} (size {a.size}) and {sb} (size {b.size}) are not consistent: {al.detail}"
                    events.append(al.event(a.origin))
            except Unreachable as e:
                events.append({"event": "split-view-unresolved", "origin": a.origin, "detail": str(e),
                               "a": sa, "b": sb})
    return events
