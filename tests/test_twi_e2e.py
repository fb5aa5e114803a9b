"""End to end on a real log process: twi-issuer CLI (keys, appraise, register, issue, audit),
the HTTP issuing endpoint, and twi-verify credential, with refusals."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import requests

from issuer.cli import main as issuer_main
from verifier.credential import add_parser

from .test_twi_support import VERIFIER_DEV, TestVerifier, spki_der

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from demo import LogServer  # noqa: E402

WID = "spiffe://prod.e2e/payments"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("twi-e2e")
    idir = d / "issuer"
    assert issuer_main(["keys", "--dir", str(idir), "--issuer-id", "https://issuer.e2e",
                        "--verifier-developer", VERIFIER_DEV]) == 0
    server = LogServer(d / "log", idir / "issuer.pub.pem", "https://issuer.e2e")
    try:
        cfg = json.loads((idir / "issuer.json").read_text())
        cfg["log_url"] = server.url
        (idir / "issuer.json").write_text(json.dumps(cfg))
        ver = TestVerifier()
        (idir / "verifier-keys.json").write_text(json.dumps(ver.keys_obj()))
        (d / "log.keys").write_bytes(requests.get(server.url + "/.well-known/scitt-keys", timeout=5).content)
        w = argparse.Namespace(dir=d, idir=idir, server=server, ver=ver, cfg=idir / "issuer.json")
        yield w
    finally:
        server.stop()


def rp(*argv) -> int:
    parser = argparse.ArgumentParser(prog="twi-verify")
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["credential", *map(str, argv)])
    return args.func(args)


def wk_akpub(world) -> bytes:
    """SPKI of the workload key the e2e tests use (the verifier's public JWK doubles as one)."""
    return spki_der(world.ver.key.public_key())


def test_cli_appraise(world, capsys):
    (world.dir / "good.ear").write_text(world.ver.ear(nonce="Y2hhbGxlbmdl"))
    (world.dir / "bad.ear").write_text(world.ver.ear(status="contraindicated"))
    assert issuer_main(["appraise", "--config", str(world.cfg), "--ear", str(world.dir / "good.ear"),
                        "--nonce", "Y2hhbGxlbmdl"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "affirming"
    # `twi-issuer keys` wrote the safe default: an EAR without the challenge is refused
    assert issuer_main(["appraise", "--config", str(world.cfg), "--ear", str(world.dir / "good.ear")]) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "appraisal.nonce"
    assert issuer_main(["appraise", "--config", str(world.cfg), "--ear", str(world.dir / "bad.ear")]) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "appraisal.status"


def test_register_issue_verify_wit_and_svid(world, capsys):
    d = world.dir
    (d / "sbom.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "payments"}))
    assert issuer_main(["register-workload-provenance", "--config", str(world.cfg), "--workload-id", WID,
                        "--artifact", "oci:registry.e2e/payments=sha256:" + "c0" * 32,
                        "--sbom", str(d / "sbom.spdx.json"), "--out", str(d / "wpr.scitt")]) == 0
    capsys.readouterr()
    (d / "wk.jwk").write_text(json.dumps({**world.ver.jwk}))  # any public JWK with alg will do
    (d / "ear").write_text(world.ver.ear(nonce="bm9uY2UtMQ", akpub=wk_akpub(world)))
    for fmt in ("wit", "x509-svid"):
        out = d / fmt
        assert issuer_main(["issue", "--config", str(world.cfg), "--ear", str(d / "ear"), "--workload-id", WID,
                            "--workload-key", str(d / "wk.jwk"), "--format", fmt, "--out", str(out),
                            "--nonce", "bm9uY2UtMQ"]) == 0
        info = json.loads(capsys.readouterr().out)
        cred = Path(info["credential"])
        # the log serves the same transparent statement
        eid = info["entry"].rsplit("/", 1)[1]
        served = requests.get(f"{world.server.url}/entries/{eid}/statement", timeout=5)
        assert served.status_code == 200
        (out / "served.scitt").write_bytes(served.content)
        trust = ["--log-key", d / "log.keys", "--issuer-key", world.idir / "issuer.pub.pem",
                 "--ca", world.idir / "ca.pem", "--verifier-keys", world.idir / "verifier-keys.json"]
        assert rp(cred, "--statement", out / "served.scitt", "--statement", d / "wpr.scitt", *trust,
                  "--require-sbom", "--require-ear", "--max-age", "120") == 0
        # without the workload provenance the SBOM requirement fails
        assert rp(cred, "--statement", out / "cpr.scitt", *trust, "--require-sbom") == 1
        capsys.readouterr()
    # a credential checked against the other credential's record: pointer names a missing record
    assert rp(d / "wit" / "credential.wit", "--statement", d / "x509-svid" / "cpr.scitt", "--log-key", d / "log.keys",
              "--issuer-key", world.idir / "issuer.pub.pem") == 1
    # tampered credential
    tok = (d / "wit" / "credential.wit").read_text()
    (d / "tampered.wit").write_text(tok[:-3] + ("AAA" if not tok.endswith("AAA") else "BBB"))
    assert rp(d / "tampered.wit", "--statement", d / "wit" / "cpr.scitt", "--log-key", d / "log.keys",
              "--issuer-key", world.idir / "issuer.pub.pem") == 1
    capsys.readouterr()


def test_private_records_and_audit(world, capsys):
    d = world.dir
    pol = json.loads((world.idir / "issuance-policy.json").read_text())
    pol["private_records"] = True
    (world.idir / "issuance-policy.json").write_text(json.dumps(pol))
    try:
        (d / "wk2.jwk").write_text(json.dumps(world.ver.jwk))
        (d / "ear2").write_text(world.ver.ear(nonce="bm9uY2UtMg", akpub=wk_akpub(world)))
        assert issuer_main(["issue", "--config", str(world.cfg), "--ear", str(d / "ear2"), "--workload-id", WID,
                            "--workload-key", str(d / "wk2.jwk"), "--out", str(d / "priv"), "--nonce", "bm9uY2UtMg"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["private"] is True
        rid = info["record_id"]
        assert issuer_main(["audit", "--config", str(world.cfg), "--rid", rid, "--print-key"]) == 0
        key = capsys.readouterr().out.strip()
        from issuer.provenance import RecordVault
        blob = RecordVault(world.idir / "vault", bytes.fromhex((world.idir / "vault.key").read_text().strip())).path(rid)
        assert issuer_main(["audit", "--rid", rid, "--record", str(blob), "--key", key]) == 0
        assert json.loads(capsys.readouterr().out)["rid"] == rid
        base = [d / "priv" / "credential.wit", "--statement", d / "priv" / "cpr.scitt", "--log-key", d / "log.keys",
                "--issuer-key", world.idir / "issuer.pub.pem"]
        assert rp(*base) == 1  # hash envelope only: the record is needed
        assert rp(*base, "--record-encrypted", blob, "--record-key", key) == 0
        assert rp(*base, "--record-encrypted", blob, "--record-key", "00" * 32) == 1
    finally:
        pol["private_records"] = False
        (world.idir / "issuance-policy.json").write_text(json.dumps(pol))
        capsys.readouterr()


def test_http_issuing_endpoint(world):
    from issuer.config import build_issuer
    from issuer.http import create_app

    c = create_app(build_issuer(world.cfg)).test_client()
    n = c.get("/challenge").get_json()["nonce"]
    r = c.post("/issue", json={"ear": world.ver.ear(nonce=n, akpub=wk_akpub(world)), "workload_id": WID,
                               "jwk": world.ver.jwk, "nonce": n})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["credential"].startswith("eyJ") and body["record_locator"].endswith(body["record_id"].replace(":", "%3A"))
    r = c.post("/issue", json={"ear": world.ver.ear(nonce=n), "workload_id": WID, "jwk": world.ver.jwk, "nonce": n})
    assert r.status_code == 403 and r.get_json()["error"] == "request.nonce"  # single use
    r = c.post("/issue", json={"ear": world.ver.ear(status="contraindicated"), "workload_id": WID, "jwk": world.ver.jwk})
    assert r.status_code == 403 and r.get_json()["error"] == "appraisal.status"
    r = c.post("/issue", json={"ear": TestVerifier().ear(), "workload_id": WID, "jwk": world.ver.jwk})
    assert r.status_code == 403 and r.get_json()["error"] == "appraisal.signature"


def test_demo_runs_against_the_same_kind_of_log():
    import subprocess
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py")], cwd=str(ROOT), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "five refusals" in r.stdout and "relying party: accepted" in r.stdout
    assert "external binding: accepted" in r.stdout and "revoked: refused" in r.stdout
