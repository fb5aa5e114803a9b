"""A C2SP tlog-witness v1.0.0 witness: ``POST <prefix>/add-checkpoint``.

For each configured log (origin and trusted log verifier keys) the witness keeps the latest
checkpoint it cosigned in SQLite. A request is checked in the order of the spec:

- body malformed -> 400; origin unknown -> 404; no signature by a trusted log key verifies -> 403
  (a signature by a trusted key that fails is also 403);
- old size > checkpoint size -> 400;
- old size != the witness's latest cosigned size for the origin -> 409, body ``<size>\\n``,
  ``Content-Type: text/x.tlog.size``; same size but a different root -> 409 likewise;
- consistency proof (RFC 6962/9162, empty when old size is 0 or equal sizes) fails -> 422;
- otherwise the new state is committed (``BEGIN IMMEDIATE``: check and update are one
  transaction, so concurrent requests cannot roll the witness back) and the response is the
  tlog-cosignature/v1 line(s) of the witness key(s), ``200``.

Extension (not in the spec): ``GET <prefix>/checkpoint?origin=<origin>`` returns the latest
cosigned checkpoint note (log signatures + this witness's cosignature), for monitors comparing
views (``twi-verify monitor --witness``).

Run: ``python -m tlog.witness --data-dir DIR --log-vkey VKEY [--origin O] [--port P]``. It is
served by the log's production server (granian through :mod:`tlog.server.httpd`: header and body
timeouts, bodies read outside Python threads), one process, ``--threads`` Python threads.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from flask import Flask, Response, request

from verifier import VerificationError
from verifier.files import private_dir, write_private
from verifier.merkle import EMPTY_ROOT, verify_consistency
from verifier.note import (
    Checkpoint,
    CosignatureSigner,
    NoteVerifier,
    open_note,
    parse_note,
)

__all__ = ["Witness", "WitnessResult", "create_app", "parse_add_checkpoint", "main"]

MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")


@dataclass
class WitnessResult:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class BadRequest(Exception):
    pass


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    """``old <size>\\n`` + proof lines + empty line + checkpoint note -> (old, proof, note)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old "):
        raise BadRequest("first line must be 'old <size>'")
    size_s = first[4:]
    if not _DECIMAL.match(size_s) or int(size_s) >= 1 << 64:
        raise BadRequest("bad old size")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise BadRequest(f"more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for ln in proof_lines:
        try:
            h = base64.b64decode(ln.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise BadRequest("proof line is not base64") from None
        if len(h) != 32 or base64.b64encode(h).decode() != ln:
            raise BadRequest("proof line is not a canonical base64 32-byte hash")
        proof.append(h)
    return int(size_s), proof, note


class Witness:
    """The witness logic over a SQLite state file; thread-safe, atomic check-and-persist."""

    def __init__(self, db_path: str | os.PathLike, logs: dict[str, Sequence[NoteVerifier]],
                 signers: Sequence[CosignatureSigner]) -> None:
        if not signers:
            raise ValueError("a witness needs at least one cosignature key")
        self.db_path = str(db_path)
        self.logs = {o: list(v) for o, v in logs.items()}
        self.signers = list(signers)
        self._local = threading.local()
        with self._db() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS checkpoints (
                origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
                note TEXT NOT NULL, updated INTEGER NOT NULL)""")

    def _db(self) -> sqlite3.Connection:
        c = getattr(self._local, "db", None)
        if c is None:
            c = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=True)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            self._local.db = c
        return c

    def latest(self, origin: str) -> tuple[int, bytes, str] | None:
        row = self._db().execute("SELECT size, root, note FROM checkpoints WHERE origin=?", (origin,)).fetchone()
        return (row[0], bytes(row[1]), row[2]) if row else None

    def add_checkpoint(self, body: bytes) -> WitnessResult:
        try:
            old, proof, note = parse_add_checkpoint(body)
            n = parse_note(note)
            cp = Checkpoint.parse(n.text)
        except (BadRequest, VerificationError) as e:
            return WitnessResult(400, f"malformed request: {e}\n")
        verifiers = self.logs.get(cp.origin)
        if verifiers is None:
            return WitnessResult(404, "unknown log origin\n")
        try:
            opened = open_note(note, verifiers)
        except VerificationError as e:
            return WitnessResult(403, f"no valid signature by a trusted log key: {e.check}\n")
        if old > cp.size:
            return WitnessResult(400, "old size is larger than the checkpoint size\n")
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT size, root FROM checkpoints WHERE origin=?", (cp.origin,)).fetchone()
            cur_size, cur_root = (row[0], bytes(row[1])) if row else (0, EMPTY_ROOT)
            if old != cur_size:
                db.execute("ROLLBACK")
                return WitnessResult(409, f"{cur_size}\n", SIZE_TYPE)
            if cp.size == 0 and cp.root != EMPTY_ROOT:
                db.execute("ROLLBACK")
                return WitnessResult(422, "an empty tree has the root SHA-256 of the empty string\n")
            if old == cp.size:
                if cp.root != cur_root:
                    db.execute("ROLLBACK")
                    return WitnessResult(409, f"{cur_size}\n", SIZE_TYPE)
                if proof:
                    db.execute("ROLLBACK")
                    return WitnessResult(422, "consistency proof must be empty for equal sizes\n")
            elif old == 0:
                if proof:
                    db.execute("ROLLBACK")
                    return WitnessResult(422, "consistency proof must be empty when old size is 0\n")
            else:
                try:
                    verify_consistency(old, cp.size, proof, cur_root, cp.root)
                except VerificationError as e:
                    db.execute("ROLLBACK")
                    return WitnessResult(422, f"consistency proof does not verify: {e}\n")
            now = int(time.time())
            lines = "".join(s.cosign(n.text, now) for s in self.signers)
            stored = n.text + "\n" + "".join(
                s.line() for s in opened.signatures
                if any(s.name == v.name and s.key_id == v.key_id for v in verifiers)
            ) + lines
            db.execute(
                "INSERT INTO checkpoints(origin, size, root, note, updated) VALUES(?,?,?,?,?) "
                "ON CONFLICT(origin) DO UPDATE SET size=excluded.size, root=excluded.root, "
                "note=excluded.note, updated=excluded.updated",
                (cp.origin, cp.size, cp.root, stored, now),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return WitnessResult(200, lines)


def create_app(witness: Witness, prefix: str = "") -> Flask:
    app = Flask("tlog.witness")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    prefix = prefix.rstrip("/")

    @app.post(f"{prefix}/add-checkpoint")
    def add_checkpoint():
        data = request.get_data(cache=False)
        r = witness.add_checkpoint(data)
        return Response(r.body, status=r.status, content_type=r.content_type)

    @app.get(f"{prefix}/checkpoint")
    def checkpoint():
        origin = request.args.get("origin", "")
        got = witness.latest(origin)
        if got is None:
            return Response("no checkpoint for this origin\n", status=404, content_type="text/plain; charset=utf-8")
        return Response(got[2], status=200, content_type="text/plain; charset=utf-8")

    return app


def _load_or_create_key(data_dir: Path, name: str) -> CosignatureSigner:
    p = data_dir / "witness.skey"
    if p.exists():
        return CosignatureSigner.from_skey(p.read_text(encoding="utf-8").strip())
    s = CosignatureSigner.generate(name)
    if not write_private(p, s.skey + "\n"):  # 0600 from the first byte, 0700 directory
        return CosignatureSigner.from_skey(p.read_text(encoding="utf-8").strip())  # another process won
    return s


_ARGV_ENV = "TLOG_WITNESS_ARGV"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tlog.witness", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="state (witness.db) and key (witness.skey)")
    ap.add_argument("--log-vkey", action="append", required=True, help="trusted log verifier key (repeatable)")
    ap.add_argument("--origin", action="append", default=[],
                    help="origin for the preceding keys (default: each key's name)")
    ap.add_argument("--name", default="witness.local", help="witness key name when a key is generated")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--prefix", default="", help="URL prefix for add-checkpoint")
    ap.add_argument("--threads", type=int, default=8, help="Python threads serving requests")
    ap.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive a request head")
    ap.add_argument("--body-timeout", type=float, default=10.0, help="seconds to receive a request body (then 408)")
    ap.add_argument("--log-format", choices=("plain", "json"), default=None, help="log lines (default plain)")
    return ap


def _open(args) -> tuple[Witness, CosignatureSigner] | int:
    try:
        keys = [NoteVerifier.from_vkey(k) for k in args.log_vkey]
    except VerificationError as e:
        print(f"error: --log-vkey: {e}", file=sys.stderr)
        return 2
    logs: dict[str, list[NoteVerifier]] = {}
    if args.origin:
        if len(args.origin) != 1 and len(args.origin) != len(keys):
            print("error: give one --origin, or one per --log-vkey", file=sys.stderr)
            return 2
        origins = args.origin * len(keys) if len(args.origin) == 1 else args.origin
    else:
        origins = [k.name for k in keys]
    for o, k in zip(origins, keys):
        logs.setdefault(o, []).append(k)
    d = private_dir(args.data_dir)
    signer = _load_or_create_key(d, args.name)
    return Witness(d / "witness.db", logs, [signer]), signer


def rsgi_app():
    """Factory for the production server (a granian worker): the arguments come from main()."""
    from .logs import setup_logging
    from .server.httpd import WSGIOverRSGI

    args = _parser().parse_args(json.loads(os.environ[_ARGV_ENV]))
    setup_logging(args.log_format)
    opened = _open(args)
    if isinstance(opened, int):
        raise SystemExit(opened)
    w, _ = opened
    return WSGIOverRSGI(create_app(w, args.prefix), threads=args.threads, max_body=MAX_BODY,
                        body_timeout=args.body_timeout)


def main(argv: Iterable[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = _parser().parse_args(argv)
    opened = _open(args)
    if isinstance(opened, int):
        return opened
    _, signer = opened
    print(f"witness key: {signer.vkey}", file=sys.stderr)
    from .logs import dictconfig, setup_logging
    from .server import httpd

    setup_logging(args.log_format)
    os.environ[_ARGV_ENV] = json.dumps(argv)
    httpd.run("tlog.witness:rsgi_app", host=args.host, port=args.port, workers=1,
              header_timeout=args.header_timeout, log_dictconfig=dictconfig(args.log_format or "plain"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
