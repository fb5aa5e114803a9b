"""Guards of the SQLite backend's dedup tiers, run bookkeeping, background merges and tile file
(issue 16, tools/mutate.py). Background merges are driven by a fake child process: deterministic."""

from __future__ import annotations

import os
import sqlite3
from hashlib import sha256

import pytest

from tlog.storage import druns
from tlog.storage.sqlite import SQLiteStorage
from tlog.tree import RECORD_BYTES


def _leaf(i: int) -> bytes:
    return sha256(b"dedup-guard-%d" % i).digest()


def _append(st: SQLiteStorage, start: int, n: int, keys=None) -> list[bytes]:
    leaves = [_leaf(i) for i in range(start, start + n)]
    with st.integration() as tx:
        tx.insert_entries(start, leaves, [b"d"] * n, keys or leaves)
    return leaves


def _listed(st: SQLiteStorage) -> list[tuple]:
    return st._writer.execute("SELECT a, b, n, level FROM druns ORDER BY a").fetchall()


def _other(st: SQLiteStorage) -> sqlite3.Connection:
    return sqlite3.connect(st.path, isolation_level=None)


@pytest.fixture
def st(tmp_path):
    s = SQLiteStorage(tmp_path / "log.sqlite")
    yield s
    s.close()


def test_full_level0_tiles_must_continue_the_tile_file(st):
    with pytest.raises(RuntimeError, match="do not continue"):
        with st.integration() as tx:
            tx.put_tiles({(0, 1): b"\x01" * RECORD_BYTES})  # tile 0 was never written
    assert st._writer.execute("SELECT value FROM meta WHERE key = 'l0_upto'").fetchone()[0] == "0"
    with st.integration() as tx:  # in order it is accepted
        tx.put_tiles({(0, 0): b"\x02" * RECORD_BYTES, (0, 1): b"\x03" * RECORD_BYTES})
    assert st.tiles([(0, 0), (0, 1)]) == {(0, 0): b"\x02" * RECORD_BYTES, (0, 1): b"\x03" * RECORD_BYTES}


def test_recent_tiers_follow_a_database_that_shrank(st):
    """Entries restored from an older copy (rows gone under a running log): the writer's and the
    readers' in-memory recent tiers must not keep answering for entries no longer stored."""
    leaves = _append(st, 0, 3) + _append(st, 3, 3)
    assert st.find(leaves[4]) == 4
    with st.integration() as tx:
        assert tx.existing([leaves[4]]) == {leaves[4]: 4}
    db = _other(st)
    db.execute("DELETE FROM entries WHERE start = 3")
    db.close()
    assert st.find(leaves[4]) is None and st.find(leaves[1]) == 1
    with st.integration() as tx:
        assert tx.existing([leaves[4], leaves[1]]) == {leaves[1]: 1}
        tx.insert_entries(3, [_leaf(100)], [b"d"], [_leaf(100)])
    assert st.find(_leaf(100)) == 3


def test_the_readers_recent_tier_is_emptied_by_a_merge(tmp_path):
    """The recent tier holds only the entries since the last merge (the memory bound of
    merge_every + one batch): the readers' tier starts again after the writer merged."""
    st = SQLiteStorage(tmp_path / "log.sqlite", merge_every=4)
    try:
        leaves = _append(st, 0, 3)
        assert st.find(leaves[0]) == 0 and len(st._rrec.keys) == 3
        leaves += _append(st, 3, 3)  # crosses 4: entries [0, 6) go to a run
        assert _listed(st) == [(0, 6, 6, 0)]
        assert [st.find(x) for x in leaves] == list(range(6))
        assert (st._rrec.merged, st._rrec.upto, len(st._rrec.keys)) == (6, 6, 0)
        leaves += _append(st, 6, 1)
        assert st.find(leaves[6]) == 6 and (st._rrec.merged, len(st._rrec.keys)) == (6, 1)
    finally:
        st.close()


def test_a_run_whose_keys_are_its_leaves_stores_no_keys(st):
    """dkeys is NULL for every bundle run whose keys are its leaves, even when another run of the
    same batch has distinct keys."""
    leaves = [_leaf(i) for i in range(258)]
    keys = list(leaves)
    keys[257] = sha256(b"a distinct key").digest()
    with st.integration() as tx:
        tx.insert_entries(0, leaves, [b""] * 258, keys)
    rows = st._writer.execute("SELECT start, length(leaves) / 32, dkeys IS NULL FROM entries ORDER BY start").fetchall()
    assert rows == [(0, 256, 1), (256, 2, 0)]
    assert st.find_key(keys[257]) == 257 and st.find_key(keys[3]) == 3 and st.find(leaves[257]) == 257


# -- background merges (a fake child process) ----------------------------------------------------

class _Proc:
    def __init__(self, rc):
        self.returncode = None
        self._rc = rc

    def poll(self):
        self.returncode = self._rc
        return self._rc

    def kill(self):
        self._rc = -9

    def wait(self):
        self.returncode = self._rc
        return self._rc


def _merging(tmp_path, monkeypatch, rc, write=True, inline_max=15):
    """A log with merge_every=2 whose 8 level-0 runs (16 keys) call for a merge above
    inline_max keys; spawn_merge replaced by a fake child exiting ``rc`` (None: still running),
    having written its output (as the real child does) if ``write``."""
    spawned = []

    def spawn(d, runs):
        if write:
            druns.write_run(d, runs[0].a, runs[-1].b, *druns.merge(runs), suffix=druns.MERGED)
        spawned.append([(r.a, r.b) for r in runs])
        return _Proc(rc)

    monkeypatch.setattr(druns, "spawn_merge", spawn)
    st = SQLiteStorage(tmp_path / "log.sqlite", merge_every=2, merge_inline_max=inline_max)
    for i in range(0, 16, 2):
        _append(st, i, 2)
    return st, spawned


def test_a_merge_of_exactly_merge_inline_max_keys_runs_inline(tmp_path, monkeypatch):
    st, spawned = _merging(tmp_path, monkeypatch, 0, inline_max=16)
    try:
        assert spawned == [] and _listed(st) == [(0, 16, 16, 1)]
    finally:
        st.close()


def test_a_running_background_merge_is_left_running(tmp_path, monkeypatch):
    st, spawned = _merging(tmp_path, monkeypatch, None)
    try:
        assert len(spawned) == 1 and len(_listed(st)) == 8
        merged_file = os.path.join(st.rundir, druns.run_name(0, 16) + druns.MERGED)
        _append(st, 16, 1)
        assert len(spawned) == 1 and os.path.exists(merged_file) and len(_listed(st)) == 8
    finally:
        st.close()


def test_the_output_of_a_failed_merge_is_not_used(tmp_path, monkeypatch):
    st, spawned = _merging(tmp_path, monkeypatch, 1)
    try:
        assert len(spawned) == 1
        _append(st, 16, 1)
        # the failed child's file is discarded and the merge started again
        assert len(spawned) == 2 and len(_listed(st)) == 8 and all(r[3] == 0 for r in _listed(st))
    finally:
        st.close()


def test_a_finished_merge_is_renamed_durably_before_it_is_listed(tmp_path, monkeypatch):
    st, spawned = _merging(tmp_path, monkeypatch, 0)
    try:
        assert len(spawned) == 1 and len(_listed(st)) == 8
        final = os.path.join(st.rundir, druns.run_name(0, 16))
        synced = []
        real = druns.fsync_dir
        monkeypatch.setattr(druns, "fsync_dir", lambda d: (synced.append((d, os.path.exists(final))), real(d)))
        _append(st, 16, 1)  # lists the finished merge (no new run of its own: 17 crosses no multiple of 2)
        assert _listed(st) == [(0, 16, 16, 1)]
        assert (st.rundir, True) in synced
        assert [st.find(_leaf(i)) for i in range(17)] == list(range(17))
    finally:
        st.close()


# -- run bookkeeping -----------------------------------------------------------------------------

def _with_runs(tmp_path) -> SQLiteStorage:
    st = SQLiteStorage(tmp_path / "log.sqlite", merge_every=4)
    _append(st, 0, 4)
    _append(st, 4, 1)
    assert _listed(st) == [(0, 4, 4, 0)]
    return st


def test_a_listing_that_disagrees_with_a_cached_run_is_refused(tmp_path):
    st = _with_runs(tmp_path)
    try:
        assert st.find(_leaf(1)) == 1  # the run is mapped and cached now
        db = _other(st)
        db.execute("UPDATE druns SET n = 5 WHERE a = 0")  # a damaged manifest
        db.close()
        with pytest.raises(RuntimeError, match="lists 5 keys, the entries have 4"):
            st.find(_leaf(1))
        with pytest.raises(RuntimeError, match="lists 5 keys"):
            with st.integration() as tx:
                tx.existing([_leaf(1)])
    finally:
        st.close()


def test_runs_are_mapped_once_not_per_lookup(tmp_path, monkeypatch):
    st = _with_runs(tmp_path)
    try:
        opened = []
        real = druns.Run

        def run(*a, **kw):
            opened.append(a[1:3])
            return real(*a, **kw)

        monkeypatch.setattr(druns, "Run", run)
        for _ in range(3):
            assert st.find(_leaf(2)) == 2
            with st.integration() as tx:
                assert tx.existing([_leaf(3)]) == {_leaf(3): 3}
        assert opened == []  # mapped once, when the integration that wrote it listed it
    finally:
        st.close()


def test_a_missing_run_is_rebuilt_only_when_asked(tmp_path):
    st = _with_runs(tmp_path)
    st.close()
    path = os.path.join(str(tmp_path / "log.sqlite-dedup"), druns.run_name(0, 4))
    os.unlink(path)
    st = SQLiteStorage(tmp_path / "log.sqlite", merge_every=4)
    try:
        with pytest.raises(druns.RunMissing):
            st._runs(st._reader(), rebuild=False)
        assert not os.path.exists(path)
        assert st.find(_leaf(2)) == 2 and os.path.exists(path)  # a fresh snapshot still lists it: rebuilt
    finally:
        st.close()


def test_the_recent_tiers_are_kept_up_to_date_not_reloaded(st, monkeypatch):
    """The writer's and the readers' recent tiers are loaded once and then caught up with new
    entries; a lookup with nothing new reads no entries (the tier holds up to merge_every keys)."""
    from tlog.storage.sqlite_recent import _Recent

    loads = []
    real = _Recent.load.__func__
    monkeypatch.setattr(_Recent, "load", classmethod(lambda cls, db, merged, count: (loads.append(count), real(cls, db, merged, count))[1]))
    leaves = _append(st, 0, 3)
    assert loads == [0]  # the writer's first integration: nothing stored yet
    for _ in range(2):
        assert st.find(leaves[1]) == 1
        with st.integration() as tx:
            assert tx.existing([leaves[2]]) == {leaves[2]: 2}
    leaves += _append(st, 3, 2)
    assert st.find(leaves[4]) == 4 and st.find(leaves[0]) == 0
    assert loads == [0, 3]  # and the readers' first lookup
