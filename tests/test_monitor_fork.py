"""A forked log built from a copy of the real log's database (tests/real_log_fixture.py): the copy's
history is rewritten (one entry replaced, the tree re-integrated by the real core, checkpoints
signed with the genuine log key) and served by the real server on loopback. The monitor, holding
its state from the genuine log, alerts with both signed notes; the witness refuses the fork (409
for the same size with another root, 422 for a larger fork whose proof cannot link the roots)."""

from __future__ import annotations

import base64
import io
import json
import threading
from contextlib import redirect_stderr, redirect_stdout

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server

from witness import Witness, create_app as witness_app
from verifier.monitor import HttpLog, Monitor, MonitorAlert, Reporter, load_state, main
from verifier.note import Checkpoint, CosignatureSigner, NoteVerifier, open_checkpoint
from verifier.statement import SignedStatement
from verifier.tiles import TileHashReader

from .real_log_fixture import LogServer, copy_log, issuer_key_file, read_entries, rewrite_history
from .test_server_support import statement

ORIGIN = "test.example/forked"


def cp_of(note: str) -> Checkpoint:
    return Checkpoint.parse(note.split("\n\n")[0] + "\n")


class WitnessServer:
    def __init__(self, tmp_path, log_verifier: NoteVerifier) -> None:
        self.signer = CosignatureSigner.generate("witness.example")
        self.witness = Witness(tmp_path / "witness.db", {ORIGIN: [log_verifier]}, [self.signer])
        self.srv = make_server("127.0.0.1", 0, witness_app(self.witness), threaded=True)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def add(self, old: int, note: str, proof: list[bytes]) -> requests.Response:
        body = ("old %d\n" % old + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + note)
        return requests.post(f"{self.url}/add-checkpoint", data=body.encode(), timeout=10)

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)


def proof_from(url: str, old: int, new: int) -> list[bytes]:
    return TileHashReader(HttpLog(url).fetch, new).consistency_proof(old) if 0 < old < new else []


@pytest.fixture
def world(tmp_path):
    """The genuine log (300 entries through the core + 20 registered over HTTP), a witness that
    cosigned it, a monitor state from it, and a forked copy with entry 7 replaced."""
    key = ec.generate_private_key(ec.SECP256R1())
    settings = dict(issuer_keys=[issuer_key_file(tmp_path, key, "issuer")], origin=ORIGIN)
    genuine = LogServer(tmp_path / "genuine", **settings)
    servers = [genuine]
    wit = None
    try:
        svc = genuine.svc
        svc.log.append([(st.leaf_input, st.statement_bytes, [("kind", "statement"), ("policy", svc.policy_id)])
                        for st in (SignedStatement.parse(statement(key, sub=f"w/{i}")) for i in range(300))])
        for i in range(20):
            genuine.register(key, sub=f"http/{i}")
        verifier = NoteVerifier.from_vkey(genuine.vkey)
        wit = WitnessServer(tmp_path, verifier)
        note = genuine.checkpoint()
        assert cp_of(note).size == 321
        r = wit.add(0, note, [])
        assert r.status_code == 200, r.text
        mon_state = tmp_path / "monitor.json"
        mon = Monitor(HttpLog(genuine.url), verifier, mon_state, reporter=Reporter(io.StringIO(), io.StringIO()))
        assert mon.poll() is True and mon.state.size == 321
        # the copy of the real database, history rewritten: entry 7 replaced, same size, same key
        copy_log(tmp_path / "genuine", tmp_path / "fork")
        original = read_entries(tmp_path / "fork")[7]
        fork = rewrite_history(tmp_path / "fork", {7: statement(key, sub="w/7", payload=b'{"rewritten": 1}')},
                               **settings)
        servers.append(fork)
        assert read_entries(tmp_path / "fork")[7] != original

        class W:
            pass

        w = W()
        w.__dict__.update(key=key, genuine=genuine, fork=fork, witness=wit, verifier=verifier,
                          note=note, mon_state=mon_state, tmp=tmp_path)
        yield w
    finally:
        for s in servers:
            s.stop()
        if wit is not None:
            wit.stop()


def test_fork_is_a_real_log_signed_with_the_same_key(world):
    g, f = cp_of(world.note), cp_of(world.fork.checkpoint())
    open_checkpoint(world.fork.checkpoint(), world.verifier)  # the genuine key signed it
    assert f.origin == g.origin and f.size == g.size == 321 and f.root != g.root
    # the fork's tiles agree with its own checkpoint, and its prefix before entry 7 with the genuine log
    assert TileHashReader(HttpLog(world.fork.url).fetch, 321).root() == f.root
    g7 = TileHashReader(HttpLog(world.genuine.url).fetch, 321)
    f7 = TileHashReader(HttpLog(world.fork.url).fetch, 321)
    assert g7.inclusion_proof(3) != f7.inclusion_proof(3)  # the subtree holding entry 7 changed


def test_monitor_with_genuine_state_alerts_on_the_fork(world):
    out = io.StringIO()
    mon = Monitor(HttpLog(world.fork.url), world.verifier, world.mon_state, reporter=Reporter(out, io.StringIO()))
    with pytest.raises(MonitorAlert) as e:
        mon.poll()
    fork_note = world.fork.checkpoint()
    assert e.value.kind == "split-view"  # same size, another root
    ev = e.value.evidence
    assert ev["previous"] == world.note and ev["current"] == fork_note
    for n in (ev["previous"], ev["current"]):  # both are validly signed notes: the evidence
        open_checkpoint(n, world.verifier)
    assert load_state(world.mon_state).root == base64.b64encode(cp_of(world.note).root).decode()

    # the fork grows: it is not an extension of what the monitor saw
    world.fork.register(world.key, sub="after-fork")
    args = ["monitor", "--log", world.fork.url, "--vkey", world.genuine.vkey, "--state", str(world.mon_state), "--once"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(args) == 1
    alert = json.loads(out.getvalue().splitlines()[-1])
    assert alert["kind"] == "inconsistent" and alert["origin"] == ORIGIN and "ALERT" in err.getvalue()
    assert alert["evidence"]["previous"] == world.note
    assert cp_of(alert["evidence"]["current"]).size == 322
    # the genuine log, grown, still satisfies the same monitor state
    world.genuine.register(world.key, sub="genuine-more")
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert main(["monitor", "--log", world.genuine.url, "--vkey", world.genuine.vkey,
                     "--state", str(world.mon_state), "--once"]) == 0
    assert load_state(world.mon_state).size == 322


def test_witness_refuses_the_fork(world):
    wit = world.witness
    fork_note = world.fork.checkpoint()
    # same size, another root: 409 with the witness's size
    r = wit.add(321, fork_note, [])
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("text/x.tlog.size") and r.text == "321\n"
    # the fork grows; the proof the fork's own tiles give cannot link the cosigned root: 422
    world.fork.register(world.key, sub="after-fork")
    fork_note = world.fork.checkpoint()
    assert cp_of(fork_note).size == 322
    r = wit.add(321, fork_note, proof_from(world.fork.url, 321, 322))
    assert r.status_code == 422, r.text
    # a stale old size is 409 with the right size
    assert wit.add(300, fork_note, proof_from(world.fork.url, 300, 322)).text == "321\n"
    size, root, _ = wit.witness.latest(ORIGIN)
    assert (size, root) == (321, cp_of(world.note).root)
    # the genuine log's growth is cosigned: the witness refuses the fork, not the log
    world.genuine.register(world.key, sub="genuine-more")
    gnote = world.genuine.checkpoint()
    r = wit.add(321, gnote, proof_from(world.genuine.url, 321, 322))
    assert r.status_code == 200, r.text
    open_checkpoint(gnote + r.text, world.verifier, [wit.signer.verifier()])


def test_split_view_between_the_fork_and_the_witness_carries_both_notes(world):
    """A monitor that only ever saw the fork (trust on first use) compares with the witness, which
    cosigned the genuine log: split view, evidence = both signed notes."""
    world.fork.register(world.key, sub="after-fork")  # 322 on the fork, 321 at the witness
    mon = Monitor(HttpLog(world.fork.url), world.verifier, world.tmp / "fresh.json",
                  witnesses=[world.witness.url], reporter=Reporter(io.StringIO(), io.StringIO()))
    with pytest.raises(MonitorAlert) as e:
        mon.poll()
    assert e.value.kind == "split-view"
    a, b = e.value.evidence["a"], e.value.evidence["b"]
    assert {a["source"], b["source"]} == {"log", world.witness.url}
    by_source = {a["source"]: a["note"], b["source"]: b["note"]}
    assert by_source["log"] == world.fork.checkpoint()
    cosigned = open_checkpoint(by_source[world.witness.url], world.verifier, [world.witness.signer.verifier()])
    assert cosigned.checkpoint.root == cp_of(world.note).root and "witness.example" in cosigned.cosignatures
    open_checkpoint(by_source["log"], world.verifier)
