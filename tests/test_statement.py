"""SCITT Signed Statements: RFC 9943 headers, RFC 9995 hash envelope, x5chain validation."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.test_receipt_support import key, signed_statement
from verifier import VerificationError, cose, keys
from verifier.statement import SignedStatement

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def test_parse_valid_statement_attributes():
    raw = signed_statement(payload=b"{}", sub="urn:x", iss="issuer.example")
    st = SignedStatement.parse(raw)
    assert (st.iss, st.sub, st.alg, st.content_type) == ("issuer.example", "urn:x", cose.ES256, "application/json")
    assert st.kid == keys.thumbprint(key("p256", 1))
    assert st.payload == b"{}" and st.hash_envelope is None and st.x5chain == [] and st.x5t is None
    assert st.statement_bytes == raw
    assert st.leaf_input == hashlib.sha256(raw).digest()
    st.verify(key("p256", 1).public_key())
    with pytest.raises(VerificationError) as e:
        st.verify(key("p256", 2).public_key())
    assert e.value.check == "statement.signature"


def test_leaf_input_ignores_unprotected_header():
    priv = key("p256", 1)
    a = signed_statement(priv, unprotected={99: "x"})
    st = SignedStatement.parse(a)
    assert st.statement_bytes != a
    assert cose.decode_sign1(st.statement_bytes).unprotected == {}
    assert st.leaf_input == hashlib.sha256(st.statement_bytes).digest()
    st.verify(priv.public_key())


@pytest.mark.parametrize(
    "extra,check",
    [
        ({15: None}, "statement.cwt-claims"),
        ({15: {1: "iss"}}, "statement.cwt-claims"),
        ({15: {2: "sub"}}, "statement.cwt-claims"),
        ({15: {1: 5, 2: "sub"}}, "statement.cwt-claims"),
        ({15: "notamap"}, "statement.cwt-claims"),
        ({4: None}, "statement.kid"),
        ({4: "text-kid"}, "statement.kid"),
        ({1: "ES256"}, "statement.alg"),
        ({3: None, 258: -16, 3: "application/json"}, "statement.hash-envelope"),  # noqa: F601
        ({3: None, 259: "application/json"}, "statement.hash-envelope"),
        ({3: None, 258: "sha256"}, "statement.hash-envelope"),
        ({3: None, 258: -16, 260: 5}, "statement.hash-envelope"),
        ({3: [1]}, "statement.content-type"),
        ({4: None, 34: [-16, b"\x00" * 32], 15: {1: "not a uri", 2: "s"}}, "statement.iss"),
        ({4: None, 34: [-16, b"\x00" * 32], 15: {1: "", 2: "s"}}, "statement.iss"),
        ({4: None, 34: [-16, b"\x00" * 32], 15: {1: "https://" + "a" * 8200, 2: "s"}}, "statement.iss"),
        ({4: None, 34: [-16], 15: {1: "https://i.example", 2: "s"}}, "statement.x5t"),
        ({4: None, 33: "pem", 15: {1: "https://i.example", 2: "s"}}, "statement.x5chain"),
    ],
)
def test_header_rules(extra, check):
    prot = {1: cose.ES256, 3: "application/json", 4: b"kid", 15: {1: "iss", 2: "sub"}}
    prot.update(extra)
    prot = {k: v for k, v in prot.items() if v is not None}
    raw = cose.encode_sign1(prot, {}, b"x", b"\x00" * 64)  # parse checks headers, not the signature
    with pytest.raises(VerificationError) as e:
        SignedStatement.parse(raw)
    assert e.value.check == check


def test_hash_envelope_valid_and_unprotected_labels_refused():
    priv = key("p256", 1)
    digest = hashlib.sha256(b"artifact").digest()
    prot = {1: cose.ES256, 4: b"k", 15: {1: "i", 2: "s"}, 258: -16, 259: "application/spdx+json",
            260: "https://example/a.json"}
    st = SignedStatement.parse(cose.sign1(priv, prot, digest))
    assert st.hash_envelope == (-16, "application/spdx+json", "https://example/a.json")
    st.verify(priv.public_key())
    for label in (258, 259, 260):
        raw = cose.sign1(priv, prot, digest, unprotected={label: -16 if label == 258 else "x"})
        with pytest.raises(VerificationError) as e:
            SignedStatement.parse(raw)
        assert e.value.check == "statement.hash-envelope"


def test_detached_payload():
    priv = key("p256", 1)
    st = SignedStatement.parse(signed_statement(priv, payload=b"big", detached=True))
    assert st.payload is None
    with pytest.raises(VerificationError) as e:
        st.verify(priv.public_key())
    assert e.value.check == "statement.payload-missing"
    st.verify(priv.public_key(), payload=b"big")
    with pytest.raises(VerificationError):
        st.verify(priv.public_key(), payload=b"other")


def test_real_transparent_statements_parse(vectors_dir):
    for f in sorted((vectors_dir / "transparent-statements").glob("*.scitt")):
        st = SignedStatement.parse(f.read_bytes())
        assert st.iss.startswith("did:x509:")
        assert len(st.x5chain) == 3 and st.x5t[0] == -16
        assert st.hash_envelope[0] == -43 and st.hash_envelope[1] == "application/vnd.in-toto+json"
        assert len(st.payload) == 48
        assert cose.decode_sign1(st.statement_bytes).unprotected == {}
        # the x5t matches the leaf (checked in parse); verify with the leaf key directly
        leaf = x509.load_der_x509_certificate(st.x5chain[0])
        st.verify(leaf.public_key())


# --- x5chain ---------------------------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, pub, ikey, *, ca, days=(-1, 30), eku=None, ku_sign=True, path_len=None):
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW + datetime.timedelta(days=days[0]))
         .not_valid_after(NOW + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=ku_sign and not ca, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False, key_agreement=not ku_sign,
                                      key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False),
                        critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ikey.public_key()), critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(ikey, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", "root", rk.public_key(), rk, ca=True)
    inter = _cert("inter", "root", ik.public_key(), rk, ca=True)
    leaf = _cert("leaf", "inter", lk.public_key(), ik, ca=False, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    return {"rk": rk, "ik": ik, "lk": lk, "root": root, "inter": inter, "leaf": leaf}


def _der(c):
    return c.public_bytes(serialization.Encoding.DER)


def _x5_statement(lk, chain, *, x5t=True, iss="https://issuer.example/x"):
    prot = {1: cose.ES256, 15: {1: iss, 2: "s"}, 33: [_der(c) for c in chain]}
    if x5t:
        prot[34] = [-16, hashlib.sha256(_der(chain[0])).digest()]
    return cose.sign1(lk, prot, b"payload")


def test_x5chain_validates_to_anchor(pki):
    st = SignedStatement.parse(_x5_statement(pki["lk"], [pki["leaf"], pki["inter"]]))
    assert st.kid is None and len(st.x5chain) == 2
    st.verify(trust_anchors=[pki["root"]])
    st.verify(trust_anchors=[pki["inter"]])  # an intermediate may itself be the configured anchor
    other = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("root", "root", other.public_key(), other, ca=True)
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[other_root])
    assert e.value.check == "x509.chain"
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]], at_time=NOW + datetime.timedelta(days=60))
    assert e.value.check == "x509.chain"
    with pytest.raises(VerificationError) as e:
        st.verify()
    assert e.value.check == "statement.no-key"


def test_x5chain_signature_by_other_key_fails(pki):
    st = SignedStatement.parse(_x5_statement(pki["ik"], [pki["leaf"], pki["inter"]]))
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]])
    assert e.value.check == "statement.signature"


def test_x5chain_leaf_rules(pki):
    ca_leaf = _cert("leafca", "inter", pki["lk"].public_key(), pki["ik"], ca=True)
    st = SignedStatement.parse(_x5_statement(pki["lk"], [ca_leaf, pki["inter"]]))
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]])
    assert e.value.check == "x509.chain"
    no_sign = _cert("leaf2", "inter", pki["lk"].public_key(), pki["ik"], ca=False, ku_sign=False)
    st = SignedStatement.parse(_x5_statement(pki["lk"], [no_sign, pki["inter"]]))
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]])
    assert e.value.check == "x509.chain"
    # an intermediate that is not a CA cannot issue
    bad_inter = _cert("inter", "root", pki["ik"].public_key(), pki["rk"], ca=False)
    st = SignedStatement.parse(_x5_statement(pki["lk"], [pki["leaf"], bad_inter]))
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]])
    assert e.value.check == "x509.chain"


def test_x5t_mismatch_and_iss_uri(pki):
    prot = {1: cose.ES256, 15: {1: "https://i.example", 2: "s"}, 33: [_der(pki["leaf"]), _der(pki["inter"])],
            34: [-16, hashlib.sha256(_der(pki["inter"])).digest()]}
    with pytest.raises(VerificationError) as e:
        SignedStatement.parse(cose.sign1(pki["lk"], prot, b"p"))
    assert e.value.check == "statement.x5t"
    with pytest.raises(VerificationError) as e:
        SignedStatement.parse(_x5_statement(pki["lk"], [pki["leaf"], pki["inter"]], iss="no uri here"))
    assert e.value.check == "statement.iss"


def test_x5t_protected_with_unprotected_x5chain(pki):
    chain = [_der(pki["leaf"]), _der(pki["inter"])]
    prot = {1: cose.ES256, 15: {1: "https://i.example", 2: "s"}, 34: [-16, hashlib.sha256(chain[0]).digest()]}
    raw = cose.sign1(pki["lk"], prot, b"p", unprotected={33: chain})
    st = SignedStatement.parse(raw)
    # identity only from the protected header (issue 11 item 4): the unprotected chain is not
    # the signer's identity (the log stores the statement without it)
    assert st.x5chain == [] and st.x5t is not None
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[pki["root"]])
    assert e.value.check == "statement.x5chain"


# --- issue 16: the mutation survivors of verifier/statement.py ------------------------------


def _x5(prot_extra: dict, *, unprotected=None, payload=b"p") -> bytes:
    """A statement identified by a (not validated) x5chain, with ``prot_extra`` merged in."""
    prot = {1: cose.ES256, 15: {1: "https://issuer.example", 2: "s"}, 33: [b"cert"]}
    prot.update(prot_extra)
    for k in [k for k, v in prot.items() if v is None]:
        del prot[k]
    return cose.sign1(key("p256", 1), prot, payload, unprotected=unprotected)


def _refused(data: bytes, check: str) -> None:
    with pytest.raises(VerificationError) as e:
        SignedStatement.parse(data)
    assert e.value.check == check


@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_outer_shortest_heads_at_every_width(n):
    """outer_is_deterministic at each head-width boundary of the payload length (1, 2, 3 and 5
    byte heads); the same payload with a one-byte-longer head is not deterministic."""
    st = SignedStatement.parse(signed_statement(payload=b"x" * n))
    assert st.outer_is_deterministic()
    from verifier.statement import _head_len

    assert [_head_len(v) for v in (2**32 - 1, 2**32)] == [5, 9]  # 4 GiB payloads are not built here
    m = st.sign1
    ai = 24 if n < 24 else {1: 25, 2: 26}.get((n.bit_length() + 7) // 8, 27)
    wide = bytes([0x40 | ai]) + n.to_bytes(1 << (ai - 24), "big")
    raw = m.raw.replace(cbor_head(n) + m.payload + cbor_head(len(m.signature)) + m.signature,
                        wide + m.payload + cbor_head(len(m.signature)) + m.signature)
    assert not SignedStatement.parse(raw).outer_is_deterministic()


def cbor_head(n: int) -> bytes:
    from verifier import cbor

    return cbor.encode_head(2, n)


def test_detached_payload_missing_is_named_before_the_key_question():
    st = SignedStatement.parse(signed_statement(detached=True))
    for kw in ({}, {"key": key("p256", 1).public_key()}):
        with pytest.raises(VerificationError) as e:
            st.verify(**kw)
        assert e.value.check == "statement.payload-missing"


def test_x5chain_shapes():
    """RFC 9360: x5chain is one bstr or an array of bstrs (1..MAX_X5CHAIN here); a map whose
    keys are ints, an int, an empty array and an over-long array are refused."""
    from verifier.statement import MAX_X5CHAIN

    assert SignedStatement.parse(_x5({33: b"cert"})).x5chain == [b"cert"]
    assert SignedStatement.parse(_x5({33: [b"c"] * MAX_X5CHAIN})).x5chain == [b"c"] * MAX_X5CHAIN
    for bad in (5, "cert", {1: b"cert"}, [], [b"c"] * (MAX_X5CHAIN + 1), [b"c", "d"]):
        _refused(_x5({33: bad}), "statement.x5chain")


def test_x5t_shapes():
    """RFC 9360: x5t is the array [hashAlg (int / tstr), hashValue (bstr)]."""
    h = b"\x00" * 32
    assert SignedStatement.parse(_x5({34: [-16, h], 33: None})).x5t == (-16, h)
    assert SignedStatement.parse(_x5({34: ["sha-256", h], 33: None})).x5t == ("sha-256", h)
    for bad in ({0: -16, 1: h}, [True, h], [1.5, h], [-16, "text"], [-16, h, h], [b"alg", h]):
        _refused(_x5({34: bad, 33: None}), "statement.x5t")


def test_iss_must_be_a_uri_with_an_x509_identity():
    """RFC 3986 scheme ":" rest, within 1..MAX_ISS_LEN characters, without white space."""
    from verifier.statement import MAX_ISS_LEN

    for good in ("https://issuer.example", "git+ssh://h/x", "a.b-c:x", "urn:x",
                 "https://e/" + "x" * (MAX_ISS_LEN - 10)):
        assert SignedStatement.parse(_x5({15: {1: good, 2: "s"}})).iss == good
    for bad in ("", "a", "https:", "no-colon", "1http://x", "ht_tp://x", "\u00e9sch://x", "https://a b",
                "https://e/" + "x" * (MAX_ISS_LEN - 9)):
        _refused(_x5({15: {1: bad, 2: "s"}}), "statement.iss")


def test_hash_envelope_headers():
    """RFC 9995: 258 an int (not a bool); 259 absent, tstr or uint; no content type (3) in
    either header."""
    env = SignedStatement.parse(signed_statement(extra={3: None, 258: -16})).hash_envelope
    assert env is not None and (env.hash_alg, env.preimage_content_type, env.location) == (-16, None, None)
    env = SignedStatement.parse(signed_statement(extra={3: None, 258: -16, 259: "text/plain"})).hash_envelope
    assert env is not None and env.preimage_content_type == "text/plain"
    for extra, unprot in (({3: None, 258: True}, None), ({3: None, 258: -16, 259: b"x"}, None),
                          ({3: None, 258: -16}, {3: "application/json"})):
        with pytest.raises(VerificationError) as e:
            SignedStatement.parse(signed_statement(extra=extra, unprotected=unprot))
        assert e.value.check == "statement.hash-envelope"
