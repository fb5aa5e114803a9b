"""twi-verify: exit codes, human and JSON output, every subcommand, no tracebacks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from tests.test_receipt_support import LOG_ORIGIN, Log, key
from verifier import cbor, cli, keys, merkle, note, receipt


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def log():
    return Log(9)


@pytest.fixture()
def files(tmp_path, log):
    """Key files, statements, receipts and a checkpoint of the test log on disk."""
    f = {}
    f["log_pem"] = tmp_path / "log.pem"
    f["log_pem"].write_bytes(log.public.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    f["log_keyset"] = tmp_path / "log.keyset"
    f["log_keyset"].write_bytes(keys.encode_keyset([keys.cose_key_from_public(log.public, kid=log.kid)]))
    f["other_pem"] = tmp_path / "other.pem"
    f["other_pem"].write_bytes(key("p256", 6).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    f["issuer_cose"] = tmp_path / "issuer.cbor"
    f["issuer_cose"].write_bytes(cbor.dumps(keys.cose_key_from_public(key("p256", 1))))
    for i in (2, 7):
        (tmp_path / f"s{i}.cose").write_bytes(log.statements[i])
        (tmp_path / f"r{i}_5.cose").write_bytes(log.inclusion_receipt(i, 8 if i == 7 else 5))
        (tmp_path / f"ts{i}.cose").write_bytes(log.transparent_statement(i))
    (tmp_path / "c5_8.cose").write_bytes(log.consistency_receipt(5, 8))
    (tmp_path / "c5_9.cose").write_bytes(log.consistency_receipt(5, 9))
    signer = note.Signer.generate(LOG_ORIGIN)
    f["vkey"] = signer.vkey
    for size in (5, 8, 9):
        text = note.Checkpoint(LOG_ORIGIN, size, log.root(size)).to_text()
        (tmp_path / f"cp{size}.txt").write_text(note.sign_note(text, [signer]))
    bad = note.Checkpoint(LOG_ORIGIN, 8, b"\x11" * 32).to_text()
    (tmp_path / "cp8-fork.txt").write_text(note.sign_note(bad, [signer]))
    (tmp_path / "proof5_8.txt").write_text(
        "".join(base64.b64encode(h).decode() + "\n" for h in merkle.consistency_proof(log.leaf_hashes[:8], 5)))
    f["dir"] = tmp_path
    return f


# --- transparent-statement -------------------------------------------------------------


def test_ietf_vectors(capsys, vectors_dir):
    d = vectors_dir / "scitt-examples"
    code, out, _ = run(capsys, "transparent-statement", d / "valid-es256/transparent-statement.cose",
                       "--log-key", d / "valid-es256/log-key.pub")
    assert code == 0 and "receipt 0: OK" in out and "tree size 8" in out
    code, out, _ = run(capsys, "transparent-statement", d / "fail-tampered-path/transparent-statement.cose",
                       "--log-key", d / "fail-tampered-path/log-key.pub")
    assert code == 1 and "receipt 0: FAILED" in out and "receipt.signature" in out
    code, out, _ = run(capsys, "receipt", d / "valid-es256/receipt.cose", d / "valid-es256/statement.cose",
                       "--log-key", d / "valid-es256/log-key.pub")
    assert code == 0
    code, out, _ = run(capsys, "receipt", d / "fail-tampered-path/receipt.cose",
                       d / "fail-tampered-path/statement.cose", "--log-key", d / "fail-tampered-path/log-key.pub")
    assert code == 1


def test_real_statements_unsupported(capsys, vectors_dir):
    key_file = vectors_dir / "scitt-examples/valid-es256/log-key.pub"
    code, out, _ = run(capsys, "transparent-statement", vectors_dir / "transparent-statements/2ts-statement.scitt",
                       "--log-key", key_file)
    assert code == 1
    assert out.count("UNSUPPORTED") == 2 and "vds=2" in out and "vds=3" in out
    code, out, _ = run(capsys, "transparent-statement", vectors_dir / "transparent-statements/1ts-statement.scitt",
                       "--log-key", key_file, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert [(r["status"], r["vds"]) for r in doc["receipts"]] == [("unsupported", 2)]


def test_own_log_and_issuer_key(capsys, files):
    d = files["dir"]
    code, out, _ = run(capsys, "transparent-statement", d / "ts2.cose", "--log-key", files["log_keyset"],
                       "--issuer-key", files["issuer_cose"], "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["issuer"] == {"status": "ok"}
    assert doc["receipts"][0]["tree_size"] == 9 and doc["receipts"][0]["leaf_index"] == 2
    code, out, _ = run(capsys, "transparent-statement", d / "ts2.cose", "--log-key", files["log_pem"],
                       "--issuer-key", files["other_pem"])
    assert code == 1 and "issuer: FAILED" in out and "receipt 0: OK" in out
    code, out, _ = run(capsys, "transparent-statement", d / "ts2.cose", "--log-key", files["other_pem"])
    assert code == 1 and "receipt.unknown-key" in out  # receipt's kid is not a trusted key
    code, out, _ = run(capsys, "transparent-statement", d / "ts2.cose", "--log-key", files["other_pem"],
                       "--log-key", files["log_pem"])
    assert code == 0


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["transparent-statement"],
        ["transparent-statement", "x.cose"],  # no --log-key
        ["transparent-statement", "/nonexistent/file", "--log-key", "{log_pem}"],
        ["transparent-statement", "{ts}", "--log-key", "/nonexistent/key"],
        ["transparent-statement", "{ts}", "--log-key", "{ts}"],  # not a key
        ["nosuchcommand"],
        ["checkpoint", "{cp}", "--vkey", "not-a-vkey"],
        ["consistency", "--receipt", "{r}"],
        ["consistency", "--checkpoint", "{cp}"],
    ],
)
def test_usage_errors_exit_2(capsys, files, argv):
    sub = {"log_pem": files["log_pem"], "ts": files["dir"] / "ts2.cose", "cp": files["dir"] / "cp5.txt",
           "r": files["dir"] / "r2_5.cose"}
    code, out, err = run(capsys, *[a.format(**{k: str(v) for k, v in sub.items()}) for a in argv])
    assert code == 2


def test_garbage_inputs_exit_1_without_traceback(capsys, files, tmp_path):
    for content in (b"", b"\x00", b"\xd2\x84" + b"\x81" * 5000, bytes(range(256)), b"\xd2\x84\x40\xa1\x19\x01\x8a\x01\xf6\x40"):
        p = tmp_path / "junk"
        p.write_bytes(content)
        code, out, _ = run(capsys, "transparent-statement", p, "--log-key", files["log_pem"])
        assert code == 1 and "FAILED" in out
        code, _, _ = run(capsys, "receipt", p, files["dir"] / "s2.cose", "--log-key", files["log_pem"])
        assert code == 1
        code, _, _ = run(capsys, "checkpoint", p, "--vkey", files["vkey"])
        assert code == 1


# --- checkpoint and consistency ------------------------------------------------------------


def test_checkpoint(capsys, files):
    d = files["dir"]
    code, out, _ = run(capsys, "checkpoint", d / "cp8.txt", "--vkey", files["vkey"], "--json")
    doc = json.loads(out)
    assert code == 0 and doc["size"] == 8 and doc["origin"] == LOG_ORIGIN
    vk_file = d / "vkey.txt"
    vk_file.write_text(files["vkey"] + "\n")
    code, out, _ = run(capsys, "checkpoint", d / "cp8.txt", "--vkey", f"@{vk_file}")
    assert code == 0 and "checkpoint: OK" in out
    other = note.Signer.generate(LOG_ORIGIN).vkey
    code, out, _ = run(capsys, "checkpoint", d / "cp8.txt", "--vkey", other)
    assert code == 1


def test_consistency_between_receipts(capsys, files, log):
    d = files["dir"]
    common = ["--log-key", files["log_pem"]]
    # inclusion at size 5 + consistency 5->8 + inclusion at size 8
    code, out, _ = run(capsys, "consistency", "--receipt", d / "r2_5.cose", "--statement", d / "s2.cose",
                       "--consistency-receipt", d / "c5_8.cose", "--receipt", d / "r7_5.cose",
                       "--statement", d / "s7.cose", *common)
    assert code == 0 and "result: OK" in out
    # consistency receipt to 9 does not land on the size-8 receipt's root
    code, out, _ = run(capsys, "consistency", "--receipt", d / "r2_5.cose", "--statement", d / "s2.cose",
                       "--consistency-receipt", d / "c5_9.cose", "--receipt", d / "r7_5.cose",
                       "--statement", d / "s7.cose", *common)
    assert code == 1 and "consistency.unproven" in out
    # two heads and no proof linking them
    code, out, _ = run(capsys, "consistency", "--receipt", d / "r2_5.cose", "--statement", d / "s2.cose",
                       "--receipt", d / "r7_5.cose", "--statement", d / "s7.cose", *common)
    assert code == 1
    # wrong statement for a receipt
    code, out, _ = run(capsys, "consistency", "--receipt", d / "r2_5.cose", "--statement", d / "s7.cose",
                       "--consistency-receipt", d / "c5_8.cose", *common)
    assert code == 1 and "receipt.signature" in out


def test_consistency_receipt_and_checkpoint(capsys, files):
    d = files["dir"]
    base = ["--receipt", d / "r2_5.cose", "--statement", d / "s2.cose", "--log-key", files["log_pem"],
            "--vkey", files["vkey"]]
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp5.txt")
    assert code == 0  # same size, same root
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp8.txt",
                       "--consistency-receipt", d / "c5_8.cose", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp8.txt", "--proof", d / "proof5_8.txt")
    assert code == 0
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp8-fork.txt",
                       "--consistency-receipt", d / "c5_8.cose")
    # a fork, or a receipt whose unsigned size was altered: the tool cannot tell which, and says so
    assert code == 1 and "consistency.conflict" in out
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp8-fork.txt", "--proof", d / "proof5_8.txt")
    assert code == 1 and "consistency.proof" in out
    code, out, _ = run(capsys, "consistency", *base, "--checkpoint", d / "cp9.txt")
    assert code == 1 and "consistency.unproven" in out


def test_extensions_list_and_console_script(vectors_dir):
    assert cli.EXTENSIONS == ["verifier.monitor", "verifier.credential"]
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert {"transparent-statement", "receipt", "checkpoint", "consistency"} <= set(choices)
    d = vectors_dir / "scitt-examples/valid-es256"
    proc = subprocess.run([sys.executable, "-m", "verifier.cli", "transparent-statement",
                           str(d / "transparent-statement.cose"), "--log-key", str(d / "log-key.pub")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "result: OK" in proc.stdout


def test_missing_extension_module_is_skipped(monkeypatch):
    monkeypatch.setattr(cli, "EXTENSIONS", ["verifier.no_such_extension_module"])
    cli.build_parser()  # skipped silently
    monkeypatch.setattr(cli, "EXTENSIONS", ["verifier.cli_broken_ext_for_test"])
    import types

    mod = types.ModuleType("verifier.cli_broken_ext_for_test")
    mod.add_parser = lambda sub: sub.add_parser("extra-cmd").set_defaults(func=lambda a: 0)
    monkeypatch.setitem(sys.modules, "verifier.cli_broken_ext_for_test", mod)
    assert cli.main(["extra-cmd"]) == 0
