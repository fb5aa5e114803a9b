#!/usr/bin/env python3
"""Why each package of the original design is used or not, measured:  python3 tools/bench_packages.py

The original design named flask, cryptography, pymerkle, cbor2, pycose, sqlite-utils and pytest.
This measures, on this machine, the alternatives the code chose between (docs/ARCHITECTURE.md,
"Packages of the original design", quotes the figures):

1. COSE_Sign1 ES256 decode + verify: pycose 1.x vs ``verifier.cose`` (strict decoder, then
   cryptography's ECDSA verify);
2. Merkle tree: pymerkle's in-memory tree (append, inclusion proof) vs ``tlog.tree`` (tiles,
   right-edge appends) at the same size;
3. SQLite appends: sqlite-utils ``insert_all`` vs the stdlib ``sqlite3`` executemany both in one
   transaction, ``synchronous=FULL``, WAL (the log's settings);
4. CBOR decode of a receipt-sized map: cbor2 alone vs ``verifier.cbor.loads`` (bounds scan + cbor2).

pycose and sqlite-utils are not dependencies of the project: install them to measure
(``pip install pycose sqlite-utils``); a missing one is reported as such. Each figure is the best
of ``--rounds`` rounds (the machine is shared); give the load average with it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def best(fn, n: int, rounds: int) -> float:
    """Operations per second, best round."""
    top = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        fn(n)
        top = max(top, n / (time.perf_counter() - t))
    return top


def cose(rounds: int) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from verifier import cose as vcose

    key = ec.generate_private_key(ec.SECP256R1())
    msg = vcose.sign1(key, {3: "application/json", 4: b"k" * 32}, b'{"x": 1}' * 20)
    pub = key.public_key()

    def ours(n):
        for _ in range(n):
            vcose.verify_sign1(vcose.decode_sign1(msg), pub)

    r_ours = best(ours, 500, rounds)
    try:
        from pycose.keys import EC2Key
        from pycose.messages import CoseMessage
    except ImportError:
        print(f"cose verify     verifier.cose {r_ours:8.0f}/s   pycose: not installed")
        return
    nums = pub.public_numbers()
    ck = EC2Key(crv="P_256", x=nums.x.to_bytes(32, "big"), y=nums.y.to_bytes(32, "big"))

    import cbor2
    from pycose.messages import Sign1Message

    try:
        CoseMessage.decode(msg)
        compat = "CoseMessage.decode"

        def decode(data):
            return CoseMessage.decode(data)
    except TypeError:
        # pycose 1.1 expects cbor2 < 6 (arrays as lists; cbor2 6 returns tuples): decode by hand
        from importlib.metadata import version

        compat = f"CoseMessage.decode fails with cbor2 {version('cbor2')}; from_cose_obj used"

        def decode(data):
            obj = cbor2.loads(data)
            return Sign1Message.from_cose_obj([obj.value[0], dict(obj.value[1]), *obj.value[2:]], True)

    def theirs(n):
        for _ in range(n):
            m = decode(msg)
            m.key = ck
            assert m.verify_signature()

    r_py = best(theirs, 500, rounds)
    print(f"cose verify     verifier.cose {r_ours:8.0f}/s   pycose {r_py:8.0f}/s   ratio {r_ours / r_py:.2f}   ({compat})")


def merkle(rounds: int, size: int) -> None:
    import random

    from tlog.tree import TileTree, append_hashes
    from verifier import merkle as vm

    leaves = [os.urandom(32) for _ in range(size)]
    hashes = b"".join(vm.leaf_hash(x) for x in leaves)
    t = time.perf_counter()
    tiles: dict = {}
    edge: dict = {}
    n = 0
    for pos in range(0, len(hashes), 32 * 256):  # batches of 256 leaves, as group commit does
        n, dirty, edge = append_hashes(edge, n, hashes[pos:pos + 32 * 256])
        tiles.update(dirty)
    t_ours = time.perf_counter() - t
    tree = TileTree(lambda keys: {k: tiles[k] for k in keys if k in tiles})
    rnd = random.Random(1)
    idx = [rnd.randrange(size) for _ in range(1000)]
    t = time.perf_counter()
    for i in idx:
        tree.inclusion_proof(i, size)
    p_ours = len(idx) / (time.perf_counter() - t)
    try:
        import pymerkle
    except ImportError:
        print(f"merkle {size}   tlog.tree append {size / t_ours:8.0f}/s proofs {p_ours:.0f}/s   pymerkle: not installed")
        return
    pm = pymerkle.InmemoryTree(algorithm="sha256")
    t = time.perf_counter()
    for x in leaves:
        pm.append_entry(x)
    t_pm = time.perf_counter() - t
    t = time.perf_counter()
    for i in idx[:200]:
        pm.prove_inclusion(i + 1, size)
    p_pm = 200 / (time.perf_counter() - t)
    print(f"merkle {size}   tlog.tree append {size / t_ours:8.0f}/s proofs {p_ours:8.0f}/s   "
          f"pymerkle append {size / t_pm:8.0f}/s proofs {p_pm:8.0f}/s")


def sqlite(rounds: int, rows: int) -> None:
    rows_data = [(i, hashlib.sha256(i.to_bytes(8, "big")).digest(), os.urandom(300)) for i in range(rows)]

    def fresh(d: str):
        db = sqlite3.connect(os.path.join(d, "t.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, leaf BLOB UNIQUE, data BLOB)")
        return db

    def ours(_n):
        with tempfile.TemporaryDirectory() as d:
            db = fresh(d)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows_data)
            db.execute("COMMIT")
            db.close()

    r_ours = best(ours, rows, rounds)
    try:
        import sqlite_utils
    except ImportError:
        print(f"sqlite {rows} rows  sqlite3 {r_ours:8.0f}/s   sqlite-utils: not installed")
        return

    def theirs(_n):
        with tempfile.TemporaryDirectory() as d:
            db = fresh(d)
            su = sqlite_utils.Database(db)
            with db:  # one transaction, like ours
                su["entries"].insert_all(({"idx": i, "leaf": h, "data": x} for i, h, x in rows_data),
                                         batch_size=1000)
            db.close()

    r_su = best(theirs, rows, rounds)
    print(f"sqlite {rows} rows  sqlite3 executemany {r_ours:8.0f}/s   sqlite-utils insert_all {r_su:8.0f}/s   "
          f"ratio {r_ours / r_su:.2f}")


def cbor(rounds: int) -> None:
    import cbor2

    from verifier import cbor as vcbor

    doc = cbor2.dumps({1: -7, 4: b"k" * 32, 395: 1, 396: {-1: [[5, 3, [os.urandom(32) for _ in range(20)]]]},
                       15: {1: "https://log.example", 2: "log.example/twi"}})

    def plain(n):
        for _ in range(n):
            cbor2.loads(doc)

    def bounded(n):
        for _ in range(n):
            vcbor.loads(doc, max_depth=16)

    r_c, r_v = best(plain, 5000, rounds), best(bounded, 5000, rounds)
    print(f"cbor decode     cbor2 {r_c:8.0f}/s   verifier.cbor (scan + cbor2) {r_v:8.0f}/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--merkle-size", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=50_000)
    a = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"python {sys.version.split()[0]}")
    cose(a.rounds)
    cbor(a.rounds)
    merkle(a.rounds, a.merkle_size)
    sqlite(a.rounds, a.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
