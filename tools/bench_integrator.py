#!/usr/bin/env python3
"""Capacity of the PostgreSQL integrator (tlog.leader) fed from a pre-filled durable queue.

    python tools/bench_integrator.py --pg-url postgresql://tlog@127.0.0.1:55432/postgres \\
        --entries 1000000 --queue 200000
    # a 10^7 log built once, kept, and measured again later (resume):
    python tools/bench_integrator.py --entries 10000000 --queue 400000 --db bench_1e7 --keep
    # the same on a dedicated PostgreSQL (initdb'd in DIR, started, left running for the next run):
    python tools/bench_integrator.py --own-server /var/tmp/tlog-bench-pg --entries 10000000 ...

1. the log: with ``--db NAME`` naming a database that holds a log already, that log is reused as it
   is (resume; its note key is kept in its meta table); otherwise a new database is made and the
   log built to ``--entries`` entries, with the four attributes a registration records:
   ``--build copy`` (default): entries and attributes generated inside the database (INSERT ...
   SELECT, the unique indexes built afterwards, ``--build-fillfactor`` % full), the tiles computed
   here from the same leaves with the log's own append function and written with COPY, and one
   signed checkpoint: a genuine log (Log.open then recomputes the root from the tiles and checks
   it against that checkpoint);
   ``--build append``: Log.append in batches of 8192 (the integration path itself; slow).
2. ``--queue`` submissions written into the ``pending`` table with COPY, as frontends leave
   them (statement bytes of ``--data-size``, the attributes a registration records);
3. timed: the lease taken, then ``Log.integrate_pending`` in a loop until the queue is empty,
   exactly what the lease holder does (one transaction per ``--batch`` rows: fencing check and
   renewal, queue rows read, entries and attributes moved from the queue, tiles written,
   checkpoint and receipt signature made, queue rows deleted, NOTIFY, commit with fsync);
4. checked: the log reopened (root recomputed from the tiles against the signed state), the
   final checkpoint's signature, a consistency proof from the checkpoint before the run to the
   final one, ``--verify`` inclusion proofs of sampled entries (before and from the run) against
   the final checkpoint, and every index of the run present in the entries table.

Prints one JSON line: entries/s, batches, mean transaction time, log size before and after,
load average before and after the timed part, CPU seconds (the integrator process, its
PostgreSQL backend and, on a local server, all of the server's processes), bytes written per
entry (WAL from the LSN; on a local server, all its processes' ``write_bytes``: data files and WAL,
with ``--checkpoints`` including a CHECKPOINT after the run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tlog.log import Log  # noqa: E402
from tlog.storage.base import TreeHead  # noqa: E402
from tlog.storage.pgattrs import pending_arrays  # noqa: E402
from tlog.storage.postgres import PostgresStorage  # noqa: E402
from tlog.tree import RECORD_BYTES, TILE_BYTES, append_hashes  # noqa: E402
from verifier.merkle import leaf_hash, verify_consistency, verify_inclusion  # noqa: E402
from verifier.note import Checkpoint, NoteVerifier, Signer, open_note, sign_note  # noqa: E402

ORIGIN = "bench.example/log"
SKEY = "bench_note_skey"
# the settings of --own-server: memory for the indexes a 10^7 log inserts into at random
# (leaf, dedup key, attribute hashes: ~4.3 GB at 2 x 10^7; with 3 GB a sustained run cost 55
# instead of 38 us of backend CPU per entry), WAL room so that checkpoints are time-driven;
# full-page images compressed with lz4 (the first change of a page after a checkpoint writes its
# image: with pglz, wal_compression=on, compressing them was most of the integration's cost then).
# Settings apply when the tool starts the server: stop it first (pg_ctl -D DIR/data stop).
OWN_SETTINGS = ("-c shared_buffers=6GB -c max_wal_size=16GB -c min_wal_size=2GB -c checkpoint_timeout=15min "
                "-c wal_compression=lz4 -c maintenance_work_mem=1GB -c max_connections=50 -c fsync=on")


def head_signer(key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    def sign(size, root):  # one ES256 signature per head, as LogService.sign_head
        return key.sign(root, ec.ECDSA(hashes.SHA256()))
    return sign


def own_server(directory: str) -> str:
    """A dedicated PostgreSQL in ``directory`` (initdb'd the first time), started if it is not
    running; its URL. Stop it with: pg_ctl -D DIR/data stop."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pg_throwaway import _free_port, pg_bin

    pgbin = pg_bin()
    if pgbin is None:
        raise SystemExit("no PostgreSQL binaries under /usr/lib/postgresql")
    d = Path(directory)
    runas = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if not (d / "data").exists():
        d.mkdir(parents=True, exist_ok=True)
        if runas:
            subprocess.run(["chown", "postgres", str(d)], check=True)
        subprocess.run(runas + [f"{pgbin}/initdb", "-D", str(d / "data"), "-A", "trust", "-U", "tlog"],
                       check=True, stdout=subprocess.DEVNULL)
        (d / "port").write_text(str(_free_port()))
    port = int((d / "port").read_text())
    if subprocess.run(runas + [f"{pgbin}/pg_ctl", "-D", str(d / "data"), "status"],
                      stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(runas + [f"{pgbin}/pg_ctl", "-D", str(d / "data"), "-l", str(d / "log"), "-w", "-o",
                                f"-c listen_addresses=127.0.0.1 -p {port} -k {d} {OWN_SETTINGS}", "start"],
                       check=True, stdout=subprocess.DEVNULL)
    return f"postgresql://tlog@127.0.0.1:{port}/postgres"


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process, None if it cannot be read."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cluster_pids(url: str) -> list[int]:
    """The processes of the PostgreSQL server at ``url`` if it runs on this host: the postmaster
    first, then its children (empty if they cannot be found, e.g. another host)."""
    try:
        with psycopg.connect(url, autocommit=True) as c:
            ddir = c.execute("SHOW data_directory").fetchone()[0]
        pm = int(Path(ddir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, psycopg.Error):
        return []
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pm:
                    kids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return [pm] + kids


def cluster_counters(url: str) -> dict | None:
    """CPU seconds and bytes written (``write_bytes`` of /proc/PID/io: what the processes sent
    to be written, data files and WAL) of the whole server: the postmaster's own counters include
    its exited children's (reaped), so a difference between two readings is the server's."""
    pids = cluster_pids(url)
    if not pids:
        return None
    cpu, wb = 0.0, 0
    tck = os.sysconf("SC_CLK_TCK")
    for i, pid in enumerate(pids):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        except OSError:
            if i == 0:
                return None
            continue  # exited meanwhile: counted by the postmaster from now on
        cpu += (int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if i == 0 else 0)) / tck
        wb += int(io["write_bytes"])
    return {"cpu_s": cpu, "write_bytes": wb}


def wal_lsn(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return int(c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0])


def leaf_of(i: int) -> bytes:
    return sha256(b"grow %d" % i).digest()


def build_copy(url: str, st: PostgresStorage, lg: Log, n: int, data_size: int, signer: Signer, hsign, say,
               fillfactor: int = 70) -> None:
    """Grow the empty log ``lg`` to ``n`` entries without the integration path (see the module doc).

    The unique indexes (B-trees on random 32-byte keys) are rebuilt with their leaf pages
    ``fillfactor`` % full: a B-tree grown by random inserts, as a log's are, settles at about 69 %
    (Yao, 1978), while one built in bulk is packed to 90 %, and the first million inserts after
    such a build split most of its leaf pages (the "first run after the build" of
    docs/scale-out.md, December 1: 17.4k/s against 22.6-23.4k/s later). The setting is reset
    afterwards, so the indexes are as a grown log's."""
    pad = "s" * max(0, data_size - 14)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '1GB'")
        # the unique constraints and secondary indexes of entries and attrs: dropped for the load,
        # rebuilt afterwards from their own definitions (whatever the schema of the day has)
        cons = c.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                         "WHERE conrelid IN ('entries'::regclass, 'attrs'::regclass) AND contype = 'u'").fetchall()
        idxs = c.execute("SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                         "WHERE i.indrelid IN ('entries'::regclass, 'attrs'::regclass) AND NOT i.indisprimary "
                         "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)").fetchall()
        for t, name, _ in cons:
            c.execute(f'ALTER TABLE {t} DROP CONSTRAINT "{name}"')
        for name, _ in idxs:
            c.execute(f"DROP INDEX {name}")
        t0 = time.monotonic()
        step = 1_000_000
        for a in range(0, n, step):
            b = min(n, a + step) - 1
            c.execute("INSERT INTO entries (idx, leaf, dkey, data) SELECT i, l, l, convert_to(lpad(i::text, 14, '0') || %s, "
                      "'UTF8') FROM generate_series(%s::bigint, %s::bigint) i, "
                      "LATERAL (SELECT sha256(convert_to('grow ' || i, 'UTF8'))) x(l)", (pad, a, b))
            c.execute("INSERT INTO attrs (h, idx, key, value) SELECT tlog_attr_hash(k, v), i, k, v "
                      "FROM generate_series(%s::bigint, %s::bigint) i, LATERAL (VALUES ('iss', 'https://issuer.example'), "
                      "('iss-sub', '[\"https://issuer.example\",\"g/' || i || '\"]'), "
                      "('payload-sha256', encode(sha256(convert_to('payload ' || i, 'UTF8')), 'hex')), "
                      "('policy', repeat('ab', 32))) x(k, v)", (a, b))
            say(f"entries and attributes {b + 1:,} ({time.monotonic() - t0:.0f} s)")
        for t, name, d in cons:
            c.execute(f'ALTER TABLE {t} ADD CONSTRAINT "{name}" {d} WITH (fillfactor = {int(fillfactor)})')
            c.execute(f'ALTER INDEX "{name}" RESET (fillfactor)')
        for _, d in idxs:
            c.execute(d)
        say(f"indexes rebuilt ({time.monotonic() - t0:.0f} s)")
        c.execute("ANALYZE entries")
        c.execute("ANALYZE attrs")
    # the tree, from the same leaves, with the log's own append function
    edge: dict = {}
    size = 0
    partial: dict = {}
    chunk = 1 << 16
    with psycopg.connect(url, autocommit=True) as c:
        with c.cursor() as cur:
            with cur.copy("COPY tiles (id, hashes, interior) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "bytea", "bytea"])
                while size < n:
                    k = min(chunk, n - size)
                    hashes = b"".join([sha256(b"\x00" + leaf_of(i)).digest() for i in range(size, size + k)])
                    size, dirty, edge = append_hashes(edge, size, hashes)
                    for (level, idx), rec in dirty.items():
                        if len(rec) == RECORD_BYTES:  # a full tile: final
                            partial.pop((level, idx), None)
                            cp.write_row((idx * 64 + level, rec[:TILE_BYTES], rec[TILE_BYTES:]))
                        else:
                            partial[(level, idx)] = rec
                for (level, idx), rec in partial.items():
                    cp.write_row((idx * 64 + level, rec, None))
    say(f"tiles written ({size:,} leaves)")
    from tlog.tree import TileTree

    root = TileTree(st.tiles).root(n)
    head = TreeHead(n, root, sign_note(Checkpoint(ORIGIN, n, root).to_text(), [signer]), hsign(n, root), time.time())
    with st.integration() as tx:
        tx.put_head(head)
        tx.set_state(n, root)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default=os.environ.get("TLOG_TEST_PG_URL"))
    ap.add_argument("--own-server", metavar="DIR", help="use (initdb and start if needed) a dedicated PostgreSQL in DIR")
    ap.add_argument("--db", help="database name: reused when it holds a log (resume), else created")
    ap.add_argument("--entries", type=int, default=1_000_000, help="log size before the queue is integrated (new log)")
    ap.add_argument("--build", choices=("copy", "append"), default="copy")
    ap.add_argument("--build-fillfactor", type=int, default=70, metavar="PCT",
                    help="--build copy: how full the rebuilt unique indexes' leaf pages are (default 70, as a log "
                         "grown by random inserts; PostgreSQL's bulk build packs them to 90)")
    ap.add_argument("--queue", type=int, default=200_000, help="submissions pre-filled into the queue")
    ap.add_argument("--batch", type=int, default=4096, help="max_batch: queue rows per transaction")
    ap.add_argument("--data-size", type=int, default=300, help="statement bytes per submission")
    ap.add_argument("--attrs", type=int, default=4, choices=range(5),
                    help="lookup attributes per submission (a registration records 4: iss, iss-sub, payload-sha256, policy)")
    ap.add_argument("--verify", type=int, default=200, help="inclusion proofs checked at the end")
    ap.add_argument("--checkpoints", action="store_true",
                    help="CHECKPOINT before and after the timed part, the second counted in the bytes written "
                         "(worst case: full-page images of every page touched)")
    ap.add_argument("--keep", action="store_true", help="keep the database (default: dropped unless --db reused one)")
    args = ap.parse_args()
    if not 10 <= args.build_fillfactor <= 100:
        ap.error("--build-fillfactor must be 10-100 (PostgreSQL's range for B-trees)")
    if args.own_server:
        args.pg_url = own_server(args.own_server)
    if not args.pg_url:
        ap.error("--pg-url (or TLOG_TEST_PG_URL) is required")
    from cryptography.hazmat.primitives.asymmetric import ec

    def say(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    name = args.db or f"bench_int_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not exists:
            c.execute(f'CREATE DATABASE "{name}"')
    url = args.pg_url.rsplit("/", 1)[0] + "/" + name
    keep = args.keep or exists
    key = ec.generate_private_key(ec.SECP256R1())
    hsign = head_signer(key)
    pad = b"s" * max(0, args.data_size - 8)
    try:
        st = PostgresStorage(url, statement_timeout=3600, lock_timeout=600)
        skey = st.meta(SKEY)
        if skey is None:
            signer = Signer.generate(ORIGIN)
            with st.integration() as tx:
                tx.set_meta(SKEY, signer.skey)
        else:
            signer = Signer.from_skey(skey)
        t0 = time.monotonic()
        if st.state() is None and args.build == "copy" and args.entries:
            lg = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=hsign, sequencer=False)
            build_copy(url, st, lg, args.entries, args.data_size, signer, hsign, say, args.build_fillfactor)
            lg.close()
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=hsign, max_batch=args.batch,
                      sequencer=False)
        n = lg.size
        while n < args.entries and not exists:  # --build append
            k = min(8192, args.entries - n)
            lg.append([(leaf_of(i), b"%08d" % i + pad, ()) for i in range(n, n + k)])
            n += k
        grow = time.monotonic() - t0
        size0 = lg.size
        head0 = lg.latest()
        say(f"log of {size0:,} entries ready ({grow:.0f} s){' (reused)' if exists else ''}")
        # the queue, as frontends leave it
        run = uuid.uuid4().hex[:8]
        now = time.time()
        with psycopg.connect(url, autocommit=True) as c:
            with c.cursor() as cur:
                with cur.copy("COPY pending (leaf, data, attrs, ts, dkey, ah, ak, av) FROM STDIN") as cp:
                    for i in range(args.queue):
                        attrs = [("iss", "https://issuer.example"),
                                 ("iss-sub", '["https://issuer.example","w/%s/%d"]' % (run, i)),
                                 ("payload-sha256", sha256(b"payload %s %d" % (run.encode(), i)).hexdigest()),
                                 ("policy", "ab" * 32)][:args.attrs]
                        leaf = sha256(b"queued %s %d" % (run.encode(), i)).digest()
                        # the row as PostgresStorage.enqueue writes it (pgattrs.PENDING_INSERT)
                        leaf, data, ts, key, hs, ks, vs = pending_arrays([(leaf, b"%08d" % i + pad, attrs)], now)[0]
                        cp.write_row((leaf, data, "", ts, key, hs, ks, vs))
            c.execute("VACUUM ANALYZE pending")
        say(f"{args.queue:,} submissions queued")
        tok = st.acquire_lease("bench", 60.0)
        st.fence = (tok, 60.0)
        backend = st._writer.info.backend_pid  # opened by Log.open (one connection integrates)
        load0 = os.getloadavg()
        # bytes written: WAL from the LSN, and the server's processes' writes (data files and
        # WAL). --checkpoints: a CHECKPOINT before the timed part and one after it (counted: the
        # data pages the run dirtied), a checkpoint cycle as long as the run: the worst case, every
        # page the run touches is its first change since a checkpoint (a full-page image in the
        # WAL). Without it, pages changed since the last checkpoint (by the run before, say) write
        # no image, and data pages dirtied but not written yet are not counted
        if args.checkpoints:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CHECKPOINT")
        srv0, lsn0 = cluster_counters(url), wal_lsn(url)
        cpu_pg0, cpu0 = proc_cpu(backend), time.process_time()
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
        cpu_pg1, cpu1 = proc_cpu(backend), time.process_time()
        srv1 = cluster_counters(url)
        load = os.getloadavg()
        # what the attribute index's cleaner (another backend) had not merged yet when the queue
        # was drained: the time to merge the rest (sustained, the cleaner must keep up)
        t1 = time.monotonic()
        with psycopg.connect(url, autocommit=True) as c:
            gin_left = c.execute("SELECT gin_clean_pending_list(to_regclass('attrs_hg')) "
                                 "WHERE to_regclass('attrs_hg') IS NOT NULL").fetchone()
        gin_left = {"pages": gin_left[0] if gin_left else None, "seconds": round(time.monotonic() - t1, 2),
                    "cleaner_runs": getattr(getattr(st, "_cleaner", None), "runs", None)}
        lsn1 = wal_lsn(url)
        if args.checkpoints:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CHECKPOINT")
        srv2 = cluster_counters(url)
        # what the run cost in CPU: the integrator process and its PostgreSQL backend (the
        # server's own background writers not counted); on a shared, loaded machine the wall
        # clock rate mostly measures the share of the CPU the two got
        cpu = {"integrator_s": round(cpu1 - cpu0, 2),
               "postgres_backend_s": round(cpu_pg1 - cpu_pg0, 2) if cpu_pg0 is not None and cpu_pg1 is not None else None}
        if cpu["postgres_backend_s"] is not None:
            cpu["entries_per_cpu_s"] = round(done / (cpu["integrator_s"] + cpu["postgres_backend_s"]))
        written = {"wal_bytes_per_entry": round((lsn1 - lsn0) / done)}
        if srv0 is not None and srv2 is not None:
            # the whole server's CPU over the timed part (its backend, background writers,
            # autovacuum, any other session), and its writes (with --checkpoints, the final one's)
            cpu["postgres_server_s"] = round(srv1["cpu_s"] - srv0["cpu_s"], 2)
            written["server_write_bytes_per_entry"] = round((srv2["write_bytes"] - srv0["write_bytes"]) / done)
        st.release_lease(tok)
        st.fence = None
        assert done == args.queue and lg.size == size0 + args.queue, (done, lg.size)
        say(f"integrated in {took:.1f} s; checking")
        # checked from storage, by a second opening of the log (root recomputed from the tiles)
        lg.close()
        st.close()
        st = PostgresStorage(url, statement_timeout=3600)
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
        head = lg.latest()
        cp1 = Checkpoint.parse(open_note(head.checkpoint, [NoteVerifier.from_vkey(signer.vkey)]).text)
        assert (cp1.origin, cp1.size, cp1.root) == (ORIGIN, size0 + args.queue, head.root)
        if size0:
            verify_consistency(size0, cp1.size, lg.consistency_proof(size0, cp1.size), head0.root, cp1.root)
        rnd = random.Random(1)
        sample = [rnd.randrange(cp1.size) for _ in range(args.verify // 2)]
        sample += [rnd.randrange(size0, cp1.size) for _ in range(args.verify - len(sample))]
        for i in sample:
            verify_inclusion(i, cp1.size, leaf_hash(lg.leaf_input(i)), lg.inclusion_proof(i, cp1.size), cp1.root)
        got = st._read(lambda c: c.execute("SELECT count(*) FROM entries WHERE idx >= %s", (size0,)).fetchone()[0])
        assert got == args.queue, got
        if args.attrs >= 2:  # sampled attribute lookups of the run's entries (moved from the queue)
            for i in rnd.sample(range(args.queue), min(20, args.queue)):
                hits = lg.lookup("iss-sub", '["https://issuer.example","w/%s/%d"]' % (run, i))
                assert len(hits) == 1 and hits[0] >= size0, (i, hits)
        out = {"bench": "integrator-from-queue", "entries_before": size0, "queued": args.queue,
               "batch": args.batch, "data_size": args.data_size, "attrs": args.attrs, "entries_per_s": round(done / took),
               "seconds": round(took, 2), "cpu": cpu, "written": written, "attrs_pending_list_left": gin_left, "batches": batches, "ms_per_transaction": round(1000 * took / batches, 1),
               "build_seconds": round(grow) if not exists else None, "reused": exists,
               "verified": {"inclusion_proofs": len(sample), "consistency_from": size0, "checkpoint": cp1.size},
               "loadavg_before": [round(x, 2) for x in load0], "loadavg": [round(x, 2) for x in load],
               "checkpoints": args.checkpoints, "database": name, "server": args.pg_url.rsplit("/", 1)[0],
               "postgres": st._read(lambda c: c.execute("SHOW server_version").fetchone()[0]),
               "shared_buffers": st._read(lambda c: c.execute("SHOW shared_buffers").fetchone()[0])}
        print(json.dumps(out))
        lg.close()
        st.close()
    finally:
        if not keep:
            with psycopg.connect(args.pg_url, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
