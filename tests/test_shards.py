"""Shards by time (issue 17 item 4): a log closed to registrations, its successor's entry 0
recording its final checkpoint, and the monitor, the audit and relying parties following the
chain (tlog/shard.py, verifier/shard.py, verifier/monitor/shards.py). The real log served on
loopback (tests/real_log_fixture.py), on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog import shard
from verifier import VerificationError
from verifier import cbor as vcbor
from verifier.keys import load_public_keys
from verifier.monitor import HttpLog, Monitor, MonitorAlert, Reporter, main
from verifier.note import Signer, open_checkpoint
from verifier.policy import PolicyTracker, PolicyViolation, log_keys_from
from verifier.receipt import verify_inclusion_receipt
from verifier.shard import SHARD_CONTENT_TYPE, check_closed_log, open_shard_statement
from verifier.statement import SignedStatement

from .real_log_fixture import LogServer, issuer_key_file
from .test_server_support import statement

SUCCESSOR_URL = "https://log-2027.test.example"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    if request.param == "sqlite":
        yield {}
        return
    from .tlog_fixtures import PG_URL, fresh_pg_database

    if not PG_URL:
        pytest.skip("TLOG_TEST_PG_URL not set")
    with fresh_pg_database("tlog_shard") as a, fresh_pg_database("tlog_shard") as b:
        yield {"a": a, "b": b}


@pytest.fixture(scope="module")
def issuer():
    return ec.generate_private_key(ec.SECP256R1())


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def post(srv: LogServer, data: bytes):
    return srv.client.post("/entries", data=data, content_type="application/cose")


def close_log(srv: LogServer, path: Path, successor: str = SUCCESSOR_URL) -> dict:
    shard.close(srv.svc._storage, successor=successor, reason="command")
    srv.svc.state.refresh()
    rec = shard.finish_close(srv.svc._storage, url=srv.url, quiet=0.2)
    path.write_text(json.dumps(rec))
    return rec


def server(tmp_path: Path, name: str, db: dict, issuer, **kw) -> LogServer:
    settings = dict(origin=f"shards.test.example/{name}", issuer_keys=[issuer_key_file(tmp_path, issuer, "iss")])
    if db:
        settings["database_url"] = db[name[-1]]
    settings.update(kw)
    return LogServer(tmp_path / name, **settings)


def chain(tmp_path: Path, db: dict, issuer, *, n_a: int = 3, n_b: int = 2):
    """Log a (n_a statements, closed), log b its successor (n_b statements); the statements of a."""
    a = server(tmp_path, "log-a", db, issuer)
    stmts = [statement(issuer, sub=f"workload/a{i}") for i in range(n_a)]
    for s in stmts:
        assert post(a, s).status_code == 201
    close_log(a, tmp_path / "a.final.json")
    b = server(tmp_path, "log-b", db, issuer, shard_predecessor=str(tmp_path / "a.final.json"))
    for i in range(n_b):
        assert post(b, statement(issuer, sub=f"workload/b{i}")).status_code == 201
    return a, b, stmts


def test_sharded_log_passes_monitor_audit_and_relying_party(tmp_path, db, issuer):
    a, b, stmts = chain(tmp_path, db, issuer)
    try:
        final = json.loads((tmp_path / "a.final.json").read_text())
        # the successor's entry 0 is the log's shard statement, then its policy
        st0 = SignedStatement.parse(b.svc.log.entry_data(0))
        assert st0.content_type == SHARD_CONTENT_TYPE
        link = open_shard_statement(st0, log_keys_from(b.svc.keys.public_keys().values()), origin=b.svc.origin)
        assert link.origin == a.svc.origin and link.final.raw == final["checkpoint"] and link.url == a.url
        # the closed log: registrations refused, reads, proofs and its final checkpoint served
        assert a.checkpoint() == final["checkpoint"]
        eid = SignedStatement.parse(stmts[0]).leaf_input.hex()
        assert a.client.get(f"/entries/{eid}").status_code == 200
        # monitor of the successor, following the chain
        out = io.StringIO()
        mon = Monitor(HttpLog(b.url), b.svc.keys.note_signer.verifier(), tmp_path / "m.json",
                      reporter=Reporter(out, io.StringIO()), shards=True)
        assert mon.poll() is True
        assert [lk.origin for lk, _ in mon.chain] == [a.svc.origin]
        assert '"event": "shard"' in out.getvalue()
        code, o, e = run(["monitor", "--log", b.url, "--vkey", b.vkey, "--state", str(tmp_path / "m2.json"),
                          "--once", "--shards"])
        assert code == 0, o + e
        # the audit of both shards, statements judged by each shard's policies
        code, o, e = run(["audit", "--log", b.url, "--vkey", b.vkey, "--statements", "--shards",
                          "--progress", "lines"])
        assert code == 0, o + e
        audited = [json.loads(x) for x in o.splitlines() if '"audited"' in x]
        assert [(x["origin"], x["size"]) for x in audited] == [(b.svc.origin, b.svc.tree_size()),
                                                               (a.svc.origin, len(stmts) + 1)]
        assert audited[0]["statements"]["checked"] == b.svc.tree_size()
        # relying party: configured with the current shard only, discovers the chain's keys and
        # verifies a receipt issued by the predecessor
        code, o, e = run(["shards", "--log", b.url, "--vkey", b.vkey, "--out", str(tmp_path / "chain.keys")])
        assert code == 0, o + e
        keys = load_public_keys(tmp_path / "chain.keys")
        rec = a.client.get(f"/entries/{eid}")
        info = verify_inclusion_receipt(rec.data, bytes.fromhex(eid), keys)
        assert info.index == 1
        with pytest.raises(VerificationError):  # with the successor's keys alone it does not
            verify_inclusion_receipt(rec.data, bytes.fromhex(eid), b.svc.keys.public_keys())
    finally:
        b.stop()
        a.stop()


def test_registrations_to_a_closed_shard_refused(tmp_path, db, issuer):
    a = server(tmp_path, "log-a", db, issuer)
    try:
        assert post(a, statement(issuer, sub="w/0")).status_code == 201
        close_log(a, tmp_path / "a.final.json")
        size = a.svc.tree_size()
        r = post(a, statement(issuer, sub="w/1"))
        assert r.status_code == 410
        assert r.headers["Link"] == f'<{SUCCESSOR_URL}>; rel="successor-version"'
        prob = vcbor.loads(r.data)
        assert prob[-1] == "Log Closed" and SUCCESSOR_URL in prob[-2]
        assert a.svc.tree_size() == size and a.checkpoint() == json.loads((tmp_path / "a.final.json").read_text())["checkpoint"]
        # a second close keeps the record; another successor is refused
        with pytest.raises(shard.StartupError):
            shard.close(a.svc._storage, successor="https://other.example", reason="command")
    finally:
        a.stop()


def test_log_closes_itself_at_a_size_and_at_a_date(tmp_path, issuer):
    a = server(tmp_path, "log-a", {}, issuer, shard_close_size=3, shard_successor=SUCCESSOR_URL)
    try:
        assert post(a, statement(issuer, sub="w/0")).status_code == 201  # policy + 1
        assert post(a, statement(issuer, sub="w/1")).status_code == 201  # size 3
        r = post(a, statement(issuer, sub="w/2"))
        assert r.status_code == 410 and SUCCESSOR_URL in r.headers["Link"]
        assert a.svc.tree_size() == 3 and json.loads(a.svc._storage.meta(shard.META_CLOSED))["reason"] == "size"
    finally:
        a.stop()
    b = server(tmp_path, "log-b", {}, issuer, shard_close_at="2020-01-01T00:00:00Z")
    try:
        r = post(b, statement(issuer, sub="w/0"))
        assert r.status_code == 410 and "Link" not in r.headers
        assert json.loads(b.svc._storage.meta(shard.META_CLOSED))["reason"] == "date"
    finally:
        b.stop()


def test_shard_statement_refused_from_registrants(tmp_path, issuer):
    """A statement of the log's shard type from a trusted issuer is refused (log-type); in the
    audit, a shard statement anywhere but at index 0 is a policy violation."""
    a = server(tmp_path, "log-a", {}, issuer)
    try:
        r = post(a, statement(issuer, cty=SHARD_CONTENT_TYPE, sub="shards.test.example/log-a/predecessor"))
        assert r.status_code == 400 and b"own types" in r.data
        assert a.svc.tree_size() == 1
        # the log's own shard statement, slipped in behind the policy at index 1
        rec = close_log(server(tmp_path, "log-x", {}, issuer), tmp_path / "x.json")
        data = shard.shard_statement(a.svc.keys, a.svc.issuer, rec)
        assert a.append_behind_policy(data) == 1
        code, o, e = run(["audit", "--log", a.url, "--vkey", a.vkey, "--statements", "--progress", "lines"])
        assert code == 1 and '"policy-violation"' in o and "log-type" in o, o + e
    finally:
        a.stop()


def test_tracker_accepts_the_shard_statement_only_at_index_0(tmp_path, issuer):
    a, b, _ = chain(tmp_path, {}, issuer, n_a=1, n_b=0)
    try:
        keys = log_keys_from(b.svc.keys.public_keys().values())
        st0 = SignedStatement.parse(b.svc.log.entry_data(0))
        t = PolicyTracker(keys, origin=b.svc.origin)
        assert t.observe(0, st0).kind == "shard" and t.shard.origin == a.svc.origin
        t2 = PolicyTracker(keys, origin=b.svc.origin)
        t2.observe(0, SignedStatement.parse(b.svc.log.entry_data(1)))  # the policy first
        with pytest.raises(PolicyViolation) as ei:
            t2.observe(1, st0)
        assert ei.value.reason == "log-type"
    finally:
        b.stop()
        a.stop()


def _forge_successor(tmp_path: Path, issuer, rec: dict, name: str = "log-b") -> LogServer:
    (tmp_path / f"{name}.pred.json").write_text(json.dumps(rec))
    return server(tmp_path, name, {}, issuer, shard_predecessor=str(tmp_path / f"{name}.pred.json"))


def test_successor_naming_another_predecessor_checkpoint_is_detected(tmp_path, issuer):
    """The successor records a checkpoint of the predecessor other than the one the predecessor
    serves (an earlier size: the predecessor grew after it was 'final'; the same size with another
    root: a rewritten predecessor): the monitor, the audit and `shards` alert."""
    a = server(tmp_path, "log-a", {}, issuer)
    try:
        assert post(a, statement(issuer, sub="w/0")).status_code == 201
        early = a.checkpoint()
        assert post(a, statement(issuer, sub="w/1")).status_code == 201
        rec = close_log(a, tmp_path / "a.final.json")
        b = _forge_successor(tmp_path, issuer, dict(rec, checkpoint=early))
        try:
            for argv in (["monitor", "--once", "--shards", "--state", str(tmp_path / "m.json")],
                         ["audit", "--shards", "--progress", "lines"], ["shards"]):
                code, o, e = run([argv[0], "--log", b.url, "--vkey", b.vkey, *argv[1:]])
                assert code == 1 and '"shard-chain"' in o and "beyond its final checkpoint" in o, (argv, o, e)
        finally:
            b.stop()
        # same size, another root: a fork of the predecessor, signed with its own key
        signer = a.svc.keys.note_signer
        cp = open_checkpoint(rec["checkpoint"], signer.verifier()).checkpoint
        from verifier.note import Checkpoint, sign_note

        forged = sign_note(Checkpoint(cp.origin, cp.size, bytes(32)).to_text(), [signer])
        c = _forge_successor(tmp_path, issuer, dict(rec, checkpoint=forged), "log-c")
        try:
            code, o, e = run(["monitor", "--log", c.url, "--vkey", c.vkey, "--once", "--shards",
                              "--state", str(tmp_path / "mc.json")])
            assert code == 1 and '"shard-chain"' in o and "another root" in o, o + e
        finally:
            c.stop()
    finally:
        a.stop()


def test_forged_predecessor_checkpoint_refused(tmp_path, issuer):
    """A final checkpoint not signed by the predecessor's key: the successor refuses to start
    with it, and a shard statement carrying it does not verify."""
    a = server(tmp_path, "log-a", {}, issuer)
    try:
        rec = close_log(a, tmp_path / "a.final.json")
    finally:
        a.stop()
    other = Signer.generate(rec["origin"])  # the predecessor's name, another key
    cp = open_checkpoint(rec["checkpoint"], a.svc.keys.note_signer.verifier()).checkpoint
    from verifier.note import sign_note

    forged = dict(rec, checkpoint=sign_note(cp.to_text(), [other]))
    with pytest.raises(shard.StartupError, match="does not verify"):
        _forge_successor(tmp_path, issuer, forged)
    b = server(tmp_path, "log-b", {}, issuer)
    try:
        data = shard.shard_statement(b.svc.keys, b.svc.issuer, forged)
        with pytest.raises(VerificationError) as ei:
            open_shard_statement(SignedStatement.parse(data), log_keys_from(b.svc.keys.public_keys().values()))
        assert ei.value.check == "shard.checkpoint"
        # and the closed log's checkpoint is compared with the recorded final one
        link = open_shard_statement(SignedStatement.parse(shard.shard_statement(b.svc.keys, b.svc.issuer, rec)),
                                    log_keys_from(b.svc.keys.public_keys().values()))
        check_closed_log(link, rec["checkpoint"])
        with pytest.raises(VerificationError):
            check_closed_log(link, forged["checkpoint"])
    finally:
        b.stop()


def test_tlog_shard_close_command(tmp_path, issuer):
    from tlog.cli import main as tlog_main

    a = server(tmp_path, "log-a", {}, issuer)
    try:
        assert post(a, statement(issuer, sub="w/0")).status_code == 201
        settings = ["--data-dir", str(tmp_path / "log-a")]
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            assert tlog_main(["shard", "close", *settings]) == 2  # no successor
            assert "needs --successor" in err.getvalue()
            assert tlog_main(["shard", "close", *settings, "--successor", SUCCESSOR_URL, "--quiet", "0.2",
                              "--out", str(tmp_path / "final.json")]) == 0
            assert tlog_main(["shard", "status", *settings]) == 0
        rec = shard.read_predecessor(str(tmp_path / "final.json"))
        assert rec["checkpoint"] == a.checkpoint() and rec["origin"] == a.svc.origin
        assert json.loads(out.getvalue().split("\n", 1)[1])["final"]["checkpoint"] == rec["checkpoint"]
        a.svc.state.refresh()
        assert post(a, statement(issuer, sub="w/1")).status_code == 410
    finally:
        a.stop()


class _Mitm(HttpLog):
    """The successor as seen through a party that substitutes what it serves for some paths."""

    def __init__(self, url: str, swap: dict[str, bytes]) -> None:
        super().__init__(url)
        self.swap = swap

    def get(self, path: str, limit: int = 1 << 20, url: str | None = None) -> bytes:
        if url is None and path in self.swap:
            return self.swap[path]
        return super().get(path, limit, url)


def test_chain_follower_checks_entry_0_is_in_the_tree_and_signed_by_the_log(tmp_path, issuer):
    """follow_chain takes entry 0 only when it is proved in the verified checkpoint, when its
    statement hashes to it, and when the log's key signed it."""
    from verifier.monitor.shards import follow_chain
    from verifier.tiles import encode_entry_bundle

    a, b, _ = chain(tmp_path, {}, issuer, n_a=1, n_b=1)
    try:
        keys = log_keys_from(b.svc.keys.public_keys().values())
        cp = open_checkpoint(b.checkpoint(), b.svc.keys.note_signer.verifier()).checkpoint
        assert len(follow_chain(HttpLog(b.url), cp, keys)) == 1
        real0 = SignedStatement.parse(b.svc.log.entry_data(0))
        rec = json.loads((tmp_path / "a.final.json").read_text())
        # another predecessor record, signed by the log's own key, substituted for entry 0
        other = SignedStatement.parse(shard.shard_statement(b.svc.keys, b.svc.issuer, dict(rec, url="http://x.invalid")))
        w = cp.size
        bundle = encode_entry_bundle([other.leaf_input] + [b.svc.log.leaf_input(i) for i in range(1, w)])
        mitm = _Mitm(b.url, {f"tile/entries/000.p/{w}": bundle,
                             f"entries/{other.leaf_input.hex()}/statement": other.statement_bytes})
        with pytest.raises(MonitorAlert, match="not proved in the checkpoint"):
            follow_chain(mitm, cp, keys)
        # the genuine leaf, another statement behind it
        mitm = _Mitm(b.url, {f"entries/{real0.leaf_input.hex()}/statement": other.statement_bytes})
        with pytest.raises(MonitorAlert, match="does not hash to its leaf"):
            follow_chain(mitm, cp, keys)
        # the genuine entry 0, checked with keys that are not the log's
        wrong = log_keys_from([ec.generate_private_key(ec.SECP256R1()).public_key()])
        with pytest.raises(MonitorAlert, match="not one of the log's"):
            follow_chain(HttpLog(b.url), cp, wrong)
        # a tampered signature under the log's kid
        bad = SignedStatement.parse(real0.statement_bytes[:-1] + bytes([real0.statement_bytes[-1] ^ 1]))
        with pytest.raises(VerificationError) as ei:
            open_shard_statement(bad, keys)
        assert ei.value.check == "shard.signature"
        # a shard statement of another log (its sub names another successor)
        with pytest.raises(VerificationError, match="want"):
            open_shard_statement(real0, keys, origin="shards.test.example/elsewhere")
    finally:
        b.stop()
        a.stop()


def test_issuer_client_follows_a_closed_log_to_its_successor(tmp_path, issuer):
    """The issuer's SCRAPI client (tlog register, twi-issuer) re-registers at the successor a
    closed log names (410 + Link rel=successor-version) and verifies that log's receipt."""
    from issuer.client import ScrapiClient

    a = server(tmp_path, "log-a", {}, issuer)
    try:
        assert post(a, statement(issuer, sub="w/0")).status_code == 201
        close_log(a, tmp_path / "a.final.json", successor=None)  # closed before the successor runs
        b = server(tmp_path, "log-b", {}, issuer, shard_predecessor=str(tmp_path / "a.final.json"))
        try:
            shard.close(a.svc._storage, successor=b.url, reason="command")  # its URL, once known
            a.svc.state.refresh()
            reg = ScrapiClient(a.url, deadline=20).register(statement(issuer, sub="w/1"))
            assert reg.entry_url.startswith(b.url + "/entries/") and reg.index == 2  # shard, policy, it
        finally:
            b.stop()
    finally:
        a.stop()


def test_successor_link_must_be_an_http_url():
    """Only an http(s) URL in a 410's Link rel=successor-version is followed."""
    import requests

    from issuer.client import successor_of

    def resp(link: str) -> requests.Response:
        r = requests.Response()
        r.status_code = 410
        r.headers["Link"] = link
        return r

    assert successor_of(resp('<https://log-2.example/>; rel="successor-version"')) == "https://log-2.example"
    for bad in ('<file:///etc/passwd>; rel="successor-version"', '<https://x.example/?a=1>; rel="successor-version"',
                '<https://x.example>; rel="next"', "", "<http://>; rel=successor-version"):
        assert successor_of(resp(bad)) is None, bad


def test_transparency_configuration_names_successor_and_predecessor(tmp_path, issuer):
    a, b, _ = chain(tmp_path, {}, issuer, n_a=1, n_b=0)
    try:
        ca = vcbor.loads(a.client.get("/.well-known/transparency-configuration").data)
        assert ca["registration_closed"] is True and ca["successor"] == SUCCESSOR_URL and "predecessor" not in ca
        cb = vcbor.loads(b.client.get("/.well-known/transparency-configuration").data)
        assert cb["predecessor"] == {"origin": a.svc.origin, "url": a.url} and "registration_closed" not in cb
    finally:
        b.stop()
        a.stop()


def test_shard_statement_only_at_index_0_of_the_log(tmp_path, issuer):
    """The log registers its shard statement only as its entry 0: on a log that already has
    entries it refuses (a start racing another writer would otherwise record it elsewhere)."""
    a = server(tmp_path, "log-a", {}, issuer)
    try:
        close_log(a, tmp_path / "a.final.json")
    finally:
        a.stop()
    b = server(tmp_path, "log-b", {}, issuer)
    try:
        b.svc.config.shard_predecessor = str(tmp_path / "a.final.json")
        with pytest.raises(shard.StartupError, match="not 0"):
            b.svc._register_shard_statement()
    finally:
        b.stop()


def test_monitor_reports_an_unreachable_predecessor_and_a_loop(tmp_path, issuer, monkeypatch):
    from verifier.monitor import shards as mshards

    a, b, _ = chain(tmp_path, {}, issuer, n_a=1, n_b=1)
    try:
        a.stop()  # the closed log is down: reported, no alert; the poll still verifies b
        out = io.StringIO()
        mon = Monitor(HttpLog(b.url, timeout=2), b.svc.keys.note_signer.verifier(), tmp_path / "m.json",
                      reporter=Reporter(out, io.StringIO()), shards=True)
        assert mon.poll() is True and mon.chain == []
        assert '"unreachable"' in out.getvalue() and "shards:" in out.getvalue()
        # a chain that comes back to a shard already seen
        cp = open_checkpoint(b.checkpoint(), b.svc.keys.note_signer.verifier()).checkpoint
        real = mshards.link_of(HttpLog(b.url), cp, log_keys_from(b.svc.keys.public_keys().values()))
        real.origin = b.svc.origin
        monkeypatch.setattr(mshards, "link_of", lambda *a, **k: real)
        with pytest.raises(MonitorAlert, match="loops back"):
            mshards.follow_chain(HttpLog(b.url), cp, {})
    finally:
        b.stop()
        a.stop()
