"""Log._drain_pending stops when the log closes (issue 16: a survivor of the final mutation run):
a close does not first integrate the whole durable backlog, one max_batch transaction after
another; the next sequencer to open integrates it."""

from __future__ import annotations

from hashlib import sha256

from tests.tlog_fixtures import *  # noqa: F401,F403 - fixtures
from tests.tlog_fixtures import ORIGIN
from tlog.log import Log, Pending


def _spill(log, i):
    """A submission whose waiter gave up: spilled to the durable pending queue (no timing)."""
    class Gate:
        def acquire(self, timeout=-1):
            return False

        def release(self):
            pass

    p = Pending(log, sha256(b"drain-%d" % i).digest(), b"d", ())
    p._gate = Gate()
    assert p.wait(timeout=0.01) is None


def test_a_closing_log_leaves_the_durable_backlog_to_the_next_sequencer(tmp_path, signer):
    path = tmp_path / "log.sqlite"
    with Log.open(path, origin=ORIGIN, note_signer=signer, sequencer=False, max_batch=1) as log:
        for i in range(3):
            _spill(log, i)
        assert log.storage.has_pending()
        log._closing = True
        log._drain_pending()
        assert log.storage.has_pending() and log.find(sha256(b"drain-0").digest()) is None  # nothing integrated
        log._closing = False
    with Log.open(path, origin=ORIGIN, note_signer=signer, sequencer=False, max_batch=1) as log:
        log._drain_pending()  # one transaction per row (max_batch 1) until the queue is empty
        assert not log.storage.has_pending() and all(log.find(sha256(b"drain-%d" % i).digest()) == i for i in range(3))
