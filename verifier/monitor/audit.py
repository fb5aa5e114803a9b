"""The full audit: recompute every leaf hash, tile and the root from the log's entry bundles and
tiles, resumably, and compare with the signed checkpoint."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import VerificationError
from ..merkle import EMPTY_ROOT
from ..note import Checkpoint
from ..tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileNotFound,
    entries_path,
    parse_entry_bundle,
    subtree_root,
    tile_path,
    tile_widths,
)
from .alerts import MonitorAlert
from .state import write_atomic


@dataclass
class AuditState:
    origin: str
    done: int = 0  # leaves audited, a multiple of 256
    pending: dict[str, str] = field(default_factory=dict)  # level -> base64(concatenated hashes)
    audited_size: int = 0
    audited_note: str = ""
    statements: dict[str, Any] = field(default_factory=dict)  # StatementChecker.state(), if any

    def pending_hashes(self) -> dict[int, list[bytes]]:
        out = {}
        for k, v in self.pending.items():
            raw = base64.b64decode(v)
            out[int(k)] = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        return out


class Progress:
    def __init__(self, total: int, stream: TextIO, bar: bool | None = None, every: float = 2.0) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.bar = stream.isatty() if bar is None else bar
        self.every = every
        self.t0 = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, start: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < (0.2 if self.bar else self.every):
            return
        self.last = now
        rate = (done - start) / max(now - self.t0, 1e-9)
        pct = 100.0 * done / self.total
        if self.bar:
            w = 30
            fill = int(w * done / self.total)
            self.stream.write(f"\r[{'#' * fill}{'.' * (w - fill)}] {pct:5.1f}% {done}/{self.total} {rate:,.0f} entries/s")
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(f"audit: {done}/{self.total} entries ({pct:.1f}%), {rate:,.0f} entries/s\n")
        self.stream.flush()


class Auditor:
    """Recompute the whole tree from entry bundles and compare every tile and the root."""

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        state_path: str | os.PathLike | None = None,
        *,
        workers: int = 8,
        save_every: float = 2.0,
        progress: Progress | None = None,
    ) -> None:
        self.fetch = fetch
        self.state_path = Path(state_path) if state_path else None
        self.workers = max(1, workers)
        self.save_every = save_every
        self.progress = progress
        self.stop_after_tiles: int | None = None  # tests: simulate an interruption
        self.check_entries: Callable[[int, list[bytes]], None] | None = None  # per entry bundle

    def _load(self, origin: str) -> AuditState:
        if self.state_path is None or not self.state_path.exists():
            return AuditState(origin=origin)
        try:
            st = AuditState(**json.loads(self.state_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise MonitorAlert("bad-state", f"audit state {self.state_path} unreadable: {e}") from None
        if st.origin != origin:
            raise MonitorAlert("bad-state", f"audit state is for {st.origin!r}, not {origin!r}")
        return st

    def _save(self, st: AuditState, pending: dict[int, list[bytes]]) -> None:
        if self.state_path is None:
            return
        st.pending = {str(k): base64.b64encode(b"".join(v)).decode() for k, v in pending.items() if v}
        if self.check_entries is not None and hasattr(self.check_entries, "state"):
            st.statements = self.check_entries.state()
        write_atomic(self.state_path, (json.dumps(asdict(st), sort_keys=True) + "\n").encode())

    def _get(self, path: str) -> bytes:
        try:
            return self.fetch(path)
        except TileNotFound:
            raise MonitorAlert("audit-mismatch", f"the log does not serve {path}") from None

    def _leaf_tile(self, index: int, width: int) -> tuple[list[bytes], Any]:
        """Fetch entry bundle and level-0 tile; check; return the leaf hashes (and what the
        statement checker prepared, to commit in order)."""
        w = None if width == TILE_WIDTH else width
        bundle = self._get(entries_path(index, w))
        tile = self._get(tile_path(0, index, w))
        if len(bundle) == 34 * width and bundle[0::34] == bytes(width) and bundle[1::34] == b"\x20" * width:
            # fast path: this log's entries are 32-byte leaf inputs (length prefix 0x0020)
            hashes = [sha256(b"\x00" + bundle[i + 2 : i + 34]).digest() for i in range(0, len(bundle), 34)]
        else:
            try:
                entries = parse_entry_bundle(bundle, width)
            except VerificationError as e:
                raise MonitorAlert("audit-mismatch", f"{entries_path(index, w)}: {e}") from None
            hashes = [sha256(b"\x00" + e).digest() for e in entries]
        if b"".join(hashes) != tile:
            raise MonitorAlert("audit-mismatch", f"{tile_path(0, index, w)} differs from the hashes of its entries")
        chk = self.check_entries
        if chk is not None:
            entries = parse_entry_bundle(bundle, width)
            if hasattr(chk, "prepare"):
                return hashes, chk.prepare(index * TILE_WIDTH, entries)
            chk(index * TILE_WIDTH, entries)
        return hashes, None

    def _commit(self, prepared: Any) -> None:
        if prepared is not None:
            self.check_entries.commit(prepared)  # type: ignore[union-attr]

    def audit(self, cp: Checkpoint, note: str = "") -> AuditState:
        """Audit the tree of checkpoint ``cp`` (already signature-checked by the caller)."""
        st = self._load(cp.origin)
        chk = self.check_entries
        if chk is not None and hasattr(chk, "restore"):
            if st.statements:
                chk.restore(st.statements)
            elif st.done or st.audited_size:
                raise MonitorAlert("bad-state", f"the audit state {self.state_path} was written without statement "
                                   "checks: use a new state file to check statements")
        if st.done > cp.size:
            raise MonitorAlert("size-regressed", f"audited {st.done} entries, checkpoint has {cp.size}",
                               {"audited": st.audited_note, "current": note})
        pending = st.pending_hashes()
        full0, part0 = tile_widths(0, cp.size)
        start = st.done
        first = st.done // TILE_WIDTH
        if self.progress:
            self.progress.total = max(cp.size, 1)
        last_save = time.perf_counter()
        processed = 0

        def push(level: int, h: bytes) -> None:
            # a level-(8*level) node completed; check full tiles at this level as they fill
            lst = pending.setdefault(level, [])
            lst.append(h)
            if len(lst) == TILE_WIDTH:
                idx = ((st.done >> (TILE_HEIGHT * level)) - 1) >> TILE_HEIGHT
                tile = self._get(tile_path(level, idx))
                if tile != b"".join(lst):
                    raise MonitorAlert("audit-mismatch", f"{tile_path(level, idx)} differs from the recomputed hashes")
                pending[level] = []
                push(level + 1, subtree_root(lst))

        with ThreadPoolExecutor(self.workers) as pool:
            window = self.workers * 4
            futs = {}
            nxt = first
            for t in range(first, full0):
                while nxt < full0 and nxt < t + window:
                    futs[nxt] = pool.submit(self._leaf_tile, nxt, TILE_WIDTH)
                    nxt += 1
                hashes, prepared = futs.pop(t).result()
                self._commit(prepared)
                st.done = (t + 1) * TILE_WIDTH
                push(1, subtree_root(hashes))
                processed += 1
                if self.progress:
                    self.progress.update(st.done, start)
                if time.perf_counter() - last_save > self.save_every:
                    self._save(st, pending)
                    last_save = time.perf_counter()
                if self.stop_after_tiles is not None and processed >= self.stop_after_tiles:
                    self._save(st, pending)
                    for f in futs.values():
                        f.cancel()
                    raise KeyboardInterrupt("audit interrupted (test hook)")
        self._save(st, pending)
        # the tail: partial tiles at every level
        if part0:
            pending[0], prepared = self._leaf_tile(full0, part0)
            self._commit(prepared)
        level = 0
        while (cp.size >> (TILE_HEIGHT * level)) > 0:
            full, part = tile_widths(level, cp.size)
            have = pending.get(level, [])
            if len(have) != part:
                raise MonitorAlert("audit-mismatch", f"level {level}: {len(have)} pending hashes, want {part}")
            if part and level > 0:
                p = tile_path(level, full, part)
                if self._get(p) != b"".join(have):
                    raise MonitorAlert("audit-mismatch", f"{p} differs from the recomputed hashes")
            level += 1
        # root: perfect subtrees of every level's pending hashes, highest level (leftmost) first
        roots: list[bytes] = []
        for lv in sorted(pending, reverse=True):
            hs = pending[lv]
            i = 0
            while i < len(hs):
                k = 1 << ((len(hs) - i).bit_length() - 1)
                roots.append(subtree_root(hs[i : i + k]))
                i += k
        if roots:
            root = roots[-1]
            for h in reversed(roots[:-1]):
                root = sha256(b"\x01" + h + root).digest()
        else:
            root = EMPTY_ROOT
        pending.pop(0, None)
        if root != cp.root:
            raise MonitorAlert("audit-mismatch", f"recomputed root of size {cp.size} differs from the checkpoint's",
                               {"note": note, "recomputed_root": base64.b64encode(root).decode()})
        st.audited_size = cp.size
        st.audited_note = note
        self._save(st, pending)
        if self.progress:
            self.progress.update(cp.size, start, force=True)
        return st
