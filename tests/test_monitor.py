"""Monitor, audit, split view and the client-side tile reader (verifier/monitor/, verifier/tiles.py)."""

from __future__ import annotations

import base64
import io
import json
import os
import random
from contextlib import redirect_stderr, redirect_stdout
from hashlib import sha256

import pymerkle
import pytest

from verifier import merkle
from verifier.monitor import (
    Auditor,
    HttpLog,
    Monitor,
    MonitorAlert,
    MonitorState,
    Reporter,
    compare_views,
    load_state,
    main,
    save_state,
)
from verifier.note import Checkpoint, Signer, sign_note
from verifier.tiles import (
    MemoryTiles,
    TileHashReader,
    TileNotFound,
    encode_entry_bundle,
    encode_index,
    entries_path,
    parse_entry_bundle,
    tile_path,
    tile_widths,
)

from .test_monitor_fixture import FixtureLog, FixtureServer, make_entries

# ----------------------------------------------------------------------------- tiles


def test_index_encoding_and_paths():
    assert encode_index(0) == "000"
    assert encode_index(67) == "067"
    assert encode_index(1000) == "x001/000"
    assert encode_index(1234067) == "x001/x234/067"
    assert tile_path(0, 1234067, 8) == "tile/0/x001/x234/067.p/8"
    assert entries_path(1234067, 8) == "tile/entries/x001/x234/067.p/8"
    assert entries_path(0, 1) == "tile/entries/000.p/1"
    assert entries_path(0, 256) == "tile/entries/000"
    # tlog-tiles example: size 70,000
    assert tile_widths(0, 70000) == (273, 112)
    assert tile_widths(1, 70000) == (1, 17)
    assert tile_widths(2, 70000) == (0, 1)


def test_entry_bundle_codec():
    es = [b"", b"a", b"x" * 300]
    data = encode_entry_bundle(es)
    assert parse_entry_bundle(data, 3) == es
    from verifier import VerificationError

    for bad, n in [(data[:-1], 3), (data, 2), (data, 4), (data + b"\x00", 3)]:
        with pytest.raises(VerificationError):
            parse_entry_bundle(bad, n)


def test_tile_reader_against_pymerkle_and_reference():
    rnd = random.Random(1)
    entries = make_entries(70000)
    mt = MemoryTiles()
    mt.append(entries)
    pm = pymerkle.InmemoryTree(algorithm="sha256")
    for d in entries[:1100]:
        pm.append_entry(d)
    leaves = [merkle.leaf_hash(d) for d in entries]
    sizes = [1, 2, 255, 256, 257, 511, 512, 513, 1000, 1099, 1100] + [rnd.randrange(1, 1101) for _ in range(10)]
    for n in sizes:
        r = TileHashReader(mt.get, n)
        assert r.root() == pm.get_root(n) == merkle.root_of(leaves[:n])
        m = rnd.randint(1, n)
        assert r.consistency_proof(m) == merkle.consistency_proof(leaves[:n], m)
        i = rnd.randrange(n)
        assert r.inclusion_proof(i) == merkle.inclusion_proof(leaves[:n], i)
    # a large size through level-2 tiles, and consistency with the reference
    r = TileHashReader(mt.get, 70000)
    assert r.root() == merkle.root_of(leaves)
    for m in [1, 256, 65536, 65537, 69999]:
        merkle.verify_consistency(m, 70000, r.consistency_proof(m), merkle.root_of(leaves[:m]), r.root())


def test_memory_tiles_paths():
    mt = MemoryTiles()
    mt.append(make_entries(300))
    assert len(mt.get("tile/0/000")) == 8192
    assert len(mt.get("tile/0/001.p/44")) == 44 * 32
    assert len(mt.get("tile/1/000.p/1")) == 32
    assert parse_entry_bundle(mt.get("tile/entries/001.p/44"), 44) == mt.entries[256:]
    for bad in ["tile/0/001", "tile/0/1", "tile/0/001.p/45", "tile/0/000.p/256", "tile/2/000.p/1",
                "tile/00/000", "tile/entries/x000/001", "tile/0/001.p/044"]:
        with pytest.raises(TileNotFound):
            mt.get(bad)


# ----------------------------------------------------------------------------- monitor


@pytest.fixture
def served():
    log = FixtureLog()
    with FixtureServer(log) as srv:
        yield srv


def _monitor(srv, tmp_path, **kw):
    out, err = io.StringIO(), io.StringIO()
    m = Monitor(HttpLog(srv.url, timeout=5), srv.log.signer.verifier(), tmp_path / "state.json",
                reporter=Reporter(out, err), **kw)
    return m, out


def test_monitor_follows_growth(served, tmp_path):
    log = served.log
    m, out = _monitor(served, tmp_path)
    assert m.poll() is False  # empty tree
    for k in [1, 255, 1000, 3, 70000]:
        log.append(make_entries(k, salt=os.urandom(4)))
        assert m.poll() is True
        st = load_state(tmp_path / "state.json")
        assert st.size == log.tiles.size and st.note == log.note
    assert m.poll() is False
    events = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert [e["size"] for e in events if e["event"] == "checkpoint"] == [1, 256, 1256, 1259, 71259]


def test_forked_log_detected(served, tmp_path):
    log = served.log
    log.append(make_entries(1000))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    # same key, history rewritten from entry 500, longer tree
    fork = log.fork(500, make_entries(900, salt=b"evil"))
    served.log = fork
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "inconsistent"
    assert e.value.evidence["previous"] == log.note and e.value.evidence["current"] == fork.note
    # the state still holds the last good checkpoint
    assert load_state(tmp_path / "state.json").size == 1000


def test_same_size_fork_and_size_regression(served, tmp_path):
    log = served.log
    log.append(make_entries(600))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    served.log = log.fork(100, make_entries(500, salt=b"x"))
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "split-view"
    served.log = log.fork(600, [])
    served.log.note = served.log.sign(400)  # the log now claims an older, smaller tree
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "size-regressed"


def test_bad_signature_alert(served, tmp_path):
    log = served.log
    log.append(make_entries(10))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    impostor = Signer.generate(log.origin)  # same name, different key
    log.append(make_entries(5, salt=b"y"))
    log.note = sign_note(Checkpoint(log.origin, 15, log.tiles.root()).to_text(), [impostor])
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "bad-signature"
    # a tampered body with the real signature line
    good = log.sign()
    log.note = good.replace(str(15), "16", 1)
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "bad-signature"


def test_lying_tiles_detected(served, tmp_path):
    log = served.log
    log.append(make_entries(300))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    log.append(make_entries(300, salt=b"z"))
    # the server serves a wrong level-1 tile (its first hash covers entries 0..255, old history)
    log.extra["tile/1/000.p/2"] = os.urandom(64)
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "inconsistent"


def test_unreachable_bound(served, tmp_path):
    m, out = _monitor(served, tmp_path, max_unreachable=3600)
    served.log.down = True
    assert m.poll() is False  # within the bound: a warning event
    assert json.loads(out.getvalue().splitlines()[-1])["event"] == "unreachable"
    m.max_unreachable = 0
    m.state.last_ok -= 1
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "unreachable"


def test_state_survives_crash(served, tmp_path, monkeypatch):
    log = served.log
    log.append(make_entries(100))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    before = (tmp_path / "state.json").read_bytes()
    log.append(make_entries(100, salt=b"c"))

    def crash(*a, **k):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        m.poll()
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_bytes() == before  # old state intact
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp left
    # a new process resumes from the persisted state and still catches a rollback
    m2, _ = _monitor(served, tmp_path)
    assert m2.state.size == 100
    assert m2.poll() is True and m2.state.size == 200
    served.log = log.fork(50, make_entries(150, salt=b"d"))
    m3, _ = _monitor(served, tmp_path)
    with pytest.raises(MonitorAlert) as e:
        m3.poll()
    assert e.value.kind == "split-view"  # same size 200, other root


def test_state_file_validation(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(MonitorAlert) as e:
        load_state(p)
    assert e.value.kind == "bad-state"
    st = MonitorState(origin="o", vkey="v", size=3, root=base64.b64encode(b"\x01" * 32).decode())
    save_state(p, st)
    assert load_state(p) == st


def test_cli_monitor_alert_exit_and_json(served, tmp_path):
    log = served.log
    log.append(make_entries(700))
    args = ["monitor", "--log", served.url, "--vkey", log.signer.vkey, "--state", str(tmp_path / "st"), "--once"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(args) == 0
    assert json.loads(out.getvalue().splitlines()[-1])["size"] == 700
    served.log = log.fork(10, make_entries(800, salt=b"f"))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(args) == 1
    ev = json.loads(out.getvalue().splitlines()[-1])
    assert ev["event"] == "alert" and ev["kind"] == "inconsistent" and ev["origin"] == log.origin
    assert "ALERT" in err.getvalue()
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(["monitor", "--log", served.url, "--vkey", "garbage", "--state", "x", "--once"]) == 2


# ----------------------------------------------------------------------------- split view


def test_split_view_evidence():
    log = FixtureLog()
    log.append(make_entries(1000))
    a = log.note
    fork = log.fork(400, make_entries(600, salt=b"s"))
    ev = compare_views([("m1", a), ("m2", fork.note)], log.signer.verifier(), log.get)
    assert len(ev) == 1 and ev[0]["kind"] == "split-view"
    assert ev[0]["evidence"]["a"]["note"] == a and ev[0]["evidence"]["b"]["note"] == fork.note
    # different sizes: the smaller from a fork is inconsistent with the bigger one's tiles
    small_fork = log.fork(400, make_entries(100, salt=b"t")).note
    ev = compare_views([("m1", a), ("m2", small_fork)], log.signer.verifier(), log.get)
    assert [e["kind"] for e in ev] == ["split-view"]
    # honest views of different sizes: nothing
    old = log.sign(600)
    assert compare_views([("m1", a), ("m2", old)], log.signer.verifier(), log.get) == []
    # a view whose tiles the log cannot serve: unresolved, not an alert
    bigger = log.fork(1000, make_entries(10, salt=b"u")).note
    ev = compare_views([("m1", a), ("m2", bigger)], log.signer.verifier(), log.get)
    assert [e["event"] for e in ev] == ["split-view-unresolved"]


def test_monitor_compares_peers(tmp_path):
    log = FixtureLog()
    log.append(make_entries(500))
    peer = FixtureLog(log.origin, log.signer)
    peer.tiles = log.fork(200, make_entries(300, salt=b"p")).tiles
    peer.note = peer.sign()
    with FixtureServer(log) as srv, FixtureServer(peer) as psrv:
        m, _ = _monitor(srv, tmp_path, peers=[psrv.url + "/checkpoint"])
        with pytest.raises(MonitorAlert) as e:
            m.poll()
        assert e.value.kind == "split-view"
        assert e.value.evidence["b"]["note"] in (peer.note, log.note)


# ----------------------------------------------------------------------------- audit


def test_audit_full_and_resume(served, tmp_path):
    log = served.log
    log.append(make_entries(70000))
    cp = Checkpoint.parse(log.note.split("\n\n")[0] + "\n")
    st = Auditor(HttpLog(served.url).fetch, None).audit(cp, log.note)
    assert st.audited_size == 70000
    # interrupted audit resumes where it stopped
    sp = tmp_path / "audit.json"
    a = Auditor(HttpLog(served.url).fetch, sp, workers=4)
    a.stop_after_tiles = 100
    with pytest.raises(KeyboardInterrupt):
        a.audit(cp, log.note)
    saved = json.loads(sp.read_text())
    assert saved["done"] == 100 * 256 and saved["audited_size"] == 0
    n0 = log.requests
    st = Auditor(HttpLog(served.url).fetch, sp, workers=4).audit(cp, log.note)
    assert st.audited_size == 70000
    assert log.requests - n0 < 2 * (274 - 100) + 10  # only the rest was fetched
    # the log grows: the next audit continues from the audited prefix
    log.append(make_entries(1000, salt=b"g"))
    cp2 = Checkpoint.parse(log.note.split("\n\n")[0] + "\n")
    n0 = log.requests
    assert Auditor(HttpLog(served.url).fetch, sp).audit(cp2, log.note).audited_size == 71000
    assert log.requests - n0 < 20


@pytest.mark.parametrize("what", ["entries", "tile0", "tile1", "tile-partial", "root"])
def test_audit_detects_tampering(served, what):
    log = served.log
    log.append(make_entries(66000))
    cp = Checkpoint.parse(log.note.split("\n\n")[0] + "\n")
    if what == "entries":
        es = list(log.tiles.entries[512:768])
        es[7] = sha256(b"other").digest()
        log.extra["tile/entries/002"] = encode_entry_bundle(es)
    elif what == "tile0":
        log.extra["tile/0/100"] = bytes(8192)
    elif what == "tile1":
        log.extra["tile/1/000"] = bytes(8192)
    elif what == "tile-partial":
        w = tile_widths(1, 66000)[1]
        log.extra[tile_path(1, 1, w)] = bytes(32 * w)
    else:
        cp = Checkpoint(cp.origin, cp.size, sha256(b"x").digest())
    with pytest.raises(MonitorAlert) as e:
        Auditor(HttpLog(served.url).fetch, None).audit(cp)
    assert e.value.kind == "audit-mismatch"


def test_cli_audit(served, tmp_path):
    log = served.log
    log.append(make_entries(1234))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["audit", "--log", served.url, "--vkey", log.signer.vkey, "--state", str(tmp_path / "a"),
                   "--progress", "lines"])
    assert rc == 0, err.getvalue()
    ev = json.loads(out.getvalue().splitlines()[-1])
    assert ev["event"] == "audited" and ev["size"] == 1234
    assert "audit:" in err.getvalue()
    log.extra["tile/entries/001"] = encode_entry_bundle(make_entries(256, salt=b"q"))
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        rc = main(["audit", "--log", served.url, "--vkey", log.signer.vkey, "--progress", "lines"])
    assert rc == 1 and json.loads(out.getvalue().splitlines()[-1])["kind"] == "audit-mismatch"


from hypothesis import given, settings, strategies as st  # noqa: E402

from verifier import VerificationError  # noqa: E402

_MT = MemoryTiles()
_MT.append(make_entries(600))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="tile/entries0123456789x.p", max_size=40))
def test_memory_tiles_random_paths(path):
    try:
        data = _MT.get(path)
    except TileNotFound:
        return
    assert len(data) % 32 == 0 or path.startswith("tile/entries/")


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 600), st.integers(1, 600), st.binary(max_size=64))
def test_consistency_from_corrupt_tiles_never_verifies_wrongly(m, n, junk):
    """A server returning junk for one tile: the proof either fails to build, or fails to verify,
    or (if the junk tile was not needed) verifies against the true roots."""
    m, n = min(m, n), max(m, n)
    target = tile_path(0, 0, min(n, 256) if n < 256 else None)

    def fetch(p):
        return junk if p == target else _MT.get(p)

    leaves = [merkle.leaf_hash(d) for d in _MT.entries[:n]]
    try:
        proof = TileHashReader(fetch, n).consistency_proof(m)
        merkle.verify_consistency(m, n, proof, merkle.root_of(leaves[:m]), merkle.root_of(leaves))
    except (VerificationError, TileNotFound):
        return
    # it verified against the true roots: it is the honest proof, whatever the junk was
    assert proof == (merkle.consistency_proof(leaves, m) if m < n else [])


def test_audit_statements(served, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from verifier import cbor as vcbor
    from verifier import cose
    from verifier import keys as vkeys
    from verifier.monitor import StatementChecker
    from verifier.statement import SignedStatement

    key = Ed25519PrivateKey.generate()
    log = served.log
    stmts = [cose.sign1(key, {15: {1: "https://issuer.example", 2: f"w/{i}"}, 4: b"k1"}, b"p%d" % i,
                        unprotected={394: [b"receipt bytes"]}) for i in range(300)]
    leaves = [SignedStatement.parse(s).leaf_input for s in stmts]
    log.append(leaves)
    for d, s in zip(leaves, stmts):
        log.extra[f"entries/{d.hex()}/statement"] = s
    cp = Checkpoint.parse(log.note.split("\n\n")[0] + "\n")
    h = HttpLog(served.url)
    a = Auditor(h.fetch, None)
    a.check_entries = chk = StatementChecker(h)
    a.audit(cp)
    assert chk.checked == 300 and chk.unverified == 300
    # a statement that does not hash to its leaf
    log.extra[f"entries/{leaves[257].hex()}/statement"] = stmts[3]
    a = Auditor(h.fetch, None)
    a.check_entries = StatementChecker(h)
    with pytest.raises(MonitorAlert) as e:
        a.audit(cp)
    assert e.value.kind == "audit-mismatch" and "entry 257" in e.value.detail
    # CLI flag (this fixture log registers no policy: --no-policy checks hashes and x5chains only)
    log.extra[f"entries/{leaves[257].hex()}/statement"] = stmts[257]
    args = ["audit", "--log", served.url, "--vkey", log.signer.vkey, "--statements", "--progress", "lines"]
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(args + ["--no-policy"]) == 0
    assert json.loads(out.getvalue().splitlines()[-1])["statements"]["checked"] == 300
    # with the policy check (the default), a log without policy statements admits nothing
    keyfile = tmp_path / "logkey.cbor"
    keyfile.write_bytes(vcbor.dumps([vkeys.cose_key_from_public(key.public_key())]))
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(args + ["--log-key", str(keyfile)]) == 1
    ev = json.loads(out.getvalue().splitlines()[-1])
    assert ev["kind"] == "policy-violation" and ev["evidence"] == {
        "index": 0, "entry_id": leaves[0].hex(), "reason": "no-policy"}
    # and without --log-key it needs the log's /.well-known/scitt-keys, which this log lacks
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(args) == 1
    assert json.loads(out.getvalue().splitlines()[-1])["event"] == "error"


def test_tiles_missing_alert(served, tmp_path):
    log = served.log
    log.append(make_entries(300))
    m, _ = _monitor(served, tmp_path)
    m.poll()
    ahead = log.fork(300, make_entries(50, salt=b"m"))
    log.note = ahead.note  # a checkpoint the log's tiles do not back
    with pytest.raises(MonitorAlert) as e:
        m.poll()
    assert e.value.kind == "tiles-missing"


def test_audit_empty_and_small_trees(served):
    log = served.log
    h = HttpLog(served.url)
    for k in [0, 1, 255, 1]:
        log.append(make_entries(k, salt=b"e%d" % log.tiles.size))
        cp = Checkpoint.parse(log.note.split("\n\n")[0] + "\n")
        assert Auditor(h.fetch, None).audit(cp).audited_size == log.tiles.size
    bad = Checkpoint(log.origin, 0, sha256(b"x").digest())
    with pytest.raises(MonitorAlert):
        Auditor(h.fetch, None).audit(bad)


def test_add_parser_registers_subcommands():
    import argparse

    from verifier.monitor import add_parser

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["monitor", "--log", "http://127.0.0.1:1", "--vkey", "k", "--state", "s", "--once"])
    assert a.cmd == "monitor" and callable(a.func) and a.once
    a = p.parse_args(["audit", "--log", "http://127.0.0.1:1", "--vkey", "k"])
    assert a.cmd == "audit" and a.func is a.handler
