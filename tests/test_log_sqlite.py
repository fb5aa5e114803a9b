"""SQLite backend specifics: entries stored per bundle run, the two-tier (recent + main) dedup
index and the schema check."""

import os
import sqlite3
from hashlib import sha256

import pytest

from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from tlog.pending import Entry
from tlog.storage import druns
from tlog.storage.sqlite import SCHEMA_VERSION, SQLiteStorage, _marks
from verifier.note import Signer


def leaf(i: int) -> bytes:
    return sha256(b"stmt-%d" % i).digest()


def counts(st):
    """(keys in the recent tier, keys in the runs, rows of dcoll), from the committed tables; the
    writer's in-memory recent tier, when loaded, must hold exactly the recent keys."""
    db = st._writer
    merged, count = _marks(db)
    coll_recent = db.execute("SELECT count(*) FROM dcoll WHERE idx >= ?", (merged,)).fetchone()[0]
    recent = count - merged - coll_recent
    if st._wrec is not None:
        assert (st._wrec.merged, st._wrec.upto, len(st._wrec.keys)) == (merged, count, recent)
    return (recent, db.execute("SELECT coalesce(sum(n), 0) FROM druns").fetchone()[0],
            db.execute("SELECT count(*) FROM dcoll").fetchone()[0])


@pytest.fixture
def signer():
    return Signer.generate(ORIGIN)


def test_dedup_across_merge_boundaries(tmp_path, signer):
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=10)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        assert log.append([(leaf(i), b"%d" % i, ()) for i in range(7)])[-1] == Entry(6, 7, False)
        assert counts(st) == (7, 0, 0)
        # crosses 10: the batch lands in dnew, then all 12 move to dmain in key order
        assert log.append([(leaf(i), b"", ()) for i in range(7, 12)])[0] == Entry(7, 12, False)
        assert counts(st) == (0, 12, 0)
        log.append([(leaf(i), b"", ()) for i in range(12, 15)])
        assert counts(st) == (3, 12, 0)
        # duplicates from both tiers, mixed with new leaves, and a batch crossing 20 and 30
        res = log.append([(leaf(3), b"", ()), (leaf(13), b"", ()), (leaf(100), b"", ())]
                         + [(leaf(i), b"", ()) for i in range(15, 31)])
        assert res[:3] == [Entry(3, 7, True), Entry(13, 15, True), Entry(15, 32, False)]
        assert counts(st) == (0, 32, 0) and log.size == 32
        for i in list(range(31)):
            assert log.find(leaf(i)) == (i if i < 15 else i + 1)
        assert log.find(leaf(100)) == 15 and log.find(leaf(999)) is None
        # dedup survives a restart with a different merge interval
        log.close()
        st.close()
        st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=1000)
        log = Log.open(st, origin=ORIGIN, note_signer=signer)
        assert log.append([(leaf(20), b"", ()), (leaf(200), b"", ())]) == [Entry(21, 32, True), Entry(32, 33, False)]
        assert counts(st) == (1, 32, 0)
    finally:
        log.close()
        st.close()


def test_key_collisions_across_tiers(tmp_path, signer):
    """Leaves sharing their 8-byte dedup key, one in dmain and one in dnew, stay distinct."""
    pre = b"\x07" * 8
    a, b, c = (pre + bytes([i]) * 24 for i in range(3))
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=2)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        log.append([(a, b"a", ()), (leaf(1), b"", ())])  # merged: a's key in dmain
        assert counts(st) == (0, 2, 0)
        assert log.append([(leaf(2), b"", ())]) == [Entry(2, 3, False)]
        assert log.append([(b, b"b", ())]) == [Entry(3, 4, False)]  # collides with a (dmain)
        assert counts(st) == (0, 3, 1)
        assert log.append([(c, b"c", ()), (b, b"", ()), (a, b"", ())]) == [
            Entry(4, 5, False), Entry(3, 4, True), Entry(0, 2, True)]
        assert [log.find(x) for x in (a, b, c)] == [0, 3, 4] and log.entry_data(3) == b"b"
        assert log.find(pre + b"\x09" * 24) is None
    finally:
        log.close()
        st.close()


def test_failed_batch_rolls_back_its_merge(tmp_path, signer):
    fail = [False]

    def hs(size, root):
        if fail[0]:
            raise RuntimeError("hsm down")
        return b""

    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=hs)
    try:
        log.append([(leaf(i), b"", ()) for i in range(3)])
        before = counts(st)
        fail[0] = True
        with pytest.raises(RuntimeError):
            log.append([(leaf(i), b"", ()) for i in range(3, 6)])  # would merge at 4
        assert counts(st) == before == (3, 0, 0) and log.find(leaf(4)) is None
        fail[0] = False
        assert log.append([(leaf(i), b"", ()) for i in range(2, 6)])[0] == Entry(2, 3, True)
        assert counts(st) == (0, 6, 0) and [log.find(leaf(i)) for i in range(6)] == list(range(6))
    finally:
        log.close()
        st.close()


def test_old_schema_refused(tmp_path):
    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE entries (idx INTEGER PRIMARY KEY, k INTEGER UNIQUE, leaf BLOB NOT NULL, "
                     "data BLOB NOT NULL);")
    db.close()
    with pytest.raises(RuntimeError, match="schema version"):
        SQLiteStorage(p)
    # untouched: no new tables were created in it
    db = sqlite3.connect(p)
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"meta", "entries"}
    db.close()
    SQLiteStorage(tmp_path / "new.sqlite").close()
    SQLiteStorage(tmp_path / "new.sqlite").close()  # reopening the current schema is fine


def test_runs_and_reads_across_bundles(tmp_path, signer):
    """Entries are stored in runs that never cross a 256-entry bundle; reads by index, ranges
    and bundles see exactly what was appended, whatever the batch sizes and statement sizes."""
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=300)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        import random

        rnd = random.Random(7)
        datas = []
        while len(datas) < 1100:
            k = rnd.choice([1, 3, 255, 256, 257, 600])
            batch = [bytes([len(datas) % 251]) * rnd.choice([0, 1, 40, 3000]) + b"%d" % (len(datas) + j) if j % 5 else b""
                     for j in range(k)]
            log.append([(sha256(b"r%d" % (len(datas) + j)).digest(), d, ()) for j, d in enumerate(batch)])
            datas += batch
        n = len(datas)
        runs = st._writer.execute("SELECT start, length(leaves) / 32 FROM entries ORDER BY start").fetchall()
        assert sum(w for _, w in runs) == n and all(s // 256 == (s + w - 1) // 256 for s, w in runs)
        assert [s for s, _ in runs] == sorted({s for s, _ in runs})
        for i in list(range(0, n, 37)) + [n - 1, 255, 256, 511, 512]:
            assert log.entry_data(i) == datas[i] and log.leaf_input(i) == sha256(b"r%d" % i).digest()
            assert log.find(sha256(b"r%d" % i).digest()) == i
        assert log.entry_data(n) is None and log.leaf_input(n) is None
        assert st.leaf_inputs(250, 700) == [sha256(b"r%d" % i).digest() for i in range(250, 700)]
        assert log.entry_bundle(1) == b"".join(b"\x00\x20" + sha256(b"r%d" % i).digest() for i in range(256, 512))
    finally:
        log.close()
        st.close()


def test_second_handle_sees_appends_and_merges(tmp_path, signer):
    """A second storage handle on the same file (another process) finds entries appended and
    merged through the first, and its own writer continues from them (recent tiers catch up)."""
    a = SQLiteStorage(tmp_path / "l.sqlite", merge_every=16)
    b = SQLiteStorage(tmp_path / "l.sqlite", merge_every=16)
    la = Log.open(a, origin=ORIGIN, note_signer=signer)
    try:
        la.append([(leaf(i), b"", ()) for i in range(10)])
        assert [b.find(leaf(i)) for i in range(10)] == list(range(10)) and b.find(leaf(10)) is None
        la.append([(leaf(i), b"", ()) for i in range(10, 20)])  # merges at 16 (in a)
        assert counts(a) == (0, 20, 0)
        assert [b.find(leaf(i)) for i in range(21)] == list(range(20)) + [None]
        la.append([(leaf(i), b"", ()) for i in range(20, 25)])
        lb = Log.open(b, origin=ORIGIN, note_signer=signer)
        try:
            # b's writer: dedups against what a wrote (both tiers) and merges when crossing 32
            res = lb.append([(leaf(3), b"", ()), (leaf(22), b"", ())] + [(leaf(i), b"", ()) for i in range(25, 33)])
            assert [e.index for e in res] == [3, 22] + list(range(25, 33)) and res[0].duplicate and res[1].duplicate
            assert counts(b) == (0, 33, 0)
        finally:
            lb.close()
        # a's writer catches up with b's merge before its next batch
        assert la.append([(leaf(30), b"", ()), (leaf(33), b"", ())]) == [Entry(30, 33, True), Entry(33, 34, False)]
        assert counts(a) == (1, 33, 0)
        assert [a.find(leaf(i)) for i in range(35)] == list(range(34)) + [None]
    finally:
        la.close()
        a.close()
        b.close()


def test_keys_and_leaves_share_the_tiers(tmp_path, signer):
    """Dedup keys next to leaves in one index: 8-byte collisions between a key and a leaf,
    across the recent tier and dmain, stay exact (issue 11 item 1)."""
    pre = b"\x05" * 8
    la, ka, lb, kb = (pre + bytes([i]) * 24 for i in range(4))
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        assert log.append([(la, b"a", (), ka), (leaf(1), b"", (), leaf(101))]) == [Entry(0, 2, False), Entry(1, 2, False)]
        assert log.append([(lb, b"b", (), kb)]) == [Entry(2, 3, False)]  # both collide with entry 0
        assert log.append([(leaf(2), b"", (), ka), (leaf(3), b"", (), kb), (leaf(4), b"", (), la)]) == [
            Entry(0, 2, True), Entry(2, 3, True), Entry(3, 4, False)]
        assert log.append([(leaf(i), b"", (), leaf(100 + i)) for i in range(5, 9)])[0] == Entry(4, 8, False)  # merge
        for x, col, want in ((la, "leaf", 0), (ka, "key", 0), (lb, "leaf", 2), (kb, "key", 2), (la, "key", 3),
                             (ka, "leaf", None), (leaf(4), "leaf", 3), (leaf(104), "key", None)):
            assert (log.find(x) if col == "leaf" else log.find_key(x)) == want, (x, col)
        log.close()
        st.close()
        st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=1000)
        log = Log.open(st, origin=ORIGIN, note_signer=signer)
        assert log.append([(leaf(50), b"", (), kb), (leaf(51), b"", (), leaf(105))]) == [
            Entry(2, 3, True), Entry(4, 8, True)]
    finally:
        log.close()
        st.close()


def _listed(st):
    return {druns.run_name(a, b) for a, b in st._writer.execute("SELECT a, b FROM druns")}


def test_runs_merge_with_bounded_fanin(tmp_path, signer):
    """The main tier's runs partition [0, dedup_merged), merge FANIN at a time (so at most
    FANIN - 1 per level), every lookup stays exact and the directory holds only listed runs."""
    import random

    rnd = random.Random(5)
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        n = 0
        while n < 700:
            k = rnd.randint(1, 9)
            log.append([(leaf(i), b"", ()) for i in range(n, n + k)])
            n += k
            rows = st._writer.execute("SELECT a, b, n, level FROM druns ORDER BY a").fetchall()
            merged, _ = _marks(st._writer)
            assert [a for a, *_ in rows] == [0] + [b for _, b, *_ in rows[:-1]] and (rows[-1][1] if rows else 0) == merged
            levels = [r[3] for r in rows]
            assert levels == sorted(levels, reverse=True)
            assert all(levels.count(lv) < druns.FANIN for lv in set(levels))
        assert max(levels) >= 2  # runs of level 2 were merged from level-1 runs
        assert counts(st) == (n - merged, merged, 0)
        assert set(os.listdir(st.rundir)) == _listed(st)
        assert [log.find(leaf(i)) for i in range(n)] == list(range(n))
        assert log.find(leaf(n)) is None
        res = log.append([(leaf(i), b"", ()) for i in range(0, n, 7)] + [(leaf(n), b"", ())])
        assert [e.index for e in res] == list(range(0, n, 7)) + [n] and sum(e.duplicate for e in res) == len(res) - 1
    finally:
        log.close()
        st.close()


def test_run_probe_confirms_filter_hits():
    """A key whose filter bits are set but which the run does not hold is no hit."""
    import array
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ks = array.array("q", sorted({(i * 0x9E3779B97F4A7C15) % (1 << 64) - (1 << 63) for i in range(1, 200)}))
        path = druns.write_run(d, 10, 500, ks, array.array("I", range(len(ks))))
        r = druns.Run(path, 10, 500, len(ks), 0)
        assert [r.get(k) for k in ks] == [10 + i for i in range(len(ks))]
        absent = [k + 1 for k in ks]
        # the filter passes some absent keys (8-16 bits per key); the search refuses them all
        passed = [k for k in absent if r.filt[(k & r.mask) >> 3] >> (k & 7) & 1
                  and r.filt[((k >> 32) & r.mask) >> 3] >> ((k >> 32) & 7) & 1]
        found = {}
        r.probe(absent + list(ks[:5]), found)
        assert found == {k: 10 + i for i, k in enumerate(ks[:5])}
        assert druns.lookup([r], absent[0]) is None and druns.lookup([r], ks[7]) == 17
        assert len(passed) < len(absent)
        with pytest.raises(druns.RunMissing):
            druns.Run(path, 10, 501, len(ks), 0)  # header does not match the manifest row


def test_missing_or_damaged_runs_rebuilt_from_entries(tmp_path, signer):
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=8)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    for j in range(0, 100, 10):
        log.append([(leaf(i), b"", ()) for i in range(j, j + 10)])
    runs = sorted(_listed(st))
    assert len(runs) == 3
    log.close()
    st.close()
    d = str(tmp_path / "l.sqlite-dedup")
    os.unlink(os.path.join(d, runs[0]))
    with open(os.path.join(d, runs[-1]), "r+b") as f:
        f.truncate(50)
    open(os.path.join(d, druns.run_name(100, 200)), "wb").close()  # unlisted: removed at open
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=8)
    assert set(os.listdir(d)) == set(runs) - {runs[0]}
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        assert [st.find(leaf(i)) for i in range(101)] == list(range(100)) + [None]  # readers rebuild
        assert sorted(os.listdir(d)) == runs
        assert log.append([(leaf(3), b"", ()), (leaf(99), b"", ())]) == [Entry(3, 10, True), Entry(99, 100, True)]
    finally:
        log.close()
        st.close()


def test_rolled_back_merge_leaves_no_run_file(tmp_path, signer):
    fail = [False]

    def hs(size, root):
        if fail[0]:
            raise RuntimeError("hsm down")
        return b""

    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=hs)
    try:
        for j in range(0, 28, 4):
            log.append([(leaf(i), b"", ()) for i in range(j, j + 4)])  # 7 level-0 runs: the next one merges 8
        before = sorted(os.listdir(st.rundir))
        assert len(before) == druns.FANIN - 1
        fail[0] = True
        with pytest.raises(RuntimeError):
            log.append([(leaf(i), b"", ()) for i in range(28, 32)])
        assert sorted(os.listdir(st.rundir)) == before == sorted(_listed(st))
        fail[0] = False
        log.append([(leaf(i), b"", ()) for i in range(28, 32)])
        assert sorted(os.listdir(st.rundir)) == sorted(_listed(st)) == [druns.run_name(0, 32)]
        assert [log.find(leaf(i)) for i in range(33)] == list(range(32)) + [None]
    finally:
        log.close()
        st.close()


def test_schema_4_file_migrated(tmp_path, signer):
    """A schema-4 file (main dedup tier in a dmain table) opens: its rows become one run."""
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=16)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    log.append([(leaf(i), b"", ()) for i in range(20)])
    log.append([(leaf(i), b"", ()) for i in range(20, 25)])
    log.close()
    st.close()
    # turn it into what schema 4 wrote: dmain (k, idx) for the merged entries, no runs
    db = sqlite3.connect(tmp_path / "l.sqlite")
    merged = int(db.execute("SELECT value FROM meta WHERE key = 'dedup_merged'").fetchone()[0])
    assert merged == 20
    db.execute("CREATE TABLE dmain (k INTEGER PRIMARY KEY, idx INTEGER NOT NULL)")
    db.executemany("INSERT INTO dmain VALUES (?, ?)",
                   [(int.from_bytes(leaf(i)[:8], "big", signed=True), i) for i in range(merged)])
    db.execute("DROP TABLE druns")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    import shutil

    shutil.rmtree(tmp_path / "l.sqlite-dedup")
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=16)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        db = st._writer
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT a, b, n FROM druns").fetchall() == [(0, 20, 20)]
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'dmain'").fetchall()
        assert os.listdir(st.rundir) == [druns.run_name(0, 20)]
        assert [log.find(leaf(i)) for i in range(26)] == list(range(25)) + [None]
        assert log.append([(leaf(5), b"", ()), (leaf(25), b"", ())]) == [Entry(5, 20, True), Entry(25, 26, False)]
    finally:
        log.close()
        st.close()


def test_run_files_durable_before_listed(tmp_path, signer, monkeypatch):
    """A run file and its directory entry are fsynced before the transaction listing the run
    commits (another connection sees no new row at that point)."""
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    other = sqlite3.connect(tmp_path / "l.sqlite")
    synced = []
    real = os.fsync

    def fsync(fd):
        real(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((os.path.basename(path), other.execute("SELECT count(*) FROM druns").fetchone()[0]))

    monkeypatch.setattr(druns.os, "fsync", fsync)
    try:
        log.append([(leaf(i), b"", ()) for i in range(5)])
        tmp = [s for s in synced if ".dd.tmp-" in s[0]]
        dirs = [s for s in synced if s[0] == "l.sqlite-dedup"]
        assert tmp and dirs and all(rows == 0 for _, rows in tmp + dirs)
        assert other.execute("SELECT count(*) FROM druns").fetchone()[0] == 1
    finally:
        other.close()
        log.close()
        st.close()


def test_background_merges(tmp_path, signer):
    """Merges above merge_inline_max keys run in a child process outside the write lock; the
    runs they replace stay listed (and probed) until a later integration lists the result; a
    merge that fails is done again; lookups stay exact throughout."""
    import time

    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4, merge_inline_max=0)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)

    def settle():
        for proc, _ in list(st._jobs.values()):
            proc.wait(60)

    try:
        n = 0
        for j in range(8):
            log.append([(leaf(i), b"", ()) for i in range(n, n + 4)])
            n += 4
        assert len(st._jobs) == 1 and len(_listed(st)) == 8  # spawned, nothing replaced yet
        (proc, grp), = st._jobs.values()
        proc.kill()  # a merge that dies: its runs stay, it is started again
        proc.wait()
        log.append([(leaf(i), b"", ()) for i in range(n, n + 4)])
        n += 4
        assert len(st._jobs) == 1 and len(_listed(st)) == 9
        assert [log.find(leaf(i)) for i in range(n + 1)] == list(range(n)) + [None]
        for _ in range(60):
            settle()
            log.append([(leaf(i), b"", ()) for i in range(n, n + 4)])
            n += 4
            rows = st._writer.execute("SELECT a, b, level FROM druns ORDER BY a").fetchall()
            assert [a for a, _, _ in rows] == [0] + [b for _, b, _ in rows[:-1]]
            assert [lv for _, _, lv in rows] == sorted((lv for _, _, lv in rows), reverse=True)
        assert max(lv for _, _, lv in rows) == 2
        assert all(sum(1 for *_, lv in rows if lv == x) < 2 * druns.FANIN for x in range(3))
        assert [log.find(leaf(i)) for i in range(n + 1)] == list(range(n)) + [None]
        res = log.append([(leaf(i), b"", ()) for i in range(0, n, 5)])
        assert all(e.duplicate for e in res) and [e.index for e in res] == list(range(0, n, 5))
        deadline = time.time() + 60
        while st._jobs and time.time() < deadline:
            settle()
            log.append([(leaf(n), b"", ())])  # lists what finished (and may start more)
            n += 1
        assert not st._jobs and set(os.listdir(st.rundir)) == _listed(st)  # no output left unlisted
        assert [log.find(leaf(i)) for i in range(n + 1)] == list(range(n)) + [None]
    finally:
        log.close()
        st.close()


def test_background_merge_outrun_by_another_writer(tmp_path, signer):
    """A background merge whose runs another process merged further meanwhile is dropped (its
    output deleted), not listed over the newer runs."""
    a = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4, merge_inline_max=0)
    la = Log.open(a, origin=ORIGIN, note_signer=signer)
    b = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    lb = None
    try:
        for j in range(0, 32, 4):
            la.append([(leaf(i), b"", ()) for i in range(j, j + 4)])
        (proc, grp), = a._jobs.values()
        proc.wait(60)
        lb = Log.open(b, origin=ORIGIN, note_signer=signer)
        for j in range(32, 288, 4):  # b merges inline, up to a level-2 run over a's inputs
            lb.append([(leaf(i), b"", ()) for i in range(j, j + 4)])
        assert b._writer.execute("SELECT a, b, level FROM druns ORDER BY a LIMIT 1").fetchone() == (0, 256, 2)
        la.append([(leaf(i), b"", ()) for i in range(288, 292)])
        assert not a._jobs or all(g[0].a != 0 for _, g in a._jobs.values())
        assert a._writer.execute("SELECT a, b, level FROM druns ORDER BY a LIMIT 1").fetchone() == (0, 256, 2)
        assert not any(n.endswith(druns.MERGED) and n.startswith(druns.run_name(0, 32)) for n in os.listdir(a.rundir))
        assert [a.find(leaf(i)) for i in range(293)] == list(range(292)) + [None]
    finally:
        if lb is not None:
            lb.close()
        la.close()
        a.close()
        b.close()


def test_numpy_and_python_run_paths_agree(tmp_path, monkeypatch):
    """The vectorised (numpy) filters, sorts, probes and merges of the dedup runs give exactly
    what the pure-Python ones give: the same bytes on disk, the same hits."""
    import random

    pytest.importorskip("numpy")
    rnd = random.Random(7)
    maps = [{rnd.getrandbits(64) - (1 << 63): a + i for i in range(3000)} for a in range(0, 24000, 3000)]
    held = {k for m in maps for k in list(m)[:50] + [min(m), max(m)]}  # each run's ends too
    probes = sorted(held) + [rnd.getrandbits(64) - (1 << 63) for _ in range(5000)]
    rnd.shuffle(probes)

    def build(tag):
        runs = []
        for j, m in enumerate(maps):
            a = j * 3000
            path = druns.write_run(str(tmp_path / tag), a, a + 3000, *druns.from_map(a, m))
            runs.append(druns.Run(path, a, a + 3000, 3000, 0))
        files = [open(r.path, "rb").read() for r in runs]
        mk, mi = druns.merge(runs)
        return files, mk.tobytes(), mi.tobytes(), druns.probe(runs, probes), druns.probe(runs, set(probes[:40]))

    fast = build("np")
    monkeypatch.setattr(druns, "_np", None)
    slow = build("py")
    assert fast == slow
    assert set(fast[3]) == held and all(fast[3][k] == m[k] for m in maps for k in m if k in held)
