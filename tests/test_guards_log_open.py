"""Guards of the log core found unchecked by mutation testing (issue 16, tools/mutate.py):
the input checks of items, dedup keys and lookups (a wrong type is refused with ValueError, not
stored or turned into another error), the checks Log.open makes of the stored state before it
serves or signs anything (each tampering refused with its own check), and the lifecycle refusals
(no submission accepted that no sequencer will ever answer)."""

from __future__ import annotations

import sqlite3
from hashlib import sha256

import pytest

from tests.tlog_fixtures import *  # noqa: F401,F403 - fixtures
from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from verifier import VerificationError
from verifier.note import Checkpoint, sign_note


def leaf(i: int) -> bytes:
    return sha256(b"open-guard-%d" % i).digest()


def _log(path, signer, **kw):
    return Log.open(path, origin=ORIGIN, note_signer=signer, **kw)


# --- items: only bytes-like leaves, data and keys of the right size; (str, str) attributes -------


@pytest.mark.parametrize("item", [
    ("a" * 32, b"d", ()),                       # a 32-character str is not a 32-byte leaf
    (list(range(32)), b"d", ()),               # nor is a list of 32 ints (bytes() would take it)
    ("a" * 32, b"d", (("k", "v"),)),
    (b"\x01" * 32, b"d", ("kv",)),              # a 2-character str is not a (key, value) pair
    (b"\x01" * 32, b"d", (), b"\x02" * 31),     # dedup key of 31 bytes
    (b"\x01" * 32, b"d", (), "k" * 32),         # dedup key that is a str
    (b"\x01" * 32, b"d", (), list(range(32))),
])
def test_item_types_refused_and_nothing_stored(tmp_path, signer, item):
    with _log(tmp_path / "log.sqlite", signer) as log:
        with pytest.raises(ValueError):
            log.append([item])
        with pytest.raises(ValueError):
            log.submit(*item)
        assert log.size == 0 and log.storage.state()[0] == 0


def test_bytes_like_items_stored_as_bytes(tmp_path, signer):
    """bytearray/memoryview leaves, data and keys are taken (copied to bytes): the same entry as bytes."""
    with _log(tmp_path / "log.sqlite", signer) as log:
        e = log.append([(bytearray(leaf(0)), memoryview(b"data"), (), bytearray(leaf(9)))])[0]
        assert (e.index, e.duplicate) == (0, False)
        assert log.leaf_input(0) == leaf(0) and log.entry_data(0) == b"data"
        assert log.find_key(leaf(9)) == 0 and log.find(leaf(0)) == 0
        # the key decides dedup: another leaf under the same key is the same entry
        assert log.append([(leaf(1), b"other", (), leaf(9))])[0].duplicate


@pytest.mark.parametrize("bad", ["a" * 32, list(range(32)), b"\x01" * 31, None])
def test_lookups_refuse_what_is_not_32_bytes(tmp_path, signer, bad):
    with _log(tmp_path / "log.sqlite", signer) as log:
        for call in (log.status, log.find_key, log.find):
            with pytest.raises(ValueError):
                call(bad)


# --- Log.open verifies the stored state ----------------------------------------------------------


def _store(tmp_path, signer, n=4):
    p = tmp_path / "log.sqlite"
    with _log(p, signer) as log:
        log.append([(leaf(i), b"x%d" % i, ()) for i in range(n)])
        head = log.latest()
    return p, head


def _sql(p, stmt, args=()):
    db = sqlite3.connect(p)
    with db:
        db.execute(stmt, args)
    db.close()


def _refused(p, signer, check):
    with pytest.raises(VerificationError) as ei:
        _log(p, signer).close()
    assert ei.value.check == check, ei.value
    return ei.value


@pytest.mark.parametrize("what", ["origin", "size", "root"])
def test_open_refuses_a_head_whose_signed_checkpoint_says_otherwise(tmp_path, signer, what):
    """The stored head row and its signed checkpoint must agree in origin, size and root: the
    checkpoint is validly signed by the log's key but names another log, size or root."""
    p, head = _store(tmp_path, signer)
    origin, size, root = ORIGIN, head.size, head.root
    if what == "origin":
        origin = "other.example/log"
    elif what == "size":
        size = head.size - 1
    else:
        root = sha256(b"another root").digest()
    forged = sign_note(Checkpoint(origin, size, root).to_text(), [signer])
    _sql(p, "UPDATE heads SET checkpoint = ? WHERE size = ?", (forged, head.size))
    _refused(p, signer, "log.head")


def test_open_refuses_a_state_without_its_signed_head(tmp_path, signer):
    p, head = _store(tmp_path, signer)
    _sql(p, "DELETE FROM heads WHERE size = ?", (head.size,))
    _refused(p, signer, "log.head")


def test_open_refuses_a_head_over_another_root_than_the_state(tmp_path, signer):
    """A head whose row and checkpoint agree, signed, but for a root other than the tree's."""
    p, head = _store(tmp_path, signer)
    other = sha256(b"another root").digest()
    forged = sign_note(Checkpoint(ORIGIN, head.size, other).to_text(), [signer])
    _sql(p, "UPDATE heads SET root = ?, checkpoint = ? WHERE size = ?", (other, forged, head.size))
    _refused(p, signer, "log.head")


def test_open_refuses_a_short_edge_tile(tmp_path, signer):
    p, head = _store(tmp_path, signer, n=4)
    _sql(p, "UPDATE tiles SET hashes = substr(hashes, 1, 96) WHERE id = 0")  # level 0, tile 0: 3 of 4 hashes
    _refused(p, signer, "log.tiles")


def test_open_refuses_a_tampered_state_root(tmp_path, signer):
    p, head = _store(tmp_path, signer)
    _sql(p, "UPDATE state SET root = ?", (sha256(b"x").digest(),))
    _refused(p, signer, "log.root")


def test_open_accepts_the_untampered_store(tmp_path, signer):
    p, head = _store(tmp_path, signer)
    with _log(p, signer) as log:
        assert (log.size, log.latest().root) == (head.size, head.root)


# --- lifecycle ---------------------------------------------------------------------------------


def test_no_submission_after_close_or_without_a_sequencer(tmp_path, signer):
    p = tmp_path / "log.sqlite"
    log = _log(p, signer)
    log.close()
    log.close()  # a second close is a no-op
    with pytest.raises(RuntimeError):
        log.submit(leaf(0), b"d")
    with pytest.raises(RuntimeError):
        log.append([(leaf(0), b"d", ())])
    with _log(p, signer, sequencer=False) as log:
        with pytest.raises(RuntimeError):
            log.submit(leaf(0), b"d")
        assert log.append([(leaf(0), b"d", ())])[0].index == 0  # synchronous appends still work
    with _log(p, signer) as log:
        assert log.size == 1 and log.find(leaf(0)) == 0


# --- status: an entry integrated between status's reads is still found ---------------------------


def _aliased_log(tmp_path, signer):
    """A log (no sequencer) where leaf B, queued while A (same dedup key) was pending, is an alias."""
    log = _log(tmp_path / "log.sqlite", signer, sequencer=False)
    a, b, k = leaf(100), leaf(101), leaf(102)
    log.storage.enqueue([(a, b"a", (), k)])
    log.storage.enqueue([(b, b"b", (), k)])
    assert log.status(b) == "pending"
    log.integrate_pending()
    return log, a, b


def _later(monkeypatch, obj, name, misses=1):
    """``obj.name`` answers None ``misses`` times, then the truth: the entry was integrated by
    another process between two reads (the race status() retries for), injected without timing."""
    real = getattr(obj, name)
    calls = [0]

    def fn(*args):
        calls[0] += 1
        return None if calls[0] <= misses else real(*args)
    monkeypatch.setattr(obj, name, fn)
    return calls


def test_status_finds_an_entry_integrated_after_its_first_lookup(tmp_path, signer, monkeypatch):
    log, a, b = _aliased_log(tmp_path, signer)
    with log:
        monkeypatch.setattr(log.storage, "pending_contains", lambda leaf: False)
        _later(monkeypatch, log.storage, "find")
        e = log.status(a)
        assert e != "pending" and e is not None and (e.index, e.duplicate) == (0, False)


def test_status_finds_an_alias_recorded_after_its_first_lookup(tmp_path, signer, monkeypatch):
    log, a, b = _aliased_log(tmp_path, signer)
    with log:
        assert (log.status(b).index, log.status(b).duplicate) == (0, True)
        # the queue row is taken and the alias recorded between the queue check and the retry
        integrated = []
        real = log.storage.find_alias
        monkeypatch.setattr(log.storage, "pending_contains", lambda leaf: integrated.append(1) or False)
        monkeypatch.setattr(log.storage, "find_alias", lambda leaf: real(leaf) if integrated else None)
        e = log.status(b)
        assert e not in (None, "pending") and (e.index, e.duplicate) == (0, True)
        assert log.status(leaf(999)) is None


def test_a_submission_answered_as_its_wait_times_out_is_not_queued_again(tmp_path, signer):
    """The result lands between the waiter's timeout and its spill to the durable queue (injected
    through the waiter's gate, no timing): it is returned, and nothing is queued (a refused
    submission queued then would be integrated after all)."""
    from tlog.log import Entry, Pending

    class Gate:
        def __init__(self):
            self.p = None

        def acquire(self, timeout=-1):
            self.p._set(None, ValueError("refused meanwhile"))
            return False  # timed out, as far as the waiter knows

        def release(self):
            pass

    with _log(tmp_path / "log.sqlite", signer, sequencer=False) as log:
        p = Pending(log, leaf(7), b"d", ())
        p._gate = g = Gate()
        g.p = p
        with pytest.raises(ValueError, match="refused meanwhile"):
            p.wait(timeout=0.01)
        assert not log.storage.has_pending()
        q = Pending(log, leaf(8), b"d", ())
        q._gate = g2 = Gate()
        g2.p = q
        g2.acquire = lambda timeout=-1: False  # no result: spilled to the durable queue
        assert q.wait(timeout=0.01) is None and log.storage.has_pending()
        log.integrate_pending()
        assert log.find(leaf(8)) == 0 and log.find(leaf(7)) is None
        assert isinstance(log.status(leaf(8)), Entry)


# --- the sequencer: a full batch and a close do not wait out the batch window ----------------------
# (max_wait and poll_interval a minute: the log answers at once; the bounds below only matter when
# it waits the window out)


def test_a_full_batch_goes_at_once(tmp_path, signer):
    with _log(tmp_path / "log.sqlite", signer, max_batch=2, max_wait=60, poll_interval=60) as log:
        ps = [log.submit(leaf(i), b"d") for i in range(2)]
        got = [p.wait(timeout=20) for p in ps]
        assert [e.index for e in got] == [0, 1]
        one = log.submit(leaf(5), b"d")  # one of max_batch 1... waits its window, closing ends it
        log.close()
        assert one.wait(timeout=0).index == 2


def test_close_does_not_wait_out_the_batch_window_or_the_poll(tmp_path, signer):
    import threading

    for submit in (False, True):
        p = tmp_path / f"log{int(submit)}.sqlite"
        log = _log(p, signer, max_batch=100, max_wait=60, poll_interval=60)
        pend = log.submit(leaf(0), b"d") if submit else None
        t = threading.Thread(target=log.close, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "close waited for the batch window or the poll interval"
        if pend is not None:
            assert pend.wait(timeout=0).index == 0


# --- tiles and entry bundles: argument ranges, widths, and a short store refused -----------------


def test_tile_and_bundle_arguments(tmp_path, signer):
    with _log(tmp_path / "log.sqlite", signer) as log:
        log.append([(leaf(i), b"x", ()) for i in range(3)])
        for bad in (-1, 64, True, "0", 1.0, None):
            with pytest.raises(ValueError):
                log.tile(bad, 0)
        for bad in (0, 257, True, "1", 1.0, -1):
            with pytest.raises(ValueError):
                log.tile(0, 0, bad)
            with pytest.raises(ValueError):
                log.entry_bundle(0, bad)
        for bad in (-1, True, "0"):
            with pytest.raises(ValueError):
                log.tile(0, bad)
            with pytest.raises(ValueError):
                log.entry_bundle(bad)
        assert log.tile(63, 0) is None and log.tile(0, 1) is None and log.entry_bundle(1) is None
        full = log.tile(0, 0)
        assert len(full) == 3 * 32 and log.tile(0, 0, 3) == full
        assert log.tile(0, 0, 1) == full[:32] and log.tile(0, 0, 2) == full[:64]  # a prefix
        assert log.tile(0, 0, 4) is None and log.tile(0, 0, 256) is None  # not (yet) that wide
        b = log.entry_bundle(0)
        assert b == b"".join(b"\x00\x20" + leaf(i) for i in range(3)) and log.entry_bundle(0, 2) == b[:2 * 34]
        assert log.entry_bundle(0, 4) is None
        for bad in ((1, "v"), ("k", None)):
            with pytest.raises(ValueError):
                log.lookup(*bad)


def test_short_tiles_and_bundles_are_refused_not_served(tmp_path, signer):
    p, head = _store(tmp_path, signer, n=3)
    with _log(p, signer) as log:
        _sql(p, "UPDATE tiles SET hashes = substr(hashes, 1, 64) WHERE id = 0")
        with pytest.raises(VerificationError) as ei:
            log.tile(0, 0, 3)
        assert ei.value.check == "log.tiles"
        _sql(p, "DELETE FROM entries")
        with pytest.raises(VerificationError) as ei:
            log.entry_bundle(0)
        assert ei.value.check == "log.entries"
        _sql(p, "DELETE FROM tiles WHERE id = 0")  # missing altogether
        with pytest.raises(VerificationError) as ei:
            log.tile(0, 0)
        assert ei.value.check == "log.tiles"


def test_a_running_log_refuses_a_store_rolled_back_under_it(tmp_path, signer):
    """The whole database (state, entries, heads) is restored from an older copy while the log
    runs: it signed size 4 already, so it must not append at size 2 and sign a head there that
    does not extend the one it signed (two inconsistent checkpoints)."""
    p = tmp_path / "log.sqlite"
    old = tmp_path / "old.sqlite"
    with _log(p, signer) as log:
        log.append([(leaf(i), b"x", ()) for i in range(2)])
        src, dst = sqlite3.connect(p), sqlite3.connect(old)
        src.backup(dst)
        log.append([(leaf(i), b"x", ()) for i in range(2, 4)])
        assert log.latest().size == 4
        signed4 = log.latest().root
        dst.backup(src)  # restore the copy of size 2 into the live database
        src.close()
        dst.close()
        assert log.storage.state()[0] == 2
        with pytest.raises(VerificationError) as ei:
            log.append([(leaf(9), b"other", ())])
        assert ei.value.check == "log.state"
        assert log.storage.latest_head().size == 2 and log.latest().root == signed4


def test_a_running_log_refuses_another_tree_of_the_same_size(tmp_path, signer):
    """The database is swapped for another tree of the same size whose head the same key signed
    (a split brain, a wrong restore): the log signed (2, root A) already, so it must not extend
    root B and sign a head that is inconsistent with the one it signed."""
    p, other = tmp_path / "log.sqlite", tmp_path / "other.sqlite"
    with _log(other, signer) as b:
        b.append([(leaf(i), b"b", ()) for i in range(10, 12)])
    with _log(p, signer) as log:
        log.append([(leaf(i), b"a", ()) for i in range(2)])
        signed = log.latest()
        src, dst = sqlite3.connect(other), sqlite3.connect(p)
        src.backup(dst)
        src.close()
        dst.close()
        assert log.storage.state()[0] == 2 and log.storage.state()[1] != signed.root
        with pytest.raises(VerificationError) as ei:
            log.append([(leaf(9), b"x", ())])
        assert ei.value.check == "log.state"
        assert log.storage.latest_head().size == 2 and log.latest() == signed


def test_latest_follows_another_process_after_an_empty_integration(tmp_path, signer):
    p = tmp_path / "log.sqlite"
    with _log(p, signer, sequencer=False) as a, _log(p, signer, sequencer=False) as b:
        b.append([(leaf(i), b"x", ()) for i in range(3)])
        assert a.integrate_pending() == 0  # nothing queued: an empty integration
        assert (a.size, a.latest().size, a.latest().root) == (3, 3, b.latest().root)


def test_a_sealed_log_appends_nothing(tmp_path, signer):
    from tlog.log import SEALED, LogSealed

    with _log(tmp_path / "log.sqlite", signer, sequencer=False) as log:
        log.append([(leaf(0), b"x", ())])
        with log.storage.integration() as tx:
            tx.set_meta(SEALED, "sealed for the test")
        with pytest.raises(LogSealed):
            log.append([(leaf(1), b"x", ())])
        assert log.size == 1 and log.find(leaf(1)) is None and log.storage.state()[0] == 1
        assert log.integrate_pending() == 0  # the integrator's empty rounds go on quietly


def test_a_unique_attribute_refusal_is_returned_for_its_item(tmp_path, signer):
    from tlog.log import Refused

    with _log(tmp_path / "log.sqlite", signer, sequencer=False) as log:
        log.unique_attrs = frozenset({"rid"})
        got = log.append([(leaf(0), b"a", (("rid", "1"),)), (leaf(1), b"b", (("rid", "1"),)),
                          (leaf(2), b"c", (("rid", "2"),))])
        assert got[0].index == 0 and isinstance(got[1], Refused) and got[2].index == 1
        assert log.size == 2 and log.find(leaf(1)) is None


def test_on_batch_reports_only_batches_with_items(tmp_path, signer):
    seen = []
    with _log(tmp_path / "log.sqlite", signer, sequencer=False) as log:
        log.on_batch = lambda n, seconds: seen.append(n)
        log.integrate_pending()
        log.append([(leaf(i), b"x", ()) for i in range(2)])
        log.storage.enqueue([(leaf(5), b"q", ())])
        log.integrate_pending()
        log.integrate_pending()
    assert seen == [2, 1]


def test_no_head_without_a_previous_signed_head(tmp_path, signer):
    p = tmp_path / "log.sqlite"
    with _log(p, signer, sequencer=False) as log:
        log.append([(leaf(0), b"x", ())])
        _sql(p, "DELETE FROM heads")
        with pytest.raises(VerificationError) as ei:
            log.append([(leaf(1), b"x", ())])
        assert ei.value.check == "log.head" and log.storage.state()[0] == 1


def test_no_head_over_a_stored_head_whose_signature_fails(tmp_path, signer):
    """The latest head row at the size this process signed is replaced by the same checkpoint
    signed by another key: the log verifies it rather than trusting the size it remembers."""
    from verifier.note import Signer

    p = tmp_path / "log.sqlite"
    with _log(p, signer, sequencer=False) as log:
        log.append([(leaf(0), b"x", ())])
        h = log.latest()
        forged = sign_note(Checkpoint(ORIGIN, h.size, h.root).to_text(), [Signer.generate(ORIGIN)])
        _sql(p, "UPDATE heads SET checkpoint = ? WHERE size = ?", (forged, h.size))
        with pytest.raises(VerificationError):
            log.append([(leaf(1), b"x", ())])
        assert log.storage.state()[0] == 1 and log.storage.head(2) is None


def test_tiles_of_a_failed_batch_never_reach_the_cache(tmp_path, signer):
    """A batch whose head cannot be made (here: the head signer fails) is rolled back; its tiles
    must not be served from the cache afterwards, not even after an empty integration."""
    from verifier import merkle

    fail = [False]

    def head_signer(size, root):
        if fail[0]:
            raise OSError("injected: the head signer is down")
        return None

    p = tmp_path / "log.sqlite"
    with _log(p, signer, sequencer=False, head_signer=head_signer) as log:
        fail[0] = True
        with pytest.raises(OSError):
            log.append([(leaf(i), b"lost", ()) for i in range(100, 104)])
        fail[0] = False
        log.integrate_pending()  # an empty integration
        leaves = [leaf(i) for i in range(3)]
        log.append([(x, b"x", ()) for x in leaves])
        hashes = [merkle.leaf_hash(x) for x in leaves]
        assert log.root(3) == merkle.root_of(hashes) and log.root(2) == merkle.root_of(hashes[:2])
        assert log.inclusion_proof(0, 2) == merkle.inclusion_proof(hashes[:2], 0)
        assert log.consistency_proof(2, 3) == merkle.consistency_proof(hashes, 2)


def test_a_head_signer_must_return_bytes_or_none(tmp_path, signer):
    bad = [False]

    def head_signer(size, root):
        return "not bytes" if bad[0] else b"sig:%d" % size

    with _log(tmp_path / "log.sqlite", signer, sequencer=False, head_signer=head_signer) as log:
        log.append([(leaf(0), b"x", ())])
        assert log.latest().extra == b"sig:1"
        bad[0] = True
        with pytest.raises(ValueError):
            log.append([(leaf(1), b"x", ())])
        assert log.size == 1 and log.storage.head(2) is None


def test_refresh_never_moves_the_log_back_or_sideways(tmp_path, signer, monkeypatch):
    """refresh() takes a newer head another process stored; a head read before this process's own
    integration moved past it (older), or one of the same size over another root, is not taken."""
    p = tmp_path / "log.sqlite"
    other = tmp_path / "other.sqlite"
    with _log(other, signer) as b:
        b.append([(leaf(i), b"b", ()) for i in range(10, 12)])
        swapped = b.latest()
    with _log(p, signer, sequencer=False) as log:
        log.append([(leaf(i), b"x", ()) for i in range(2)])
        older = log.latest()
        monkeypatch.setattr(log.storage, "latest_head", lambda: swapped)  # same size, another tree
        log.refresh()
        assert (log.size, log.latest()) == (2, older)
        monkeypatch.undo()
        log.append([(leaf(2), b"x", ())])
        now = log.latest()
        for stale in (older, swapped):
            monkeypatch.setattr(log.storage, "latest_head", lambda h=stale: h)
            log.refresh()
            assert (log.size, log.latest(), log.root(3)) == (3, now, now.root)
        monkeypatch.undo()
        with _log(p, signer, sequencer=False) as w:  # another process appends: taken
            w.append([(leaf(3), b"x", ())])
        log.refresh()
        assert log.size == 4 and log.latest().size == 4


def test_proofs_beyond_the_log_size_are_refused(tmp_path, signer):
    with _log(tmp_path / "log.sqlite", signer, sequencer=False) as log:
        log.append([(leaf(i), b"x", ()) for i in range(4)])
        for call in (lambda: log.consistency_proof(1, 5), lambda: log.consistency_proof(4, 300),
                     lambda: log.inclusion_proof(0, 5), lambda: log.root(5)):
            with pytest.raises(ValueError):
                call()
        assert len(log.consistency_proof(1, 4)) == 2 and log.root(4) == log.latest().root


def test_a_closed_log_over_a_storage_it_does_not_own_appends_nothing(tmp_path, signer):
    from tlog.storage import open_storage

    st = open_storage(tmp_path / "log.sqlite")
    try:
        log = _log(st, signer)
        log.append([(leaf(0), b"x", ())])
        log.close()
        with pytest.raises(RuntimeError):
            log.append([(leaf(1), b"x", ())])
        assert st.state()[0] == 1 and st.find(leaf(1)) is None  # the storage stays open, unchanged
    finally:
        st.close()


def test_submissions_queued_behind_a_batch_go_without_waiting_for_the_poll(tmp_path, signer):
    """Three submissions queued at once (the log's queue lock held while they are submitted), one
    per batch: the second and third go right after the first, not at the next poll a minute on."""
    with _log(tmp_path / "log.sqlite", signer, max_batch=1, max_wait=0, poll_interval=60) as log:
        with log._cond:  # the sequencer sees all three at once (the lock is reentrant: submit takes it)
            ps = [log.submit(leaf(i), b"d") for i in range(3)]
        got = [p.wait(timeout=20) for p in ps]
        assert None not in got and sorted(e.index for e in got) == [0, 1, 2]


def test_the_tile_tree_refuses_proofs_outside_the_tree():
    """The tile tree's own range checks (the log checks first too; either alone must hold)."""
    from tlog.tree import TileTree

    for index, size in ((5, 5), (-1, 5), (0, 0), (6, 5)):
        with pytest.raises(ValueError):
            TileTree.inclusion_nodes(index, size)
    for size1, size2 in ((6, 5), (-1, 5), (0, 5)):
        with pytest.raises(ValueError):
            TileTree.consistency_nodes(size1, size2)
    assert TileTree.consistency_nodes(5, 5) == [] and TileTree.inclusion_nodes(4, 5)
