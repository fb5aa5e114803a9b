"""RFC 9942 receipts (vds 1), consistency receipts, transparent statements, conformance vectors."""

from __future__ import annotations

import hashlib

import pytest

from tests.test_receipt_support import LOG_ISSUER, LOG_ORIGIN, Log, key, leaf_input_of, signed_statement
from verifier import VerificationError, cbor, cose, keys, merkle, receipt, transparent


@pytest.fixture(scope="module")
def log():
    return Log(11)


# --- conformance vectors ---------------------------------------------------------------


def test_scitt_valid_es256(vectors_dir):
    d = vectors_dir / "scitt-examples" / "valid-es256"
    log_keys = keys.load_public_keys(d / "log-key.pub")
    stmt = (d / "statement.cose").read_bytes()
    info = receipt.verify_inclusion_receipt((d / "receipt.cose").read_bytes(), hashlib.sha256(stmt).digest(), log_keys)
    assert (info.size, info.index, info.vds, info.alg) == (8, 2, 1, cose.ES256)
    ts = (d / "transparent-statement.cose").read_bytes()
    assert transparent.extract_receipts(ts) == [(d / "receipt.cose").read_bytes()]
    assert cose.decode_sign1(ts).statement_bytes() == stmt
    results = transparent.verify_transparent_statement(ts, log_keys)
    assert [r.status for r in results] == ["ok"] and results[0].info.root == info.root
    # the same receipt does not verify for another leaf or with another key
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt((d / "receipt.cose").read_bytes(), hashlib.sha256(b"x").digest(), log_keys)
    assert e.value.check == "receipt.signature"
    with pytest.raises(VerificationError):
        receipt.verify_inclusion_receipt((d / "receipt.cose").read_bytes(), hashlib.sha256(stmt).digest(),
                                         [key("p256", 3).public_key()])


def test_scitt_fail_tampered_path(vectors_dir):
    d = vectors_dir / "scitt-examples" / "fail-tampered-path"
    log_keys = keys.load_public_keys(d / "log-key.pub")
    stmt = (d / "statement.cose").read_bytes()
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt((d / "receipt.cose").read_bytes(), hashlib.sha256(stmt).digest(), log_keys)
    assert e.value.check == "receipt.signature"
    results = transparent.verify_transparent_statement((d / "transparent-statement.cose").read_bytes(), log_keys)
    assert [r.status for r in results] == ["failed"] and results[0].check == "receipt.signature"


def test_cose_wg_receipt_vectors_decode_and_proof_arithmetic(vectors_dir):
    d = vectors_dir / "cose-receipts"
    inc = receipt.Receipt.parse((d / "inclusion-receipt.cbor").read_bytes())
    con = receipt.Receipt.parse((d / "consistency-receipt.cbor").read_bytes())
    for r in (inc, con):
        assert (r.vds, r.alg, r.kid, r.issuer) == (1, cose.ES256, b"test-key-1", "https://transparency-service.example.com")
        assert r.sign1.payload is None and len(r.sign1.signature) == 64
    [(size, index, path)] = inc.proofs(-1)
    [(size1, size2, cpath)] = con.proofs(-2)
    assert (size, index, len(path), size1, size2, len(cpath)) == (5, 3, 3, 3, 5, 4)
    leaf3 = bytes.fromhex("987ba8093cabe31046a77bbe9aa4b5f62675d943386c7fbbe249cbaca5da242d")
    assert cpath[1] == leaf3
    root5 = merkle.root_from_inclusion_proof(index, size, leaf3, path)
    assert root5.hex().startswith("895731b5") and root5.hex().endswith("589c")
    # root(3) = H(1 || H(leaves 0,1) || leaf 2); both appear in the consistency path
    root3 = merkle.node_hash(cpath[2], cpath[0])
    assert root3.hex().startswith("688928db") and root3.hex().endswith("de3c")
    assert merkle.root_from_consistency_proof(3, 5, cpath, root3) == root5
    # signing key unpublished: signature checks must fail with any key, after the proof math
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt((d / "consistency-receipt.cbor").read_bytes(), size1=3, root1=root3,
                                           keys=[key("p256").public_key()])
    assert e.value.check == "receipt.signature"
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt((d / "consistency-receipt.cbor").read_bytes(), size1=3, root1=root5,
                                           keys=[key("p256").public_key()])
    assert e.value.check == "receipt.consistency-proof"
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt((d / "inclusion-receipt.cbor").read_bytes(), b"\x00" * 32,
                                         {b"test-key-2": key("p256").public_key()})
    assert e.value.check == "receipt.unknown-key"


def test_real_transparent_statements_unsupported_vds(vectors_dir):
    expected = {"1ts-statement.scitt": [2], "2ts-statement.scitt": [2, 3]}
    for name, vds in expected.items():
        ts = (vectors_dir / "transparent-statements" / name).read_bytes()
        items = transparent.extract_receipts(ts)
        assert [receipt.Receipt.parse(r).vds for r in items] == vds
        results = transparent.verify_transparent_statement(ts, {})
        assert [(r.status, r.check, r.vds) for r in results] == [("unsupported", "receipt.unsupported-vds", v) for v in vds]
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(items[0], leaf_input_of(ts), [key("p256").public_key()])
        assert e.value.check == "receipt.unsupported-vds"


# --- our own log -------------------------------------------------------------------------


def test_every_index_of_several_sizes(log):
    for size in (1, 2, 3, 4, 5, 8, 11):
        for i in range(size):
            info = receipt.verify_inclusion_receipt(log.inclusion_receipt(i, size), log.leaf_inputs[i], log.keys())
            assert (info.size, info.index, info.root) == (size, i, log.root(size))
            assert (info.issuer, info.subject, info.kid, info.iat) == (LOG_ISSUER, LOG_ORIGIN, log.kid, 1700000000)
            if i + 1 < size:
                with pytest.raises(VerificationError):
                    receipt.verify_inclusion_receipt(log.inclusion_receipt(i, size), log.leaf_inputs[i + 1], log.keys())


def test_receipt_protected_header_layout(log):
    prot = log.protected()
    assert cbor.loads(prot) == {1: cose.ES256, 4: log.kid, 15: {1: LOG_ISSUER, 2: LOG_ORIGIN, 6: 1700000000}, 395: 1}
    assert prot[:1] == b"\xa4" and cbor.dumps(cbor.loads(prot)) == prot
    r = log.inclusion_receipt(0)
    m = cose.decode_sign1(r)
    assert m.payload is None and isinstance(m.unprotected[396][-1][0], bytes)


@pytest.mark.parametrize("kind", ["p384", "p521", "ed25519", "rsa"])
def test_other_log_algorithms(kind):
    log = Log(3, key(kind))
    info = receipt.verify_inclusion_receipt(log.inclusion_receipt(1), log.leaf_inputs[1], [log.public])
    assert info.alg == cose.alg_for_key(log.priv)


def test_key_selection(log):
    r = log.inclusion_receipt(3)
    other = key("p256", 4).public_key()
    receipt.verify_inclusion_receipt(r, log.leaf_inputs[3], [other, log.public])
    receipt.verify_inclusion_receipt(r, log.leaf_inputs[3], log.public)
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(r, log.leaf_inputs[3], {b"other": other})
    assert e.value.check == "receipt.unknown-key"
    with pytest.raises(VerificationError) as e:  # right kid, wrong key
        receipt.verify_inclusion_receipt(r, log.leaf_inputs[3], {log.kid: other})
    assert e.value.check == "receipt.signature"
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(r, log.leaf_inputs[3], [])
    assert e.value.check == "receipt.unknown-key"


def _receipt_with(log, vdp_value, *, payload=None, size=None, prot=None):
    prot = prot if prot is not None else log.protected()
    size = size or 11
    sig = cose.sign_tbs(log.priv, log.alg, cose.sig_structure(prot, log.root(size)))
    return cose.encode_sign1(prot, {396: vdp_value}, payload, sig)


def test_inline_proofs_and_attached_root(log):
    path = merkle.inclusion_proof(log.leaf_hashes, 5)
    inline = _receipt_with(log, {-1: [[11, 5, path]]})
    assert receipt.verify_inclusion_receipt(inline, log.leaf_inputs[5], log.keys()).root == log.root(11)
    attached = _receipt_with(log, {-1: [receipt.encode_inclusion_proof(11, 5, path)]}, payload=log.root(11))
    receipt.verify_inclusion_receipt(attached, log.leaf_inputs[5], log.keys())
    wrong = _receipt_with(log, {-1: [receipt.encode_inclusion_proof(11, 5, path)]}, payload=log.root(10))
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(wrong, log.leaf_inputs[5], log.keys())
    assert e.value.check == "receipt.root-mismatch"


@pytest.mark.parametrize(
    "vdp,check",
    [
        ({-1: []}, "receipt.vdp"),
        ({-2: [b"x"]}, "receipt.vdp"),
        ({-1: [b"\x83\x0b\x05"]}, "cbor.truncated"),
        ({-1: [[11, 5]]}, "receipt.proof-format"),
        ({-1: [[11, -1, []]]}, "receipt.proof-format"),
        ({-1: [[11, 5, [b"short"]]]}, "receipt.proof-format"),
        ({-1: [[11, 11, [b"\x00" * 32] * 4]]}, "receipt.proof-format"),
        ({-1: [[0, 0, []]]}, "receipt.proof-format"),
        ({-1: [[11, 5, []]]}, "receipt.proof-format"),
        ({-1: [[11, 5, [b"\x00" * 32] * 2]]}, "receipt.inclusion-proof"),
        ({-1: [[11, 5, [b"\x00" * 32] * 65]]}, "receipt.proof-format"),
        ({-1: [[11, 5, [b"\x00" * 32] * 4], [11, 5, [b"\x00" * 32] * 4]]}, "receipt.proof-count"),
        ({-1: "x"}, "receipt.vdp"),
        ("x", "receipt.vdp"),
    ],
)
def test_malformed_proofs(log, vdp, check):
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(_receipt_with(log, vdp), log.leaf_inputs[5], log.keys())
    assert e.value.check == check


def test_protected_header_requirements(log):
    path = merkle.inclusion_proof(log.leaf_hashes, 5)
    vdp = {-1: [receipt.encode_inclusion_proof(11, 5, path)]}
    no_vds = cbor.dumps({1: log.alg, 4: log.kid})
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(_receipt_with(log, vdp, prot=no_vds), log.leaf_inputs[5], log.keys())
    assert e.value.check == "receipt.vds"
    no_alg = cbor.dumps({4: log.kid, 395: 1})
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(_receipt_with(log, vdp, prot=no_alg), log.leaf_inputs[5], log.keys())
    assert e.value.check == "receipt.alg"
    vds2 = cbor.dumps({1: log.alg, 4: log.kid, 395: 2})
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(_receipt_with(log, vdp, prot=vds2), log.leaf_inputs[5], log.keys())
    assert e.value.check == "receipt.unsupported-vds"


def test_size_one_tree_empty_path():
    log = Log(1)
    r = log.inclusion_receipt(0, 1)
    assert receipt.Receipt.parse(r).proofs(-1)[0] == [1, 0, []]
    assert receipt.verify_inclusion_receipt(r, log.leaf_inputs[0], log.keys()).root == log.leaf_hashes[0]


def test_consistency_receipts(log):
    for s1 in range(1, 11):
        for s2 in (s1, 11):
            if s1 == s2 == 11:
                continue
            ci = receipt.verify_consistency_receipt(log.consistency_receipt(s1, s2), size1=s1, root1=log.root(s1),
                                                    keys=log.keys())
            assert (ci.size1, ci.size2, ci.root2) == (s1, s2, log.root(s2))
    with pytest.raises(VerificationError) as e:  # the proof recomputes root(5) and catches a wrong one
        receipt.verify_consistency_receipt(log.consistency_receipt(5, 11), size1=5, root1=log.root(6), keys=log.keys())
    assert e.value.check == "receipt.consistency-proof"
    r = log.consistency_receipt(4, 11)
    with pytest.raises(VerificationError) as e:  # size 4: root1 is the proof's start, so root2 comes out wrong
        receipt.verify_consistency_receipt(r, size1=4, root1=log.root(5), keys=log.keys())
    assert e.value.check == "receipt.signature"
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(r, size1=5, root1=log.root(5), keys=log.keys())
    assert e.value.check == "receipt.size-mismatch"
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(r, size1=4, root1=log.root(4), keys=[key("p256", 8).public_key()])
    assert e.value.check == "receipt.signature"
    with pytest.raises(VerificationError) as e:  # an inclusion receipt is not a consistency receipt
        receipt.verify_consistency_receipt(log.inclusion_receipt(3), size1=4, root1=log.root(4), keys=log.keys())
    assert e.value.check == "receipt.vdp"


def test_assemble_needs_a_proof():
    with pytest.raises(ValueError):
        receipt.assemble_receipt(b"", b"sig")


# --- transparent statements --------------------------------------------------------------


def test_attach_extract_roundtrip(log):
    stmt = log.statements[4]
    r1, r2 = log.inclusion_receipt(4), log.inclusion_receipt(4, 5)
    ts = transparent.attach_receipts(stmt, [r1])
    assert transparent.extract_receipts(ts) == [r1]
    ts2 = transparent.attach_receipts(ts, [r2])
    assert transparent.extract_receipts(ts2) == [r1, r2]
    m = cose.decode_sign1(ts2)
    assert m.statement_bytes() == stmt and all(isinstance(x, bytes) for x in m.unprotected[394])
    assert transparent.extract_receipts(stmt) == []
    results = transparent.verify_transparent_statement(ts2, log.keys(), issuer_key=key("p256", 1).public_key())
    assert [(r.status, r.info.size) for r in results] == [("ok", 11), ("ok", 5)]


def test_attach_keeps_other_unprotected_labels(log):
    stmt = signed_statement(unprotected={33: b"cert"})
    ts = transparent.attach_receipts(stmt, [b"\xd2\x84\x40\xa0\xf6\x40"])
    m = cose.decode_sign1(ts)
    assert m.unprotected[33] == b"cert" and m.statement_bytes() == cose.decode_sign1(stmt).statement_bytes()


def test_inline_tagged_receipts_accepted(log):
    r = log.inclusion_receipt(6)
    stmt = log.statements[6]
    m = cose.decode_sign1(stmt)
    # build {394: [<tagged receipt inline>]} by hand
    unprot = b"\xa1\x19\x01\x8a\x81" + r
    ts = stmt[: m.unprotected_start] + unprot + stmt[m.unprotected_end:]
    assert transparent.extract_receipts(ts) == [r]
    assert [x.status for x in transparent.verify_transparent_statement(ts, log.keys())] == ["ok"]


def test_transparent_statement_failures_are_per_receipt(log):
    good = log.inclusion_receipt(2)
    wrong_leaf = log.inclusion_receipt(3)
    ts = transparent.attach_receipts(log.statements[2], [b"garbage", wrong_leaf, good])
    rep = transparent.check_transparent_statement(ts, log.keys())
    assert [r.status for r in rep.receipts] == ["failed", "failed", "ok"] and rep.ok
    assert rep.receipts[0].check == "cose.tag" and rep.receipts[1].check == "receipt.signature"
    # issuer check
    rep = transparent.check_transparent_statement(ts, log.keys(), issuer_key=key("p256", 9).public_key())
    assert not rep.ok and rep.issuer_error.check == "statement.signature"
    with pytest.raises(VerificationError):
        transparent.verify_transparent_statement(ts, log.keys(), issuer_key=key("p256", 9).public_key())
    # no receipts at all
    rep = transparent.check_transparent_statement(log.statements[2], log.keys())
    assert not rep.ok and rep.receipts[0].check == "receipt.none"
    # receipts label of the wrong type
    m = cose.decode_sign1(log.statements[2])
    bad = log.statements[2][: m.unprotected_start] + b"\xa1\x19\x01\x8a\x01" + log.statements[2][m.unprotected_end:]
    rep = transparent.check_transparent_statement(bad, log.keys())
    assert rep.receipts[0].check == "receipt.receipts-header" and not rep.ok


def test_transparent_statement_with_detached_payload_issuer_check(log):
    priv = key("p256", 1)
    stmt = signed_statement(priv, payload=b"detached!", detached=True)
    r = Log(1)
    r.statements, r.leaf_inputs = [stmt], [leaf_input_of(stmt)]
    r.leaf_hashes = [merkle.leaf_hash(r.leaf_inputs[0])]
    ts = r.transparent_statement(0)
    rep = transparent.check_transparent_statement(ts, r.keys(), issuer_key=priv.public_key())
    assert rep.issuer_error.check == "statement.payload-missing"
    rep = transparent.check_transparent_statement(ts, r.keys(), issuer_key=priv.public_key(), payload=b"detached!")
    assert rep.ok
