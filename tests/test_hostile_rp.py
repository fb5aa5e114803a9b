"""Issue 11, the relying party's side: one claim one statement (item 1), verify before fetch
and fetch only from trusted logs (item 6), bounded HTTP clients."""

from __future__ import annotations

import http.server
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import VerificationError, cose
from verifier import keys as vkeys
from verifier.credential import verify_credential

from .test_credential import WID, fails, issue
from .test_twi_support import trust_for, twi_env  # noqa: F401 - fixture

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _twin(ts: bytes) -> bytes:
    """The same transparent statement with the ECDSA (r, n-s) twin signature (receipts kept)."""
    m = cose.decode_sign1(ts)
    r, s = int.from_bytes(m.signature[:32], "big"), int.from_bytes(m.signature[32:], "big")
    return cose.encode_sign1(m.protected_raw, m.unprotected, m.payload, r.to_bytes(32, "big") + (N - s).to_bytes(32, "big"))


def _reencoded(ts: bytes) -> bytes:
    """The same COSE_Sign1 with its payload length in a longer head (same signed content)."""
    m = cose.decode_sign1(ts)
    assert m.payload is not None and 256 <= len(m.payload) < 65536
    head = b"\x59" + len(m.payload).to_bytes(2, "big")
    long_head = b"\x5a" + len(m.payload).to_bytes(4, "big")
    i = ts.index(head + m.payload)
    return ts[:i] + long_head + ts[i + len(head):]


@pytest.mark.parametrize("fmt", ["wit", "x509-svid"])
def test_reencodings_of_the_record_are_one_claim(twi_env, fmt):
    out, stmts = issue(twi_env, fmt=fmt)
    cpr = stmts[0]
    for bad in (_twin(cpr), _reencoded(cpr)):
        assert cose.decode_sign1(bad).statement_bytes() != cose.decode_sign1(cpr).statement_bytes()
        res = verify_credential(out.credential.raw, [bad] + stmts, trust_for(twi_env))
        assert res.record["rid"] == out.rid
        # the copy with a receipt that proves it is used, whichever comes first
        verify_credential(out.credential.raw, stmts + [bad], trust_for(twi_env))


def test_records_of_other_signers_do_not_count(twi_env):
    from issuer.provenance import IssuerIdentity, sign_cpr

    out, stmts = issue(twi_env, wpr=False)
    payload = cose.decode_sign1(stmts[0]).payload
    mallory = ec.generate_private_key(ec.SECP256R1())
    other = sign_cpr(IssuerIdentity("https://issuer.test", mallory), payload, rid=out.rid, sub=WID, iat=1)
    # even when the relying party trusts mallory's key as an issuer, it did not issue this credential
    trust = trust_for(twi_env, issuer_keys={vkeys.thumbprint(twi_env.issuer_key): twi_env.issuer_key.public_key(),
                                            vkeys.thumbprint(mallory): mallory.public_key()})
    verify_credential(out.credential.raw, [other, stmts[0]], trust)
    verify_credential(out.credential.raw, [stmts[0], other], trust_for(twi_env))
    # the credential's own issuer signing two different records for one id is still ambiguous
    own = sign_cpr(twi_env.issuer.identity, payload, rid=out.rid, sub=WID, iat=2)
    fails("binding.ambiguous", out.credential.raw, [stmts[0], own], trust)


# ---- item 6: verify before fetch, only from trusted logs ---------------------------------------
def _cli(tmp_path, twi_env, cred: bytes, *extra):
    from verifier.cli import main

    (tmp_path / "cred").write_bytes(cred)
    (tmp_path / "log.keys").write_bytes(twi_env.app.extensions["tlog.service"].keys.keyset_bytes())
    from .test_twi_support import write_pem_public

    pub = write_pem_public(tmp_path / "iss.pem", twi_env.issuer_key)
    return main(["credential", str(tmp_path / "cred"), "--fetch", "--log-key", str(tmp_path / "log.keys"),
                 "--issuer-key", str(pub), *extra])


def test_fetch_only_after_the_signature_and_from_trusted_logs(twi_env, tmp_path, monkeypatch, capsys):
    import verifier.credential.cli as ccli
    from issuer.credentials import mint_wit

    fetched = []
    monkeypatch.setattr(ccli, "fetch_statements", lambda ptr, **kw: fetched.append(ptr.uri) or [])
    out, _ = issue(twi_env, wpr=False)
    log = out.credential.pointer.log
    # a forged credential (signed by a key nobody trusts) is refused before anything is fetched
    forged = mint_wit(ec.generate_private_key(ec.SECP256R1()), sub=WID, iss="https://issuer.test",
                      cnf_jwk={"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                      pointer=out.credential.pointer)
    assert _cli(tmp_path, twi_env, forged.raw, "--log", log) == 1
    assert "credential.signature" in capsys.readouterr().err and fetched == []
    # --fetch without --log: refused, nothing fetched
    assert _cli(tmp_path, twi_env, out.credential.raw) == 2 and fetched == []
    # the genuine credential, but its pointer names a log that is not trusted
    from verifier.credential.fetch import fetch_statements

    with pytest.raises(VerificationError) as e:
        fetch_statements(out.credential.pointer, trusted_logs=["https://other.example"])
    assert e.value.check == "fetch.untrusted-log"
    # trusted: fetched once the signature verified
    _cli(tmp_path, twi_env, out.credential.raw, "--log", log + "/")
    assert fetched == [out.credential.pointer.uri]


# ---- bounded HTTP: size cap, timeout, no redirect to another host ------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/big"):
            self.send_response(200)
            self.end_headers()  # no Content-Length: read until close
            try:
                for _ in range(64):
                    self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its cap: what the test wants
        elif self.path.startswith("/elsewhere"):
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/here":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/log/twi/v1/cpr"):
            import cbor2

            last = "from=1" in self.path
            body = cbor2.dumps([b"second" if last else b"first"])
            self.send_response(200)
            if not last:
                self.send_header("Link", '</log/twi/v1/cpr?rid=r&from=1>; rel="next"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/slow":
            import time

            time.sleep(3)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_bounded_get(server):
    from verifier import http as vhttp

    assert vhttp.get(server + "/ok") == b"ok"
    assert vhttp.get(server + "/here") == b"ok"  # same origin: followed
    with pytest.raises(vhttp.HTTPLimitError, match="larger than"):
        vhttp.get(server + "/big", max_bytes=1 << 20)
    with pytest.raises(vhttp.HTTPLimitError, match="another origin"):
        vhttp.get(server + "/elsewhere")
    with pytest.raises(OSError):
        vhttp.get(server + "/slow", timeout=0.5)


def test_issuer_client_caps_answers(server):
    from issuer.client import ScrapiClient
    from issuer.errors import IssuerError

    c = ScrapiClient(server + "/big", max_attempts=1, max_response=1 << 20)
    with pytest.raises(IssuerError) as e:
        c.keys()
    assert "larger than" in str(e.value)


def test_witness_client_caps_answers_and_refuses_redirects(server, tmp_path):
    from verifier.note import CosignatureSigner
    from tlog.witnessing import Witnessing

    vkey = CosignatureSigner.generate("w.test").vkey
    for path, why in (("/big", "larger than"), ("/elsewhere", "302")):
        wit = Witnessing(None, [{"url": server + path, "vkey": vkey}], 0, tmp_path / path.strip("/"))
        w = wit.witnesses[0]
        with pytest.raises(Exception) as e:
            wit.submit(w, 1, "log.test\n1\nAAAA\n\n— log.test x\n", "log.test\n1\nAAAA\n")
        assert why in str(e.value), str(e.value)


def test_fetch_follows_pages_under_the_log_only(server):
    from verifier.credential.fetch import _getter, _lookup

    get = _getter(5.0, server + "/log")
    assert _lookup(get, server + "/log/twi/v1/cpr?rid=r") == [b"first", b"second"]
    with pytest.raises(OSError):
        get(server + "/elsewhere")  # not under the log


def test_tlog_info_client_caps_answers(server):
    from tlog.clientcmd import ClientError, log_info

    with pytest.raises(ClientError) as e:
        log_info(server + "/big")
    assert "larger than" in str(e.value)
