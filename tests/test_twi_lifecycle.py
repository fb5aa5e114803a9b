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
    server = LogServer(d / "log", idir / "issuer.pub.pem", "https://issuer.life")
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


# ---------------------------------------------------------------------------------------
# 2. revocation and renewal in the log


def _rp_json(capsys, *argv) -> tuple[int, dict]:
    capsys.readouterr()
    rc = rp(*argv, "--json")
    return rc, json.loads(capsys.readouterr().out)


def test_revocation_in_the_log(world, capsys):
    from verifier import cbor as vcbor
    from verifier.credential.records import classify
    from verifier.statement import SignedStatement

    d = world.dir
    assert cli_issue(world, PAY, "rv1") == 0
    rid = json.loads(capsys.readouterr().out)["record_id"]
    assert cli_issue(world, PAY, "rv2") == 0
    rid2 = json.loads(capsys.readouterr().out)["record_id"]
    fetch = [cred_of(world, "rv1"), "--fetch", "--log", world.server.url, *trust(world)]
    rc, res = _rp_json(capsys, *fetch)
    assert rc == 0 and res["statuses"] == []
    assert issuer_main(["revoke", "--config", str(world.cfg), "--record", rid, "--reason", "key compromise",
                        "--out", str(d / "rv1-status.scitt")]) == 0
    rv = json.loads(capsys.readouterr().out)
    assert rv["record_id"] == rid and rv["status"] == "revoked"
    # the log's lookups return the record's status statements, by rid and by (iss, jti)
    jti = json.loads(__import__("base64").urlsafe_b64decode(
        cred_of(world, "rv1").read_text().split(".")[1] + "=="))["jti"]
    for q in ({"rid": rid}, {"iss": "https://issuer.life", "jti": jti}):
        arr = vcbor.loads(requests.get(world.server.url + "/twi/v1/cpr", params=q, timeout=5).content)
        assert [classify(SignedStatement.parse(ts)) for ts in arr] == ["cpr", "status"], q
    # the relying party refuses it, with reason and time
    rc, res = _rp_json(capsys, *fetch)
    assert rc == 1 and res["check"] == "status.revoked"
    assert "key compromise" in res["detail"] and "T" in res["detail"] and res["detail"].endswith("key compromise")
    capsys.readouterr()
    assert rp(*fetch) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAILED status.revoked") and "key compromise" in err
    # offline: without the status statement nothing tells; with it, refused
    offline = [cred_of(world, "rv1"), "--statement", d / "rv1" / "cpr.scitt", *trust(world)]
    assert _rp_json(capsys, *offline)[0] == 0
    rc, res = _rp_json(capsys, *offline, "--statement", d / "rv1-status.scitt")
    assert rc == 1 and res["check"] == "status.revoked"
    # another record of the same workload is not affected
    assert _rp_json(capsys, cred_of(world, "rv2"), "--fetch", "--log", world.server.url, *trust(world))[0] == 0
    assert _rp_json(capsys, cred_of(world, "rv2"), "--statement", d / "rv2" / "cpr.scitt", "--statement",
                    d / "rv1-status.scitt", *trust(world))[0] == 0
    # a status statement that does not verify (altered reason) is no evidence
    raw = (d / "rv1-status.scitt").read_bytes()
    (d / "forged-status.scitt").write_bytes(raw.replace(b"key compromise", b"key-compromise"))
    assert _rp_json(capsys, *offline, "--statement", d / "forged-status.scitt")[0] == 0
    # revoking by credential (an X.509 SVID)
    assert cli_issue(world, PAY, "rv3", fmt="x509-svid") == 0
    capsys.readouterr()
    assert issuer_main(["revoke", "--config", str(world.cfg), "--credential", str(cred_of(world, "rv3"))]) == 0
    capsys.readouterr()
    rc, res = _rp_json(capsys, cred_of(world, "rv3"), "--fetch", "--log", world.server.url, *trust(world))
    assert rc == 1 and res["check"] == "status.revoked"
    # unknown record: a clear refusal, nothing registered
    assert issuer_main(["revoke", "--config", str(world.cfg), "--record", "urn:uuid:nope"]) == 1
    assert "lifecycle.record-missing" in capsys.readouterr().err
    assert rid2


def test_renewal_links_the_previous_record(world, capsys):
    assert cli_issue(world, PAY, "rn1") == 0
    first = json.loads(capsys.readouterr().out)
    assert cli_issue(world, PAY, "rn2", "--renews", first["record_id"]) == 0
    second = json.loads(capsys.readouterr().out)
    leaf = first["entry"].rsplit("/", 1)[1]
    assert second["prev"] == {"rid": first["record_id"], "sha256": leaf}
    rc, res = _rp_json(capsys, cred_of(world, "rn2"), "--fetch", "--log", world.server.url, *trust(world))
    assert rc == 0 and res["prev"] == {"rid": first["record_id"], "sha256": leaf}
    # a renewal is for the same workload
    assert cli_issue(world, OTHER, "rn3", "--renews", first["record_id"]) == 1
    assert "issuance.renewal" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# 4. external binding


def test_external_binding(world, capsys):
    d = world.dir
    log = world.server.url
    assert cli_issue(world, PAY, "ext-internal") == 0  # an internally bound credential's record (this test's own)
    capsys.readouterr()
    for fmt in ("wit", "x509-svid"):
        out = f"ext-{fmt}"
        assert cli_issue(world, PAY, out, "--binding", "external", fmt=fmt) == 0
        info = json.loads(capsys.readouterr().out)
        cred = cred_of(world, out)
        from verifier.credential import parse_credential
        assert parse_credential(cred.read_bytes()).pointer is None
        rc, res = _rp_json(capsys, cred, "--fetch", "--log", log, *trust(world))
        assert rc == 0 and res["binding"] == "external" and res["record"] == info["record_id"], res
        # offline, with the record given and the log named
        assert _rp_json(capsys, cred, "--statement", d / out / "cpr.scitt", "--log", log, *trust(world))[0] == 0
        # without a log to look in there is nothing to find
        rc, res = _rp_json(capsys, cred, "--statement", d / out / "cpr.scitt", *trust(world))
        assert rc == 1 and res["check"] == "binding.no-pointer"
        # an internally bound credential's record does not serve an external one
        rc, res = _rp_json(capsys, cred, "--statement", d / "ext-internal" / "cpr.scitt", "--log", log, *trust(world))
        assert rc == 1 and res["check"] == "binding.record-missing"
    # a credential (validly signed, no pointer) whose (iss, jti) names a logged record of another credential
    from cryptography.hazmat.primitives import serialization

    from issuer.credentials import mint_wit
    from verifier.credential import parse_credential
    logged = parse_credential(cred_of(world, "ext-wit").read_bytes())
    ikey = serialization.load_pem_private_key((world.idir / "issuer.pem").read_bytes(), None)
    twin = mint_wit(ikey, iss=logged.iss, sub=PAY, cnf_jwk=TestVerifier().jwk, pointer=None, jti=logged.jti)
    (d / "twin.wit").write_bytes(twin.raw)
    rc, res = _rp_json(capsys, d / "twin.wit", "--fetch", "--log", log, *trust(world))
    assert rc == 1 and res["check"] == "binding.digest", res
    # external credentials are revoked like the others (found by SHA-256)
    assert issuer_main(["revoke", "--config", str(world.cfg), "--credential", str(cred_of(world, "ext-wit"))]) == 0
    capsys.readouterr()
    rc, res = _rp_json(capsys, cred_of(world, "ext-wit"), "--fetch", "--log", log, *trust(world))
    assert rc == 1 and res["check"] == "status.revoked"


# ---------------------------------------------------------------------------------------
# 3. policies in the log, and replaying an appraisal


def test_policies_in_the_log_and_replay(world, capsys):
    d = world.dir
    assert cli_issue(world, PAY, "pol1") == 0
    rid = json.loads(capsys.readouterr().out)["record_id"]
    cred = cred_of(world, "pol1")
    rc, res = _rp_json(capsys, cred, "--fetch", "--check-policies", "--log", world.server.url, *trust(world))
    assert rc == 0 and res["policies_checked"] == ["appraisal", "issuance"], res
    # offline, the policies must be given
    rc, res = _rp_json(capsys, cred, "--statement", d / "pol1" / "cpr.scitt", "--check-policies", *trust(world))
    assert rc == 1 and res["check"] == "policy.missing"
    from verifier import cbor as vcbor
    from verifier.statement import SignedStatement
    rec = vcbor.loads(SignedStatement.parse((d / "pol1" / "cpr.scitt").read_bytes()).payload)
    entries = [rec["appraisal"]["policy"]["entry"], rec["issuer"]["policy"]["entry"]]
    for i, e in enumerate(entries):
        (d / f"pol-{i}.scitt").write_bytes(requests.get(e + "/statement", timeout=5).content)
    given = ["--statement", d / "pol-0.scitt", "--statement", d / "pol-1.scitt"]
    assert _rp_json(capsys, cred, "--statement", d / "pol1" / "cpr.scitt", *given, "--check-policies",
                    *trust(world))[0] == 0
    # a tampered copy of the logged policy is not the logged policy
    raw = (d / "pol-0.scitt").read_bytes()
    assert b'"max_age": 300' in raw
    (d / "pol-0-tampered.scitt").write_bytes(raw.replace(b'"max_age": 300', b'"max_age": 900'))
    rc, res = _rp_json(capsys, cred, "--statement", d / "pol1" / "cpr.scitt", "--statement", d / "pol-0-tampered.scitt",
                       "--statement", d / "pol-1.scitt", "--check-policies", *trust(world))
    assert rc == 1 and res["check"] == "policy.missing"
    # the auditor replays the appraisal from the logged EAR and policy: the same decision
    capsys.readouterr()
    assert issuer_main(["replay", "--rid", rid, "--log", world.server.url, "--issuer-key",
                        str(world.idir / "issuer.pub.pem"), "--verifier-keys", str(world.idir / "verifier-keys.json"),
                        "--log-key", str(d / "log.keys")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["discrepancies"] == [] and rep["replayed"]["status"] == "affirming"
    # the record must be the issuer's: under another issuer key it does not verify
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    (d / "stranger.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert issuer_main(["replay", "--rid", rid, "--log", world.server.url, "--issuer-key", str(d / "stranger.pem"),
                        "--verifier-keys", str(world.idir / "verifier-keys.json")]) == 1
    assert "replay.record" in capsys.readouterr().err


def test_logged_policy_that_is_not_the_recorded_one(world, monkeypatch, capsys):
    """A record whose appraisal-policy entry holds another document than its digest names (an
    issuer that logged one policy and applied another)."""
    from issuer.config import build_issuer
    from issuer.provenance import sign_policy

    iss = build_issuer(world.cfg)
    iss.ensure_policies()
    pol = iss.appraisal_policy
    other = iss.client.register(sign_policy(iss.identity, "appraisal", pol.id, pol.raw.replace(b"300", b"3000")))
    iss._policy_entries[f"appraisal:{pol.digest}"] = other.entry_url
    iss.policy_state = None  # this tampering stays in memory
    from issuer.appraisal import public_key_from_jwk
    out = iss.issue(ear=world.ver.ear(nonce="cG9s", akpub=world.akpub), nonce="cG9s", workload_id=PAY,
                    workload_key=public_key_from_jwk(world.ver.jwk))
    (world.dir / "pol-bad.wit").write_bytes(out.credential.raw)
    rc, res = _rp_json(capsys, world.dir / "pol-bad.wit", "--fetch", "--check-policies", "--log", world.server.url, *trust(world))
    assert rc == 1 and res["check"] == "policy.digest-mismatch", res
    assert _rp_json(capsys, world.dir / "pol-bad.wit", "--fetch", "--log", world.server.url, *trust(world))[0] == 0  # not checked unless asked
    capsys.readouterr()
    assert issuer_main(["replay", "--config", str(world.cfg), "--rid", out.rid]) == 1
    assert "policy.digest-mismatch" in capsys.readouterr().err


def test_replay_reports_a_decision_the_policy_would_not_make(world, monkeypatch, capsys):
    """The issuer accepted a warning EAR its logged policy refuses: the replay says so."""
    import issuer.service as svc
    from issuer.appraisal import AppraisalPolicy, public_key_from_jwk
    from issuer.config import build_issuer

    iss = build_issuer(world.cfg)
    strict = iss.appraisal_policy
    lenient_obj = json.loads(strict.raw)
    lenient_obj["submods"] = {"*": {"status": "warning", "accept_warning": True}}
    lenient = AppraisalPolicy.from_obj(lenient_obj)
    real = svc.appraise

    def lax(ear, policy, keys, **kw):
        a = real(ear, lenient, keys, **kw)
        a.policy_id, a.policy_digest = strict.id, strict.digest  # and records the strict policy
        return a
    monkeypatch.setattr(svc, "appraise", lax)
    out = iss.issue(ear=world.ver.ear(nonce="bGF4", akpub=world.akpub, status="warning"), nonce="bGF4",
                    workload_id=PAY, workload_key=public_key_from_jwk(world.ver.jwk))
    monkeypatch.undo()
    capsys.readouterr()
    assert issuer_main(["replay", "--config", str(world.cfg), "--rid", out.rid]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["replayed"] is None and "appraisal.status" in rep["discrepancies"][0], rep


def test_replay_reports_a_recorded_result_the_policy_does_not_give(world, monkeypatch, capsys):
    import issuer.service as svc
    from issuer.appraisal import public_key_from_jwk
    from issuer.config import build_issuer

    iss = build_issuer(world.cfg)
    real = svc.appraise

    def embellish(*a, **kw):
        r = real(*a, **kw)
        r.submods = {k: {**v, "ear_trustworthiness_vector": {**v.get("ear_trustworthiness_vector", {}),
                                                             "sourced-data": 2}} for k, v in r.submods.items()}
        return r
    monkeypatch.setattr(svc, "appraise", embellish)
    out = iss.issue(ear=world.ver.ear(nonce="ZW1i", akpub=world.akpub), nonce="ZW1i", workload_id=PAY,
                    workload_key=public_key_from_jwk(world.ver.jwk))
    monkeypatch.undo()
    capsys.readouterr()
    assert issuer_main(["replay", "--config", str(world.cfg), "--rid", out.rid]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["replayed"]["status"] == "affirming" and rep["discrepancies"][0].startswith("submods:"), rep
