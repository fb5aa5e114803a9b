"""The integration transaction of the PostgreSQL backend (tlog.storage.postgres): queue rows
read and moved into the log inside the database, entries given in memory copied in, tiles
written, attributes and aliases recorded."""

from __future__ import annotations

import json
import re

import psycopg

from ..tree import TILE_BYTES
from .base import PendingRow, SQLTxn, Txn
from .pgattrs import ATTRS_MATCH, MOVE_RUN, attr_hash

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")  # characters text COPY would need escaped


def _int_array(xs) -> str:
    """A bigint[] parameter as its text literal (for ``%s::bigint[]``): a str.join instead of
    psycopg's per-element list dumping (~6 ms for a batch's 4,096 seqs)."""
    return "{" + ",".join(map(str, xs)) + "}"


def _tid(level: int, index: int) -> int:
    return index * 64 + level


def _read_tiles(conn, keys):
    ids = {_tid(l, n): (l, n) for l, n in keys}
    if not ids:
        return {}
    # binary results: the 16 KB of a full tile travel as bytes, not as 32 KB of hex text;
    # prepared; one id (a cold proof's usual fetch) without an array parameter to adapt
    if len(ids) == 1:
        q, p = "SELECT id, hashes, interior FROM tiles WHERE id = %s", tuple(ids)
    else:
        q, p = "SELECT id, hashes, interior FROM tiles WHERE id = ANY(%s)", (list(ids),)
    rows = conn.execute(q, p, binary=True, prepare=True).fetchall()
    return {ids[r[0]]: r[1] + r[2] if r[2] else r[1] for r in rows}


class _PGTxn(SQLTxn, Txn):
    _P = "%s"

    def __init__(self, conn: psycopg.Connection) -> None:
        self.c = conn
        self.new_size: int | None = None
        self._queued: dict[bytes, int] = {}  # leaf -> seq of the queue rows taken (data still there)
        self._moved: set[int] = set()  # seqs of the queue rows moved (and deleted) by MOVE_RUN
        self.attrs_added = False  # attribute rows inserted (the GIN index's pending list grew)

    def pending(self, limit):
        """The queue's next rows without their statement bytes and attributes (data None,
        attrs ()): those are moved by :meth:`insert_entries` inside the database."""
        rows = self.c.execute("SELECT seq, leaf, dkey FROM pending ORDER BY seq LIMIT %s", (limit,),
                              binary=True, prepare=True).fetchall()
        out = []
        for seq, leaf, dkey in rows:
            leaf = bytes(leaf)
            self._queued[leaf] = seq
            out.append(PendingRow(seq, leaf, None, (), leaf if dkey is None else bytes(dkey)))
        return out

    def set_state(self, size, root):
        super().set_state(size, root)
        self.new_size = size

    def _conn(self):
        return self.c

    def tiles(self, keys):
        return _read_tiles(self.c, keys)

    def put_tiles(self, tiles):
        with self.c.cursor() as cur:
            cur.executemany("INSERT INTO tiles (id, hashes, interior) VALUES (%s, %s, %s) "
                            "ON CONFLICT (id) DO UPDATE SET hashes = EXCLUDED.hashes, interior = EXCLUDED.interior",
                            [(_tid(l, n), b[:TILE_BYTES], b[TILE_BYTES:] or None) for (l, n), b in tiles.items()])

    def delete_pending(self, seqs):
        rest = [s for s in seqs if s not in self._moved]  # the moved ones are gone already
        if rest:
            self.c.execute("DELETE FROM pending WHERE seq = ANY(%s::bigint[])", (_int_array(rest),))

    def existing(self, keys):
        rows = self.c.execute("SELECT dkey, idx FROM entries WHERE dkey = ANY(%s)", (list(keys),)).fetchall()
        return {bytes(r[0]): r[1] for r in rows}

    def try_insert_entries(self, start, leaves, datas, keys):
        try:
            with self.c.transaction():  # a savepoint
                self.insert_entries(start, leaves, datas, keys)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def insert_entries(self, start, leaves, datas, keys):
        """``datas[i]`` None: the row is a queue row taken by :meth:`pending`; it is moved
        from the queue with its attributes (one INSERT ... SELECT), not sent from here."""
        mine, moved = [], ([], [])
        for row in zip(range(start, start + len(leaves)), leaves, keys, datas):
            if row[3] is None:
                moved[0].append(self._queued[row[1]])
                moved[1].append(row[0])
            else:
                mine.append(row)
        if mine:
            with self.c.cursor() as cur:
                with cur.copy("COPY entries (idx, leaf, dkey, data) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", "bytea", "bytea", "bytea"])
                    w = cp.write_row
                    for row in mine:
                        w(row)
        if moved[0]:
            seqs, idxs = moved
            if idxs != list(range(idxs[0], idxs[0] + len(idxs))) or any(a >= b for a, b in zip(seqs, seqs[1:])):
                raise ValueError("queue rows must get consecutive indexes in their queue order")
            n, a = self.c.execute(MOVE_RUN, (_int_array(seqs), idxs[0]), prepare=True).fetchone()
            if n != len(moved[0]):
                raise RuntimeError(f"moved {n} of {len(moved[0])} queued entries")
            self._moved.update(seqs)
            self.attrs_added = self.attrs_added or a > 0

    def leaf_at(self, index):
        r = self.c.execute("SELECT leaf FROM entries WHERE idx = %s", (index,)).fetchone()
        return None if r is None else bytes(r[0])

    def attrs_held(self, pairs):
        return {(k, v) for k, v in pairs if self.c.execute(
            f"SELECT 1 FROM attrs WHERE {ATTRS_MATCH} LIMIT 1", (k, v, k, v)).fetchone()}

    def queued_attrs(self, leaves, keys):
        # one range scan of the batch's queue rows; only the JSON of the rows whose attributes
        # name the key is parsed (measured on 4096 rows: 7-13 ms at load 23, against 24-75 ms
        # for seq = ANY(...) with LIKE); rows in the range not taken by pending() are skipped
        seqs = [self._queued[leaf] for leaf in leaves]
        taken = set(leaves)
        out: dict[bytes, list[tuple[str, str]]] = {}
        lo, hi = min(seqs), max(seqs)
        for k in sorted(keys):
            # rows with the attribute arrays, then rows with JSON (queued by an older frontend)
            for leaf, v in self.c.execute(
                    "SELECT p.leaf, x.v FROM pending p, unnest(p.ak, p.av) x(k, v) "
                    "WHERE p.seq BETWEEN %s AND %s AND p.ak IS NOT NULL AND %s = ANY(p.ak) AND x.k = %s "
                    "UNION ALL "
                    "SELECT p.leaf, j->>1 FROM pending p, "
                    "json_array_elements(CASE WHEN p.ak IS NULL THEN p.attrs::json END) j "
                    "WHERE p.seq BETWEEN %s AND %s AND p.ak IS NULL AND strpos(p.attrs, %s) > 0 AND j->>0 = %s",
                    (lo, hi, k, k, lo, hi, json.dumps(k), k)).fetchall():
                if bytes(leaf) in taken:
                    out.setdefault(bytes(leaf), []).append((k, v))
        return out

    def insert_attrs(self, rows):
        rows = [(k, v, i, attr_hash(k, v)) for k, v, i in rows]
        self.attrs_added = self.attrs_added or bool(rows)
        with self.c.cursor() as cur:
            if _COPY_SPECIAL.search("".join([k + v for k, v, _, _ in rows])) is None:
                # text COPY built in one piece (no value needs escaping): one write instead of
                # one write_row call per attribute
                text = "".join([f"{h}\t{i}\t{k}\t{v}\n" for k, v, i, h in rows])
                with cur.copy("COPY attrs (h, idx, key, value) FROM STDIN") as cp:
                    cp.write(text.encode())
                return
            with cur.copy("COPY attrs (h, idx, key, value) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "int8", "text", "text"])
                for k, v, i, h in rows:
                    cp.write_row((h, i, k, v))
