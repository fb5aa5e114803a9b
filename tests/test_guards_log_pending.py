"""A submission's waiter (tlog.pending.Pending, issue 16): deterministic, no timing. A result set
while the waiter writes the submission to the durable queue is returned, not reported as
pending; a second wait returns the same result without blocking."""

from __future__ import annotations

from tlog.pending import Entry, Pending


class _Log:
    """Stands in for the Log: its spill is where the sequencer's result lands meanwhile."""

    def __init__(self, result=None, error=None):
        self.result, self.error, self.spilled = result, error, []

    def _spill(self, p: Pending) -> None:
        self.spilled.append(p)
        if self.result is not None or self.error is not None:
            p._set(self.result, self.error)


def test_result_set_during_the_spill_is_returned():
    e = Entry(5, 6, False)
    log = _Log(result=e)
    p = Pending(log, b"\x01" * 32, b"data", ())
    assert p.wait(timeout=0) == e
    assert log.spilled == [p] and p.done()


def test_timeout_without_result_is_none_after_the_spill():
    log = _Log()
    p = Pending(log, b"\x01" * 32, b"data", ())
    assert p.wait(timeout=0) is None
    assert log.spilled == [p] and not p.done()


def test_error_set_during_the_spill_is_raised():
    log = _Log(error=RuntimeError("commit failed"))
    p = Pending(log, b"\x01" * 32, b"data", ())
    try:
        p.wait(timeout=0)
    except RuntimeError as e:
        assert str(e) == "commit failed"
    else:
        raise AssertionError("the integration error was not raised")


def test_second_wait_returns_the_same_result_at_once():
    e = Entry(0, 1, True)
    log = _Log()
    p = Pending(log, b"\x02" * 32, b"data", ())
    p._set(e, None)
    p._set(Entry(9, 9, False), None)  # the first result wins
    assert p.wait(timeout=0) == e  # takes the gate
    # the gate is taken: answered from the done flag, neither blocking nor spilling
    assert p.wait(timeout=0) == e
    assert log.spilled == []


def test_wait_without_timeout_blocks_until_the_result():
    """No timeout: the waiter blocks until the sequencer sets the result (it never reports
    "pending" nor spills). The waiter is still blocked after a while whatever the machine's
    speed; only a broken gate could let it return first."""
    import threading

    e = Entry(3, 4, False)
    log = _Log()
    p = Pending(log, b"\x03" * 32, b"data", ())
    got = []
    t = threading.Thread(target=lambda: got.append(p.wait()), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive() and got == [] and log.spilled == []
    p._set(e, None)
    t.join(30)
    assert got == [e] and log.spilled == []
