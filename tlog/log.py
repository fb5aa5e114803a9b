"""The log core: sequencing, group commit, tiles, checkpoints, proofs.

The HTTP server codes against :class:`Log`. Outline of one integration (one transaction,
one fsync, whoever holds the storage's writer lock):

1. lock (SQLite BEGIN IMMEDIATE / PostgreSQL ``SELECT ... FOR UPDATE`` on the state row);
   if another process advanced the tree, reload the right edge from the tiles;
2. take this process's queued submissions plus rows of the durable ``pending`` table;
3. dedup against the entries (unique dedup key: the statement's signed content, see
   :meth:`Log.submit`; the leaf input when no key is given), assign indexes, insert entries
   and attrs;
4. append the leaf hashes to the in-memory right edge; write every touched tile once;
5. compute the new root from the tiles, prove it consistent with the last *signed*
   checkpoint (consistency proof from the tiles, checked with
   :func:`verifier.merkle.verify_consistency`; refuse and roll back otherwise), call the head
   signer hook, sign the C2SP checkpoint, store the head and the new state;
6. commit (durable), then acknowledge the batch.

Pending queue decision: the hot path is in memory plus one durable transaction; a submission
becomes durable when its batch commits. :meth:`Pending.wait` returns the Entry once durable.
If its bounded wait runs out first (the server then answers 303), ``wait`` writes the
submission to the durable ``pending`` table *before* returning None (group of one; the
integrator later picks it up, dedup makes a double integration impossible), so every
submission the server has accepted survives a crash and is integrated by the next
integration of any process (each sequencer polls the pending table, and :meth:`Log.open`
drains it). :meth:`Log.status` looks in the entries, the pending table and the in-memory
queue, so it works across processes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from hashlib import sha256
from typing import Callable, Literal, Sequence

from verifier.errors import VerificationError
from verifier.merkle import EMPTY_ROOT, verify_consistency
from verifier.note import Checkpoint, NoteVerifier, Signer, open_note, sign_note

from .claims import Refused, alias_rows, unique_conflicts
from .layout import TILE_HEIGHT, TILE_WIDTH
from .logreads import LogReads
from .pending import Entry, Pending, _check_item
from .storage import Storage, TreeHead, open_storage
from .tree import HS, OverlayCache, TileCache, TileTree, append_hashes

__all__ = ["SEALED_REFUSAL", "refusal", "Log", "LogSealed", "Refused", "TreeHead", "open_storage"]

log = logging.getLogger("tlog.log")

HeadSigner = Callable[[int, bytes], bytes]
Attrs = Sequence[tuple[str, str]]


# A closed shard (tlog.shard) records its final checkpoint under this ``meta`` key; from then on
# every integration transaction refuses to append (checked in the transaction that would append,
# which holds the log-wide writer lock, as does the one recording it): the final checkpoint stays
# the latest whatever a worker's view of the close. Queue rows it refuses leave the queue in that
# transaction, recorded as refused (below) with the value SEALED_REFUSAL.
SEALED = "shard_final"
# Every submission the commit refuses - the log sealed (SEALED_REFUSAL), or another claim holding
# its record id (tlog.claims: the conflict's text) - is recorded under ``REFUSED_PREFIX + leaf
# hex`` in that transaction, so one answered 303 before the refusal resolves to it (410 or 409),
# not to an unknown id.
REFUSED_PREFIX = "refused:"
SEALED_REFUSAL = "closed"


def refusal(storage, leaf: bytes) -> str | None:
    """Why the commit refused ``leaf`` (SEALED_REFUSAL or a conflict's text), None if it did not."""
    return storage.meta(REFUSED_PREFIX + leaf.hex())


class LogSealed(Exception):
    """The log recorded its final checkpoint (a closed shard): nothing was appended."""


def _assign(items, existing: dict[bytes, int], size: int):
    """Assign indexes: items whose dedup key (item[3]) is in ``existing`` or repeated in the
    batch are duplicates (of the first). Returns (leaves, datas, keys, attr rows, results)."""
    if not existing:
        keys = [it[3] for it in items]
        if len(set(keys)) == len(keys):  # the common case: all new
            attr_rows = [(k, v, size + i) for i, it in enumerate(items) for k, v in it[2]]
            return ([it[0] for it in items], [it[1] for it in items], keys, attr_rows,
                    [(size + i, False) for i in range(len(items))])
    seen: dict[bytes, int] = {}
    new_leaves: list[bytes] = []
    new_datas: list[bytes] = []
    new_keys: list[bytes] = []
    attr_rows: list[tuple[str, str, int]] = []
    results: list[tuple[int, bool]] = []
    for leaf, data, attrs, key in items:
        idx = existing.get(key) if existing else None
        if idx is None:
            idx = seen.get(key)
        if idx is not None:
            results.append((idx, True))
            continue
        idx = size + len(new_leaves)
        seen[key] = idx
        new_leaves.append(leaf)
        new_datas.append(data)
        new_keys.append(key)
        for k, v in attrs:
            attr_rows.append((k, v, idx))
        results.append((idx, False))
    return new_leaves, new_datas, new_keys, attr_rows, results


class Log(LogReads):
    def __init__(self, storage: Storage, *, origin: str, note_signer: Signer,
                 head_signer: HeadSigner | None, max_batch: int, max_wait: float,
                 poll_interval: float, own_storage: bool) -> None:
        self.storage = storage
        self.origin = origin
        self._signer = note_signer
        self._verifier = NoteVerifier.from_vkey(note_signer.vkey)
        self._head_signer = head_signer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self._own_storage = own_storage
        self._cache = TileCache()
        self._overlay: OverlayCache | None = None
        self._tree = TileTree(storage.tiles, self._cache)
        self._int_lock = threading.RLock()  # one integration/reload at a time in this process
        self._cond = threading.Condition()
        self._queue: list[Pending] = []
        self._inflight: dict[bytes, Pending] = {}
        self._closing = False
        self._closed = False
        self._size = 0
        self._root = EMPTY_ROOT
        self._sr = (0, EMPTY_ROOT)  # (size, root) as one object: read atomically by readers
        self._edge: dict[int, bytes] = {}
        self._latest: TreeHead | None = None
        self._thread: threading.Thread | None = None
        self._drained = 0
        self.on_batch = None  # called (entries, seconds) after each committed integration
        # attributes whose value only one claim (dedup key) may hold: the commit refuses the others
        self.unique_attrs: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ opening / closing
    @classmethod
    def open(cls, storage: Storage | str | os.PathLike, *, origin: str, note_signer: Signer,
             head_signer: HeadSigner | None = None, max_batch: int = 4096, max_wait: float = 0.005,
             poll_interval: float = 0.5, sequencer: bool = True) -> "Log":
        """Open (creating when empty) the log in ``storage`` (a Storage, a path or URL).

        Verifies the stored state on the way: the latest head must be signed by
        ``note_signer``'s key and match the state row, and the root recomputed from the tiles
        must equal the stored root. Integrates any durably queued submissions.

        ``sequencer=False``: no sequencer thread and no integration of the durable queue here
        (a frontend whose submissions another process integrates, or a lease-holding
        integrator that calls :meth:`integrate_pending` itself); :meth:`submit` is refused.
        """
        if not isinstance(note_signer, Signer):
            raise ValueError("note_signer must be a verifier.note.Signer")
        if not isinstance(origin, str) or not origin:
            raise ValueError("origin must be a non-empty string")
        if note_signer.name != origin:
            raise ValueError(f"note signer key name {note_signer.name!r} must equal the origin {origin!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if not max_wait >= 0:
            raise ValueError("max_wait must be >= 0")
        own = not isinstance(storage, Storage)
        st = open_storage(storage) if own else storage
        self = cls(st, origin=origin, note_signer=note_signer, head_signer=head_signer,
                   max_batch=max_batch, max_wait=max_wait, poll_interval=poll_interval, own_storage=own)
        try:
            self._init_storage()
            self._reload()
            if sequencer:
                self._drain_pending()
        except BaseException:
            if own:
                st.close()
            raise
        if sequencer:
            self._thread = threading.Thread(target=self._run, name="tlog-sequencer", daemon=True)
            self._thread.start()
        return self

    def _init_storage(self) -> None:
        with self.storage.integration() as tx:
            o = tx.get_meta("origin")
            if o is None:
                tx.set_meta("origin", self.origin)
            elif o != self.origin:
                raise ValueError(f"storage holds the log {o!r}, not {self.origin!r}")
            if tx.state() is None:
                text = Checkpoint(self.origin, 0, EMPTY_ROOT).to_text()
                head = TreeHead(0, EMPTY_ROOT, sign_note(text, [self._signer]),
                                self._head_signer(0, EMPTY_ROOT) if self._head_signer else None, time.time())
                tx.put_head(head)
                tx.set_state(0, EMPTY_ROOT)

    def _open_checkpoint(self, head: TreeHead) -> Checkpoint:
        n = open_note(head.checkpoint, [self._verifier])
        cp = Checkpoint.parse(n.text)
        if cp.origin != self.origin or cp.size != head.size or cp.root != head.root:
            raise VerificationError("log.head", f"stored head {head.size} does not match its signed checkpoint")
        return cp

    def _load_edge(self, size: int, fetch) -> dict[int, bytes]:
        need = {}
        level = 0
        while size >> (TILE_HEIGHT * level):
            n = size >> (TILE_HEIGHT * level)
            w = n & (TILE_WIDTH - 1)
            if w:
                need[(level, n >> TILE_HEIGHT)] = w
            level += 1
        got = fetch(list(need)) if need else {}
        edge = {}
        for (level, idx), w in need.items():
            blob = got.get((level, idx))
            if blob is None or len(blob) < w * HS:
                raise VerificationError("log.tiles", f"tile {level}/{idx} is missing or short for size {size}")
            edge[level] = bytes(blob[:w * HS])
        return edge

    def _reload(self) -> None:
        """Load state, right edge and latest head from committed storage, verifying them."""
        with self._int_lock:
            st = self.storage.state()
            if st is None:
                raise VerificationError("log.state", "storage has no tree state")
            size, root = st
            edge = self._load_edge(size, self.storage.tiles)
            calc = TileTree(self.storage.tiles, self._cache).root(size)
            if calc != root:
                raise VerificationError("log.root", f"root recomputed from the tiles at size {size} differs from the stored root")
            head = self.storage.head(size)
            if head is None:
                raise VerificationError("log.head", f"no signed head for the state size {size}")
            self._open_checkpoint(head)
            if head.root != root:
                raise VerificationError("log.head", "latest head root differs from the state root")
            self._sr = (size, root)
            self._root, self._edge, self._latest, self._size = root, edge, head, size
            self._warm_upper_tiles(size)

    def _warm_upper_tiles(self, size: int, budget: int = 2048) -> None:
        """Load the full tiles of levels >= 1 (the top of the tree, 1/256 of the level-0
        tiles and touched by every proof) into the tile cache, the newest ``budget`` of them,
        so that a proof right after a restart reads and hashes about one level-0 tile."""
        keys = []
        level = 1
        while size >> (TILE_HEIGHT * (level + 1)):
            full = size >> (TILE_HEIGHT * (level + 1))
            keys.extend((level, n) for n in range(full - 1, -1, -1))
            level += 1
        keys = keys[:budget]
        missing = [k for k in keys if self._cache.get(k, TILE_WIDTH) is None]
        if missing:
            self._tree.warm(missing)

    def close(self) -> None:
        """Integrate what is queued, stop the sequencer, close owned storage."""
        if self._closed:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._closed = True
        if self._own_storage:
            self.storage.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ submissions
    def submit(self, leaf_input: bytes, data: bytes, attrs: Attrs = (), key: bytes | None = None) -> Pending:
        """Queue a submission for the sequencer (thread-safe); wait on the Pending.

        ``key`` (32 bytes, default the leaf input) is what dedup compares: a submission whose
        key an entry already has resolves to that entry (``duplicate``), whatever its leaf.
        The log service passes the digest of the statement's signed content, so that a
        re-encoding or re-signature of an admitted claim returns the original entry. Equal
        leaves must have equal keys (the key is a function of the entry's data)."""
        leaf, data, attrs, key = _check_item(leaf_input, data, attrs, key)
        p = Pending(self, leaf, data, attrs, key)
        with self._cond:
            if self._closing:
                raise RuntimeError("log is closed")
            if self._thread is None:
                raise RuntimeError("this log has no sequencer (submissions go to the durable queue)")
            self._queue.append(p)
            self._inflight.setdefault(leaf, p)
            self._cond.notify_all()
        return p

    def append(self, items: Sequence[tuple], *, checked: bool = False) -> list[Entry]:
        """Append a batch synchronously and durably (one transaction). Items are
        ``(leaf, data, attrs)`` or ``(leaf, data, attrs, key)`` (see :meth:`submit`);
        ``checked=True``: ``(leaf, data, attrs, key)`` as :func:`tlog.pending._check_item`
        returned them (the integrator process: its worker checked them before sending)."""
        batch = list(items) if checked else [_check_item(*it) for it in items]
        if self._closed:
            raise RuntimeError("log is closed")
        return self._integrate(batch)

    def _spill(self, p: Pending) -> None:
        if p.done():
            return
        self.storage.enqueue([(p.leaf, p.data, p.attrs, p.key)])

    def status(self, leaf_input: bytes) -> Entry | Literal["pending"] | None:
        """Entry if integrated (any process), "pending" if accepted and not yet integrated,
        None if unknown."""
        if not isinstance(leaf_input, (bytes, bytearray)) or len(leaf_input) != HS:
            raise ValueError("leaf input must be 32 bytes")
        leaf = bytes(leaf_input)
        for attempt in range(2):
            idx = self.storage.find(leaf)
            dup = False
            if idx is None and attempt == 1:
                # another encoding of a claim, queued (and answered 303) while the claim was
                # pending: the integration recorded it as an alias of the claim's entry
                idx = self.storage.find_alias(leaf)
                dup = True
            if idx is not None:
                ts = self.storage.first_head_after(idx)
                return Entry(idx, ts if ts is not None else idx + 1, dup)
            if attempt == 0:
                with self._cond:
                    if leaf in self._inflight:
                        return "pending"
                if self.storage.pending_contains(leaf):
                    return "pending"
        return None

    def find_key(self, key: bytes) -> int | None:
        """Index of the integrated entry with dedup key ``key`` (any process), or None."""
        if not isinstance(key, (bytes, bytearray)) or len(key) != HS:
            raise ValueError("dedup key must be 32 bytes")
        return self.storage.find_key(bytes(key))

    # ------------------------------------------------------------------ sequencer
    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_interval
        while True:
            batch: list[Pending] = []
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(max(0.0, next_poll - time.monotonic()))
                if self._queue:
                    deadline = self._queue[0].t + self.max_wait
                    while len(self._queue) < self.max_batch and not self._closing:
                        rem = deadline - time.monotonic()
                        if rem <= 0:
                            break
                        self._cond.wait(rem)
                    batch = self._queue[:self.max_batch]
                    del self._queue[:self.max_batch]
                elif self._closing:
                    return
            now = time.monotonic()
            poll = now >= next_poll
            if poll:
                next_poll = now + self.poll_interval
            try:
                if batch:
                    entries = self._integrate([(p.leaf, p.data, p.attrs, p.key) for p in batch])
                    self._finish(batch, entries, None)
                elif poll:
                    if self.storage.has_pending():
                        self._drain_pending()
                    else:
                        self.refresh()
            except BaseException as e:  # noqa: BLE001 - reported to the waiters
                if batch:
                    log.warning("integration of %d submissions failed: %s", len(batch), e)
                    self._finish(batch, None, e)
                else:
                    log.warning("pending-queue integration failed: %s", e)

    def integrate_pending(self) -> int:
        """Integrate up to ``max_batch`` rows of the durable pending queue in one transaction
        (an empty one if there are none); the number of rows taken from the queue."""
        self._integrate([])
        return self._drained

    def _drain_pending(self) -> None:
        """Integrate the durable pending queue (max_batch rows per transaction) until empty."""
        while self.storage.has_pending() and not self._closing:
            self._integrate([])

    def _finish(self, batch: list[Pending], entries: list[Entry] | None, err: BaseException | None) -> None:
        with self._cond:
            for p in batch:
                if self._inflight.get(p.leaf) is p:
                    del self._inflight[p.leaf]
        for i, p in enumerate(batch):
            if err is not None:
                p._fail(err)
            elif isinstance(entries[i], Refused):
                p._fail(entries[i])
            else:
                p._resolve(entries[i])

    # ------------------------------------------------------------------ integration
    def _integrate(self, items: list[tuple[bytes, bytes, tuple, bytes]]) -> list[Entry]:
        t0 = time.monotonic()
        with self._int_lock:
            with self.storage.integration() as tx:
                st = tx.state()
                if st is None:
                    raise VerificationError("log.state", "storage has no tree state")
                size, root = st
                # a closed shard's final checkpoint is recorded: append nothing, refuse the queue
                sealed = tx.get_meta(SEALED) is not None
                if (size, root) != (self._size, self._root):
                    if size <= self._size:  # shrank, or another tree of the same size (a swapped store)
                        raise VerificationError("log.state", f"stored tree shrank or changed: {self._size} -> {size}")
                    edge = self._load_edge(size, tx.tiles)
                else:
                    edge = self._edge
                prows = [] if sealed else tx.pending(self.max_batch)
                self._drained = self._refuse_queued(tx) if sealed else len(prows)
                allitems = ([] if sealed else list(items)) + [(r.leaf, r.data, r.attrs, r.key) for r in prows]
                refused = unique_conflicts(tx, allitems, self.unique_attrs) if self.unique_attrs else None
                for i, why in (refused or {}).items():
                    tx.set_meta(REFUSED_PREFIX + allitems[i][0].hex(), str(why)[:300])
                kept = [it for i, it in enumerate(allitems) if i not in refused] if refused else allitems
                # optimistic: assume no key is in the log (one insert, no lookups); on a
                # unique-key conflict the storage inserts nothing and we dedup properly
                new_leaves, new_datas, new_keys, attr_rows, results = _assign(kept, {}, size)
                if new_leaves and not tx.try_insert_entries(size, new_leaves, new_datas, new_keys):
                    existing = tx.existing(list({it[3] for it in kept}))
                    new_leaves, new_datas, new_keys, attr_rows, results = _assign(kept, existing, size)
                    if new_leaves:
                        tx.insert_entries(size, new_leaves, new_datas, new_keys)
                if refused:
                    rest = iter(results)
                    results = [refused[i] if i in refused else next(rest) for i in range(len(allitems))]
                if prows:  # queued re-encodings of a claim pending meanwhile: their ids resolve
                    aliases = alias_rows(allitems[len(items):], results[len(items):], size, new_leaves,
                                         tx.leaf_at)
                    if aliases:
                        tx.insert_aliases(aliases)
                new_size, new_root, new_edge, head = size, root, edge, None
                if new_leaves:
                    h = sha256
                    hashes = b"".join([h(b"\x00" + leaf).digest() for leaf in new_leaves])
                    new_size, dirty, new_edge = append_hashes(edge, size, hashes)
                    if attr_rows:
                        tx.insert_attrs(attr_rows)
                    tx.put_tiles(dirty)
                    head = self._new_head(tx, dirty, size, new_size)
                    new_root = head.root
                    tx.put_head(head)
                    tx.set_state(new_size, new_root)
                if prows:
                    tx.delete_pending([r.seq for r in prows])
            # committed: durable; the batch's tiles (rows already computed) join the log's cache
            if head is not None and self._overlay is not None:
                self._overlay.publish()
            self._overlay = None
            self._sr = (new_size, new_root)
            self._root, self._edge, self._size = new_root, new_edge, new_size
            if head is not None:
                self._latest = head
            elif (size, root) != (self._latest.size, self._latest.root):
                self._latest = self.storage.head(size) or self._latest
        if sealed and items:
            raise LogSealed("the log recorded its final checkpoint (a closed shard): nothing appended")
        cb = self.on_batch
        if cb is not None and allitems:
            cb(len(allitems), time.monotonic() - t0)
        out = []
        append = out.append
        if hasattr(Entry, "__slots__"):
            mk = Entry
        else:
            # the dataclass __init__ of a frozen class costs three object.__setattr__ calls
            # (~1 us per entry on the append path); fill the instance dict directly instead
            new = object.__new__

            def mk(index, tree_size, duplicate):
                e = new(Entry)
                e.__dict__.update(index=index, tree_size=tree_size, duplicate=duplicate)
                return e
        for r in results[:len(items)]:
            if isinstance(r, Refused):
                append(r)
                continue
            idx, dup = r
            if idx >= size:
                append(mk(idx, new_size, dup))
            else:
                ts = self.storage.first_head_after(idx)
                append(mk(idx, ts if ts is not None else size, dup))
        return out

    def _refuse_queued(self, tx) -> int:
        """In the transaction that found the log sealed: record the next queue rows as refused
        (``REFUSED_PREFIX + leaf hex``: SEALED_REFUSAL) and take them out of the queue; how many."""
        prows = tx.pending(self.max_batch)
        for r in prows:
            tx.set_meta(REFUSED_PREFIX + r.leaf.hex(), SEALED_REFUSAL)
        if prows:
            tx.delete_pending([r.seq for r in prows])
            log.warning("refused %d queued entries: the log recorded its final checkpoint", len(prows))
        return len(prows)

    def _new_head(self, tx, dirty, size: int, new_size: int) -> TreeHead:
        def fetch(keys):
            out = {k: dirty[k] for k in keys if k in dirty}
            rest = [k for k in keys if k not in dirty]
            if rest:
                out.update(tx.tiles(rest))
            return out

        # tiles of this uncommitted batch stay in an overlay until the commit (self._overlay)
        self._overlay = OverlayCache(self._cache)
        tree = TileTree(fetch, self._overlay)
        # the new root and the consistency proof from the last size: one tile load
        new_root, proof = tree.root_and_consistency(size, new_size)
        last = tx.latest_head()
        if last is None:
            raise VerificationError("log.head", "no previous signed head")
        known = self._latest
        if known is not None and last.checkpoint == known.checkpoint and last.size == known.size:
            # the head this process signed or verified last: its signature was checked then
            cp = Checkpoint(self.origin, known.size, known.root)
        else:
            cp = self._open_checkpoint(last)
        if cp.size != size:
            raise VerificationError("log.head", f"last signed checkpoint has size {cp.size}, tree state has {size}")
        if size > 0:
            verify_consistency(size, new_size, proof, cp.root, new_root)
        extra = None
        if self._head_signer is not None:
            extra = self._head_signer(new_size, new_root)
            if extra is not None and not isinstance(extra, (bytes, bytearray)):
                raise ValueError("head_signer must return bytes or None")
            extra = None if extra is None else bytes(extra)
        text = Checkpoint(self.origin, new_size, new_root).to_text()
        return TreeHead(new_size, new_root, sign_note(text, [self._signer]), extra, time.time())
