"""Full audit with the registration policy (verifier/policy.py, StatementChecker): the audit walks
the entries in order, verifies the log's policy statements with the log's keys and judges every
entry by the policy in force when it was registered. Against the real log (tlog.server on SQLite,
served on loopback by tests/real_log_fixture.py)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.cli import main as tlog_main
from tlog.keys import TrustStore
from tlog.logstate import StartupError
from tlog.policy import Policy, Rejection
from verifier import VerificationError
from verifier import cbor as vcbor
from verifier import keys as vkeys
from verifier.monitor import Auditor, HttpLog, MonitorAlert, StatementChecker, main
from verifier.note import Checkpoint
from verifier.policy import (
    POLICY_CONTENT_TYPE,
    PolicyTracker,
    PolicyViolation,
    RegistrationPolicy,
    log_keys_from,
    open_policy_statement,
)
from verifier.statement import SignedStatement

from .real_log_fixture import LogServer, copy_log, issuer_key_file, rewrite_history
from .test_server_support import der, ed25519_key, make_ca, make_leaf, pem, statement, write_public


@pytest.fixture(scope="module")
def keys():
    return {n: ec.generate_private_key(ec.SECP256R1()) for n in ("a", "b", "c")}


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = make_ca()
    leaf_key, leaf = make_leaf(ca_key, ca)
    other_key, other = make_ca("Other Root")
    bad_leaf_key, bad_leaf = make_leaf(other_key, other)
    return ca, leaf_key, leaf, bad_leaf_key, bad_leaf


def tampered(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])  # the last byte is the signature's


# ----------------------------------------------------------------------------- evaluation


def test_verifier_policy_agrees_with_the_log(keys, pki):
    """The verifier's evaluation of a policy document refuses exactly what the log's Policy.check
    refuses (and for the same reason), over statements of every kind the policy looks at."""
    ca, leaf_key, leaf, bad_leaf_key, bad_leaf = pki
    ed = ed25519_key()
    trust = TrustStore(issuer_keys={vkeys.thumbprint(k.public_key()): k.public_key() for k in (keys["a"], ed)},
                       anchors=[ca],
                       key_identities={vkeys.thumbprint(keys["a"].public_key()): ["https://issuer.example"]})
    log_kid = vkeys.thumbprint(keys["c"].public_key())
    seen = set()
    for algs, ctys in [([-7, -8], ["application/json"]), ([-7], []), ([-7, -8, -35], ["text/plain"]),
                       ([-7], [POLICY_CONTENT_TYPE, "application/json"])]:
        log_policy = Policy(trust=trust, allowed_algs=algs, allowed_content_types=ctys, max_statement_size=2048)
        doc = vcbor.loads(vcbor.dumps(log_policy.document(None)))
        mine = RegistrationPolicy.from_document(doc)
        cases = {
            "trusted kid": statement(keys["a"]),
            "trusted kid, bad signature": tampered(statement(keys["a"])),
            "untrusted kid": statement(keys["b"]),
            "ed25519": statement(ed),
            "text/plain": statement(keys["a"], cty="text/plain"),
            "too large": statement(keys["a"], payload=b"x" * 3000),
            "x5chain": statement(leaf_key, kid=False, extra={33: [der(leaf)]}),
            "x5chain, other root": statement(bad_leaf_key, kid=False, extra={33: [der(bad_leaf)]}),
            "x5chain signer naming a trusted kid": statement(leaf_key, kid=vkeys.thumbprint(keys["a"].public_key()),
                                                             extra={33: [der(leaf)]}),
            "hash envelope": statement(keys["a"], cty=None, extra={258: -16, 259: "application/json"}),
            "x5chain and untrusted kid": statement(leaf_key, kid=b"someone", extra={33: [der(leaf)]}),
            "trusted kid claiming another iss": statement(keys["a"], iss="https://other.example"),
            "unbound key, any iss": statement(ed, iss="https://any.example"),
            "x5chain claiming another iss": statement(leaf_key, iss="https://other.example", kid=False,
                                                      extra={33: [der(leaf)]}),
            "policy content type": statement(keys["a"], cty=POLICY_CONTENT_TYPE),
            "policy type in a hash envelope": statement(keys["a"], cty=None, extra={258: -16, 259: POLICY_CONTENT_TYPE}),
            "under a log kid": statement(keys["c"], kid=log_kid),
        }
        for name, data in cases.items():
            st = SignedStatement.parse(data)
            try:
                log_policy.check(st, log_kids={log_kid})
                theirs = None
            except Rejection as r:
                theirs = r.reason
            try:
                mine.evaluate(st, log_kids={log_kid})
                ours = None
            except PolicyViolation as v:
                ours = v.reason
            assert ours == theirs, (algs, ctys, name, ours, theirs)
            seen.add(ours)
    # the table exercises every outcome
    assert seen == {None, "untrusted-issuer", "signature", "x509", "too-large", "alg", "content-type", "identity",
                    "log-type"}


def test_policy_document_validation():
    good = {"version": 1, "previous": None, "issuer-keys": [], "trust-anchors": [], "allowed-algs": [-7],
            "allowed-content-types": [], "max-statement-size": 10}
    RegistrationPolicy.from_document(good)
    v2 = good | {"version": 2, "issuer-identities": {b"k": ["https://i.example"]}, "anchor-identities": {}}
    assert RegistrationPolicy.from_document(v2).key_identities == {b"k": ["https://i.example"]}
    for k, v in [("issuer-identities", None), ("issuer-identities", {b"k": []}), ("anchor-identities", {"k": ["x"]}),
                 ("anchor-identities", {b"k": [1]})]:
        with pytest.raises(VerificationError) as e:
            RegistrationPolicy.from_document(v2 | {k: v})
        assert e.value.check == "policy.document", k
    for k, v in [("version", 3), ("version", True), ("previous", "zz"), ("issuer-keys", [{1: 99}]), ("trust-anchors", [b"junk"]),
                 ("allowed-algs", ["-7"]), ("allowed-content-types", [1]), ("max-statement-size", 0)]:
        with pytest.raises(Exception) as e:
            RegistrationPolicy.from_document(good | {k: v})
        assert getattr(e.value, "check", "") == "policy.document", k


# ----------------------------------------------------------------------------- audits of the real log


def _audit(srv: LogServer, *, grace: float = 60.0, state=None, stop_after_tiles=None):
    h = HttpLog(srv.url)
    note = srv.checkpoint()
    cp = Checkpoint.parse(note.split("\n\n")[0] + "\n")
    tracker = PolicyTracker(log_keys_from(srv.svc.keys.public_keys().values()), origin=cp.origin, grace=grace)
    a = Auditor(h.fetch, state, workers=4)
    a.stop_after_tiles = stop_after_tiles
    a.check_entries = chk = StatementChecker(h, policy=tracker)
    a.audit(cp, note)
    return chk


def _cli_audit(srv: LogServer, *extra: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["audit", "--log", srv.url, "--vkey", srv.vkey, "--statements", "--progress", "lines", *extra])
    return rc, [json.loads(ln) for ln in out.getvalue().splitlines()], err.getvalue()


def test_log_whose_entries_satisfy_their_policy_audits_clean(tmp_path, keys, pki):
    ca, leaf_key, leaf, _, _ = pki
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    settings = dict(issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")], trust_anchors=[str(tmp_path / "ca.pem")],
                    allowed_content_types=["application/json"], origin="test.example/clean")
    with LogServer(tmp_path / "log", **settings) as srv:
        for i in range(6):
            srv.register(keys["a"], sub=f"w/{i}", payload=b'{"n": %d}' % i)
        srv.register(leaf_key, iss="https://issuer.example", kid=False, extra={33: [der(leaf), der(ca)]})
        rc, events, err = _cli_audit(srv)
        assert rc == 0, err
        pol = [e for e in events if e["event"] == "policy"]
        assert len(pol) == 1 and pol[0]["index"] == 0 and pol[0]["previous"] is None
        assert pol[0]["issuer_keys"] == [vkeys.thumbprint(keys["a"].public_key()).hex()]
        assert pol[0]["trust_anchors"] == 1 and pol[0]["allowed_content_types"] == ["application/json"]
        assert events[-1]["statements"] == {"checked": 8, "signature_verified": 8, "unverified": 0,
                                            "policies": 1, "races": 0}
        # the log's key given on the command line instead of /.well-known/scitt-keys
        (tmp_path / "logkeys.cbor").write_bytes(srv.svc.keys.keyset_bytes())
        assert _cli_audit(srv, "--log-key", str(tmp_path / "logkeys.cbor"))[0] == 0
        # a wrong log key: the policy statement is then an ordinary statement no policy admits
        rc, events, _ = _cli_audit(srv, "--log-key", str(write_public(tmp_path / "c.pem", keys["c"])))
        assert rc == 1 and events[-1]["kind"] == "policy-violation" and events[-1]["evidence"]["index"] == 0
        assert events[-1]["evidence"]["reason"] == "no-policy"


@pytest.mark.parametrize("what", ["untrusted-issuer", "signature", "content-type", "too-large", "x509", "alg"])
def test_entry_behind_the_policys_back_alerts(tmp_path, keys, pki, what):
    ca, leaf_key, leaf, bad_leaf_key, bad_leaf = pki
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    settings = dict(issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")], trust_anchors=[str(tmp_path / "ca.pem")],
                    allowed_content_types=["application/json"], allowed_algs=[-7], max_statement_size=4096,
                    origin="test.example/back")
    bad = {
        "untrusted-issuer": lambda: statement(keys["b"], sub="evil"),
        "signature": lambda: tampered(statement(keys["a"], sub="evil")),
        "content-type": lambda: statement(keys["a"], cty="text/plain"),
        "too-large": lambda: statement(keys["a"], payload=b"x" * 5000),
        "x509": lambda: statement(bad_leaf_key, kid=False, extra={33: [der(bad_leaf)]}),
        "alg": lambda: statement(ed25519_key()),
    }[what]()
    with LogServer(tmp_path / "log", **settings) as srv:
        for i in range(3):
            srv.register(keys["a"], sub=f"w/{i}")
        assert srv.client.post("/entries", data=bad, content_type="application/cose").status_code in (400, 413)
        idx = srv.append_behind_policy(bad)  # the core takes it: the HTTP front's policy is bypassed
        srv.register(keys["a"], sub="after")
        with pytest.raises(MonitorAlert) as e:
            _audit(srv)
        assert e.value.kind == "policy-violation"
        assert e.value.evidence["index"] == idx == 4 and e.value.evidence["reason"] == what
        assert e.value.evidence["entry_id"] == SignedStatement.parse(bad).leaf_input.hex()
        assert f"entry {idx}:" in e.value.detail
        rc, events, err = _cli_audit(srv)
        assert rc == 1 and events[-1]["kind"] == "policy-violation" and "ALERT" in err
        # the tree itself is fine: the audit without statements passes
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(io.StringIO()):
            assert main(["audit", "--log", srv.url, "--vkey", srv.vkey, "--progress", "lines"]) == 0


def test_policy_change_honoured_from_its_index(tmp_path, keys):
    """P1 trusts A; the log restarts with P2 trusting B only. A's entries before P2 and B's after it
    audit clean; B before P2 or A after P2 (outside the race window) is a violation."""
    d = tmp_path / "log"
    ka, kb = issuer_key_file(tmp_path, keys["a"], "a"), issuer_key_file(tmp_path, keys["b"], "b")
    with LogServer(d, issuer_keys=[ka], origin="test.example/change") as s1:
        for i in range(3):
            s1.register(keys["a"], sub=f"a/{i}")
        p1 = s1.svc.policy_id
    # the policy is log-wide state: changed by the explicit command, not by a restart's options
    with pytest.raises(StartupError, match="issuer-keys"):
        LogServer(d, issuer_keys=[kb], origin="test.example/change")
    assert tlog_main(["policy", "set", "--data-dir", str(d), "--issuer-key", kb]) == 0
    with LogServer(d, issuer_keys=[kb], origin="test.example/change") as s2:
        assert s2.svc.policy_id != p1
        p2_index = s2.svc.log.find(bytes.fromhex(s2.svc.policy_id))
        assert p2_index == 4
        with pytest.raises(AssertionError):
            s2.register(keys["a"], sub="refused")  # the log refuses A now
        for i in range(3):
            s2.register(keys["b"], sub=f"b/{i}")
        chk = _audit(s2, grace=0)
        assert (chk.policies, chk.checked, chk.signature_verified, chk.races) == (2, 8, 8, 0)
        pol = [e for e in chk.events if e["event"] == "policy"]
        assert [e["index"] for e in pol] == [0, 4] and pol[1]["previous"] == p1 and not pol[1]["fork"]
        assert pol[1]["issuer_keys"] == [vkeys.thumbprint(keys["b"].public_key()).hex()]

        # copy 1: A's statement appended after P2 (an old worker still admitting under P1)
        copy_log(d, tmp_path / "late")
    with LogServer(tmp_path / "late", issuer_keys=[kb]) as late:
        idx = late.append_behind_policy(statement(keys["a"], sub="late"))
        with pytest.raises(MonitorAlert) as e:
            _audit(late, grace=0)
        assert e.value.kind == "policy-violation" and e.value.evidence["index"] == idx == 8
        assert e.value.evidence["reason"] == "untrusted-issuer"
        # within the race window it is admitted by the superseded policy, and reported
        chk = _audit(late, grace=3600)
        assert chk.races == 1
        [race] = [ev for ev in chk.events if ev["event"] == "policy-race"]
        assert race["index"] == 8 and race["policy_index"] == 0
        rc, events, err = _cli_audit(late)
        assert rc == 0 and events[-1]["statements"]["races"] == 1 and "warning: entry 8" in err
        # B's statement after P2 is not a race: it is plainly admitted
        assert all(ev["index"] != 5 for ev in chk.events if ev["event"] == "policy-race")

    # copy 2: history rewritten so that entry 2 (before P2) is signed by B, whom only P2 trusts
    copy_log(d, tmp_path / "early")
    with rewrite_history(tmp_path / "early", {2: statement(keys["b"], sub="early")}, issuer_keys=[kb]) as early:
        with pytest.raises(MonitorAlert) as e:
            _audit(early, grace=3600)
        assert e.value.kind == "policy-violation" and e.value.evidence["index"] == 2
        assert e.value.evidence["reason"] == "untrusted-issuer"


def test_policy_chain_and_forged_policies(tmp_path, keys):
    from tlog.keys import load_or_create

    with LogServer(tmp_path / "log", issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")],
                   origin="test.example/chain") as srv:
        srv.register(keys["a"])
        copy_log(tmp_path / "log", tmp_path / "c1")
        copy_log(tmp_path / "log", tmp_path / "c2")
        lk = load_or_create(tmp_path / "log", None)
        trust_b = TrustStore(issuer_keys={vkeys.thumbprint(keys["b"].public_key()): keys["b"].public_key()})
        # a policy statement signed by the log whose previous is not a policy of this log
        forged = Policy(trust=trust_b, allowed_algs=[-7]).statement(lk, srv.svc.issuer, "ab" * 32)
        idx = srv.append_behind_policy(forged)
        with pytest.raises(MonitorAlert) as e:
            _audit(srv)
        assert e.value.kind == "bad-policy" and e.value.evidence["index"] == idx
        assert e.value.evidence["check"] == "policy.chain"
    # a policy-typed statement signed by someone else is an ordinary (refused) statement
    with LogServer(tmp_path / "c1", issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")]) as c1:
        from tlog.keys import LogKeys, ReceiptKey

        impostor = LogKeys(ReceiptKey(keys["c"], vkeys.thumbprint(keys["c"].public_key())), {}, lk.note_signer,
                           lk.origin)
        idx = c1.append_behind_policy(Policy(trust=trust_b, allowed_algs=[-7]).statement(
            impostor, c1.svc.issuer, c1.svc.policy_id))
        with pytest.raises(MonitorAlert) as e:
            _audit(c1)
        assert e.value.kind == "policy-violation" and e.value.evidence["index"] == idx
    # a well-chained policy change made behind the service's back (the log's key, previous =
    # the latest policy) is honoured: B's statement after it is admitted
    with LogServer(tmp_path / "c2", issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")]) as c2:
        pol = Policy(trust=trust_b, allowed_algs=[-7]).statement(lk, c2.svc.issuer, c2.svc.policy_id)
        c2.append_behind_policy(pol)
        c2.append_behind_policy(statement(keys["b"]))
        chk = _audit(c2, grace=0)
        assert chk.policies == 2 and chk.checked == 4
        doc = open_policy_statement(SignedStatement.parse(pol), log_keys_from([lk.receipt.private.public_key()]))
        assert set(doc.issuer_keys) == {vkeys.thumbprint(keys["b"].public_key())}


def test_policy_audit_resumes_across_a_policy_change(tmp_path, keys):
    d = tmp_path / "log"
    with LogServer(d, issuer_keys=[issuer_key_file(tmp_path, keys["a"], "a")], origin="test.example/resume") as s1:
        # 299 admissible statements, appended in one batch through the core
        s1.svc.log.append([
            (st.leaf_input, st.statement_bytes, [("kind", "statement"), ("policy", s1.svc.policy_id)])
            for st in (SignedStatement.parse(statement(keys["a"], sub=f"a/{i}")) for i in range(299))])
    assert tlog_main(["policy", "set", "--data-dir", str(d), "--issuer-key",
                      issuer_key_file(tmp_path, keys["b"], "b")]) == 0
    with LogServer(d) as s2:
        assert s2.svc.log.find(bytes.fromhex(s2.svc.policy_id)) == 300
        for i in range(3):
            s2.register(keys["b"], sub=f"b/{i}")
        state = tmp_path / "audit.json"
        with pytest.raises(KeyboardInterrupt):
            _audit(s2, state=state, stop_after_tiles=1)
        saved = json.loads(state.read_text())
        assert saved["done"] == 256 and saved["statements"]["next_index"] == 256
        assert [p["index"] for p in saved["statements"]["policy"]["policies"]] == [0]
        chk = _audit(s2, state=state, grace=0)
        assert (chk.checked, chk.policies, chk.races) == (304, 2, 0)
        # the log grows; the next audit goes on from the audited prefix with both policies
        s2.register(keys["b"], sub="b/more")
        assert _audit(s2, state=state, grace=0).checked == 305
        # a B statement slipped in under P1 is caught even when the audit resumes after it
        copy_log(d, tmp_path / "bad")
    with rewrite_history(tmp_path / "bad", {299: statement(keys["b"], sub="slipped")},
                         issuer_keys=[issuer_key_file(tmp_path, keys["b"], "b")]) as bad:
        with pytest.raises(MonitorAlert) as e:
            _audit(bad, grace=0)
        assert e.value.evidence["index"] == 299
        # a state written without statement checks cannot be resumed with them
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(io.StringIO()):
            assert main(["audit", "--log", bad.url, "--vkey", bad.vkey, "--state", str(tmp_path / "plain.json"),
                         "--progress", "lines"]) == 0
        rc, events, _ = _cli_audit(bad, "--state", str(tmp_path / "plain.json"))
        assert rc == 1 and events[-1]["kind"] == "bad-state"


# ----------------------------------------------------------------------------- the tracker alone


def _log_keys_and_policies(keys):
    from tlog.keys import LogKeys, ReceiptKey
    from verifier.note import Signer

    lkey = ec.generate_private_key(ec.SECP256R1())
    lk = LogKeys(ReceiptKey(lkey, vkeys.thumbprint(lkey.public_key())), {}, Signer.generate("t.example/log"),
                 "t.example/log")

    def policy(*names, previous=None):
        trust = TrustStore(issuer_keys={vkeys.thumbprint(keys[n].public_key()): keys[n].public_key() for n in names})
        return Policy(trust=trust, allowed_algs=[-7]).statement(lk, "https://t.example", previous)

    return log_keys_from([lkey.public_key()]), policy


def test_tracker_fork_race_window_and_detached(keys):
    log_keys, policy = _log_keys_and_policies(keys)
    p1 = policy("a")
    id1 = SignedStatement.parse(p1).leaf_input.hex()
    p2a, p2b = policy("b", previous=id1), policy("c", previous=id1)
    tr = PolicyTracker(log_keys, origin="t.example/log", grace=10)
    S = SignedStatement.parse
    assert tr.observe(0, S(p1), time=100).kind == "policy"
    assert tr.observe(1, S(statement(keys["a"])), time=100).kind == "admitted"
    v = tr.observe(2, S(p2a), time=200)
    assert v.kind == "policy" and not v.fork
    v = tr.observe(3, S(p2b), time=205)  # names P1 too: a fork of the chain, reported
    assert v.kind == "policy" and v.fork
    assert tr.observe(4, S(statement(keys["c"])), time=206).kind == "admitted"
    # B (P2a, superseded at 205) inside the window: a race; A (P1, superseded at 200) too
    assert tr.observe(5, S(statement(keys["b"])), time=214).kind == "race"
    v = tr.observe(6, S(statement(keys["a"])), time=209)
    assert v.kind == "race" and v.policy_index == 0
    with pytest.raises(PolicyViolation) as e:
        tr.observe(7, S(statement(keys["b"])), time=216)  # 11 s after P2a was superseded
    assert e.value.reason == "untrusted-issuer" and "index 3" in e.value.detail
    tr.next_index = 8
    with pytest.raises(PolicyViolation):
        tr.observe(8, S(statement(keys["b"])), time=None)  # no time: no window
    tr.next_index = 9
    # a detached payload: identity judged, signature not checkable
    v = tr.observe(9, S(statement(keys["c"], detached=True)), time=300)
    assert v.kind == "admitted" and v.signature_verified is False
    with pytest.raises(PolicyViolation):
        tr.observe(10, S(statement(keys["a"], detached=True)), time=300)
    tr.next_index = 11
    # out of order is a programming error, not a verdict
    with pytest.raises(ValueError):
        tr.observe(20, S(statement(keys["c"])))
    # the chain: a policy naming an unknown previous, a first policy naming one
    with pytest.raises(Exception) as e:
        tr.observe(11, S(policy("a", previous="cd" * 32)))
    assert e.value.check == "policy.chain"
    fresh = PolicyTracker(log_keys)
    with pytest.raises(Exception) as e:
        fresh.observe(0, S(p2a))
    assert e.value.check == "policy.chain"
    # a policy statement with a broken signature under the log's kid
    with pytest.raises(Exception) as e:
        PolicyTracker(log_keys).observe(0, S(tampered(p1)))
    assert e.value.check == "policy.signature"
    # state round trip: the policies come back verified, the window with them
    tr2 = PolicyTracker(log_keys, origin="t.example/log", grace=10)
    tr2.restore(json.loads(json.dumps(tr.state())))
    assert [r.index for r in tr2.policies] == [0, 2, 3] and tr2.next_index == 11
    assert tr2.observe(11, S(statement(keys["c"])), time=400).kind == "admitted"
    with pytest.raises(Exception):
        PolicyTracker(log_keys_from([keys["a"].public_key()])).restore(tr.state())  # other log key
