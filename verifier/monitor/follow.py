"""The monitor loop: poll a log's checkpoint, check it against the last verified one and
against the views of peers and witnesses."""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Iterable

from ..note import NoteVerifier
from ..tiles import TileNotFound
from .alerts import MonitorAlert, Reporter, Unreachable
from .checks import check_new_checkpoint, compare_views
from .httplog import MAX_CHECKPOINT_BYTES, HttpLog
from .state import MonitorState, load_state, save_state


class Monitor:
    """Poll a log; one :meth:`poll` per checkpoint fetch. Raises MonitorAlert."""

    def __init__(
        self,
        log: HttpLog,
        verifier: NoteVerifier,
        state_path: str | os.PathLike,
        *,
        peers: Iterable[str] = (),
        witnesses: Iterable[str] = (),
        max_unreachable: float = 3600.0,
        reporter: Reporter | None = None,
        shards: bool = False,
        statement_keys: dict | None = None,
    ) -> None:
        """``shards``: also follow the chain of shards (:mod:`.shards`) at every poll: the
        shard statement at index 0 (verified once, with ``statement_keys``, default the log's
        ``/.well-known/scitt-keys``) and each predecessor serving exactly its final checkpoint."""
        self.log = log
        self.verifier = verifier
        self.state_path = Path(state_path)
        self.peers = list(peers)
        self.witnesses = [w.rstrip("/") for w in witnesses]
        self.max_unreachable = max_unreachable
        self.reporter = reporter or Reporter()
        st = load_state(self.state_path)
        if st is None:
            st = MonitorState(origin=verifier.name, vkey=verifier.vkey, last_ok=time.time())
        elif st.vkey != verifier.vkey or st.origin != verifier.name:
            raise MonitorAlert("bad-state", f"state file is for {st.origin} ({st.vkey}), not {verifier.vkey}")
        self.state = st
        self._saved_at = 0.0
        self.shards = shards
        self.statement_keys = statement_keys
        self.chain: list = []  # [(ShardLink, HttpLog)], newest first, after a poll with shards
        self._links: dict = {}

    SAVE_IDLE_EVERY = 30.0  # an unchanged checkpoint only refreshes last_ok on disk this often

    def poll(self) -> bool:
        """Fetch and check the log's checkpoint (and peers'); True when the tree grew.
        ``self.reachable`` says whether the log answered this poll."""
        self.reachable = False
        try:
            note = self.log.checkpoint()
        except (Unreachable, TileNotFound) as e:
            down = time.time() - self.state.last_ok
            if down > self.max_unreachable:
                raise MonitorAlert(
                    "unreachable", f"log unreachable for {down:.0f} s (bound {self.max_unreachable:.0f} s): {e}"
                ) from None
            self.reporter.event({"event": "unreachable", "origin": self.state.origin, "detail": str(e),
                                 "down_seconds": round(down, 1)}, f"warning: {e}")
            return False
        t0 = time.perf_counter()
        try:
            new, cp, changed = check_new_checkpoint(self.state, note, self.verifier, self.log.fetch)
        except Unreachable as e:  # tiles not reachable: same treatment as the checkpoint
            down = time.time() - self.state.last_ok
            if down > self.max_unreachable:
                raise MonitorAlert("unreachable", f"tiles unreachable for {down:.0f} s: {e}") from None
            self.reporter.event({"event": "unreachable", "origin": self.state.origin, "detail": str(e)})
            return False
        self.reachable = True
        elapsed = time.perf_counter() - t0
        if changed or new.note != self.state.note or new.last_ok - self._saved_at > self.SAVE_IDLE_EVERY:
            save_state(self.state_path, new)
            self._saved_at = new.last_ok
        old_size = self.state.size
        self.state = new
        if changed:
            self.reporter.event({"event": "checkpoint", "origin": new.origin, "size": new.size, "root": new.root,
                                 "previous_size": old_size, "check_seconds": round(elapsed, 6)},
                                f"ok: {new.origin} grew {old_size} -> {new.size}, consistent")
        self._compare_peers()
        if self.shards:
            self._follow_shards(cp.checkpoint)
        return changed

    def _follow_shards(self, cp) -> None:
        from .shards import follow_chain, statement_keys_of

        if self.statement_keys is None:
            self.statement_keys = statement_keys_of(self.log, None)
        try:
            chain = follow_chain(self.log, cp, self.statement_keys, cache=self._links)
        except (Unreachable, TileNotFound) as e:  # a predecessor down: reported, retried next poll
            self.reporter.event({"event": "unreachable", "origin": self.state.origin, "detail": f"shards: {e}"},
                                f"warning: following the shards: {e}")
            return
        if [id(x[0]) for x in chain] != [id(x[0]) for x in self.chain]:
            for link, _ in chain:
                self.reporter.event({"event": "shard", **link.summary()},
                                    f"ok: {link.successor_origin} follows {link.origin}, closed at size "
                                    f"{link.final.checkpoint.size}, which it still serves")
        self.chain = chain

    def _compare_peers(self) -> None:
        if not self.peers and not self.witnesses:
            return
        views = [("log", self.state.note)] if self.state.note else []
        q = urllib.parse.quote(self.state.origin, safe="")
        sources = [(p, p) for p in self.peers] + [(w, f"{w}/checkpoint?origin={q}") for w in self.witnesses]
        for name, url in sources:
            try:
                views.append((name, self.log.get("", MAX_CHECKPOINT_BYTES, url=url).decode("utf-8", "replace")))
            except (Unreachable, TileNotFound) as e:
                self.reporter.event({"event": "peer-unreachable", "source": name, "detail": str(e)})
        for ev in compare_views(views, self.verifier, self.log.fetch):
            if ev.get("event") == "alert":
                raise MonitorAlert(ev["kind"], ev["detail"], ev.get("evidence"))
            self.reporter.event(ev)
