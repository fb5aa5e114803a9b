"""Operating the log safely (issue 12): a log's keys never change by accident, everything is
checked before the workers start, key and state files are durable before they are relied on."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tlog import keys as tkeys
from tlog.cli import main as tlog_main
from tlog.config import Config, ConfigError
from tlog.keys import KeyError_
from tlog.logstate import StartupError
from tlog.service import LogService

from .test_server_support import ISS, bound_arg, make_ca, pem, statement, write_public

ORIGIN = "ops.example/log"


def _cfg(data: Path, **kw) -> Config:
    settings = dict(data_dir=str(data), origin=ORIGIN, issuer="https://ops.example", register_wait=5.0)
    settings.update(kw)
    return Config.load(env={}, overrides=settings)


@pytest.fixture
def issuer(tmp_path):
    k = ec.generate_private_key(ec.SECP256R1())
    return k, bound_arg(write_public(tmp_path / "iss.pem", k))


@pytest.fixture
def log_with_entries(tmp_path, issuer):
    """A log with one registered statement; returns its data dir."""
    key, path = issuer
    data = tmp_path / "data"
    svc = LogService(_cfg(data, issuer_keys=[path]), integrator="thread")
    try:
        svc.register(statement(key, sub="one"))
    finally:
        svc.close()
    return data


def _free_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return str(port)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


class ServerStarted(BaseException):
    """Not an Exception: tlog's main() must not turn it into a one-line refusal."""


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """A start that is not refused must not serve (and hang the test): it fails instead."""
    from gunicorn.app.base import BaseApplication

    def run(self):
        raise ServerStarted("the server started instead of refusing")

    monkeypatch.setattr(BaseApplication, "run", run)


def _refused(capsys, argv) -> str:
    """Run ``tlog ARGV``: exit 2, exactly one line on stderr, no traceback; returns the line."""
    assert tlog_main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- 1. never change a log's identity by accident -------------------------------------------------


@pytest.mark.parametrize("name", ["receipt.pem", "checkpoint.skey"])
@pytest.mark.parametrize("damage", ["missing", "unreadable", "other-key"])
def test_damaged_key_of_a_log_with_entries_is_refused(log_with_entries, issuer, capsys, name, damage):
    data = log_with_entries
    path = data / "keys" / name
    if damage == "missing":
        path.unlink()
    elif damage == "unreadable":
        path.unlink()
        path.mkdir()  # reading it fails (EISDIR), even as root
    elif name == "receipt.pem":
        other = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    else:
        from verifier.note import Signer

        path.write_text(Signer.generate(ORIGIN).skey + "\n")
    before = _snapshot(data)
    line = _refused(capsys, ["serve", "--data-dir", str(data), "--issuer-key", issuer[1], "--port", _free_port()])
    assert str(path) in line and ("restore" in line or "copy" in line), line
    assert _snapshot(data) == before  # nothing regenerated, nothing written
    with pytest.raises(KeyError_):
        LogService(_cfg(data, issuer_keys=[issuer[1]]), integrator="thread")
    assert _snapshot(data) == before


def test_keys_made_only_for_a_new_log(tmp_path, capsys):
    data = tmp_path / "new"
    assert tlog_main(["init", "--data-dir", str(data), "--origin", ORIGIN]) == 0
    out = capsys.readouterr().out
    assert ORIGIN in out and (data / "keys" / "receipt.pem").exists()
    # init again: the same keys, nothing made
    before = _snapshot(data / "keys")
    assert tlog_main(["init", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == out and _snapshot(data / "keys") == before
    # the stored identity is the reference, even for a log without entries
    (data / "keys" / "receipt.pem").unlink()
    line = _refused(capsys, ["init", "--data-dir", str(data)])
    assert "receipt.pem" in line and "missing" in line
    assert not (data / "keys" / "receipt.pem").exists()


def test_origin_and_issuer_fixed_at_creation(log_with_entries, issuer, capsys):
    data = log_with_entries
    line = _refused(capsys, ["serve", "--data-dir", str(data), "--origin", "other.example/log", "--port", _free_port()])
    assert "origin is 'ops.example/log'" in line
    line = _refused(capsys, ["serve", "--data-dir", str(data), "--issuer", "https://other.example", "--port", _free_port()])
    assert "issuer is 'https://ops.example'" in line
    # without them, the stored ones are used (never host and port)
    svc = LogService(_cfg(data, origin=None, issuer=None, host="127.0.0.9", port=9999,
                          issuer_keys=[issuer[1]]), integrator="thread")
    try:
        assert (svc.origin, svc.issuer) == (ORIGIN, "https://ops.example")
    finally:
        svc.close()


# ---- 2. durable key and state files ----------------------------------------------------------------


@pytest.fixture
def fs_events(monkeypatch):
    """Record fsync (by path), link, replace and mkdir calls in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_link, real_mkdir = os.fsync, os.replace, os.link, os.mkdir

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b, **kw):
        events.append(("replace", f"{a} -> {b}"))
        return real_replace(a, b, **kw)

    def link(a, b, **kw):
        events.append(("link", f"{a} -> {b}"))
        return real_link(a, b, **kw)

    def mkdir(p, *a, **kw):
        events.append(("mkdir", str(p)))
        return real_mkdir(p, *a, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return events


def _index(events, kind, pred) -> int:
    for i, (k, v) in enumerate(events):
        if k == kind and pred(v):
            return i
    raise AssertionError(f"no {kind} matching in {events}")


def test_new_keys_durable(tmp_path, fs_events):
    data = tmp_path / "parent" / "data"
    tkeys.create_keys(data, ORIGIN)
    kdir = str(data / "keys")
    ev = fs_events
    # every directory made is fsynced in its parent, the data dir's parent included
    assert ev.index(("fsync", str(tmp_path))) > ev.index(("mkdir", str(tmp_path / "parent")))
    assert ev.index(("fsync", str(tmp_path / "parent"))) > ev.index(("mkdir", str(data)))
    assert ev.index(("fsync", str(data))) > ev.index(("mkdir", kdir))
    for name in ("receipt.pem", "checkpoint.skey", "checkpoint.vkey"):
        link_or_rename = max(
            [i for i, (k, v) in enumerate(ev) if k in ("link", "replace") and v.endswith(f"-> {kdir}/{name}")]
        )
        tmp = ev[link_or_rename][1].split(" -> ")[0]
        assert _index(ev, "fsync", lambda v: v == tmp) < link_or_rename, name  # the file's data first
        assert any(e == ("fsync", kdir) for e in ev[link_or_rename + 1:]), name  # then its name


@pytest.mark.parametrize("write", ["private", "replace"])
def test_each_key_file_write_is_durable_by_itself(tmp_path, fs_events, write):
    kdir = tmp_path / "k"
    kdir.mkdir()
    fs_events.clear()
    if write == "private":
        assert tkeys._write_private(kdir / "a.pem", b"secret")
    else:
        tkeys.write_durable(kdir / "a.pem", b"public")
    kinds = [k for k, _ in fs_events]
    put = kinds.index("link" if write == "private" else "replace")
    tmp = fs_events[put][1].split(" -> ")[0]
    assert fs_events[:put] == [("fsync", tmp)]  # the data, before the name
    assert fs_events[put + 1:] == [("fsync", str(kdir))]  # the name, before returning


def test_new_log_database_name_durable(tmp_path, fs_events):
    data = tmp_path / "data"
    svc = LogService(_cfg(data), integrator="thread")
    svc.close()
    # the data dir is fsynced after the log's first rows (the SQLite file's directory entry)
    assert ("fsync", str(data)) in fs_events[fs_events.index(("fsync", str(data / "keys"))) + 1:]


def test_rotation_retires_durably_before_installing(log_with_entries, fs_events, capsys):
    data = log_with_entries
    kdir = str(data / "keys")
    fs_events.clear()
    assert tlog_main(["rotate-key", "--data-dir", str(data)]) == 0
    ev = fs_events
    install = _index(ev, "replace", lambda v: v == f"{kdir}/receipt.pem.next -> {kdir}/receipt.pem")
    retired = _index(ev, "replace", lambda v: f"{kdir}/retired/" in v.split(" -> ")[1])
    assert retired < install
    retired_tmp = ev[retired][1].split(" -> ")[0]
    assert _index(ev, "fsync", lambda v: v == retired_tmp) < retired
    assert _index(ev, "fsync", lambda v: v == f"{kdir}/retired") in range(retired + 1, install)
    assert any(e == ("fsync", kdir) for e in ev[install + 1:])
    # the next key was durable before it was recorded in storage or installed
    nxt = _index(ev, "link", lambda v: v.endswith(f"-> {kdir}/receipt.pem.next"))
    assert _index(ev, "fsync", lambda v: v == ev[nxt][1].split(" -> ")[0]) < nxt < retired


def test_interrupted_rotation_is_finished_at_start(log_with_entries, issuer, monkeypatch, capsys):
    """A crash after the new key set was recorded but before the new key was installed."""
    from tlog import logstate

    data = log_with_entries
    monkeypatch.setattr(logstate, "finish_rotation", lambda d: (_ for _ in ()).throw(SystemExit(9)))
    with pytest.raises(SystemExit):
        tlog_main(["rotate-key", "--data-dir", str(data)])
    monkeypatch.undo()
    nxt = tkeys.load_receipt_key(data / "keys" / "receipt.pem.next").kid
    svc = LogService(_cfg(data, issuer_keys=[issuer[1]]), integrator="thread")
    try:
        assert svc.keys.receipt.kid == nxt and not (data / "keys" / "receipt.pem.next").exists()
        assert len(svc.keys.retired) == 1
    finally:
        svc.close()


# ---- 3. everything checked before the workers start ---------------------------------------------------


def test_unknown_env_setting_refused(monkeypatch, capsys, tmp_path):
    with pytest.raises(ConfigError, match="TLOG_PROT"):
        Config.load(env={"TLOG_PROT": "8001"})
    Config.load(env={"TLOG_TEST_PG_URL": "x", "TLOG_SWITCH_INTERVAL": "0.001", "TLOG_PORT": "8001"})
    monkeypatch.setenv("TLOG_DATADIR", str(tmp_path))
    line = _refused(capsys, ["serve", "--data-dir", str(tmp_path / "d")])
    assert "TLOG_DATADIR" in line
    assert not (tmp_path / "d").exists()


def test_unknown_file_setting_refused(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('data_dir = "x"\nprot = 1\n')
    line = _refused(capsys, ["serve", "--config", str(tmp_path / "c.toml")])
    assert "prot" in line


def test_bad_issuer_key_refused_before_anything(tmp_path, capsys):
    (tmp_path / "bad.pem").write_text("not a key")
    line = _refused(capsys, ["serve", "--data-dir", str(tmp_path / "d"), "--issuer-key", str(tmp_path / "bad.pem")])
    assert "bad.pem" in line
    line = _refused(capsys, ["serve", "--data-dir", str(tmp_path / "d"), "--trust-anchor", str(tmp_path / "no.pem")])
    assert "no.pem" in line
    assert not (tmp_path / "d" / "keys").exists()


def test_issuer_key_without_identities_refused(tmp_path, capsys):
    """A trusted issuer key must be given with the iss values it may claim (issue 11 item 4):
    a plain path is refused by serve, init and policy set (one line naming the key and the fix,
    exit 2, nothing created) and by the preflight and the service; a trust anchor may be a plain
    path (its x5chain leaf's SAN URI or did:x509 is the identity)."""
    from tlog import startup
    from tlog.keys import KeyError_

    k = ec.generate_private_key(ec.SECP256R1())
    plain = str(write_public(tmp_path / "plain.pem", k))
    d = str(tmp_path / "d")
    for argv in (["serve", "--data-dir", d, "--issuer-key", plain, "--port", _free_port()],
                 ["init", "--data-dir", d, "--origin", ORIGIN, "--issuer-key", plain],
                 ["policy", "set", "--data-dir", d, "--issuer-key", plain]):
        line = _refused(capsys, argv)
        assert "plain.pem" in line and '"iss"' in line and "identities" in line, line
    assert not (tmp_path / "d" / "keys").exists()
    with pytest.raises(KeyError_, match="plain.pem"):
        startup.preflight(Config.load(env={}, overrides={"data_dir": d, "issuer_keys": [plain]}))
    with pytest.raises(KeyError_, match="plain.pem"):
        LogService(_cfg(tmp_path / "d2", issuer_keys=[plain]), integrator="thread")
    with pytest.raises(KeyError_, match="plain.pem"):  # the TOML/JSON object form without iss
        LogService(_cfg(tmp_path / "d2", issuer_keys=[{"path": plain}]), integrator="thread")
    # bound: starts; a plain-path anchor is fine
    (tmp_path / "ca.pem").write_bytes(pem(make_ca()[1]))
    assert tlog_main(["init", "--data-dir", d, "--origin", ORIGIN, "--issuer-key", bound_arg(plain),
                      "--trust-anchor", str(tmp_path / "ca.pem")]) == 0
    startup.preflight(Config.load(env={}, overrides={"data_dir": d}))
    # a policy in force that trusts a key without identities (registered before the rule) makes
    # the server refuse to start until 'tlog policy set' binds it
    from tlog.keys import TrustStore
    from tlog.logstate import StartupError
    from tlog.policy import Policy

    svc = LogService(Config.load(env={}, overrides={"data_dir": d}), integrator="thread", check_policy=False)
    try:
        svc.set_policy(Policy(trust=TrustStore(issuer_keys={tkeys._kid_of(k.public_key()): k.public_key()}),
                              allowed_algs=[-7]))
    finally:
        svc.close()
    with pytest.raises(StartupError, match="without the issuer identities.*tlog policy set"):
        startup.preflight(Config.load(env={}, overrides={"data_dir": d}))
    capsys.readouterr()
    line = _refused(capsys, ["serve", "--data-dir", d, "--port", _free_port()])
    assert "tlog policy set" in line and tkeys._kid_of(k.public_key()).hex()[:16] in line
    assert tlog_main(["policy", "set", "--data-dir", d, "--issuer-key", bound_arg(plain)]) == 0
    startup.preflight(Config.load(env={}, overrides={"data_dir": d}))


def test_open_data_dir_refused(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    os.chmod(d, 0o777)
    line = _refused(capsys, ["serve", "--data-dir", str(d)])
    assert "writable by other users" in line and not (d / "keys").exists()
    os.chmod(d, 0o700)
    (d / "keys").mkdir(mode=0o755)
    line = _refused(capsys, ["serve", "--data-dir", str(d)])
    assert "keys" in line and "chmod 700" in line


def test_port_in_use_refused(tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        line = _refused(capsys, ["serve", "--data-dir", str(tmp_path / "d"), "--port", str(s.getsockname()[1])])
    finally:
        s.close()
    assert "cannot listen on 127.0.0.1:" in line


def test_second_server_on_a_data_dir_refused(tmp_path, capsys):
    from tlog.startup import DataDirLock

    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    held = DataDirLock(d).acquire()
    try:
        line = _refused(capsys, ["serve", "--data-dir", str(d), "--port", _free_port()])
        assert "in use by another server" in line and f"pid {os.getpid()}" in line
    finally:
        held.release()
    # released: the next start gets past the lock (and stops at the port, here)
    line = _refused(capsys, ["serve", "--data-dir", str(d), "--host", "256.0.0.1"])
    assert "in use" not in line


def test_startup_errors_leave_no_traceback_for_storage_faults(tmp_path, capsys):
    line = _refused(capsys, ["serve", "--data-dir", str(tmp_path / "d"), "--port", _free_port(),
                             "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert line.startswith("tlog: ")


# ---- 4. the registration policy and the receipt key set are log-wide state ----------------------------


def test_policy_show_and_set(tmp_path, capsys):
    import json

    from tlog import startup

    ka, kb = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    pa, pb = bound_arg(write_public(tmp_path / "a.pem", ka)), bound_arg(write_public(tmp_path / "b.pem", kb))
    d = str(tmp_path / "d")
    assert tlog_main(["init", "--data-dir", d, "--origin", ORIGIN, "--issuer-key", pa]) == 0
    capsys.readouterr()
    assert tlog_main(["policy", "show", "--data-dir", d]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["index"] == 0 and shown["issuer-keys"] == [tkeys._kid_of(ka.public_key()).hex() + f" iss={ISS}"]
    assert tlog_main(["policy", "set", "--data-dir", d, "--issuer-key", pb, "--allowed-alg", "-7"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert changed["issuer-keys"] == [tkeys._kid_of(kb.public_key()).hex() + f" iss={ISS}"] and changed["allowed-algs"] == [-7]
    assert changed["index"] == 1 and changed["max-statement-size"] == shown["max-statement-size"]
    # a server started with the old option refuses, naming the difference; without it, it starts
    line = _refused(capsys, ["serve", "--data-dir", d, "--issuer-key", pa, "--port", _free_port()])
    assert "issuer-keys" in line and "tlog policy set" in line
    line = _refused(capsys, ["init", "--data-dir", d, "--allowed-alg", "-8"])
    assert "allowed-algs" in line
    startup.preflight(Config.load(env={}, overrides={"data_dir": d, "issuer_keys": [pb]}))
    # nothing to change: no new entry
    assert tlog_main(["policy", "set", "--data-dir", d, "--issuer-key", pb]) == 0
    assert json.loads(capsys.readouterr().out)["index"] == 1
    # no log there: refused, nothing created
    line = _refused(capsys, ["policy", "show", "--data-dir", str(tmp_path / "none")])
    assert "tlog init" in line and not (tmp_path / "none" / "keys").exists()


def test_rotation_reaches_running_workers(log_with_entries, issuer, capsys):
    from verifier import cose
    from verifier import keys as vkeys

    data = log_with_entries
    key, path = issuer
    svc = LogService(_cfg(data, issuer_keys=[path]), integrator="thread")
    try:
        old = svc.keys.receipt.kid
        assert tlog_main(["rotate-key", "--data-dir", str(data)]) == 0
        new = bytes.fromhex(capsys.readouterr().out.split()[3])
        import time

        deadline = time.monotonic() + 5
        while svc.keys.receipt.kid != new and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.keys.receipt.kid == new
        assert {k[2] for k in vkeys.decode_keyset(svc.keys.keyset_bytes())} == {old, new}
        r = svc.register(statement(key, sub="after"))
        assert cose.decode_sign1(r.receipt).protected[4] == new
    finally:
        svc.close()


def test_policy_change_description_of_identities_is_json():
    """The "policy changed" log line describes a change of the identity maps (bytes keys) by counts
    (it failed to format before: json cannot encode bytes keys)."""
    import json

    from tlog.policy import describe_change

    ch = describe_change({"issuer-identities": {b"k": ["a"], b"x": ["y"]}},
                         {"issuer-identities": {b"k": ["b"], b"j": ["c"]}})
    assert ch == {"issuer-identities": {"added": 1, "removed": 1, "changed": 1}}
    json.dumps(ch)
