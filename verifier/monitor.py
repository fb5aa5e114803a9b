"""Monitor and auditor of a C2SP tiled transparency log (issue 6).

``monitor``: follow a log's checkpoints (``GET <log>/checkpoint``), verify the log's signature,
check each new checkpoint against the last verified one with a consistency proof computed from
the log's tiles (verified with :mod:`verifier.merkle`), compare with the checkpoints other
parties saw (``--peer`` URLs serving a checkpoint note, ``--witness`` URLs of tlog.witness
serving ``GET <witness>/checkpoint?origin=``), and keep the last verified checkpoint in a state
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
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from .errors import VerificationError
from .merkle import EMPTY_ROOT, verify_consistency
from .note import Checkpoint, CheckpointNote, NoteVerifier, open_checkpoint
from .tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileHashReader,
    TileNotFound,
    entries_path,
    parse_entry_bundle,
    subtree_root,
    tile_path,
    tile_widths,
)

__all__ = [
    "MonitorAlert",
    "Unreachable",
    "HttpLog",
    "MonitorState",
    "load_state",
    "save_state",
    "write_atomic",
    "check_new_checkpoint",
    "compare_views",
    "Monitor",
    "Auditor",
    "AuditState",
    "add_parser",
]

MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_TILE_BYTES = 1 << 20


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


# ---------------------------------------------------------------------------- HTTP


class HttpLog:
    """A tlog-tiles log over HTTP(S): stdlib ``http.client`` with one keep-alive connection per
    thread (no proxy support), ``gzip`` content encoding accepted, bounded response sizes."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self, scheme: str, netloc: str):
        import http.client

        key = (scheme, netloc)
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(key)
        if c is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            c = conns[key] = cls(netloc, timeout=self.timeout)
        return c

    def _drop(self, scheme: str, netloc: str) -> None:
        c = getattr(self._local, "conns", {}).pop((scheme, netloc), None)
        if c is not None:
            c.close()

    def get(self, path: str, limit: int = MAX_TILE_BYTES, url: str | None = None) -> bytes:
        import http.client
        import zlib

        target = url if url is not None else f"{self.url}/{path.lstrip('/')}"
        u = urllib.parse.urlsplit(target)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise Unreachable(f"GET {target}: not an http(s) URL")
        req = (u.path or "/") + (f"?{u.query}" if u.query else "")
        for attempt in (0, 1):  # one retry on a stale keep-alive connection
            c = self._conn(u.scheme, u.netloc)
            try:
                c.request("GET", req, headers={"Accept-Encoding": "gzip", "User-Agent": "twi-verify-monitor"})
                r = c.getresponse()
                body = r.read(limit + 1)
                if len(body) > limit or (r.length or 0) > 0:
                    self._drop(u.scheme, u.netloc)
                    raise Unreachable(f"GET {target}: response larger than {limit} bytes")
                break
            except (OSError, http.client.HTTPException) as e:
                self._drop(u.scheme, u.netloc)
                if attempt == 1 or isinstance(e, TimeoutError):
                    raise Unreachable(f"GET {target}: {e}") from None
        if r.getheader("Content-Encoding", "identity").lower() == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = d.decompress(body, limit + 1)
            except zlib.error as e:
                raise Unreachable(f"GET {target}: bad gzip body: {e}") from None
            if len(body) > limit or d.unconsumed_tail:
                raise Unreachable(f"GET {target}: response larger than {limit} bytes")
        if r.status == 404:
            raise TileNotFound(target)
        if r.status != 200:
            raise Unreachable(f"GET {target}: HTTP {r.status}")
        return body

    def fetch(self, path: str) -> bytes:
        return self.get(path)

    def checkpoint(self) -> str:
        data = self.get("checkpoint", MAX_CHECKPOINT_BYTES)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- state


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Crash-safe replace: write a temp file in the same directory, fsync, rename, fsync dir."""
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@dataclass
class MonitorState:
    origin: str
    vkey: str
    size: int = 0
    root: str = base64.b64encode(EMPTY_ROOT).decode()
    note: str = ""  # the last verified signed checkpoint, verbatim
    last_ok: float = 0.0  # time of the last successful poll
    checked: int = 0  # number of checkpoints verified

    @property
    def root_bytes(self) -> bytes:
        return base64.b64decode(self.root)


def load_state(path: str | os.PathLike) -> MonitorState | None:
    p = Path(path)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        st = MonitorState(**d)
        if not isinstance(st.size, int) or st.size < 0 or len(st.root_bytes) != 32:
            raise ValueError("bad size or root")
        return st
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise MonitorAlert("bad-state", f"state file {p} is unreadable: {e}") from None


def save_state(path: str | os.PathLike, st: MonitorState) -> None:
    write_atomic(path, (json.dumps(asdict(st), indent=1, sort_keys=True) + "\n").encode())


# ---------------------------------------------------------------------------- checks


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


# ---------------------------------------------------------------------------- output


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


# ---------------------------------------------------------------------------- monitor loop


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
    ) -> None:
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
        return changed

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


# ---------------------------------------------------------------------------- full audit


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


def _receipt_time(stmt: Any) -> float | None:
    """The ``iat`` of the first receipt (394) the log returned with a statement: the time of the
    tree head the entry was integrated in (the receipt's signature is not checked here)."""
    from .receipt import Receipt

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
        from .statement import SignedStatement

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
        from .policy import PolicyViolation

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


# ---------------------------------------------------------------------------- CLI


def _read_vkey(s: str) -> NoteVerifier:
    if s.startswith("@"):
        s = Path(s[1:]).read_text(encoding="utf-8").strip()
    return NoteVerifier.from_vkey(s)


def _open_log(args: argparse.Namespace) -> "tuple[NoteVerifier, HttpLog] | int":
    """The log's note verifier (--vkey) and an HTTP client for --log; exit code 2 on a bad key."""
    try:
        verifier = _read_vkey(args.vkey)
    except (VerificationError, OSError) as e:
        print(f"error: --vkey: {e}", file=sys.stderr)
        return 2
    return verifier, HttpLog(args.log, timeout=args.timeout)


def _log_statement_keys(log: HttpLog, key_file: str | None) -> dict[bytes, Any]:
    """The log's statement-signing keys (they sign its registration-policy statements): from
    ``--log-key FILE`` (PEM, COSE_Key or COSE_KeySet), else ``GET /.well-known/scitt-keys``."""
    from .keys import decode_keyset, load_public_keys, public_key_from_cose_key
    from .policy import log_keys_from

    if key_file:
        return log_keys_from(load_public_keys(key_file).values())
    try:
        data = log.get(".well-known/scitt-keys", MAX_CHECKPOINT_BYTES)
    except TileNotFound:
        raise Unreachable("the log serves no /.well-known/scitt-keys (give --log-key)") from None
    return log_keys_from(public_key_from_cose_key(k) for k in decode_keyset(data))


def _policy_line(ev: dict[str, Any]) -> str | None:
    if ev.get("event") == "policy":
        fork = " (its previous is not the latest policy: fork of the policy chain)" if ev.get("fork") else ""
        return (f"policy at entry {ev['index']}: {len(ev['issuer_keys'])} issuer keys, {ev['trust_anchors']} "
                f"trust anchors, algs {ev['allowed_algs']}, max {ev['max_statement_size']} bytes{fork}")
    if ev.get("event") == "policy-race":
        return f"warning: entry {ev['index']}: {ev['detail']}"
    return None


def _cmd_monitor(args: argparse.Namespace) -> int:
    rep = Reporter()
    opened = _open_log(args)
    if isinstance(opened, int):
        return opened
    verifier, log = opened
    try:
        mon = Monitor(log, verifier, args.state, peers=args.peer, witnesses=args.witness,
                      max_unreachable=args.max_unreachable, reporter=rep)
    except MonitorAlert as a:
        rep.alert(a, verifier.name)
        return 1
    iterations = 1 if args.once else args.iterations
    i = 0
    try:
        while True:
            try:
                mon.poll()
            except MonitorAlert as a:
                rep.alert(a, verifier.name)
                return 1
            i += 1
            if iterations and i >= iterations:
                # --once is a health check: a log that did not answer is a failure (exit 3)
                return 3 if args.once and not mon.reachable else 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130


def _cmd_audit(args: argparse.Namespace) -> int:
    rep = Reporter()
    opened = _open_log(args)
    if isinstance(opened, int):
        return opened
    verifier, log = opened
    try:
        if args.checkpoint:
            note = Path(args.checkpoint).read_text(encoding="utf-8")
        else:
            note = log.checkpoint()
        cp = _verify_note(note, verifier, args.checkpoint or "the log").checkpoint
        bar = {"auto": None, "bar": True, "lines": False}[args.progress]
        prog = Progress(cp.size, sys.stderr, bar=bar)
        aud = Auditor(log.fetch, args.state, workers=args.workers, progress=prog)
        checker = None
        if args.statements:
            anchors = []
            tracker = None
            if args.no_policy:
                if args.trust_anchors:
                    from .x509 import load_certificates

                    anchors = load_certificates(Path(args.trust_anchors).read_bytes())
            else:
                from .policy import PolicyTracker

                tracker = PolicyTracker(_log_statement_keys(log, args.log_key), origin=cp.origin,
                                        grace=args.policy_grace)
            checker = aud.check_entries = StatementChecker(
                log, anchors, policy=tracker,
                on_event=lambda ev: rep.event(ev | {"origin": cp.origin}, _policy_line(ev)))
        t0 = time.perf_counter()
        st = aud.audit(cp, note)
        dt = time.perf_counter() - t0
    except MonitorAlert as a:
        rep.alert(a, verifier.name)
        return 1
    except (Unreachable, OSError) as e:
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: {e} (resume by re-running)")
        return 1
    except VerificationError as e:  # --log-key / the log's key set unusable
        rep.event({"event": "error", "origin": verifier.name, "detail": str(e)}, f"error: the log's keys: {e}")
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run to resume", file=sys.stderr)
        return 130
    ev = {"event": "audited", "origin": cp.origin, "size": st.audited_size,
          "root": base64.b64encode(cp.root).decode(), "seconds": round(dt, 3)}
    human = f"ok: {cp.origin} size {cp.size}: every tile, entry bundle and the root recomputed and equal"
    if checker is not None:
        ev["statements"] = checker.counts()
        human += (f"; {checker.checked} statements hash to their leaves"
                  + (f", each admissible under the registration policy in force ({checker.policies} policies, "
                     f"{checker.races} admitted in a policy-change race)" if checker.policy is not None else "")
                  + f"; {checker.signature_verified} issuer signatures verified, {checker.unverified} not checkable")
    rep.event(ev, human)
    return 0


def add_parser(subparsers) -> None:
    """Register the ``monitor`` and ``audit`` subcommands (handlers return exit codes,
    stored as ``func`` on the namespace)."""
    m = subparsers.add_parser("monitor", help="follow a log's checkpoints and alert on misbehaviour")
    m.add_argument("--log", required=True, help="log URL prefix (serves /checkpoint and /tile/...)")
    m.add_argument("--vkey", required=True, help="the log's note verifier key (or @FILE)")
    m.add_argument("--state", required=True, help="state file (created if missing)")
    m.add_argument("--witness", action="append", default=[],
                   help="witness URL (tlog.witness: GET <url>/checkpoint?origin=) to compare views with")
    m.add_argument("--peer", action="append", default=[], help="URL of a checkpoint seen elsewhere to compare with")
    m.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    m.add_argument("--once", action="store_true",
                   help="poll once and exit: 0 ok, 1 alert, 3 the log (checkpoint or tiles) did not answer")
    m.add_argument("--iterations", type=int, default=0, help="stop after N polls (0: forever)")
    m.add_argument("--max-unreachable", type=float, default=3600.0, help="alert when unreachable longer (s)")
    m.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout (s)")
    m.set_defaults(func=_cmd_monitor, handler=_cmd_monitor)

    a = subparsers.add_parser("audit", help="fetch every tile and entry and recompute the tree")
    a.add_argument("--log", required=True, help="log URL prefix")
    a.add_argument("--vkey", required=True, help="the log's note verifier key (or @FILE)")
    a.add_argument("--state", help="resume file (progress is kept here)")
    a.add_argument("--checkpoint", help="audit this signed checkpoint file instead of the log's current one")
    a.add_argument("--workers", type=int, default=8, help="parallel fetches")
    a.add_argument("--statements", action="store_true",
                   help="also fetch each statement, check d(i) = SHA-256(statement bytes) and judge it by the "
                        "registration policy in force when it was registered (the log's policy statements)")
    a.add_argument("--log-key", help="the log's statement-signing key(s) (PEM, COSE_Key or COSE_KeySet) that sign "
                                     "its policy statements (default: GET <log>/.well-known/scitt-keys)")
    a.add_argument("--policy-grace", type=float, default=60.0,
                   help="seconds after a policy change during which an entry the superseded policy admits is "
                        "accepted as a registration race (reported); 0: none")
    a.add_argument("--no-policy", action="store_true",
                   help="with --statements: do not evaluate the registration policy (only x5chain statements are "
                        "verified, against --trust-anchors)")
    a.add_argument("--trust-anchors", help="with --no-policy: PEM file: verify x5chain statements' signatures to these roots")
    a.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto")
    a.add_argument("--timeout", type=float, default=30.0)
    a.set_defaults(func=_cmd_audit, handler=_cmd_audit)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="twi-monitor")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
