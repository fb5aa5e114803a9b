"""Private files: secrets created 0600 from their first byte, in 0700 directories.

Every private key or secret our tools write (the log's receipt and checkpoint keys, the
witness key, ``twi-issuer keys``, the issuer's vault) goes through :func:`write_private`:
the bytes are written to a fresh temporary file opened ``O_CREAT | O_EXCL | O_NOFOLLOW`` with
mode 0600 (so no other user can ever open it, whatever the umask, and no pre-existing file or
symbolic link is reused), fsynced, then linked (first writer wins) or renamed into place, and
the directory is fsynced. :func:`private_dir` creates the directory 0700 (and tightens an
existing one we own).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["private_dir", "write_private"]


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) and make it 0700; an existing directory is
    tightened to 0700 (OSError if it is not ours to change)."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(d.stat().st_mode) != 0o700:
        os.chmod(d, 0o700)
    return d


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: str | os.PathLike, data: bytes | str, *, overwrite: bool = False) -> bool:
    """Write ``data`` to ``path`` as a 0600 file in a 0700 directory, durably.

    ``overwrite`` False: the first writer wins (an existing file is kept; returns False).
    True: the file is replaced atomically. Returns True when this call wrote the file."""
    p = Path(path)
    if isinstance(data, str):
        data = data.encode()
    d = private_dir(p.parent)
    tmp = d / f".{p.name}.tmp{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, p)
            wrote = True
        else:
            try:
                os.link(tmp, p)
                wrote = True
            except FileExistsError:
                wrote = False
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(d)
    return wrote
