"""A submission to the log and its result: :class:`Pending` (what the sequencer queues and the
registration waits on; a wait that runs out spills the submission to the durable queue through
the log), :class:`Entry` (index, first tree size, duplicate) and the check of a submitted item
(:func:`_check_item`). See :mod:`tlog.log` for the integration that resolves them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from .tree import HS

__all__ = ["Entry", "Pending"]


class _Spills(Protocol):
    """What a Pending needs of its log (:class:`tlog.log.Log`): to write a submission whose wait
    ran out to the durable queue."""

    def _spill(self, p: "Pending") -> None: ...


@dataclass(frozen=True)
class Entry:
    index: int
    tree_size: int  # size of the first tree head containing the entry
    duplicate: bool


_SET_LOCK = threading.Lock()


class Pending:
    """A submission handed to the sequencer.

    Its waiter blocks on a plain lock held from creation until the result is set (cheaper
    than an Event's condition variable on the registration hot path; one waiter per submission)."""

    __slots__ = ("leaf", "data", "attrs", "key", "_log", "_gate", "_done", "_entry", "_error", "t", "_cb")

    def __init__(self, log_: _Spills, leaf: bytes, data: bytes, attrs: tuple, key: bytes | None = None) -> None:
        self.leaf, self.data, self.attrs = leaf, data, attrs
        self.key = leaf if key is None else key
        self._log = log_
        self._gate = threading.Lock()
        self._gate.acquire()
        self._done = False
        self._entry: Entry | None = None
        self._error: BaseException | None = None
        self.t = time.monotonic()
        self._cb = None

    def done(self) -> bool:
        return self._done

    def on_done(self, fn) -> None:
        """Call ``fn()`` once the result is set (at once if it is): from the thread that sets
        it, so ``fn`` must be quick and thread-safe (e.g. wake an event loop). One callback."""
        with _SET_LOCK:
            if not self._done:
                self._cb = fn
                return
        fn()

    def _result(self) -> Entry:
        if self._error is not None:
            raise self._error
        assert self._entry is not None
        return self._entry

    def wait(self, timeout: float | None = None) -> Entry | None:
        """The Entry once it is durable; None if ``timeout`` ran out first, in which case the
        submission has been written to the durable pending queue before this returns (it will
        be integrated; poll :meth:`Log.status`). Raises the integration error, if any."""
        if self._done or self._gate.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return self._result()
        self._log._spill(self)
        if self._done:
            return self._result()
        return None

    def _set(self, entry: Entry | None, err: BaseException | None) -> None:
        with _SET_LOCK:  # the first result wins; the gate is released exactly once
            if self._done:
                return
            self._entry, self._error = entry, err
            self._done = True
            cb, self._cb = self._cb, None
        self._gate.release()
        if cb is not None:
            cb()

    def _resolve(self, entry: Entry) -> None:
        self._set(entry, None)

    def _fail(self, err: BaseException) -> None:
        self._set(None, err)


def _check_item(leaf, data, attrs=(), key=None) -> tuple[bytes, bytes, tuple[tuple[str, str], ...], bytes]:
    """(leaf, data, attrs, key) checked; ``key`` (the dedup key, 32 bytes) defaults to the leaf."""
    if key is None:
        key = leaf
    elif not isinstance(key, (bytes, bytearray, memoryview)) or len(key) != HS:
        raise ValueError("dedup key must be 32 bytes")
    if type(leaf) is bytes and len(leaf) == HS and type(data) is bytes and not attrs:
        return leaf, data, (), bytes(key)
    if not isinstance(leaf, (bytes, bytearray, memoryview)) or len(leaf) != HS:
        raise ValueError("leaf input must be 32 bytes")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("entry data must be bytes")
    out = []
    for a in attrs:
        if not (isinstance(a, (tuple, list)) and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], str)):
            raise ValueError(f"attribute {a!r} is not a (str, str) pair")
        if not a[0]:
            raise ValueError("attribute key is empty")
        if "\x00" in a[0] or "\x00" in a[1]:
            raise ValueError("attribute strings must not contain NUL")
        out.append((a[0], a[1]))
    return bytes(leaf), bytes(data), tuple(out), bytes(key)
