"""TWI issue 14 end to end on a real log process through the CLIs (twi-issuer, twi-verify
credential): provenance bound to the workload and its attestation, safe defaults, with the
negative cases (another workload's provenance, artefacts the attestation did not measure)."""

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

PAY = "spiffe://prod.life/payments"
OTHER = "spiffe://prod.life/other"
IMG_PAY = {"sha256": "c0" * 32}
IMG_OTHER = {"sha256": "d1" * 32}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("twi-life")
    idir = d / "issuer"
    assert issuer_main(["keys", "--dir", str(idir), "--issuer-id", "https://issuer.life",
                        "--verifier-developer", VERIFIER_DEV]) == 0
    server = LogServer(d / "log", idir / "issuer.pub.pem")
    try:
        cfg = json.loads((idir / "issuer.json").read_text())
        cfg["log_url"] = server.url
        (idir / "issuer.json").write_text(json.dumps(cfg))
        ver = TestVerifier()
        (idir / "verifier-keys.json").write_text(json.dumps(ver.keys_obj()))
        (d / "log.keys").write_bytes(requests.get(server.url + "/.well-known/scitt-keys", timeout=5).content)
        (d / "wk.jwk").write_text(json.dumps(ver.jwk))  # the verifier's public JWK doubles as a workload key
        w = argparse.Namespace(dir=d, idir=idir, server=server, ver=ver, cfg=idir / "issuer.json",
                               akpub=spki_der(ver.key.public_key()), n=0)
        for wid, img, name in ((PAY, IMG_PAY, "pay"), (OTHER, IMG_OTHER, "other")):
            assert issuer_main(["register-workload-provenance", "--config", str(w.cfg), "--workload-id", wid,
                                "--artifact", f"oci:registry.life/{name}=sha256:{img['sha256']}",
                                "--out", str(d / f"wpr-{name}.scitt")]) == 0
        yield w
    finally:
        server.stop()


def rp(*argv) -> int:
    parser = argparse.ArgumentParser(prog="twi-verify")
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["credential", *map(str, argv)])
    return args.func(args)


def trust(w) -> list:
    return ["--log-key", w.dir / "log.keys", "--issuer-key", w.idir / "issuer.pub.pem", "--ca", w.idir / "ca.pem"]


def cli_issue(w, wid: str, out: str, *extra: str, artifacts=None, akpub=None, fmt: str = "wit",
              nonce_given: bool = True) -> int:
    """``twi-issuer issue`` with a fresh challenge echoed by a new EAR."""
    w.n += 1
    nonce = f"bm9uY2U{w.n:04d}"
    ear = w.dir / f"ear-{w.n}"
    ear.write_text(w.ver.ear(nonce=nonce, akpub=w.akpub if akpub is None else akpub, artifacts=artifacts))
    argv = ["issue", "--config", str(w.cfg), "--ear", str(ear), "--workload-id", wid,
            "--workload-key", str(w.dir / "wk.jwk"), "--format", fmt, "--out", str(w.dir / out), *extra]
    if nonce_given:
        argv += ["--nonce", nonce]
    return issuer_main(argv)


def cred_of(w, out: str) -> Path:
    d = w.dir / out
    return d / "credential.wit" if (d / "credential.wit").exists() else d / "credential.pem"


# ---------------------------------------------------------------------------------------
# 1. workload and attestation binding


def test_issuer_refuses_another_workloads_provenance(world, capsys):
    capsys.readouterr()
    assert cli_issue(world, OTHER, "x1", "--workload-provenance", str(world.dir / "wpr-pay.scitt")) == 1
    assert "binding.workload-mismatch" in capsys.readouterr().err
    assert not (world.dir / "x1").exists()
    # its own provenance is fine, given explicitly or found by workload id
    assert cli_issue(world, OTHER, "x2", "--workload-provenance", str(world.dir / "wpr-other.scitt")) == 0
    assert cli_issue(world, OTHER, "x3") == 0


def test_attested_artefacts_must_be_the_workloads(world, capsys):
    capsys.readouterr()
    good = [{"name": "oci:registry.life/pay", "digest": IMG_PAY}]
    assert cli_issue(world, PAY, "a-ok", artifacts=good) == 0
    rec = json.loads(capsys.readouterr().out)
    # the record carries the attested artefacts; the relying party checks them against the WPR and the EAR
    assert rp(cred_of(world, "a-ok"), "--statement", world.dir / "a-ok" / "cpr.scitt", "--statement",
              world.dir / "wpr-pay.scitt", *trust(world), "--verifier-keys", world.idir / "verifier-keys.json",
              "--require-ear", "--json") == 0
    assert json.loads(capsys.readouterr().out)["record"] == rec["record_id"]
    # the EAR measured another image: the issuer refuses
    assert cli_issue(world, PAY, "a-bad", artifacts=[{"digest": IMG_OTHER}]) == 1
    assert "binding.attestation-mismatch" in capsys.readouterr().err
    assert not (world.dir / "a-bad").exists()


def _misbehaving_issue(w, monkeypatch, wid, *, wpr_file, artifacts=None, record_artifacts=None, out="mis"):
    """An issuer that skips its own binding checks (a bug or a compromise): what the relying
    party must catch. Registers for real on the log."""
    import issuer.service as svc
    from issuer.config import build_issuer
    from issuer.provenance import WprRef

    monkeypatch.setattr(svc, "check_wpr_binding", lambda *a, **k: None)
    if record_artifacts is not None:
        real = svc.appraise

        def lying_appraise(*a, **k):
            r = real(*a, **k)
            r.artifacts = record_artifacts
            return r
        monkeypatch.setattr(svc, "appraise", lying_appraise)
    iss = build_issuer(w.cfg)
    wpr = WprRef.from_transparent_statement(wpr_file.read_bytes(), iss.log_url)
    from issuer.appraisal import public_key_from_jwk
    out_ = iss.issue(ear=w.ver.ear(nonce="bWlz", akpub=w.akpub, artifacts=artifacts), workload_id=wid, nonce="bWlz",
                     workload_key=public_key_from_jwk(w.ver.jwk), wpr=wpr)
    d = w.dir / out
    d.mkdir(exist_ok=True)
    (d / "credential.wit").write_bytes(out_.credential.raw)
    (d / "cpr.scitt").write_bytes(out_.registration.transparent_statement)
    monkeypatch.undo()
    return d


def test_relying_party_refuses_another_workloads_provenance(world, monkeypatch, capsys):
    d = _misbehaving_issue(world, monkeypatch, OTHER, wpr_file=world.dir / "wpr-pay.scitt", out="mis-wl")
    capsys.readouterr()
    base = [d / "credential.wit", "--statement", d / "cpr.scitt", *trust(world), "--json"]
    # with the linked provenance the relying party sees it is another workload's (and --require-sbom
    # can no longer pass on another workload's SBOM)
    assert rp(*base, "--statement", world.dir / "wpr-pay.scitt") == 1
    assert json.loads(capsys.readouterr().out)["check"] == "binding.workload-mismatch"
    # without it, the record alone does not reveal the mismatch (the WPR is linked by digest only)
    assert rp(*base) == 0
    capsys.readouterr()


def test_relying_party_refuses_unattested_artefacts(world, monkeypatch, capsys):
    # the EAR measured the other image, the issuer linked payments' provenance anyway
    d = _misbehaving_issue(world, monkeypatch, PAY, wpr_file=world.dir / "wpr-pay.scitt",
                           artifacts=[{"digest": IMG_OTHER}], out="mis-art")
    capsys.readouterr()
    assert rp(d / "credential.wit", "--statement", d / "cpr.scitt", "--statement", world.dir / "wpr-pay.scitt",
              *trust(world), "--json") == 1
    assert json.loads(capsys.readouterr().out)["check"] == "binding.attestation-mismatch"
    # the record omits what the EAR attests: caught when the embedded EAR is verified
    d = _misbehaving_issue(world, monkeypatch, PAY, wpr_file=world.dir / "wpr-pay.scitt",
                           artifacts=[{"digest": IMG_OTHER}], record_artifacts=[], out="mis-art2")
    capsys.readouterr()
    base = [d / "credential.wit", "--statement", d / "cpr.scitt", "--statement", world.dir / "wpr-pay.scitt",
            *trust(world), "--json"]
    assert rp(*base) == 0  # without the Verifier's key the EAR cannot be read as evidence
    capsys.readouterr()
    assert rp(*base, "--verifier-keys", world.idir / "verifier-keys.json") == 1
    assert json.loads(capsys.readouterr().out)["check"] == "binding.attestation-mismatch"


# ---------------------------------------------------------------------------------------
# 5. safe defaults


def test_safe_defaults_written_by_keys(world, capsys):
    pol = json.loads((world.idir / "appraisal-policy.json").read_text())
    ipol = json.loads((world.idir / "issuance-policy.json").read_text())
    assert pol["require_nonce"] is True and "replay" in pol["description"]
    assert ipol["bind_attested_key"] is True and "another key" in ipol["description"]
    capsys.readouterr()
    assert cli_issue(world, PAY, "sd1", nonce_given=False) == 1           # no challenge
    assert "appraisal.nonce" in capsys.readouterr().err
    other_key = spki_der(TestVerifier().key.public_key())
    assert cli_issue(world, PAY, "sd2", akpub=other_key) == 1               # EAR attests another key
    assert "issuance.key-binding" in capsys.readouterr().err


def _wpt(key, wit: bytes, *, typ="wpt+jwt", aud="https://rp.life", exp_in=60, wth=None, alg="ES256", **extra):
    import hashlib
    import time

    import jwt

    from verifier.credential import b64url
    claims = {"aud": aud, "exp": int(time.time()) + exp_in, "iat": int(time.time()), "jti": "wpt-1",
              "wth": wth or b64url(hashlib.sha256(wit.strip()).digest()), **extra}
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": typ})


def test_wpt_checked_when_given(world, capsys):
    assert cli_issue(world, PAY, "wpt") == 0
    assert cli_issue(world, PAY, "wpt-other") == 0
    cred = cred_of(world, "wpt")
    wit = cred.read_bytes()
    base = [cred, "--statement", world.dir / "wpt" / "cpr.scitt", *trust(world), "--json"]
    good = world.dir / "good.wpt"
    good.write_text(_wpt(world.ver.key, wit))
    capsys.readouterr()
    assert rp(*base, "--wpt", good, "--wpt-aud", "https://rp.life") == 0
    assert json.loads(capsys.readouterr().out)["wpt_verified"] is True
    other_wit = cred_of(world, "wpt-other").read_bytes()
    cases = {
        "wpt.signature": _wpt(TestVerifier().key, wit),                     # not the WIT's cnf key
        "wpt.wth": _wpt(world.ver.key, other_wit),                           # proof for another WIT
        "wpt.expired": _wpt(world.ver.key, wit, exp_in=-3600),
        "wpt.typ": _wpt(world.ver.key, wit, typ="JWT"),
        "wpt.aud": _wpt(world.ver.key, wit, aud="https://elsewhere"),
    }
    for check, tok in cases.items():
        f = world.dir / f"{check}.wpt"
        f.write_text(tok)
        assert rp(*base, "--wpt", f, "--wpt-aud", "https://rp.life") == 1, check
        assert json.loads(capsys.readouterr().out)["check"] == check
    # an X.509 SVID has no WPT
    assert cli_issue(world, PAY, "wpt-svid", fmt="x509-svid") == 0
    capsys.readouterr()
    assert rp(cred_of(world, "wpt-svid"), "--statement", world.dir / "wpt-svid" / "cpr.scitt", *trust(world),
              "--json", "--wpt", good) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "wpt.credential"


def test_private_workload_provenance(world, capsys):
    d = world.dir
    (d / "sbom-priv.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}))
    wid = "spiffe://prod.life/private"
    capsys.readouterr()
    assert issuer_main(["register-workload-provenance", "--config", str(world.cfg), "--workload-id", wid, "--private",
                        "--artifact", f"oci:registry.life/private=sha256:{'e2' * 32}", "--sbom", str(d / "sbom-priv.json"),
                        "--out", str(d / "wpr-priv.scitt")]) == 0
    info = json.loads(capsys.readouterr().out)
    # the log holds a hash envelope: neither the workload id nor the artefacts are in it
    logged = (d / "wpr-priv.scitt").read_bytes()
    assert wid.encode() not in logged and b"e2e2e2" not in logged and info["private_id"].startswith("urn:uuid:")
    assert issuer_main(["audit", "--config", str(world.cfg), "--rid", info["private_id"]]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["predicate"]["workload_id"] == wid
    from issuer.provenance import wpr_document
    (d / "wpr-priv.json").write_bytes(wpr_document(doc))
    assert cli_issue(world, wid, "priv-wpr") == 0
    capsys.readouterr()
    base = [cred_of(world, "priv-wpr"), "--statement", d / "priv-wpr" / "cpr.scitt", "--statement",
            d / "wpr-priv.scitt", *trust(world), "--require-sbom", "--json"]
    assert rp(*base, "--wpr-document", d / "wpr-priv.json") == 0
    assert json.loads(capsys.readouterr().out)["workload_provenance_verified"] == 1
    assert rp(*base) == 1  # without the document the SBOM cannot be seen
    assert json.loads(capsys.readouterr().out)["check"] == "policy.sbom"
    altered = dict(doc, subject=[{"name": "x", "digest": {"sha256": "00" * 32}}])
    (d / "wpr-altered.json").write_bytes(wpr_document(altered))
    assert rp(*base, "--wpr-document", d / "wpr-altered.json") == 1  # not the logged document
    assert json.loads(capsys.readouterr().out)["check"] == "policy.sbom"
