"""Storage code no other test ran in-process (issue 16): the background merge's child entry point
tlog.storage.druns._main (spawn_merge runs it as ``python -m tlog.storage.druns DIR a:b:n ...``,
so the coverage map never saw it) and SQLiteStorage.checkpoint_wal."""

from __future__ import annotations

import os
from hashlib import sha256

import pytest

from tlog.storage import druns
from tlog.storage.sqlite import SQLiteStorage


def _run(d, a: int, n: int) -> druns.Run:
    """A run for the entries [a, a + n), entry a + i holding key k(a + i)."""
    m = {_key(a + i): a + i for i in range(n)}
    path = druns.write_run(str(d), a, a + n, *druns.from_map(a, m))
    return druns.Run(path, a, a + n, n, 0)


def _key(i: int) -> int:
    return int.from_bytes(sha256(b"%d" % i).digest()[:8], "big", signed=True)


def _spec(r: druns.Run) -> str:
    return "%d:%d:%d" % (r.a, r.b, r.n)  # as spawn_merge passes it


def test_merge_child_merges_consecutive_runs(tmp_path):
    runs = [_run(tmp_path, 0, 4), _run(tmp_path, 4, 5), _run(tmp_path, 9, 3)]
    assert druns._main([str(tmp_path)] + [_spec(r) for r in runs]) == 0
    out = os.path.join(str(tmp_path), druns.run_name(0, 12)) + druns.MERGED
    merged = druns.Run(out, 0, 12, 12, 1)
    assert {k: merged.get(k) for k in map(_key, range(12))} == {_key(i): i for i in range(12)}


def test_merge_child_refuses_runs_that_are_not_consecutive(tmp_path):
    runs = [_run(tmp_path, 0, 4), _run(tmp_path, 5, 3)]  # entry 4 in no run
    with pytest.raises(SystemExit) as e:
        druns._main([str(tmp_path)] + [_spec(r) for r in runs])
    assert "consecutive" in str(e.value.code)
    assert not any(n.endswith(druns.MERGED) for n in os.listdir(tmp_path))


def test_checkpoint_wal_folds_the_wal_into_the_database(tmp_path):
    path = tmp_path / "log.sqlite"
    st = SQLiteStorage(path)
    try:
        datas = [b"entry %d" % i for i in range(50)]
        leaves = [sha256(d).digest() for d in datas]
        with st.integration() as tx:
            tx.insert_entries(0, leaves, datas, leaves)
        wal = str(path) + "-wal"
        assert os.path.getsize(wal) > 0
        st.checkpoint_wal()
        assert os.path.getsize(wal) == 0
        assert st.entry_data(49) == b"entry 49"
    finally:
        st.close()
