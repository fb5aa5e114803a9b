#!/usr/bin/env python3
"""Capacity of the PostgreSQL integrator (tlog.leader) fed from a pre-filled durable queue.

    python tools/bench_integrator.py --pg-url postgresql://tlog@127.0.0.1:55432/postgres \
        --entries 1000000 --queue 200000

1. a fresh database: the log grown to ``--entries`` entries first (Log.append, batches of
   8192: the tree, tiles and entries of a log that size; not timed);
2. ``--queue`` submissions written into the ``pending`` table with COPY, as frontends leave
   them (statement bytes of ``--data-size``, the five attributes a registration records);
3. timed: the lease taken, then ``Log.integrate_pending`` in a loop until the queue is empty,
   exactly what the lease holder does (one transaction per ``--batch`` rows: fencing check and
   renewal, pending rows read, entries, attributes and tiles written, checkpoint and receipt
   signature made, pending rows deleted, NOTIFY, commit with fsync).

Prints one JSON line: entries/s, batches, mean transaction time, log size before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tlog.log import Log  # noqa: E402
from tlog.storage.base import encode_attrs  # noqa: E402
from tlog.storage.postgres import PostgresStorage  # noqa: E402
from verifier.note import Signer  # noqa: E402

ORIGIN = "bench.example/log"


def head_signer(key):
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes

    def sign(size, root):  # one ES256 signature per head, as LogService.sign_head
        return key.sign(root, ec.ECDSA(hashes.SHA256()))
    return sign


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default=os.environ.get("TLOG_TEST_PG_URL"))
    ap.add_argument("--entries", type=int, default=1_000_000, help="log size before the queue is integrated")
    ap.add_argument("--queue", type=int, default=200_000, help="submissions pre-filled into the queue")
    ap.add_argument("--batch", type=int, default=4096, help="max_batch: queue rows per transaction")
    ap.add_argument("--data-size", type=int, default=300, help="statement bytes per submission")
    ap.add_argument("--attrs", type=int, default=5, choices=range(6),
                    help="lookup attributes per submission (a registration records 5)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not args.pg_url:
        ap.error("--pg-url (or TLOG_TEST_PG_URL) is required")
    from cryptography.hazmat.primitives.asymmetric import ec

    name = f"bench_int_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = args.pg_url.rsplit("/", 1)[0] + "/" + name
    signer = Signer.generate(ORIGIN)
    key = ec.generate_private_key(ec.SECP256R1())
    pad = b"s" * max(0, args.data_size - 8)
    try:
        st = PostgresStorage(url, statement_timeout=600, lock_timeout=600)
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=head_signer(key), max_batch=args.batch,
                      sequencer=False)
        t0 = time.monotonic()
        n = 0
        while n < args.entries:
            k = min(8192, args.entries - n)
            lg.append([(sha256(b"grow %d" % i).digest(), b"%08d" % i + pad, ()) for i in range(n, n + k)])
            n += k
        grow = time.monotonic() - t0
        # the queue, as frontends leave it
        now = time.time()
        with psycopg.connect(url, autocommit=True) as c:
            with c.cursor() as cur:
                with cur.copy("COPY pending (leaf, data, attrs, ts) FROM STDIN") as cp:
                    for i in range(args.queue):
                        attrs = encode_attrs([("iss", "https://issuer.example"), ("iss-sub", '["https://issuer.example","w/%d"]' % i),
                                              ("kind", "statement"), ("payload-sha256", "%064x" % i),
                                              ("policy", "ab" * 32)][:args.attrs])
                        cp.write_row((sha256(b"queued %d" % i).digest(), b"%08d" % i + pad, attrs, now))
            c.execute("VACUUM ANALYZE pending")
        tok = st.acquire_lease("bench", 30.0)
        st.fence = (tok, 30.0)
        t0 = time.monotonic()
        batches = 0
        done = 0
        while True:
            k = lg.integrate_pending()
            if not k:
                break
            done += k
            batches += 1
        took = time.monotonic() - t0
        assert done == args.queue and lg.size == args.entries + args.queue, (done, lg.size)
        load = os.getloadavg()
        out = {"bench": "integrator-from-queue", "entries_before": args.entries, "queued": args.queue,
               "batch": args.batch, "data_size": args.data_size, "attrs": args.attrs, "entries_per_s": round(done / took),
               "seconds": round(took, 2), "batches": batches, "ms_per_transaction": round(1000 * took / batches, 1),
               "grow_entries_per_s": round(args.entries / grow) if args.entries else None,
               "loadavg": [round(x, 2) for x in load], "postgres": st._read(lambda c: c.execute("SHOW server_version").fetchone()[0])}
        print(json.dumps(out))
        lg.close()
        st.close()
    finally:
        if not args.keep:
            with psycopg.connect(args.pg_url, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
