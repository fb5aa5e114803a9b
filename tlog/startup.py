"""What ``tlog serve`` checks before any worker starts, and the data-dir lock.

Every check fails with one line (:class:`tlog.logstate.StartupError`, :class:`tlog.keys.KeyError_`
or :class:`tlog.config.ConfigError`), before anything is written to the data dir:

1. settings: file, ``TLOG_*`` variables and options (unknown names refused, tlog.config);
2. the data dir: an existing directory must be owned by this user and not writable by others;
   ``keys/`` not readable by others;
3. the data-dir lock (SQLite): ``<data-dir>/serve.lock`` held with ``flock`` for the life of
   the server; a second server on the same data dir refuses to start;
4. the storage and the log's identity (keys against the stored identity, tlog.logstate);
5. the trusted issuer keys and anchors (readable, parseable); the policy settings given must
   agree with the registration policy in force (``tlog policy set`` changes it);
   ``shard_predecessor`` only for a new log, or naming exactly the predecessor its entry 0 records;
6. the port (bound once and released; the address in use is refused here, not in a worker).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from .logstate import StartupError

LOCK_FILE = "serve.lock"


def check_data_dir(path: Path) -> None:
    """An existing data dir (and its keys/) must not be open to other users."""
    for p, what in ((path, "data dir"), (path / "keys", "keys directory")):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StartupError(f"{what} {p}: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise StartupError(f"{what} {p} is not a directory")
        if st.st_uid != os.geteuid():
            raise StartupError(f"{what} {p} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
        if st.st_mode & 0o022:
            raise StartupError(f"{what} {p} is writable by other users (mode {st.st_mode & 0o777:o}): chmod go-w {p}")
        if what == "keys directory" and st.st_mode & 0o077:
            raise StartupError(f"{what} {p} is open to other users (mode {st.st_mode & 0o777:o}): chmod 700 {p}")
        if not os.access(p, os.R_OK | os.W_OK | os.X_OK):
            raise StartupError(f"{what} {p} is not readable and writable by this user")


class DataDirLock:
    """``flock`` on ``<data-dir>/serve.lock``, held while the server runs (released by the
    kernel when the process exits, whatever the cause)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "DataDirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StartupError(
                    f"the data dir {self.path.parent} is in use by another server"
                    + (f" (pid {holder})" if holder else "") + f" (lock {self.path})"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def check_port(host: str, port: int) -> None:
    """Bind the address once (SO_REUSEADDR, as gunicorn does) and release it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(f"cannot resolve the address {host!r}: {e.strerror}") from None
    family, socktype, proto, _, addr = infos[0]
    s = socket.socket(family, socktype, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(1)
    except OSError as e:
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    finally:
        s.close()


def preflight(cfg, *, create: bool = True, check_policy: bool = True):
    """Checks 2, 4 and 5 (the caller holds the lock and checks the port): returns the Identity.
    Opens the storage and closes it again; creates the keys only for a log not created yet."""
    from .keys import TrustStore, make_dirs
    from .logstate import check_policy_agrees, latest_policy, open_identity
    from .shard import check_predecessor_setting
    from .storage import open_storage

    check_data_dir(cfg.data_path)
    TrustStore.load(cfg.issuer_keys, cfg.trust_anchors)  # KeyError_ names a bad file
    make_dirs(cfg.data_path)
    storage = open_storage(cfg.storage_url(), **cfg.storage_options())
    try:
        ident = open_identity(storage, cfg, create=create)
        check_predecessor_setting(storage, cfg.shard_predecessor)  # only where it creates a successor
        if check_policy:
            check_policy_agrees(latest_policy(storage, cfg.max_depth), cfg)
        return ident
    finally:
        storage.close()
