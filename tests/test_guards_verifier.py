"""Guards of the verifier that once survived mutation testing (issue 16): each test here fails
when the check it names is removed (tried by hand; `tools/mutate.py` re-checks them)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.test_receipt_support import LOG_ISSUER, LOG_ORIGIN, Log, key
from verifier import VerificationError, cose, keys, merkle, receipt
from verifier.note import Checkpoint, Signer, open_checkpoint, sign_note
from verifier.statement import SignedStatement

LOG = Log(6)


def _signed_receipt(priv, size: int, index: int, path: list[bytes], leaf_input: bytes, *, kid: bytes) -> bytes:
    """A receipt in the common (fast-path) shape whose signature covers the root that the
    RFC 9162 computation yields for (size, index, path), whatever those numbers are."""
    root = receipt._root_from_inclusion(index, size, merkle.leaf_hash(leaf_input), path)
    prot = receipt.receipt_protected(alg=cose.ES256, kid=kid, issuer=LOG_ISSUER, subject=LOG_ORIGIN, iat=1700000000)
    sig = cose.sign_tbs(priv, cose.ES256, cose.sig_structure(prot, root))
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(size, index, path)])


# --- receipts --------------------------------------------------------------------------


@pytest.mark.parametrize("size,index", [(4, 5), (4, 4), (1, 1), (6, 6)])
def test_fast_path_refuses_index_not_below_size(size, index):
    """Index 5 (or 4) in a tree of size 4 names no leaf; the path length still fits the RFC 9162
    formula, and the log key signed the root it yields. Both paths must refuse it."""
    inner = (index ^ (size - 1)).bit_length()
    path = [bytes([i]) * 32 for i in range(inner + bin(index >> inner).count("1"))]
    leaf = LOG.leaf_inputs[0]
    r = _signed_receipt(LOG.priv, size, index, path, leaf, kid=LOG.kid)
    assert receipt._fast_layout(r) is not None  # the shape the one-pass verify handles
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(r, leaf, LOG.keys())
    assert e.value.check == "receipt.proof-format"


def test_receipt_kid_selects_the_only_key_tried():
    """Two trusted logs: a receipt naming log A's kid but signed by log B's key is refused
    (the kid binds the receipt to one key; every key is tried only for an unknown kid)."""
    a, b = key("p256", 2), key("p256", 7)
    kid_a, kid_b = keys.thumbprint(a), keys.thumbprint(b)
    trusted = {kid_a: a.public_key(), kid_b: b.public_key()}
    leaf = LOG.leaf_inputs[3]
    path = merkle.inclusion_proof(LOG.leaf_hashes, 3)
    good = _signed_receipt(a, 6, 3, path, leaf, kid=kid_a)
    assert receipt.verify_inclusion_receipt(good, leaf, trusted).kid == kid_a
    forged = _signed_receipt(b, 6, 3, path, leaf, kid=kid_a)
    for data in (forged, receipt.Receipt.parse(forged)):  # one-pass and general paths
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(data, leaf, trusted)
        assert e.value.check == "receipt.signature"
    # a kid no trusted key has: every trusted key is tried (documented), so B's signature verifies
    odd = _signed_receipt(b, 6, 3, path, leaf, kid=b"\x01" * 32)
    assert receipt.verify_inclusion_receipt(odd, leaf, trusted).root == LOG.root(6)


# --- x5chain -----------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.timezone.utc)


def _cert(subject: str, issuer: str, pub, ikey, *, ca: bool, digital_signature: bool):
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer)).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ikey.public_key()), critical=False)
            .sign(ikey, hashes.SHA256()))


def _x5_statement(lk, chain) -> bytes:
    der = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    return cose.sign1(lk, {1: cose.ES256, 15: {1: "https://issuer.example/x", 2: "s"}, 33: der}, b"payload")


def test_x5chain_leaf_that_is_a_ca_is_refused():
    """A leaf with digitalSignature (so the KeyUsage rule passes) that is a CA: only the
    leaf-is-not-a-CA rule refuses it."""
    rk, lk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _cert("root", "root", rk.public_key(), rk, ca=True, digital_signature=False)
    ok_leaf = _cert("leaf", "root", lk.public_key(), rk, ca=False, digital_signature=True)
    SignedStatement.parse(_x5_statement(lk, [ok_leaf])).verify(trust_anchors=[root])
    ca_leaf = _cert("leaf", "root", lk.public_key(), rk, ca=True, digital_signature=True)
    st = SignedStatement.parse(_x5_statement(lk, [ca_leaf]))
    with pytest.raises(VerificationError) as e:
        st.verify(trust_anchors=[root])
    assert e.value.check == "x509.chain" and "CA" in e.value.detail


# --- issuer keys are named by their RFC 9679 thumbprint ----------------------------------


def _cose_key_file(tmp_path, priv, label: bytes):
    ck = keys.cose_key_from_public(priv.public_key(), kid=label)
    p = tmp_path / "issuer.cbor"
    p.write_bytes(keys.encode_keyset([ck]))
    return p


def test_log_trusts_issuer_keys_by_thumbprint_not_file_label(tmp_path):
    from tlog.keys import TrustStore

    priv = key("p256", 1)
    p = _cose_key_file(tmp_path, priv, b"label-chosen-by-the-file")
    ts = TrustStore.load([{"path": str(p), "iss": ["https://issuer.example"]}], [])
    assert list(ts.issuer_keys) == [keys.thumbprint(priv)]


def test_policy_document_keys_by_thumbprint_not_label():
    from verifier.policy import POLICY_VERSION, RegistrationPolicy

    priv = key("p256", 1)
    doc = {"version": POLICY_VERSION, "previous": None,
           "issuer-keys": [keys.cose_key_from_public(priv.public_key(), kid=b"a-label")],
           "trust-anchors": [], "allowed-algs": [cose.ES256], "allowed-content-types": [],
           "max-statement-size": 1 << 20}
    pol = RegistrationPolicy.from_document(doc)
    assert list(pol.issuer_keys) == [keys.thumbprint(priv)]


# --- signed notes ------------------------------------------------------------------------


def test_checkpoint_needs_the_log_key_not_just_its_name():
    """Another key carrying the log's name (a witness or an attacker) signs the checkpoint; the
    log's own key did not. Names match, key IDs differ: no signature by the log key."""
    log = Signer.generate("log.example/x")
    impostor = Signer.generate("log.example/x")
    text = Checkpoint("log.example/x", 3, b"\x11" * 32).to_text()
    assert open_checkpoint(sign_note(text, [log]), log.verifier()).checkpoint.size == 3
    forged = sign_note(text, [impostor])
    for known in ([], [impostor.verifier()]):
        with pytest.raises(VerificationError) as e:
            open_checkpoint(forged, log.verifier(), known)
        assert e.value.check == "note.no-verified-signature"


# --- what a receipt's tree size proves (docs/ARCHITECTURE.md, "What a receipt proves") ----


def _relabelled_consistency(size1: int, size2: int, claimed: int) -> bytes:
    """A consistency receipt size1 -> size2 whose unsigned size2 was changed to ``claimed``."""
    real = LOG.consistency_receipt(size1, size2)
    m = cose.decode_sign1(real)
    [(_, _, path)] = receipt.Receipt.parse(real).proofs(-2)
    return cose.encode_sign1(m.protected_raw, {396: {-2: [receipt.encode_consistency_proof(size1, claimed, path)]}},
                             None, m.signature)


def test_receipt_size_confirmed_only_by_a_signed_checkpoint():
    info = receipt.verify_inclusion_receipt(LOG.inclusion_receipt(3), LOG.leaf_inputs[3], LOG.keys())
    receipt.confirm_with_checkpoint(info.size, info.root, 6, LOG.root(6))
    relabelled = _relabelled_consistency(3, 6, 7)
    ci = receipt.verify_consistency_receipt(relabelled, size1=3, root1=LOG.root(3), keys=LOG.keys())
    assert (ci.size2, ci.root2) == (7, LOG.root(6))  # verifies: the size is not signed
    cases = [((7, LOG.root(6)), (6, LOG.root(6)), "receipt.tree-size"),
             ((6, LOG.root(6)), (6, LOG.root(5)), "receipt.checkpoint-mismatch"),
             ((6, LOG.root(6)), (5, LOG.root(5)), "receipt.unconfirmed")]
    for (size, root), (cs, cr), check in cases:
        with pytest.raises(VerificationError) as e:
            receipt.confirm_with_checkpoint(size, root, cs, cr)
        assert e.value.check == check


def test_cli_consistency_refuses_a_receipt_with_a_false_size(tmp_path, capsys):
    from verifier import note
    from verifier.cli import main

    signer = note.Signer.generate(LOG_ORIGIN)
    cp = tmp_path / "cp6.txt"
    cp.write_text(note.sign_note(note.Checkpoint(LOG_ORIGIN, 6, LOG.root(6)).to_text(), [signer]))
    pem = tmp_path / "log.pem"
    pem.write_bytes(LOG.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "r.cose").write_bytes(LOG.inclusion_receipt(2, 3))
    (tmp_path / "s.cose").write_bytes(LOG.statements[2])
    base = ["consistency", "--receipt", str(tmp_path / "r.cose"), "--statement", str(tmp_path / "s.cose"),
            "--log-key", str(pem), "--checkpoint", str(cp), "--vkey", signer.vkey, "--consistency-receipt"]
    (tmp_path / "c.cose").write_bytes(LOG.consistency_receipt(3, 6))
    assert main(base + [str(tmp_path / "c.cose")]) == 0
    (tmp_path / "c7.cose").write_bytes(_relabelled_consistency(3, 6, 7))
    assert main(base + [str(tmp_path / "c7.cose")]) == 1
    assert "receipt.tree-size" in capsys.readouterr().out


# --- consistency from and to the empty tree --------------------------------------------------


def test_consistency_of_the_empty_tree():
    bogus = b"\x22" * 32
    assert merkle.root_from_consistency_proof(0, 0, [], merkle.EMPTY_ROOT) == merkle.EMPTY_ROOT
    with pytest.raises(VerificationError) as e:
        merkle.verify_consistency(0, 0, [], bogus, bogus)
    assert e.value.check == "consistency.root1-mismatch"
    with pytest.raises(VerificationError) as e:
        merkle.root_from_consistency_proof(0, 6, [LOG.root(6)], merkle.EMPTY_ROOT)
    assert e.value.check == "consistency.range"


# --- note key names and key strings --------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\u2003b", "a\tb", "a\x01b",
                                  7, None])
def test_invalid_key_names_refused(name):
    from verifier.note import NoteVerifier, is_valid_name

    assert not is_valid_name(name)
    with pytest.raises(VerificationError):
        Signer.generate(name)
    with pytest.raises(VerificationError):
        NoteVerifier(name, 1, b"\x01" * 32)


def test_valid_key_names_accepted():
    from verifier.note import is_valid_name

    for name in ("log.example/x", "a", "ünïcode.example", "x:y@z"):
        assert is_valid_name(name) and Signer.generate(name).name == name


@pytest.mark.parametrize("bad", [None, 7, b"PRIVATE+KEY+x+00000000+AA=="])
def test_key_strings_must_be_text(bad):
    from verifier.note import NoteVerifier

    with pytest.raises(VerificationError) as e:
        NoteVerifier.from_vkey(bad)
    assert e.value.check == "vkey.malformed"
    with pytest.raises(VerificationError) as e:
        Signer.from_skey(bad)
    assert e.value.check == "skey.malformed"


def test_checkpoint_fields_checked():
    from verifier.note import MAX_SIGNATURES

    ok = Checkpoint("o", 0, b"\x00" * 32, ("ext",))
    assert Checkpoint.parse(ok.to_text()) == ok
    assert Checkpoint("o", (1 << 64) - 1, b"\x00" * 32).size == (1 << 64) - 1
    for kw in ({"origin": ""}, {"origin": "a\nb"}, {"origin": 5}, {"size": -1}, {"size": 1 << 64},
               {"size": True}, {"size": "1"}, {"root": b"\x00" * 31}, {"root": "00" * 32},
               {"extensions": ("",)}, {"extensions": ("a\nb",)}, {"extensions": (5,)}):
        args = {"origin": "o", "size": 0, "root": b"\x00" * 32, "extensions": (), **kw}
        with pytest.raises(VerificationError) as e:
            Checkpoint(**args)
        assert e.value.check == "checkpoint.syntax", kw
    signers = [Signer.generate(f"k{i}") for i in range(MAX_SIGNATURES + 1)]
    with pytest.raises(VerificationError):
        sign_note(ok.to_text(), signers)
    assert sign_note(ok.to_text(), signers[:MAX_SIGNATURES]).count("\u2014 ") == MAX_SIGNATURES


def test_policy_document_validated():
    from verifier.policy import POLICY_VERSION, RegistrationPolicy

    good = {"version": POLICY_VERSION, "previous": None, "issuer-keys": [keys.cose_key_from_public(key("p256", 1))],
            "trust-anchors": [], "allowed-algs": [cose.ES256], "allowed-content-types": ["application/json"],
            "max-statement-size": 1 << 20}
    RegistrationPolicy.from_document(good)
    for over in ({"version": 99}, {"version": True}, {"version": "2"}, {"previous": "ab"}, {"previous": "g" * 64}, {"issuer-keys": None},
                 {"issuer-keys": [{1: 99}]}, {"trust-anchors": None}, {"trust-anchors": ["not der"]},
                 {"trust-anchors": [b"not der"]}, {"allowed-algs": None}, {"allowed-algs": [True]},
                 {"allowed-algs": ["-7"]}, {"allowed-content-types": None}, {"allowed-content-types": [1]},
                 {"max-statement-size": 0}, {"max-statement-size": True}, {"max-statement-size": "1"}):
        with pytest.raises(VerificationError) as e:
            RegistrationPolicy.from_document({**good, **over})
        assert e.value.check == "policy.document", over
    with pytest.raises(VerificationError):
        RegistrationPolicy.from_document([good])


def test_receipt_kid_naming_a_key_of_another_type():
    """The receipt's kid names an Ed25519 or P-384 key: a clean VerificationError, no crash."""
    leaf = LOG.leaf_inputs[3]
    for other in (key("ed25519", 1), key("p384", 1)):
        with pytest.raises(VerificationError):
            receipt.verify_inclusion_receipt(LOG.inclusion_receipt(3), leaf, {LOG.kid: other.public_key()})


def test_policy_evaluates_x5chain_statements():
    """The monitor's policy judges x5chain statements: a chain to the policy's anchor passes,
    another chain is an x509 violation, and without anchors an x5chain statement is an x509
    violation too (not 'malformed')."""
    from verifier.policy import PolicyViolation, RegistrationPolicy

    rk, lk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _cert("root", "root", rk.public_key(), rk, ca=True, digital_signature=False)
    leaf = _cert("leaf", "root", lk.public_key(), rk, ca=False, digital_signature=True)
    other = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("root", "root", other.public_key(), other, ca=True, digital_signature=False)
    st = SignedStatement.parse(_x5_statement(lk, [leaf]))

    def policy(anchors):
        return RegistrationPolicy.from_document({
            "version": 1, "previous": None, "issuer-keys": [],
            "trust-anchors": [c.public_bytes(serialization.Encoding.DER) for c in anchors],
            "allowed-algs": [cose.ES256], "allowed-content-types": [], "max-statement-size": 1 << 20})

    assert policy([root]).evaluate(st) is True
    for anchors in ([other_root], []):
        with pytest.raises(PolicyViolation) as e:
            policy(anchors).evaluate(st)
        assert e.value.check == "policy.x509", anchors


def test_note_verifier_identity():
    from verifier.note import CosignatureSigner, NoteVerifier

    s = Signer.generate("a.example")
    c = CosignatureSigner.generate("w.example")
    assert not s.verifier().is_cosigner and c.verifier().is_cosigner
    assert s.verifier() == NoteVerifier.from_vkey(s.vkey) and s.verifier() != c.verifier()
    assert s.verifier() != s.vkey and s.verifier() != None  # noqa: E711 - other types compare unequal


def test_checkpoint_needs_the_log_name_not_just_its_key_id():
    """A cosigner whose 4-byte key ID equals the log's (2**32 work to find a name for it) signs
    the checkpoint: the names differ, so it is no signature by the log key."""
    log = Signer.generate("log.example/x")
    impostor = Signer.generate("witness.example")
    impostor._key_id = log.key_id  # the ground collision, made directly
    from verifier.note import NoteVerifier

    iv = NoteVerifier.from_public_key("witness.example", impostor.public_key)
    iv._key_id = log.key_id
    text = Checkpoint("log.example/x", 3, b"\x11" * 32).to_text()
    with pytest.raises(VerificationError) as e:
        open_checkpoint(sign_note(text, [impostor]), log.verifier(), [iv])
    assert e.value.check == "note.no-verified-signature"
