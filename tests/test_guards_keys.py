"""The log's key files (tlog/keys.py) as tools and tests load them (issue 16, mutation testing):
the origin is read from checkpoint.vkey, missing keys are created for that origin and the vkey
is rewritten from the signing key."""

from __future__ import annotations

import pytest

from tlog import keys as tkeys


def test_existing_origin_reads_the_vkey(tmp_path):
    assert tkeys.existing_origin(tmp_path) is None  # no keys folder
    k = tkeys.create_keys(tmp_path, "log.example/a")
    assert tkeys.existing_origin(tmp_path) == "log.example/a" == k.origin
    (tmp_path / "keys" / tkeys.NOTE_VKEY).write_text("\n")
    assert tkeys.existing_origin(tmp_path) is None  # an empty vkey names no origin


def test_load_or_create_keeps_the_existing_keys_and_rewrites_the_vkey(tmp_path):
    first = tkeys.load_or_create(tmp_path, "log.example/a")
    vkey = tmp_path / "keys" / tkeys.NOTE_VKEY
    vkey.unlink()
    again = tkeys.load_or_create(tmp_path, None)  # no vkey: the keys as they are, vkey rewritten
    assert (again.origin, again.receipt.kid, again.vkey) == (first.origin, first.receipt.kid, first.vkey)
    assert vkey.read_text().strip() == first.vkey


def test_load_or_create_without_origin_creates_missing_keys_for_the_vkeys_origin(tmp_path):
    """The origin comes from the vkey: a missing receipt key is created for it (load_keys alone
    would refuse the incomplete folder)."""
    first = tkeys.load_or_create(tmp_path, "log.example/a")
    (tmp_path / "keys" / tkeys.RECEIPT_KEY).unlink()
    with pytest.raises(tkeys.KeyError_):
        tkeys.load_keys(tmp_path)
    again = tkeys.load_or_create(tmp_path, None)
    assert again.origin == first.origin and again.vkey == first.vkey
    assert again.receipt.kid != first.receipt.kid


def test_load_or_create_refuses_a_vkey_of_another_origin(tmp_path):
    """checkpoint.vkey names the log's origin; a signing key for another name is refused, not
    silently adopted (and the vkey is not overwritten)."""
    tkeys.load_or_create(tmp_path, "log.example/a")
    other = tkeys.load_or_create(tmp_path / "b", "log.example/b")
    vkey = tmp_path / "keys" / tkeys.NOTE_VKEY
    vkey.write_text(other.vkey + "\n")
    with pytest.raises(tkeys.KeyError_, match="origin"):
        tkeys.load_or_create(tmp_path, None)
    assert vkey.read_text().strip() == other.vkey


def test_load_or_create_without_any_origin_creates_nothing(tmp_path):
    """No origin given and no vkey to read it from: the folder is loaded as it is; a missing
    receipt key is an error naming the file, not a new key."""
    tkeys.load_or_create(tmp_path, "log.example/a")
    (tmp_path / "keys" / tkeys.NOTE_VKEY).unlink()
    (tmp_path / "keys" / tkeys.RECEIPT_KEY).unlink()
    with pytest.raises(tkeys.KeyError_, match="receipt"):
        tkeys.load_or_create(tmp_path, None)
    assert not (tmp_path / "keys" / tkeys.RECEIPT_KEY).exists()


def test_cose_keys_of_the_wrong_shape_refused():
    """verifier.keys.public_key_from_cose_key: an OKP key for another curve (X25519, 4) is not an
    Ed25519 key even with a 32-byte x; RSA needs non-empty n and e byte strings."""
    from verifier import VerificationError
    from verifier.keys import public_key_from_cose_key

    x = bytes(range(32))
    assert public_key_from_cose_key({1: 1, -1: 6, -2: x}) is not None
    for bad in ({1: 1, -1: 4, -2: x}, {1: 1, -1: 6, -2: "a" * 32}, {1: 1, -1: 6, -2: x[:31]},
                {1: 3, -1: b"\x01" * 256, -2: 65537}, {1: 3, -1: 7, -2: b"\x01\x00\x01"},
                {1: 3, -1: b"", -2: b"\x01\x00\x01"}, {1: 3, -1: b"\x01" * 256, -2: b""}):
        with pytest.raises(VerificationError) as e:
            public_key_from_cose_key(bad)
        assert e.value.check == "key.cose", bad
