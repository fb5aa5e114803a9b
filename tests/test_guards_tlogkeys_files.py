"""The log's key files and kids (tlog/keys.py, issue 16 mutation testing): a receipt key file of
the wrong type or curve is refused with a clear error, a retired key is never the active one,
the rotation steps, a new log's checkpoint key needs an origin, and the forms of a kid in a URL."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tlog import keys as tkeys


def _pem(priv) -> bytes:
    return priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


@pytest.mark.parametrize("priv", [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP384R1())],
                         ids=["ed25519", "p384"])
def test_a_receipt_key_that_is_not_p256_is_refused_by_name(tmp_path, priv):
    """The receipt key signs ES256 receipts: an Ed25519 key (no curve) or a P-384 key in
    receipt.pem is a KeyError_ naming the file and what it must be, not a crash or a log that
    signs with another algorithm."""
    path = tmp_path / tkeys.RECEIPT_KEY
    path.write_bytes(_pem(priv))
    with pytest.raises(tkeys.KeyError_, match="must be a P-256 EC private key") as e:
        tkeys.load_receipt_key(path)
    assert str(path) in str(e.value)
    # and so at start-up of a log whose receipt key was replaced by such a file
    data = tmp_path / "log"
    tkeys.create_keys(data, "log.example/k")
    (data / "keys" / tkeys.RECEIPT_KEY).write_bytes(_pem(priv))
    with pytest.raises(tkeys.KeyError_, match="P-256"):
        tkeys.load_keys(data, "log.example/k")
    good = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(_pem(good))
    assert tkeys.load_receipt_key(path).kid == tkeys._kid_of(good.public_key())


def test_rotation_retires_the_old_key_and_never_lists_the_active_one(tmp_path):
    first = tkeys.create_keys(tmp_path, "log.example/r")
    assert first.retired == {}
    assert tkeys.finish_rotation(tmp_path) is None  # nothing prepared: nothing changes
    assert tkeys.load_keys(tmp_path).receipt.kid == first.receipt.kid
    active, nxt = tkeys.prepare_rotation(tmp_path)
    assert active.kid == first.receipt.kid and nxt.kid != active.kid
    # step 2 interrupted after the retired copy was written, before the new key was installed:
    # the active key is still the old one, and it is not listed as retired
    kdir = tmp_path / "keys"
    (kdir / tkeys.RETIRED_DIR).mkdir()
    (kdir / tkeys.RETIRED_DIR / f"{active.kid.hex()}.pem").write_bytes(
        tkeys.public_pem(active.private.public_key()))
    mid = tkeys.load_keys(tmp_path)
    assert mid.receipt.kid == active.kid and mid.retired == {}
    assert mid.kids() == {active.kid}
    # step 2 finished: the new key is active, the old one retired (still listed for verification)
    assert tkeys.finish_rotation(tmp_path) == (active.kid, nxt.kid)
    after = tkeys.load_keys(tmp_path)
    assert after.receipt.kid == nxt.kid and set(after.retired) == {active.kid}
    assert set(after.public_keys()) == {active.kid, nxt.kid}
    assert not (kdir / tkeys.NEXT_RECEIPT_KEY).exists()
    assert tkeys.finish_rotation(tmp_path) is None  # done: a second step 2 is a no-op
    assert tkeys.load_keys(tmp_path).receipt.kid == nxt.kid


def test_a_new_checkpoint_key_needs_an_origin(tmp_path):
    """No checkpoint key yet and no origin: refused by name, and no key named for "" written."""
    with pytest.raises(tkeys.KeyError_, match="no checkpoint key yet and no origin given"):
        tkeys.create_keys(tmp_path, "")
    assert not (tmp_path / "keys" / tkeys.NOTE_SKEY).exists()
    # with an existing checkpoint key the origin is not needed
    k = tkeys.create_keys(tmp_path, "log.example/o")
    again = tkeys.create_keys(tmp_path, "")
    assert again.origin == k.origin == "log.example/o" and again.receipt.kid == k.receipt.kid


def test_kid_candidates_read_base64url_hex_and_raw():
    kid = bytes([0xFB, 0xEF, 0xFF]) * 11  # base64url of it is made of "-" and "_"
    b64 = base64.urlsafe_b64encode(kid).decode().rstrip("=")
    assert "-" in b64 and "_" in b64
    assert kid in tkeys.kid_candidates(b64)
    assert tkeys.kid_candidates(kid.hex()) == [base64.urlsafe_b64decode(kid.hex() + "=" * (-len(kid.hex()) % 4)),
                                               kid, kid.hex().encode()]
    # an odd number of hex digits is not hex (and no crash): base64url and the raw text only
    assert tkeys.kid_candidates("abc") == [base64.urlsafe_b64decode("abc="), b"abc"]
    # neither base64url nor hex: the raw kid
    assert tkeys.kid_candidates("a.b") == [b"a.b"]
