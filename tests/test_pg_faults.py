"""Three log instances on one PostgreSQL under load, through faults: kill -9 of a frontend
worker, kill -9 of the integrator (the lease holder), SIGSTOP of the integrator, a PostgreSQL
restart and SIGSTOP of PostgreSQL. Afterwards every acknowledged entry (201, and every 303
once integrated) is in the log at the index its receipt names, every checkpoint seen during the
run is a prefix of the final log, and a full audit (tiles and statements) passes.

PostgreSQL here is a throwaway server of the test's own (tests/pg_throwaway.py): the shared
test server is never restarted or paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import keys as vkeys
from verifier import note as vnote
from verifier import receipt as vreceipt
from verifier.merkle import verify_consistency
from verifier.monitor import HttpLog
from verifier.statement import SignedStatement
from verifier.tiles import TileHashReader

from .pg_cluster import ROOT, Client, Cluster, LeaseWatch
from .test_server_support import statement, write_public
from .tlog_fixtures import PG_URL, pg_skip_reason

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TTL = 1.0  # lease_ttl of the test: takeover within ~4/3 s
SETTINGS = dict(lease_ttl=TTL, register_wait=1.0, db_connect_timeout=1.0, db_statement_timeout=1.0,
                db_lock_timeout=1.0)


class CheckpointWatch(threading.Thread):
    def __init__(self, instances) -> None:
        super().__init__(daemon=True)
        self.instances = instances
        self.notes: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for inst in self.instances:
                try:
                    s, body, _ = inst.get("/checkpoint", timeout=5)
                    if s == 200:
                        self.notes.add(body.decode())
                except OSError:
                    pass
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def throwaway_pg():
    if not PG_URL:
        pytest.skip(pg_skip_reason)
    from .pg_throwaway import ThrowawayPostgres, pg_bin

    if pg_bin() is None:
        pytest.skip("no PostgreSQL binaries to start a throwaway server")
    pg = ThrowawayPostgres()
    yield pg
    pg.close()


def _load_until(clients, pred, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {limit} s")


def _acked(clients):
    return sum(1 for c in clients for r in list(c.results) if r[1] == 201)


def _after(clients, t0, status=201):
    return sum(1 for c in clients for r in list(c.results) if r[1] == status and r[3] > t0)


def test_three_instances_through_faults(tmp_path, throwaway_pg):
    import psycopg

    pg = throwaway_pg
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS faults")
        c.execute("CREATE DATABASE faults")
    url = pg.url.rsplit("/", 1)[0] + "/faults"
    key = ec.generate_private_key(ec.SECP256R1())
    pem = write_public(tmp_path / "iss.pem", key)
    t_start = time.monotonic()
    cluster = Cluster(tmp_path, url, pem, n=3, workers=2, threads=4, settings=SETTINGS)
    figures = {}
    try:
        insts = cluster.instances
        print(f"3 instances up in {time.monotonic() - t_start:.1f} s")
        watch = LeaseWatch(url)
        watch.start()
        cps = CheckpointWatch(insts)
        cps.start()
        bodies = [[statement(key, sub=f"f/{c}/{i}") for i in range(1500)] for c in range(6)]
        clients = [Client(insts[c % 3], bodies[c]) for c in range(6)]
        for cl in clients:
            cl.start()
        _load_until(clients, lambda: _acked(clients) >= 60, 30, "load")

        # 1. kill -9 a frontend worker (gunicorn starts a new one)
        victim = insts[1].workers()[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        _load_until(clients, lambda: _after(clients, t0 + 0.5) >= 30, 30, "201s after killing a frontend")

        # 2. kill -9 the integrator
        _, _, token = watch.changes[-1]
        pid = watch.holder_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        figures["takeover after kill -9"] = watch.takeover_after(t0, token)
        _load_until(clients, lambda: _after(clients, t0 + figures["takeover after kill -9"]) >= 30, 30,
                    "201s after killing the integrator")

        # 3. SIGSTOP the integrator; a new one takes over; the old one, resumed, must not commit
        _, _, token = watch.changes[-1]
        pid = watch.holder_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            figures["takeover after SIGSTOP"] = watch.takeover_after(t0, token)
            _load_until(clients, lambda: _after(clients, t0 + figures["takeover after SIGSTOP"]) >= 30, 30,
                        "201s with the integrator paused")
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(2 * TTL)  # the resumed one finds its lease gone (fencing) and competes again

        # 4. PostgreSQL restart
        pg.restart()
        t0 = time.monotonic()
        _load_until(clients, lambda: _after(clients, t0) >= 1, 10, "a 201 after the PostgreSQL restart")
        figures["first 201 after PostgreSQL restart"] = min(
            r[3] + r[4] for c in clients for r in list(c.results) if r[1] == 201 and r[3] > t0) - t0
        _load_until(clients, lambda: all(
            any(r[1] == 201 and r[3] > t0 for r in list(c.results)) for c in clients), 10,
            "every instance answers 201 after the restart")

        # 5. SIGSTOP PostgreSQL for 3 s: answers stay bounded (503/303), then 201 again
        pg.pause()
        t0 = time.monotonic()
        try:
            time.sleep(3.0)
        finally:
            pg.resume()
        t1 = time.monotonic()
        try:
            _load_until(clients, lambda: all(
                any(r[1] == 201 and r[3] > t1 for r in list(c.results)) for c in clients), 20,
                "every instance answers 201 after PostgreSQL resumed")
        except AssertionError:
            for c in clients:
                print(c.inst.port, [(r[1], round(r[3] - t1, 2), round(r[4], 2)) for r in c.results[-8:]])
            print("lease:", [(round(t - t1, 2), h, tok) for t, h, tok in watch.changes[-6:]])
            raise
        during = [r for c in clients for r in list(c.results) if t0 <= r[3] + r[4] and r[3] <= t1]
        figures["longest answer while PostgreSQL paused"] = max((r[4] for r in during), default=0.0)
        assert all(r[1] in (201, 303, 503) for r in during), sorted({r[1] for r in during})
        assert figures["longest answer while PostgreSQL paused"] < 8.0
        time.sleep(0.5)
        for cl in clients:
            cl.stop.set()
        for cl in clients:
            cl.join(30)
        watch.stop.set()
        cps.stop.set()
        cps.join(10)

        # ---- afterwards: the log as the clients were told
        results = [r for c in clients for r in c.results]
        statuses = {s: sum(1 for r in results if r[1] == s) for s in {r[1] for r in results}}
        print("answers:", statuses, "figures:", {k: round(v, 2) for k, v in figures.items()})
        assert 500 not in statuses and set(statuses) <= {0, 201, 303, 503}
        srv = insts[0]
        conf = cbor2.loads(srv.get("/.well-known/transparency-configuration")[1])
        vkey = conf["checkpoint_vkey"]
        ks = vkeys.decode_keyset(srv.get("/.well-known/scitt-keys")[1])
        keys = {k[2]: vkeys.public_key_from_cose_key(k) for k in ks}
        acked = [(SignedStatement.parse(r[0]).leaf_input, r[2]) for r in results if r[1] == 201]
        deadline = time.monotonic() + 30
        for r in results:
            if r[1] != 303:
                continue
            while True:
                s, body, _ = srv.get(r[2].decode())
                if s == 200:
                    acked.append((SignedStatement.parse(r[0]).leaf_input, body))
                    break
                assert s in (302, 202) and time.monotonic() < deadline, (s, body)
                time.sleep(0.1)
        verifier = vnote.NoteVerifier.from_vkey(vkey)
        final_note = srv.get("/checkpoint")[1].decode()
        final = vnote.Checkpoint.parse(vnote.open_note(final_note, [verifier]).text)
        reader = TileHashReader(HttpLog(srv.url).fetch, final.size)
        # every acknowledged entry: its receipt verifies, one statement per index, and its
        # receipt's tree is a prefix of the final tree (consistency proof from the tiles)
        indexes = {}
        roots = {}
        for leaf, rec in acked:
            info = vreceipt.verify_inclusion_receipt(rec, leaf, keys)
            assert indexes.setdefault(info.index, leaf) == leaf, "two statements at one index"
            assert roots.setdefault(info.size, info.root) == info.root, "two roots for one size"
        # every checkpoint any instance served during the run, too
        for note in cps.notes:
            cp = vnote.Checkpoint.parse(vnote.open_note(note, [verifier]).text)
            assert roots.setdefault(cp.size, cp.root) == cp.root, "two roots for one size"
        for size, root in roots.items():
            assert size <= final.size
            if 0 < size < final.size:
                verify_consistency(size, final.size, reader.consistency_proof(size), root, final.root)
            elif size == final.size:
                assert root == final.root
        for idx, leaf in list(indexes.items())[:: max(1, len(indexes) // 50)]:
            s, body, _ = srv.get(f"/entries/{idx}")
            assert s == 200 and vreceipt.verify_inclusion_receipt(body, leaf, keys).index == idx
        print(f"{len(acked)} acknowledged entries, {len(cps.notes)} checkpoints seen, final size {final.size}")
        # the full audit: every tile and every statement, judged by the policy in force
        (tmp_path / "cp.txt").write_text(final_note)
        audit = subprocess.run(
            [sys.executable, "-m", "verifier.cli", "audit", "--log", srv.url, "--vkey", vkey, "--statements",
             "--checkpoint", str(tmp_path / "cp.txt"), "--progress", "lines"],
            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
        assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
        assert figures["takeover after kill -9"] < 4 * TTL + 2 and figures["takeover after SIGSTOP"] < 4 * TTL + 2
    finally:
        cluster.stop()
