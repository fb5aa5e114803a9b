"""The handshake of the log's child processes (tlog.integrator's integrator process, tlog.leader's
integrator candidate): the parent passes one end of a socket pair and the pickled config, the
child answers ("ready", pid) once its service is built, or ("failed", reason)."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any, Callable


def spawn(entry: str, config: Any, timeout: float, what: str) -> tuple[subprocess.Popen, Connection]:
    """Start ``tlog.procs.<entry>`` in a new interpreter with ``config``; returns the process and
    the parent's end of the connection once the child said ready (RuntimeError otherwise)."""
    a, b = socket.socketpair()
    code = ("import sys; sys.path[:0] = %r; from tlog.procs import %s; sys.exit(%s(%d))"
            % ([p for p in sys.path if p], entry, entry, b.fileno()))
    try:
        proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[b.fileno()], close_fds=True)
    finally:
        b.close()
    conn = Connection(a.detach())
    try:
        conn.send_bytes(pickle.dumps(config))
        if not conn.poll(timeout):
            raise RuntimeError(f"the {what} did not start within {timeout:g} s")
        msg = conn.recv()
    except BaseException:
        conn.close()
        proc.kill()
        proc.wait()
        raise
    if msg[0] != "ready":
        conn.close()
        proc.wait()
        raise RuntimeError(f"the {what} failed to start: {msg[1]}")
    return proc, conn


def handshake(fd: int, build: Callable[[Any], Any]) -> tuple[Connection, Any, Any] | None:
    """The child's side: read the config, ``build(config)`` its service, answer ready (returns
    (conn, config, service)) or report the failure to the parent (returns None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker; it closes us
    conn = Connection(fd)
    try:
        config = pickle.loads(conn.recv_bytes())
        svc = build(config)
    except BaseException as e:  # noqa: BLE001 - reported to the worker, which raises it
        try:
            conn.send(("failed", f"{type(e).__name__}: {e}"))
        finally:
            conn.close()
        return None
    conn.send(("ready", os.getpid()))
    return conn, config, svc
