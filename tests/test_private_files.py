"""Issue 11 item 7: private keys are 0600 from the first byte (O_EXCL), in 0700 directories.

Every test runs with umask 0 and with chmod disabled, so a key written world-readable and
tightened afterwards (the old ``twi-issuer keys``), a reused temporary file (the old key
rotation) or a directory left to the umask stays visible as such."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from issuer.cli import main as issuer_main
from tlog import keys as tkeys
from witness.cli import _load_or_create_key
from verifier.files import write_private


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def hostile_umask(monkeypatch):
    old = os.umask(0)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: None)
    try:
        yield
    finally:
        os.umask(old)


def test_issuer_keys_private_from_first_byte(tmp_path, hostile_umask):
    d = tmp_path / "issuer"
    assert issuer_main(["keys", "--dir", str(d), "--issuer-id", "https://issuer.test"]) == 0
    assert mode(d) == 0o700
    assert mode(d / "issuer.pem") == 0o600
    assert mode(d / "vault.key") == 0o600
    # --force replaces the secrets, never through a file anyone else could have opened
    assert issuer_main(["keys", "--dir", str(d), "--issuer-id", "https://issuer.test", "--force"]) == 0
    assert mode(d / "issuer.pem") == 0o600 and mode(d / "vault.key") == 0o600


def test_log_keys_and_rotation(tmp_path, hostile_umask):
    keys = tkeys.load_or_create(tmp_path / "data", "log.test")
    kdir = tmp_path / "data" / "keys"
    assert mode(kdir) == 0o700
    assert mode(kdir / tkeys.RECEIPT_KEY) == 0o600 and mode(kdir / tkeys.NOTE_SKEY) == 0o600
    # a world-readable leftover where the old rotation wrote its temporary file
    (kdir / "receipt.pem.new").write_bytes(b"")
    os.umask(0o022)
    old, new = tkeys.rotate_receipt_key(tmp_path / "data")
    assert old == keys.receipt.kid and new != old
    assert mode(kdir / tkeys.RECEIPT_KEY) == 0o600
    assert mode(kdir / tkeys.RETIRED_DIR) == 0o700


def test_witness_key(tmp_path, hostile_umask):
    d = tmp_path / "witness"
    from verifier.files import private_dir

    s = _load_or_create_key(private_dir(d), "w.test")
    assert mode(d) == 0o700 and mode(d / "witness.skey") == 0o600
    assert _load_or_create_key(d, "w.test").vkey == s.vkey


def test_issuer_vault_records(tmp_path, hostile_umask):
    from issuer.provenance import RecordVault

    v = RecordVault(tmp_path / "vault", b"k" * 32)
    p = v.put("rid-1", b"secret record")
    assert mode(tmp_path / "vault") == 0o700 and mode(p) == 0o600
    assert v.get("rid-1") == b"secret record"


def test_write_private_first_writer_wins_and_no_symlink_follow(tmp_path):
    p = tmp_path / "k"
    assert write_private(p, b"one") is True
    assert write_private(p, b"two") is False and p.read_bytes() == b"one"
    assert write_private(p, b"three", overwrite=True) is True and p.read_bytes() == b"three"
    assert [f.name for f in tmp_path.iterdir()] == ["k"]  # no temporary left behind
