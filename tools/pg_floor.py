#!/usr/bin/env python3
"""The floor of bytes written per entry on PostgreSQL, for the log's irreducible content.

    python3 tools/pg_floor.py                      # 2^20 entries; 0-4 levels of dedup keys
    python3 tools/pg_floor.py --entries 4194304 --key-levels 0 3 --tile-bytes 32

Not the log: a model of the least a PostgreSQL log of this design can write, measured on a
private server with the README's settings (``tools/bench_core.PrivatePostgres``, fsync on,
every server process's writes counted from /proc/PID/io, plus a CHECKPOINT at the end).
Each batch of ``--batch`` entries is one transaction holding only:

* the statements, bundled ``--bundle`` to a row (``--data-size`` bytes each plus a 4-byte
  length; one row per bundle, so no per-entry tuple header, line pointer or index entry);
* the tiles: ``--tile-bytes`` per entry (64: the leaf hash and the tile's interior hashes, as
  the log stores them; 32: the leaf hashes alone), one row per 256 entries;
* ``L`` levels of dedup keys, each level writing the batch's two keys per entry (the leaf and
  the dedup key: ``--key-bytes`` of key and 4 bytes of index) once, in sorted blocks of 256:
  the cost of one pass of the keys through a log-structured index whose blocks SQL can read;
* the tree size.

Nothing is stored per entry beyond that: no leaf or dedup-key column (both are functions of the
statement), no per-entry row or B-tree entry. The bytes are random (hashes do not compress).
Prints one JSON line per level count and a markdown table; docs/core-scaling.md reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import README_PG_SETTINGS, PGWrites, PrivatePostgres  # noqa: E402

SCHEMA = """
CREATE TABLE bundles (a BIGINT PRIMARY KEY, data BYTEA NOT NULL);
ALTER TABLE bundles ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE tiles (id BIGINT PRIMARY KEY, hashes BYTEA NOT NULL);
ALTER TABLE tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;
CREATE TABLE dblk (run BIGINT, lo BIGINT, keys BYTEA NOT NULL, PRIMARY KEY (run, lo));
ALTER TABLE dblk ALTER COLUMN keys SET STORAGE EXTERNAL;
CREATE TABLE state (id INT PRIMARY KEY, size BIGINT NOT NULL);
INSERT INTO state VALUES (1, 0);
"""


def _copy(cur, table: str, rows: list[tuple]) -> None:
    """COPY ``rows`` (integers, then one bytea) into ``table`` ("name (columns)")."""
    with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int8"] * (len(rows[0]) - 1) + ["bytea"])
        for r in rows:
            cp.write_row(r)


def measure(args, levels: int) -> dict:
    import psycopg

    pg = PrivatePostgres(args.settings)
    try:
        with psycopg.connect(pg.url, autocommit=True) as c:
            c.execute(SCHEMA)
            writes = PGWrites(pg.url)
            w0, t0, run = writes.read(), time.perf_counter(), 0
            for i in range(0, args.entries, args.batch):
                n = min(args.batch, args.entries - i)
                with c.transaction(), c.cursor() as cur:
                    _copy(cur, "bundles (a, data)", [(j, os.urandom(min(args.bundle, i + n - j) * (args.data_size + 4)))
                                                     for j in range(i, i + n, args.bundle)])
                    _copy(cur, "tiles (id, hashes)", [(j // 256, os.urandom(min(256, i + n - j) * args.tile_bytes))
                                                      for j in range(i, i + n, 256)])
                    for _ in range(levels):
                        run += 1
                        _copy(cur, "dblk (run, lo, keys)",
                              [(run, j, os.urandom(min(256, 2 * n - j) * (args.key_bytes + 4)))
                               for j in range(0, 2 * n, 256)])
                    cur.execute("UPDATE state SET size = %s WHERE id = 1", (i + n,))
            secs = time.perf_counter() - t0
            w1 = writes.read()
            c.execute("CHECKPOINT")
            w2 = writes.read()
        return {"entries": args.entries, "key_levels": levels, "data_size": args.data_size,
                "tile_bytes": args.tile_bytes, "key_bytes": args.key_bytes, "bundle": args.bundle,
                "batch": args.batch, "settings": args.settings, "entries_per_s": round(args.entries / secs),
                "written_bytes_per_entry": round(PGWrites.delta(w0, w1) / args.entries),
                "written_bytes_per_entry_incl_checkpoint": round(PGWrites.delta(w0, w2) / args.entries),
                "load_avg": round(os.getloadavg()[0], 2)}
    finally:
        pg.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1 << 20)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--bundle", type=int, default=256, help="statements per row")
    ap.add_argument("--data-size", type=int, default=64, help="statement bytes")
    ap.add_argument("--tile-bytes", type=int, default=64, choices=[32, 64],
                    help="tile bytes per entry: 64 leaf and interior hashes (the log's), 32 leaf hashes only")
    ap.add_argument("--key-bytes", type=int, default=8, help="bytes of each dedup key kept in a run")
    ap.add_argument("--key-levels", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="levels of dedup keys to measure, one run each")
    ap.add_argument("--settings", default=README_PG_SETTINGS + " wal_init_zero=off",
                    help="server settings (default: the README's, and no zero-filling of new WAL segments, "
                         "a fresh cluster's cost until its segments are recycled)")
    ap.add_argument("--json", help="append the result lines to this file")
    args = ap.parse_args(argv)
    if min(args.entries, args.batch, args.bundle, args.data_size, args.key_bytes) < 1 or min(args.key_levels) < 0:
        ap.error("--entries, --batch, --bundle, --data-size and --key-bytes must be >= 1, levels >= 0")
    rows = []
    for levels in args.key_levels:
        r = measure(args, levels)
        rows.append(r)
        print(json.dumps(r), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    print("\n| key levels | B written/entry | incl. a CHECKPOINT | entries/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['key_levels']} | {r['written_bytes_per_entry']} | "
              f"{r['written_bytes_per_entry_incl_checkpoint']} | {r['entries_per_s']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
