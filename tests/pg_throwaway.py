"""A throwaway PostgreSQL server for fault tests: restart it, pause it (SIGSTOP), resume it.

The shared test server (TLOG_TEST_PG_URL) must never be stopped or paused (other sessions use
it), so the tests that do that start their own: ``initdb`` in a temporary directory (as the
``postgres`` user when running as root, as .ci/run does), a free loopback port, trust auth.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["ThrowawayPostgres", "pg_bin"]


def pg_bin() -> str | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[-2].split(".") if x.isdigit()])
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return None


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ThrowawayPostgres:
    def __init__(self) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.dir = tempfile.mkdtemp(prefix="tlog-pg-")
        self.port = _free_port()
        self.runas: list[str] = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.runas = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "tlog", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://tlog@127.0.0.1:{self.port}/postgres"

    def _run(self, prog: str, *args: str) -> None:
        subprocess.run(self.runas + [f"{self.bin}/{prog}", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=on "
                  f"-c max_connections=100 -c shared_buffers=32MB", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def pid(self) -> int:
        with open(f"{self.dir}/data/postmaster.pid") as f:
            return int(f.readline())

    def _pids(self) -> list[int]:
        """The postmaster and every backend (children of the postmaster)."""
        pm = self.pid
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pm)], capture_output=True, text=True).stdout
        return [pm] + [int(x) for x in out.split()]

    def pause(self) -> None:
        """SIGSTOP the server and all its processes: connections stay open, nothing answers."""
        for p in self._pids():
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass

    def resume(self) -> None:
        for p in self._pids():
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        try:
            self.resume()
        except Exception:  # noqa: BLE001 - already stopped
            pass
        try:
            self.stop("immediate")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run([f"{self.bin}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not come back")
