"""Cost of the commit's record-id check on PostgreSQL (issue 11): reading the unique attribute
of a batch's queue rows, whose attributes stay in the database (tlog.claims, _PGTxn.queued_attrs).

    TLOG_TEST_PG_URL=postgresql://... python tools/bench_unique_attrs.py [--rows 4096] [--rounds 20]

Queues ``--rows`` rows like the registration path's (1 in 512 carries a record id), then times
``queued_attrs`` over them inside an integration transaction (rolled back); prints the median and
minimum with the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlog.storage.postgres import PostgresStorage  # noqa: E402

UNIQUE = "twi.cpr.iss_rid"


class _Rollback(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    url = os.environ.get("TLOG_TEST_PG_URL")
    if not url:
        print("set TLOG_TEST_PG_URL", file=sys.stderr)
        return 2
    s = PostgresStorage(url, schema="bench_unique_" + uuid.uuid4().hex[:8])
    try:
        rows = []
        for i in range(a.rows):
            attrs = [("policy", "p" * 64), ("iss", "https://loadgen.example"),
                     ("iss-sub", '["https://loadgen.example","x/%d"]' % i), ("payload-sha256", "a" * 64)]
            if i % 512 == 0:
                attrs.append((UNIQUE, "https://loadgen.example|rid-%d" % i))
            rows.append((hashlib.sha256(b"%d" % i).digest(), b"x" * 300, attrs))
        s.enqueue(rows)
        times = []
        for _ in range(a.rounds):
            try:
                with s.integration() as tx:
                    prows = tx.pending(a.rows)
                    t0 = time.perf_counter()
                    got = tx.queued_attrs([r.leaf for r in prows], {UNIQUE})
                    times.append(time.perf_counter() - t0)
                    assert len(got) == len(range(0, a.rows, 512))
                    raise _Rollback
            except _Rollback:
                pass
        print(f"queued_attrs over {a.rows} queue rows: median {statistics.median(times) * 1000:.2f} ms, "
              f"min {min(times) * 1000:.2f} ms (load average {os.getloadavg()[0]:.1f})")
    finally:
        with s.integration() as tx:
            tx.c.execute("DROP SCHEMA IF EXISTS %s CASCADE" % tx.c.execute("SELECT current_schema()").fetchone()[0])
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
