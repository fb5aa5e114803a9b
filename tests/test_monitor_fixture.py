"""Test fixture (no tests here): a loopback HTTP server serving a log's checkpoint and tiles from
an in-memory tree (verifier.tiles.MemoryTiles), independent of the real log server.

A ``FixtureLog`` can be forked: ``fork(keep, entries)`` rewrites history after ``keep`` entries
into a copy, signed by the same key, and the server then serves the copy.
"""

from __future__ import annotations

import threading
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from verifier.note import Checkpoint, Signer, sign_note
from verifier.tiles import MemoryTiles, TileNotFound


def make_entries(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct 32-byte leaf inputs d(i)."""
    return [sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


class FixtureLog:
    def __init__(self, origin: str = "example.com/testlog", signer: Signer | None = None) -> None:
        self.origin = origin
        self.signer = signer or Signer.generate(origin)
        self.tiles = MemoryTiles()
        self.note = self.sign()
        self.lock = threading.Lock()
        self.down = False
        self.requests = 0
        self.extra: dict[str, bytes] = {}

    def sign(self, size: int | None = None) -> str:
        size = self.tiles.size if size is None else size
        return sign_note(Checkpoint(self.origin, size, self.tiles.root(size)).to_text(), [self.signer])

    def append(self, entries, publish: bool = True) -> str:
        with self.lock:
            self.tiles.append(entries)
            if publish:
                self.note = self.sign()
            return self.note

    def fork(self, keep: int, entries) -> "FixtureLog":
        """A copy sharing the key whose history after ``keep`` entries is ``entries``."""
        f = FixtureLog(self.origin, self.signer)
        f.tiles.append(self.tiles.entries[:keep])
        f.tiles.append(entries)
        f.note = f.sign()
        return f

    def get(self, path: str) -> bytes:
        if path == "checkpoint":
            return self.note.encode()
        if path in self.extra:
            return self.extra[path]
        return self.tiles.get(path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in one segment: no delayed-ACK stalls
    wbufsize = 1 << 16

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        log: FixtureLog = srv.log  # type: ignore[attr-defined]
        log.requests += 1
        if log.down:
            self._send(503, b"down\n")
            return
        path = self.path.split("?", 1)[0].lstrip("/")
        try:
            body = log.get(path)
        except TileNotFound:
            self._send(404, b"not found\n")
            return
        self._send(200, body, "text/plain; charset=utf-8" if path == "checkpoint" else "application/octet-stream")

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FixtureServer:
    """Serves ``log`` (swappable: ``server.log = other``) on 127.0.0.1, an ephemeral port."""

    def __init__(self, log: FixtureLog) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.log = log  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def log(self) -> FixtureLog:
        return self.httpd.log  # type: ignore[attr-defined]

    @log.setter
    def log(self, v: FixtureLog) -> None:
        self.httpd.log = v  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FixtureServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
