"""Guards of tlog/storage/sqlite_recent.py found by the discovery mutation run (issue 16)."""

from __future__ import annotations

import sqlite3
from hashlib import sha256

import pytest

from tlog.storage.sqlite import SQLiteStorage


def _leaf(i: int) -> bytes:
    return sha256(b"recent-guard-%d" % i).digest()


def _append(st: SQLiteStorage, start: int, n: int) -> list[bytes]:
    leaves = [_leaf(i) for i in range(start, start + n)]
    with st.integration() as tx:
        tx.insert_entries(start, leaves, [b"d%d" % i for i in range(start, start + n)], leaves)
    return leaves


@pytest.fixture
def st(tmp_path):
    s = SQLiteStorage(tmp_path / "log.sqlite")
    yield s
    s.close()


def test_entries_missing_in_the_middle_are_reported_not_skipped(st):
    leaves = _append(st, 0, 3) + _append(st, 3, 3) + _append(st, 6, 2)
    assert st.leaf_inputs(0, 8) == leaves
    db = sqlite3.connect(st.path, isolation_level=None)
    db.execute("DELETE FROM entries WHERE start = 3")  # a damaged file: entries [3, 6) gone
    db.close()
    with pytest.raises(LookupError, match="not all stored"):
        st.leaf_inputs(0, 8)
    with pytest.raises(LookupError):
        with st.integration() as tx:
            tx.leaf_at(4)
    assert st.leaf_inputs(6, 8) == leaves[6:]


@pytest.mark.parametrize("how", ["insert_entries", "try_insert_entries"])
def test_entries_that_do_not_continue_the_log_are_refused_and_not_stored(st, how):
    _append(st, 0, 3)
    with pytest.raises(AssertionError, match="out of step"):
        with st.integration() as tx:
            getattr(tx, how)(5, [_leaf(5)], [b"gap"], [_leaf(5)])  # entries 3 and 4 never written
    assert st.entry_data(5) is None and st.find(_leaf(5)) is None
    _append(st, 3, 3)  # the log continues where it was
    assert st.entry_data(5) == b"d5" and st.find(_leaf(5)) == 5
