"""The monitor's state file (the last verified checkpoint), written crash-safely."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..merkle import EMPTY_ROOT
from .alerts import MonitorAlert


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Crash-safe replace: write a temp file in the same directory, fsync, rename, fsync dir."""
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@dataclass
class MonitorState:
    origin: str
    vkey: str
    size: int = 0
    root: str = base64.b64encode(EMPTY_ROOT).decode()
    note: str = ""  # the last verified signed checkpoint, verbatim
    last_ok: float = 0.0  # time of the last successful poll
    checked: int = 0  # number of checkpoints verified

    @property
    def root_bytes(self) -> bytes:
        return base64.b64decode(self.root)


def load_state(path: str | os.PathLike) -> MonitorState | None:
    p = Path(path)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        st = MonitorState(**d)
        if not isinstance(st.size, int) or st.size < 0 or len(st.root_bytes) != 32:
            raise ValueError("bad size or root")
        return st
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise MonitorAlert("bad-state", f"state file {p} is unreadable: {e}") from None


def save_state(path: str | os.PathLike, st: MonitorState) -> None:
    write_atomic(path, (json.dumps(asdict(st), indent=1, sort_keys=True) + "\n").encode())
