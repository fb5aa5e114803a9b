"""The witness's logic: parse an ``add-checkpoint`` request, check it in the order of the spec,
cosign and persist the new state atomically (SQLite, one row per log origin). See :mod:`witness`."""

from __future__ import annotations

import base64
import binascii
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from verifier import VerificationError
from verifier.merkle import EMPTY_ROOT, verify_consistency
from verifier.note import (
    Checkpoint,
    CosignatureSigner,
    NoteVerifier,
    open_note,
    parse_note,
)

__all__ = ["Witness", "WitnessResult", "BadRequest", "parse_add_checkpoint", "MAX_BODY", "SIZE_TYPE"]

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
