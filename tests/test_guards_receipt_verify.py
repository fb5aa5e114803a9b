"""Receipt verification refuses what RFC 9942 / RFC 9162 do not let it accept (issue 16, the
mutation survivors of verifier/receipt.py): a consistency receipt of another verifiable data
structure, a consistency proof whose sizes are not 0 < size1 <= size2, and a transparent
statement whose issuer signature does not chain to the given trust anchors."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.test_receipt_support import LOG_ISSUER, LOG_ORIGIN, Log
from tests.test_statement import _cert, _x5_statement
from verifier import VerificationError, cbor, cose, merkle, receipt, transparent

LOG = Log(8)


def _consistency(size1: int, size2: int, path, *, root: bytes, prot: bytes | None = None) -> bytes:
    """A consistency receipt whose proof says (size1, size2, path), its signature over ``root``."""
    prot = prot or LOG.protected()
    sig = cose.sign_tbs(LOG.priv, LOG.alg, cose.sig_structure(prot, root))
    return receipt.assemble_receipt(prot, sig, consistency=[receipt.encode_consistency_proof(size1, size2, path)])


def _prot(**fields) -> bytes:
    hdr = {1: LOG.alg, 4: LOG.kid, 15: {1: LOG_ISSUER, 2: LOG_ORIGIN, 6: 1700000000}, receipt.HDR_VDS: 1}
    for k, v in fields.items():
        label = {"vds": receipt.HDR_VDS, "alg": 1}[k]
        if v is None:
            hdr.pop(label)
        else:
            hdr[label] = v
    return cbor.dumps(hdr)


def test_consistency_receipt_of_sound_shape_verifies():
    path = merkle.consistency_proof(LOG.leaf_hashes, 3)
    info = receipt.verify_consistency_receipt(_consistency(3, 8, path, root=LOG.root(8)), size1=3,
                                              root1=LOG.root(3), keys=LOG.keys())
    assert (info.size1, info.size2, info.root2) == (3, 8, LOG.root(8))


@pytest.mark.parametrize("vds,check", [(None, "receipt.vds"), (2, "receipt.unsupported-vds"),
                                       (0, "receipt.unsupported-vds")])
def test_consistency_receipt_needs_vds_rfc9162(vds, check):
    """RFC 9942: the proof under 396/-2 means an RFC 9162 consistency proof only when the
    protected vds (395) is 1 (RFC9162_SHA256). A receipt of another or no vds is refused even
    when its bytes would verify as an RFC 9162 proof under a valid signature."""
    path = merkle.consistency_proof(LOG.leaf_hashes, 3)
    data = _consistency(3, 8, path, root=LOG.root(8), prot=_prot(vds=vds))
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(data, size1=3, root1=LOG.root(3), keys=LOG.keys())
    assert e.value.check == check


def test_consistency_receipt_needs_alg():
    path = merkle.consistency_proof(LOG.leaf_hashes, 3)
    data = _consistency(3, 8, path, root=LOG.root(8), prot=_prot(alg=None))
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(data, size1=3, root1=LOG.root(3), keys=LOG.keys())
    assert e.value.check == "receipt.alg"


@pytest.mark.parametrize("size1,size2", [(0, 8), (0, 0), (8, 3), (5, 4)])
def test_consistency_sizes_outside_0_lt_size1_le_size2_are_a_proof_format_error(size1, size2):
    """RFC 9162 2.1.4: a consistency proof is defined for 0 < size1 <= size2 only. Other sizes
    are a malformed receipt (receipt.proof-format), refused before any Merkle arithmetic."""
    root1 = LOG.root(size1) if size1 <= 8 else bytes(32)
    data = _consistency(size1, size2, [LOG.leaf_hashes[0]], root=LOG.root(8))
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(data, size1=size1, root1=root1, keys=LOG.keys())
    assert e.value.check == "receipt.proof-format"


def test_consistency_receipt_equal_sizes():
    """size1 == size2 is a valid RFC 9162 proof (an empty path, root2 == root1)."""
    info = receipt.verify_consistency_receipt(_consistency(8, 8, [], root=LOG.root(8)), size1=8,
                                              root1=LOG.root(8), keys=LOG.keys())
    assert info.root2 == LOG.root(8)


@pytest.fixture(scope="module")
def pki():
    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", "root", rk.public_key(), rk, ca=True)
    inter = _cert("inter", "root", ik.public_key(), rk, ca=True)
    leaf = _cert("leaf", "inter", lk.public_key(), ik, ca=False, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    return {"lk": lk, "root": root, "chain": [leaf, inter]}


def _ts(stmt: bytes, log: Log) -> bytes:
    leaf_input = hashlib.sha256(cose.decode_sign1(stmt).statement_bytes()).digest()
    log.leaf_inputs = [leaf_input]
    log.leaf_hashes = [merkle.leaf_hash(leaf_input)]
    return transparent.attach_receipts(stmt, [log.inclusion_receipt(0, 1)])


def test_issuer_checked_against_trust_anchors(pki):
    """With trust anchors, the issuer check validates the x5chain to an anchor and the
    signature with the leaf's key (RFC 9360): a statement signed by another key, or chained
    to another root, has an issuer error although its receipt verifies."""
    log = Log(1)
    good = _ts(_x5_statement(pki["lk"], pki["chain"]), log)
    rep = transparent.check_transparent_statement(good, log.keys(), trust_anchors=[pki["root"]])
    assert rep.issuer_checked and rep.issuer_error is None and rep.ok
    assert transparent.verify_transparent_statement(good, log.keys(), trust_anchors=[pki["root"]])[0].status == "ok"

    forged = _ts(_x5_statement(ec.generate_private_key(ec.SECP256R1()), pki["chain"]), log)
    rep = transparent.check_transparent_statement(forged, log.keys(), trust_anchors=[pki["root"]])
    assert rep.receipts[0].status == "ok"
    assert rep.issuer_error is not None and rep.issuer_error.check == "statement.signature"
    assert not rep.ok
    with pytest.raises(VerificationError) as e:
        transparent.verify_transparent_statement(forged, log.keys(), trust_anchors=[pki["root"]])
    assert e.value.check == "statement.signature"

    ok = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("root", "root", ok.public_key(), ok, ca=True)
    rep = transparent.check_transparent_statement(good, log.keys(), trust_anchors=[other_root])
    assert rep.issuer_error is not None and rep.issuer_error.check == "x509.chain"


def _inclusion_with_alg(alg: int) -> bytes:
    """An inclusion receipt whose protected alg is ``alg`` (signed ES256 by the log's P-256 key)."""
    prot = _prot(alg=alg)
    sig = cose.sign_tbs(LOG.priv, cose.ES256, cose.sig_structure(prot, LOG.root(8)))
    path = merkle.inclusion_proof(LOG.leaf_hashes, 5)
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(8, 5, path)])


@pytest.mark.parametrize("alg,check", [(-8, "receipt.key"), (-35, "receipt.key"), (-37, "receipt.key"),
                                       (1, "receipt.alg"), (-999, "receipt.alg")])
def test_receipt_alg_the_log_key_cannot_verify_is_named(alg, check):
    """RFC 9052 8: the protected alg decides how the signature is verified. An alg that does
    not fit the trusted key (EdDSA, ES384 or PS256 against a P-256 key) is receipt.key, an alg
    that is no signature algorithm we know is receipt.alg: neither is reported as a bad
    signature, and neither verifies."""
    for data in (_inclusion_with_alg(alg), bytearray(_inclusion_with_alg(alg))):
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(data, LOG.leaf_inputs[5], LOG.keys())
        assert e.value.check == check
    assert receipt.verify_inclusion_receipt(_inclusion_with_alg(cose.ES256), LOG.leaf_inputs[5], LOG.keys()).index == 5


@pytest.mark.parametrize("proof", [b"", b"\x83", b"\x83\x01", b"\x83\x01\x00"])
def test_short_proof_bstr_is_refused_as_truncated(proof):
    """An inclusion proof bstr too short to hold [size, index, path] (empty included) is
    truncated CBOR, refused by name (no crash) on the one-pass and the general path alike."""
    one = Log(1)
    prot = one.protected()
    sig = cose.sign_tbs(one.priv, one.alg, cose.sig_structure(prot, one.root(1)))
    data = receipt.assemble_receipt(prot, sig, inclusion=[proof])
    for d in (data, bytearray(data)):
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(d, one.leaf_inputs[0], one.keys())
        assert e.value.check == "cbor.truncated"


def test_kid_map_of_any_mapping_type_selects_keys():
    """``keys`` may be any Mapping kid -> key (a read-only view of a key store too), not only a
    dict: the receipt verifies the same (the general path; the one-pass path takes dicts only)."""
    from types import MappingProxyType

    view = MappingProxyType(LOG.keys())
    assert receipt.verify_inclusion_receipt(LOG.inclusion_receipt(5), LOG.leaf_inputs[5], view).index == 5
    info = receipt.verify_consistency_receipt(LOG.consistency_receipt(3, 8), size1=3, root1=LOG.root(3), keys=view)
    assert info.root2 == LOG.root(8)


@pytest.mark.parametrize("tail", [b"", b"\x58", b"\x59", b"\x59\x00"])
def test_receipt_cut_after_its_vdp_head_is_refused_by_name(tail):
    """A message that ends inside the unprotected header right after ``{396: {-1: [`` (long
    enough for the one-pass layout) is truncated CBOR: refused as such, never an IndexError."""
    prot = LOG.protected()
    data = b"\xd2\x84\x58" + bytes([len(prot)]) + prot + b"\xa1\x19\x01\x8c\xa1\x20\x81" + tail
    assert len(data) >= 80
    for d in (data, bytearray(data)):
        with pytest.raises(VerificationError) as e:
            receipt.Receipt.parse(d)
        assert e.value.check == "cbor.truncated"
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(d, LOG.leaf_inputs[0], LOG.keys())
        assert e.value.check == "cbor.truncated"


def test_signed_bytes_do_not_depend_on_the_protected_header_cache():
    """The cached Sig_structure prefix of a protected header is only for 32-byte roots. A
    consistency receipt of equal sizes carries the caller's root1 as given (RFC 9162: the roots
    are compared, not recomputed); signed over a root of another length, it verifies the same
    whether or not its protected header was decoded before (and so cached)."""
    prot = LOG.protected()
    receipt.Receipt.parse(LOG.inclusion_receipt(5))  # one-pass parse: caches prot's decoding
    assert receipt._PROT_CACHE.get(prot) is not None
    for root in (b"\x07" * 31, b"\x07" * 33):
        data = _consistency(8, 8, [], root=root, prot=prot)
        info = receipt.verify_consistency_receipt(data, size1=8, root1=root, keys=LOG.keys())
        assert info.root2 == root


def test_transparent_statement_with_unknown_critical_label_is_refused():
    """RFC 9052 3.1: a statement whose protected ``crit`` names a label we do not process is
    rejected as a whole (statement.crit), even when only its receipts are checked."""
    from tests.test_receipt_support import signed_statement

    log = Log(1)
    ts = _ts(signed_statement(extra={2: [999], 999: 1}), log)
    with pytest.raises(VerificationError) as e:
        transparent.check_transparent_statement(ts, log.keys())
    assert e.value.check == "statement.crit"
    assert transparent.check_transparent_statement(_ts(signed_statement(), log), log.keys()).ok


def test_receipt_result_json_keeps_null_vds():
    """A receipt result without a vds (no receipt at all, or one that did not parse) reports
    vds as JSON null, not the text "None"."""
    from tests.test_receipt_support import signed_statement

    rep = transparent.check_transparent_statement(signed_statement(), LOG.keys())
    assert rep.receipts[0].check == "receipt.none"
    assert rep.receipts[0].to_json()["vds"] is None


@pytest.mark.parametrize("empty", [[], (), {}])
def test_empty_issuer_key_list_verifies_no_issuer(empty):
    """An issuer key list or kid map that holds no key trusts no one: the issuer check fails
    (statement.no-key) instead of passing with no signature checked, attached payload or not."""
    from tests.test_receipt_support import signed_statement

    log = Log(1)
    for stmt, payload in ((signed_statement(), None), (signed_statement(detached=True), None),
                          (signed_statement(detached=True), b'{"hello": "world"}')):
        ts = _ts(stmt, log)
        rep = transparent.check_transparent_statement(ts, log.keys(), issuer_key=empty, payload=payload)
        assert rep.issuer_checked and rep.receipts[0].ok
        assert rep.issuer_error is not None and rep.issuer_error.check == "statement.no-key"
        assert not rep.ok
        with pytest.raises(VerificationError) as e:
            transparent.verify_transparent_statement(ts, log.keys(), issuer_key=empty, payload=payload)
        assert e.value.check == "statement.no-key"
