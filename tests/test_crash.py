"""Crash safety: SIGKILL a process appending in a loop, restart, check everything.

The child appends (synchronous batches and submit/wait) forever and, after each Entry is
returned, appends "index leaf-hex" to an acknowledgement file (O_APPEND writes survive the
kill: the kernel keeps them), plus the signed checkpoint it saw. The parent kills it at random
points, reopens the log and checks: every acknowledged entry is at its index; the root
recomputed from the stored entries (verifier.merkle.root_of) equals the tiles' root and the
signed head; the checkpoint after restart is consistent with the last one before the crash.
"""

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tlog_fixtures import *  # noqa: F401,F403
from tests.tlog_fixtures import ORIGIN
from verifier import merkle
from verifier.note import NoteVerifier, Signer, open_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def child(target: str, schema: str, ack: str) -> None:  # runs in the killed process
    from tlog.log import Log
    from tlog.storage import open_storage

    signer = Signer.from_skey(os.environ["TLOG_CRASH_SKEY"])
    # SQLite: merge the recent dedup tier often, every merge of runs in a child process, so
    # that kills also land inside merges and between a merge and its listing
    kw = {"schema": schema} if schema != "-" else {"merge_every": 97, "merge_inline_max": 0}
    log = Log.open(open_storage(target, **kw), origin=ORIGIN, note_signer=signer, max_wait=0.001)
    fd = os.open(ack, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    rnd = random.Random()
    os.write(fd, b"ready\n")
    while True:
        batch = [rnd.randbytes(32) for _ in range(rnd.randint(1, 300))]
        if rnd.random() < 0.5:
            entries = log.append([(d, b"x" * rnd.randint(0, 64), [("k", d.hex()[:4])]) for d in batch])
        else:
            ps = [log.submit(d, b"y") for d in batch[:20]]
            batch = batch[:20]
            entries = [p.wait(None) for p in ps]
        lines = [f"{e.index} {d.hex()}\n" for e, d in zip(entries, batch)]
        cp = log.latest().checkpoint.replace("\n", "|")
        os.write(fd, ("".join(lines) + f"cp {cp}\n").encode())


def _run_crash_rounds(storage_factory, signer, rounds):
    backend = storage_factory.backend
    if backend == "postgres":
        target, schema = storage_factory.url, storage_factory.schema
    else:
        target, schema = str(storage_factory.path), "-"
    ack = str(Path(target if backend == "sqlite" else "/tmp").parent / f"ack-{uuid.uuid4().hex}")
    if backend == "postgres":
        ack = f"/tmp/tlog-crash-ack-{uuid.uuid4().hex}"
    from tlog.log import Log

    v = NoteVerifier.from_vkey(signer.vkey)
    env = dict(os.environ, TLOG_CRASH_SKEY=signer.skey, PYTHONPATH=str(ROOT))
    acked: dict[int, bytes] = {}
    rnd = random.Random()
    total_kills = 0
    try:
        for r in range(rounds):
            open(ack, "w").close()
            p = subprocess.Popen([sys.executable, "-c", "import sys; from tests.test_crash import child; child(*sys.argv[1:])",
                                  target, schema, ack], env=env, cwd=ROOT)
            deadline = time.time() + 20
            while b"ready" not in Path(ack).read_bytes():
                assert p.poll() is None, "child died before it was ready"
                assert time.time() < deadline
                time.sleep(0.01)
            time.sleep(rnd.uniform(0.05, 0.6))
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            total_kills += 1
            last_cp = None
            for line in Path(ack).read_text().splitlines():
                if line.startswith("cp "):
                    last_cp = line[3:].replace("|", "\n")
                elif line != "ready" and line.endswith(tuple("0123456789abcdef")) and len(line.split()) == 2 \
                        and len(line.split()[1]) == 64:
                    i, h = line.split()
                    acked[int(i)] = bytes.fromhex(h)
            # restart and check
            log = Log.open(storage_factory(), origin=ORIGIN, note_signer=signer, poll_interval=60)
            try:
                n = log.size
                leaves = log.storage.leaf_inputs(0, n + 1000)
                assert len(leaves) == n, "entries beyond the tree size"
                for i, d in acked.items():
                    assert i < n and leaves[i] == d, f"acknowledged entry {i} lost"
                root = merkle.root_of([merkle.leaf_hash(d) for d in leaves])
                assert log.root(n) == root and log.latest().root == root
                # the dedup index agrees with the entries (SQLite: every tier, runs from
                # merges the kill may have interrupted; no run file the manifest does not list)
                for i in rnd.sample(range(n), min(n, 300)):
                    assert log.storage.find(leaves[i]) == i, f"dedup lost entry {i}"
                if backend == "sqlite":
                    st = log.storage
                    rows = st._writer.execute("SELECT a, b, n FROM druns ORDER BY a").fetchall()
                    merged = int(st.meta("dedup_merged") or 0)
                    assert [a for a, _, _ in rows] == [0] + [b for _, b, _ in rows[:-1]]
                    assert (rows[-1][1] if rows else 0) == merged
                    names = set(os.listdir(st.rundir)) if os.path.isdir(st.rundir) else set()
                    assert {n for n in names if n.endswith(".dd")} == {f"run-{a:012d}-{b:012d}.dd" for a, b, _ in rows}
                head = open_checkpoint(log.latest().checkpoint, v).checkpoint
                assert head.size == n and head.root == root
                if last_cp is not None:
                    before = open_checkpoint(last_cp, v).checkpoint
                    assert before.size <= n
                    if before.size:
                        merkle.verify_consistency(before.size, n, log.consistency_proof(before.size, n),
                                                  before.root, head.root)
                    assert log.tree_head(before.size).checkpoint == last_cp
            finally:
                log.close()
        assert len(acked) > 0 and total_kills == rounds
    finally:
        if os.path.exists(ack):
            os.unlink(ack)


@pytest.mark.slow
def test_sigkill_while_appending(storage_factory, signer):
    _run_crash_rounds(storage_factory, signer, rounds=6 if storage_factory.backend == "sqlite" else 4)


def appender(target: str, schema: str, base: str, batches: str) -> None:  # runs in a child process
    from tlog.log import Log
    from tlog.storage import open_storage

    signer = Signer.from_skey(os.environ["TLOG_CRASH_SKEY"])
    # SQLite: merge the recent dedup tier often, every merge of runs in a child process, so
    # that kills also land inside merges and between a merge and its listing
    kw = {"schema": schema} if schema != "-" else {"merge_every": 97, "merge_inline_max": 0}
    log = Log.open(open_storage(target, **kw), origin=ORIGIN, note_signer=signer, max_wait=0.001)
    b = int(base)
    for k in range(int(batches)):
        items = [(b"%08d" % (b + k) + bytes([j]) * 24, b"", [("w", base)]) for j in range(25)]
        if k % 2:
            log.append(items)
        else:
            for p in [log.submit(*it) for it in items]:
                assert p.wait(60) is not None
    log.close()


def test_processes_integrate_one_at_a_time(storage_factory, signer):
    """Three real processes append concurrently to one database: every entry lands exactly
    once, and every stored head is a signed checkpoint consistent with the next one."""
    from tlog.log import Log

    if storage_factory.backend == "postgres":
        target, schema = storage_factory.url, storage_factory.schema
    else:
        target, schema = str(storage_factory.path), "-"
    Log.open(storage_factory(), origin=ORIGIN, note_signer=signer).close()  # create it first
    env = dict(os.environ, TLOG_CRASH_SKEY=signer.skey, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c",
                               "import sys; from tests.test_crash import appender; appender(*sys.argv[1:])",
                               target, schema, str(base), "8"], env=env, cwd=ROOT)
             for base in (1000, 2000, 3000)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    log = Log.open(storage_factory(), origin=ORIGIN, note_signer=signer, poll_interval=60)
    try:
        n = log.size
        assert n == 3 * 8 * 25
        leaves = log.storage.leaf_inputs(0, n)
        assert len(set(leaves)) == n
        assert sorted(len(log.lookup("w", str(b))) for b in (1000, 2000, 3000)) == [200, 200, 200]
        v = NoteVerifier.from_vkey(signer.vkey)
        sizes = [s for s in range(1, n + 1) if log.tree_head(s) is not None]
        prev = None
        for s in sizes:
            cp = open_checkpoint(log.tree_head(s).checkpoint, v).checkpoint
            assert cp.root == merkle.root_of([merkle.leaf_hash(d) for d in leaves[:s]])
            if prev is not None:
                merkle.verify_consistency(prev.size, s, log.consistency_proof(prev.size, s), prev.root, cp.root)
            prev = cp
        assert prev.size == n
    finally:
        log.close()
