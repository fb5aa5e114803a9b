"""Receipt header fields decoded the same way by the one-pass path and the general decoder
(verifier/receipt.py, issue 16, mutation testing)."""

from __future__ import annotations

import pytest

from tests.test_receipt_support import LOG_ISSUER, LOG_ORIGIN, Log
from verifier import VerificationError, cbor, cose, merkle, receipt

LOG = Log(6)


def _receipt_with_alg(alg) -> bytes:
    """A receipt in the common (one-pass) shape whose protected alg is ``alg``, signed ES256."""
    prot = cbor.dumps({1: alg, 4: LOG.kid, 15: {1: LOG_ISSUER, 2: LOG_ORIGIN, 6: 1700000000}, receipt.HDR_VDS: 1})
    path = merkle.inclusion_proof(LOG.leaf_hashes, 2)
    sig = cose.sign_tbs(LOG.priv, cose.ES256, cose.sig_structure(prot, LOG.root(6)))
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(6, 2, path)])


@pytest.mark.parametrize("alg", [True, False, "ES256", b"\x26", -7.0])
def test_alg_that_is_not_an_int_is_no_alg(alg):
    """An alg that is a bool, text, bytes or float is no COSE algorithm: both decoders report
    it missing (receipt.alg), neither hands it to the signature check."""
    data = _receipt_with_alg(alg)
    receipt._PROT_CACHE.clear()
    assert receipt._fast_layout(data) is not None
    fast, general = receipt.Receipt.parse(data), receipt.Receipt.parse(bytearray(data))
    assert fast.alg is None and general.alg is None
    for d in (data, bytearray(data)):
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(d, LOG.leaf_inputs[2], LOG.keys())
        assert e.value.check == "receipt.alg"


def test_int_alg_kept():
    data = _receipt_with_alg(cose.ES256)
    receipt._PROT_CACHE.clear()
    assert receipt.Receipt.parse(data).alg == cose.ES256 == receipt.Receipt.parse(bytearray(data)).alg
    assert receipt.verify_inclusion_receipt(data, LOG.leaf_inputs[2], LOG.keys()).index == 2
