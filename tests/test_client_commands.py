"""Client commands: ``tlog register``, ``tlog info``, the ready line, ``twi-issuer sign`` and
``twi-issuer dev-verifier``, against the real log served on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server

from issuer import cli as icli
from tlog import cli as tcli
from tlog import ready as tready
from verifier import keys as vkeys
from verifier import receipt as vreceipt
from verifier import transparent as vtransparent
from verifier.statement import SignedStatement

from .real_log_fixture import LogServer, _Quiet
from .test_server_support import statement


def run(main, capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def issuer_dir(tmp_path, capsys):
    d = tmp_path / "iss"
    code, out, _ = run(icli.main, capsys, "keys", "--dir", d, "--issuer-id", "https://issuer.test")
    assert code == 0
    return d


@pytest.fixture
def log(tmp_path, issuer_dir):
    with LogServer(tmp_path / "log", issuer_keys=[{"path": str(issuer_dir / "issuer.pub.pem"), "iss": ["https://issuer.test"]}]) as srv:
        yield srv


def _sign(capsys, issuer_dir, tmp_path, text=b"hello\n", name="a") -> Path:
    (tmp_path / f"{name}.txt").write_bytes(text)
    out = tmp_path / f"{name}.cose"
    code, _, err = run(icli.main, capsys, "sign", tmp_path / f"{name}.txt", "--config", issuer_dir / "issuer.json",
                       "--content-type", "text/plain", "--subject", "doc/1", "--out", out)
    assert code == 0, err
    return out


def test_info_prints_origin_vkey_receipt_kids_and_saves_keys(log, tmp_path, capsys):
    code, out, _ = run(tcli.main, capsys, "info", "--log", log.url, "--json", "--save-keys", tmp_path / "k.cbor")
    assert code == 0
    info = json.loads(out)
    assert info["origin"] == log.svc.origin and info["checkpoint_vkey"] == log.svc.keys.vkey
    assert info["receipt_kids"] == [log.svc.keys.receipt.kid.hex()]
    assert set(vkeys.load_public_keys(tmp_path / "k.cbor")) == {log.svc.keys.receipt.kid}
    code, out, _ = run(tcli.main, capsys, "info", "--log", log.url)
    assert code == 0 and log.svc.keys.vkey in out and log.svc.keys.receipt.kid.hex() in out


def test_sign_then_register_writes_a_verified_transparent_statement(log, issuer_dir, tmp_path, capsys):
    st = _sign(capsys, issuer_dir, tmp_path)
    parsed = SignedStatement.parse(st.read_bytes())
    assert parsed.iss == "https://issuer.test" and parsed.sub == "doc/1"
    code, out, err = run(tcli.main, capsys, "register", st, "--log", log.url, "--receipt", tmp_path / "r.cose")
    assert code == 0, err
    res = json.loads(out)
    ts = Path(res["transparent_statement"])
    assert ts == tmp_path / "a.cose.ts.cose"
    keys = {log.svc.keys.receipt.kid: log.svc.keys.receipt.private.public_key()}
    [receipt] = vtransparent.extract_receipts(ts.read_bytes())
    assert receipt == (tmp_path / "r.cose").read_bytes()
    info = vreceipt.verify_inclusion_receipt(receipt, parsed.leaf_input, keys)
    assert info.index == res["index"] == log.svc.log.find(parsed.leaf_input)
    assert res["entry_id"] == parsed.leaf_input.hex()


def test_register_refused_is_one_line_and_nothing_is_stored(log, tmp_path, capsys):
    stranger = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "s.cose").write_bytes(statement(stranger))
    size = log.svc.tree_size()
    code, out, err = run(tcli.main, capsys, "register", tmp_path / "s.cose", "--log", log.url)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("tlog register: not registered: HTTP 400") and "Traceback" not in err
    assert log.svc.tree_size() == size and not (tmp_path / "s.cose.ts.cose").exists()
    # not a Signed Statement at all: usage error, nothing sent
    (tmp_path / "junk").write_bytes(b"not cose")
    code, _, err = run(tcli.main, capsys, "register", tmp_path / "junk", "--log", log.url)
    assert code == 2 and err.count("\n") == 1 and "not a COSE_Sign1" in err
    code, _, err = run(tcli.main, capsys, "register", tmp_path / "missing", "--log", log.url)
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err


def test_register_unreachable_log_is_one_line(issuer_dir, tmp_path, capsys):
    st = _sign(capsys, issuer_dir, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    code, _, err = run(tcli.main, capsys, "register", st, "--log", f"http://127.0.0.1:{port}",
                       "--attempts", "2", "--deadline", "5")
    assert code == 1 and err.count("\n") == 1 and "after 2 attempts" in err
    code, _, err = run(tcli.main, capsys, "info", "--log", f"http://127.0.0.1:{port}")
    assert code == 1 and err.count("\n") == 1 and "cannot reach" in err


def test_register_retries_honouring_retry_after(log, issuer_dir, tmp_path, capsys):
    """The first POST gets 503 + Retry-After: 1; the command waits that long, retries, succeeds."""
    seen: list[tuple[float, str]] = []

    def flaky(environ, start_response):
        seen.append((time.monotonic(), environ["REQUEST_METHOD"]))
        if environ["REQUEST_METHOD"] == "POST" and sum(m == "POST" for _, m in seen) == 1:
            start_response("503 Service Unavailable", [("Retry-After", "1"), ("Content-Length", "0")])
            return [b""]
        return log.app(environ, start_response)

    httpd = make_server("127.0.0.1", 0, flaky, threaded=True, request_handler=_Quiet)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        st = _sign(capsys, issuer_dir, tmp_path)
        code, _, err = run(tcli.main, capsys, "register", st, "--log", f"http://127.0.0.1:{httpd.server_port}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert code == 0, err
    posts = [ts for ts, m in seen if m == "POST"]
    assert len(posts) == 2 and posts[1] - posts[0] >= 0.95


def test_ready_line_reports_what_the_running_log_serves(log, issuer_dir, capsys):
    import os

    code = tready.main([log.url, "10", str(os.getppid())])
    out = capsys.readouterr().out
    assert code == 0 and out.count("\n") == 1
    kid = vkeys.thumbprint(vkeys.load_public_keys(issuer_dir / "issuer.pub.pem").popitem()[1]).hex()
    assert out == (f"tlog: ready url={log.url} origin={log.svc.origin} vkey={log.svc.keys.vkey} "
                   f"issuer_kids={kid} receipt_kids={log.svc.keys.receipt.kid.hex()}\n")
    # nothing answers: no ready line
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert tready.wait_ready(f"http://127.0.0.1:{port}", timeout=0.3) is None


def test_local_url():
    assert tready.local_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert tready.local_url("::", 80) == "http://[::1]:80"
    assert tready.local_url("::1", 80) == "http://[::1]:80"
    assert tready.local_url("10.0.0.1", 80) == "http://10.0.0.1:80"


def test_workload_provenance_needs_no_verifier_keys(log, issuer_dir, tmp_path, capsys):
    """``twi-issuer keys`` leaves verifier-keys.json empty: registering provenance still works,
    appraising says what is missing."""
    cfg = json.loads((issuer_dir / "issuer.json").read_text())
    cfg["log_url"] = log.url
    (issuer_dir / "issuer.json").write_text(json.dumps(cfg))
    assert json.loads((issuer_dir / "verifier-keys.json").read_text()) == {"verifiers": []}
    code, out, err = run(icli.main, capsys, "register-workload-provenance", "--config", issuer_dir / "issuer.json",
                         "--workload-id", "spiffe://test/app", "--artifact", "oci:app=sha256:" + "5e" * 32,
                         "--out", tmp_path / "wpr.cose")
    assert code == 0, err
    assert log.svc.log.find(SignedStatement.parse((tmp_path / "wpr.cose").read_bytes()).leaf_input) is not None
    dv = tmp_path / "dv"
    # a Verifier the policy allows (twi-issuer keys' default developer) but whose keys are not configured
    run(icli.main, capsys, "dev-verifier", "init", "--dir", dv, "--developer", "https://veraison-project.org")
    run(icli.main, capsys, "dev-verifier", "ear", "--dir", dv, "--out", tmp_path / "ear.jwt")
    code, out, _ = run(icli.main, capsys, "appraise", "--config", issuer_dir / "issuer.json", "--ear", tmp_path / "ear.jwt")
    assert code == 1 and json.loads(out)["check"] == "appraisal.keys"


def test_dev_verifier_mints_ears_the_issuer_appraises(issuer_dir, tmp_path, capsys):
    dv = tmp_path / "dv"
    code, out, _ = run(icli.main, capsys, "dev-verifier", "init", "--dir", dv, "--trust-in", issuer_dir / "issuer.json")
    assert code == 0 and len(json.loads(out)["changed"]) == 2
    assert (dv / "verifier.pem").stat().st_mode & 0o777 == 0o600
    code, _, err = run(icli.main, capsys, "dev-verifier", "init", "--dir", dv)
    assert code == 2 and "exists" in err  # never overwrites the Verifier's key
    from issuer.devtools import trust_in

    assert trust_in(dv, issuer_dir / "issuer.json") == []  # trusting it twice changes nothing
    code, out, _ = run(icli.main, capsys, "dev-verifier", "init", "--dir", tmp_path / "dv2")
    results = {}
    for status in ("affirming", "warning", "contraindicated"):
        code, _, _ = run(icli.main, capsys, "dev-verifier", "ear", "--dir", dv, "--status", status,
                         "--nonce", "n-1", "--out", tmp_path / f"{status}.jwt")
        assert code == 0
        code, out, _ = run(icli.main, capsys, "appraise", "--config", issuer_dir / "issuer.json",
                           "--ear", tmp_path / f"{status}.jwt", "--nonce", "n-1")
        results[status] = (code, json.loads(out))
    assert results["affirming"][0] == 0 and results["affirming"][1]["status"] == "affirming"
    assert results["warning"][0] == 1 and results["contraindicated"][0] == 1
    # the issuer's challenge is echoed: another challenge is refused
    code, out, _ = run(icli.main, capsys, "appraise", "--config", issuer_dir / "issuer.json",
                       "--ear", tmp_path / "affirming.jwt", "--nonce", "n-2")
    assert code == 1 and json.loads(out)["check"] == "appraisal.nonce"
    # an EAR of a Verifier the issuer was not told to trust is refused
    run(icli.main, capsys, "dev-verifier", "ear", "--dir", tmp_path / "dv2", "--nonce", "n-1",
        "--out", tmp_path / "other.jwt")
    code, out, _ = run(icli.main, capsys, "appraise", "--config", issuer_dir / "issuer.json", "--ear", tmp_path / "other.jwt",
                       "--nonce", "n-1")
    assert code == 1 and json.loads(out)["check"].startswith("appraisal.")
