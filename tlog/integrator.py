"""The integrator process: group commit and receipts apart from the HTTP worker.

A gunicorn worker is one Python process: its request threads (parsing, verifying statements)
and the core's sequencer (database writes, tile hashing, checkpoint and receipt signing) share
one interpreter lock. Measured under load, each half slowed the other (the sequencer's commit
waited for the lock behind request threads, and the request threads behind the sequencer's
hashing). With ``integrator = "process"`` (the default of ``tlog serve`` and of the gunicorn
entry point) each worker starts one integrator process, as in transparency-dev/tessera where
the integrator is apart from the HTTP front:

* the worker parses, authenticates and applies the registration policy, then sends
  ``(token, leaf input, statement bytes, attributes, dedup key)`` over a socket pair;
* the integrator drains everything queued on its socket, appends it as one batch with
  :meth:`tlog.log.Log.append` (one transaction, one fsync, one signed checkpoint, one receipt
  signature), computes the batch's receipts (one tile load for all the inclusion proofs, the
  bytes common to the batch's receipts encoded once) and answers with one message per batch;
* the worker answers 201 with that receipt. Nothing is acknowledged before the integrator's
  commit returned.

Failure handling: if the integrator exits (crash, kill), every registration waiting on it gets
:class:`IntegratorUnavailable` (HTTP 503 with Retry-After; a statement that was committed
before the crash is found again by its leaf input when the client retries: dedup), and the
worker starts a new integrator. A wait that runs out writes the submission into the storage's
durable pending queue, exactly as with the in-process sequencer, so it is integrated even if
the integrator dies. The integrator exits when its socket closes (the worker exited or was
killed). Several workers each have their own integrator; integrations are serialised by the
storage (file lock + SQLite writer lock, or PostgreSQL's advisory lock), as before.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from .log import Log, LogSealed, Refused
from .pending import Entry, Pending, _check_item
from .childproc import spawn
from .storage import StorageUnavailable

log = logging.getLogger("tlog.integrator")

__all__ = ["Frames", "IntegratedEntry", "IntegratorUnavailable", "IntegratorClient"]


def _dumps(obj) -> bytes:
    # plain pickle: multiprocessing's Connection.send uses its slower ForkingPickler
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


_loads = pickle.loads


class IntegratorUnavailable(Exception):
    """The integrator process is gone or restarting; the registration may be retried."""


@dataclass(frozen=True)
class IntegratedEntry(Entry):
    """An Entry with the inclusion receipt the integrator made for it (None if it could not)."""

    receipt: bytes | None = None


# ---------------------------------------------------------------------------- worker side


class IntegratorClient:
    """The worker's end: ``submit`` like :meth:`Log.submit`, answered by the integrator."""

    def __init__(self, config, log_: Log, *, start_timeout: float = 120.0) -> None:
        self._config = config
        self._log = log_  # the worker's own Log: reads, and the durable queue for spills
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._waiting: dict[int, Pending] = {}
        self._tokens = itertools.count()
        self._closed = False
        self._conn: Connection | None = None
        self._proc: subprocess.Popen | None = None
        self.restarts = 0
        # called with (entries, seconds) per batch answered: the integrator's append + receipts
        self.on_batch = None
        self._loop = None  # the event loop that reads the answers (read_in_loop), if any
        self._handed = None  # (loop, conn, proc, frames) while that loop reads them
        self._start()

    # -- process management ------------------------------------------------------------------
    def _start(self) -> None:
        proc, conn = spawn("integrator_main", self._config, self._start_timeout, "integrator")
        self._conn, self._proc = conn, proc
        self._reader(conn, proc, Frames(conn))
        log.info("integrator process %d started", proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _reader(self, conn: Connection, proc: subprocess.Popen, frames: "Frames") -> None:
        threading.Thread(target=self._read, args=(conn, proc, frames), name="tlog-integrator-reader",
                         daemon=True).start()

    def _read(self, conn: Connection, proc: subprocess.Popen, frames: "Frames") -> None:
        while True:
            loop = self._loop
            if loop is not None:  # from now on the loop reads this integrator's answers
                with self._lock:
                    self._handed = (loop, conn, proc, frames)
                try:
                    loop.call_soon_threadsafe(self._attach, loop, conn, proc, frames)
                    return
                except RuntimeError:  # the loop is closed: this thread goes on reading
                    with self._lock:
                        taken = self._handed is None  # _loop_closed started another reader
                        self._handed = None
                        if self._loop is loop:
                            self._loop = None
                    if taken:
                        return
            raws = frames.take(1 << 30)
            if not raws:
                break
            for raw in raws:
                self._answer(_loads(raw))
        self._gone(conn, proc)

    def _loop_closed(self) -> None:
        """The loop that reads the answers was closed (a test's asyncio.run): a thread reads
        them again, from where the loop stopped (the same message buffer)."""
        with self._lock:
            loop, handed = self._loop, self._handed
            if loop is None or not loop.is_closed():
                return
            self._loop = self._handed = None
        if handed is not None and handed[0] is loop and not handed[1].closed:
            self._reader(*handed[1:])

    def read_in_loop(self, loop) -> None:
        """Read the answers in ``loop`` (the worker's event loop, which waits for them: no
        reader thread waking up and taking the interpreter lock per batch). The reader thread
        hands the socket over after the next answer it reads; a new integrator's thread (after
        a restart) does the same."""
        with self._lock:
            if self._loop is None and not self._closed:
                self._loop = loop

    def _attach(self, loop, conn: Connection, proc: subprocess.Popen, frames: "Frames") -> None:
        """In the loop: read ``conn``'s answers when it is readable."""
        if conn.closed:
            return
        fd = conn.fileno()
        loop.add_reader(fd, self._readable, loop, conn, proc, fd, frames)

    def _readable(self, loop, conn: Connection, proc: subprocess.Popen, fd: int, frames: "Frames") -> None:
        try:
            data = os.read(fd, Frames._READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the integrator is gone: the restart (it waits) runs in a thread
            loop.remove_reader(fd)
            with self._lock:
                self._handed = None
            threading.Thread(target=self._gone, args=(conn, proc), name="tlog-integrator-reader",
                             daemon=True).start()
            return
        for raw in frames.feed(data):
            self._answer(_loads(raw))

    def _answer(self, msg) -> None:
        if msg[0] == "ok":
            if self.on_batch is not None:
                self.on_batch(len(msg[1]), msg[2])
            with self._lock:
                got = [(self._waiting.pop(t[0], None), t) for t in msg[1]]
            for p, t in got:
                if p is None:
                    continue
                if len(t) == 2:  # (token, Refused): refused by the commit, nothing stored
                    p._fail(t[1])
                else:
                    p._resolve(IntegratedEntry(t[1], t[2], t[3], t[4]))
        else:  # ("err", tokens, text, unavailable, sealed): the batch was not committed
            with self._lock:
                got = [self._waiting.pop(tok, None) for tok in msg[1]]
            if len(msg) > 4 and msg[4]:  # the log is sealed (a closed shard): nothing stored
                err = LogSealed(msg[2])
            elif msg[3]:  # the database was unavailable: the client may retry (503)
                err = IntegratorUnavailable(f"integration failed: {msg[2]}")
            else:
                err = RuntimeError(f"integration failed: {msg[2]}")
            for p in got:
                if p is not None:
                    p._fail(err)

    def _gone(self, conn: Connection, proc: subprocess.Popen) -> None:
        """The integrator is gone: fail what waits on it, start a new one."""
        conn.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with self._lock:
            if self._conn is conn:
                self._conn = None
            waiting, self._waiting = self._waiting, {}
        for p in waiting.values():
            p._fail(IntegratorUnavailable("the integrator process exited; retry"))
        if self._closed:
            return
        log.warning("integrator process %d exited with %s; starting a new one", proc.pid, proc.returncode)
        delay = 0.1
        while not self._closed:
            try:
                self._start()
                self.restarts += 1
                return
            except Exception as e:  # noqa: BLE001 - keep trying, the worker answers 503 meanwhile
                log.error("integrator restart failed: %s", e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- submissions ---------------------------------------------------------------------------
    def submit(self, leaf_input: bytes, data: bytes, attrs=(), key: bytes | None = None) -> Pending:
        leaf, data, attrs, key = _check_item(leaf_input, data, attrs, key)
        loop = self._loop
        if loop is not None and loop.is_closed():
            self._loop_closed()
        p = Pending(self._log, leaf, data, attrs, key)
        with self._lock:
            if self._closed:
                raise RuntimeError("log is closed")
            conn = self._conn
            if conn is None:
                raise IntegratorUnavailable("the integrator process is restarting; retry")
            tok = next(self._tokens)
            self._waiting[tok] = p
            try:
                conn.send_bytes(_dumps((tok, leaf, data, attrs, key)))
            except (OSError, ValueError) as e:
                del self._waiting[tok]
                raise IntegratorUnavailable(f"the integrator process is unreachable ({e}); retry") from None
        return p

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, proc = self._conn, self._proc
        if conn is not None:
            try:
                conn.send_bytes(_dumps(None))  # finish the queued batch, then exit
            except (OSError, ValueError):
                pass
        if proc is not None:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if conn is not None:
            self._detach(conn)
            conn.close()

    def _detach(self, conn: Connection) -> None:
        """Stop the loop reading ``conn`` before it is closed (a polled descriptor must not be
        closed under the loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            fd = conn.fileno()
        except OSError:  # closed by the reader that saw the integrator exit
            return
        try:
            import asyncio

            in_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            in_loop = False
        if in_loop or not loop.is_running():
            loop.remove_reader(fd)
            return
        done = threading.Event()

        def remove():
            try:
                loop.remove_reader(fd)
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(remove)
        except RuntimeError:  # closed meanwhile
            return
        done.wait(5)


# ---------------------------------------------------------------------------- integrator side


class Frames:
    """The integrator's reader of its worker's messages (the framing of
    ``multiprocessing.connection.Connection.send_bytes``: a 4-byte big-endian length, or -1 and
    an 8-byte length): one ``read`` takes every message already queued on the socket, where
    ``Connection.poll`` + ``recv_bytes`` cost a ``select`` and two reads per message."""

    _READ = 1 << 18

    def __init__(self, conn: Connection) -> None:
        self._fd = conn.fileno()
        self._buf = bytearray()
        self._eof = False

    def take(self, limit: int) -> list[bytes]:
        """Up to ``limit`` whole messages, waiting for the first; [] once the socket closed."""
        while True:
            out = self._parse(limit)
            if out or self._eof:
                return out
            try:
                got = os.read(self._fd, self._READ)
            except OSError:
                got = b""
            if not got:
                self._eof = True  # a partial message at the end was never sent whole: dropped
            else:
                self._buf += got

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read elsewhere (the worker's event loop); every whole message now in."""
        self._buf += data
        return self._parse(1 << 62)

    def _parse(self, limit: int) -> list[bytes]:
        buf, pos, end, out = self._buf, 0, len(self._buf), []
        while len(out) < limit and end - pos >= 4:
            n = struct.unpack_from("!i", buf, pos)[0]
            head = 4
            if n == -1:
                if end - pos < 12:
                    break
                n = struct.unpack_from("!Q", buf, pos + 4)[0]
                head = 12
            if end - pos - head < n:
                break
            out.append(bytes(buf[pos + head:pos + head + n]))
            pos += head + n
        if pos:
            del buf[:pos]
        return out


def _integrate(svc, conn: Connection, msgs: list) -> None:
    t0 = time.monotonic()
    try:
        # checked by the worker (IntegratorClient.submit) before it sent them
        entries = svc.log.append([(m[1], m[2], m[3], m[4]) for m in msgs], checked=True)
    except Exception as e:  # noqa: BLE001 - nothing committed: the worker fails these waits
        log.warning("integration of %d submissions failed: %s", len(msgs), e)
        conn.send_bytes(_dumps(("err", [m[0] for m in msgs], f"{type(e).__name__}: {e}",
                                isinstance(e, StorageUnavailable), isinstance(e, LogSealed))))
        return
    # the receipts, by tree size (a batch's new entries share one; duplicates name earlier ones)
    by_size: dict[int, list[int]] = {}
    for e in entries:
        if not isinstance(e, Refused):
            by_size.setdefault(e.tree_size, []).append(e.index)
    rcpts: dict[tuple[int, int], bytes] = {}
    for size, idxs in by_size.items():
        try:
            rcpts.update(zip(((i, size) for i in idxs), svc.inclusion_receipts(idxs, size)))
        except Exception as exc:  # noqa: BLE001 - the worker makes them then (or answers 303)
            log.warning("receipts for %d entries at size %d: %s", len(idxs), size, exc)
    out = []
    for m, e in zip(msgs, entries):
        if isinstance(e, Refused):
            out.append((m[0], e))
        else:
            out.append((m[0], e.index, e.tree_size, e.duplicate, rcpts.get((e.index, e.tree_size))))
    try:
        conn.send_bytes(_dumps(("ok", out, time.monotonic() - t0)))
    except (OSError, ValueError):
        pass  # the worker is gone; the entries are committed and found again by a retry
