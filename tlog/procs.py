"""The entry points of the log's child processes: a worker's integrator process (tlog.integrator,
SQLite) and its integrator candidate (tlog.leader, PostgreSQL). Each builds its own LogService, so
they live here, above the service, and tlog.integrator / tlog.leader never import the service that
uses them (no import circle). They compose the service with the TWI personality, as the server
does (tlog.server.app): the commit's unique attributes are the integrator's."""

from __future__ import annotations

import logging
import threading

from .childproc import handshake
from .integrator import Frames, _integrate, _loads
from .leader import Leader
from serving.logs import setup_logging
from .service import LogService
from .twi import TWI  # the server's personality (tlog.server.app composes the same)


def integrator_main(fd: int) -> int:
    """The integrator process: config from the socket, then batches until the socket closes."""
    def build(config):
        setup_logging(getattr(config, "log_format", None))  # the worker's format
        return LogService(config, integrator="thread", personality=TWI)

    started = handshake(fd, build)
    if started is None:
        return 1
    conn, config, svc = started
    max_batch = max(1, int(config.max_batch))
    frames = Frames(conn)
    try:
        while True:
            msgs, stop = [], False
            for raw in frames.take(max_batch):  # everything queued, up to max_batch
                m = _loads(raw)
                if m is None:  # close: integrate what came before it, then exit
                    stop = True
                    break
                msgs.append(m)
            else:
                stop = not msgs  # the socket closed (the worker exited or was killed)
            if msgs:
                _integrate(svc, conn, msgs)
            if stop:
                break
    finally:
        svc.close()
        conn.close()
    return 0


def candidate_main(fd: int) -> int:
    """The candidate process: config from the socket, then the lease loop until the socket
    closes or says stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    started = handshake(fd, lambda config: LogService(config, role="integrator", personality=TWI))
    if started is None:
        return 1
    conn, config, svc = started
    leader = Leader(svc, ttl=config.lease_ttl)

    def watch_parent():
        try:
            conn.recv_bytes()  # None (stop) or EOF (the worker is gone)
        except (EOFError, OSError):
            pass
        leader.stopped.set()

    threading.Thread(target=watch_parent, name="tlog-leader-parent", daemon=True).start()
    try:
        leader.run()
    finally:
        svc.close()
        conn.close()
    return 0
