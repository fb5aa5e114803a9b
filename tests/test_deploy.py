"""The deployment examples in deploy/ load: the config files give the settings they claim, the
systemd unit's ExecStart is a valid ``tlog serve`` command line reading that config."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

from tlog import cli as tcli
from tlog.config import Config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_single_host_config_loads():
    cfg = Config.load(file=str(DEPLOY / "tlog.toml"), env={})
    assert cfg.data_dir == "/var/lib/tlog" and cfg.database_url is None
    assert cfg.origin == "log.example/twi" and cfg.issuer == "https://log.example"
    assert cfg.issuer_keys == [{"path": "/etc/tlog/issuers/ci.pem", "iss": ["https://ci.example"]}]
    assert cfg.rate_limit == 50.0
    from tlog.keys import trust_entry

    assert all(trust_entry(k)[1] for k in cfg.issuer_keys)  # every trusted key is bound (issue 11)


def test_multihost_config_loads():
    cfg = Config.load(file=str(DEPLOY / "tlog-multihost.toml"), env={})
    assert cfg.database_url.startswith("postgresql://") and cfg.host == "0.0.0.0"
    assert cfg.origin is None and cfg.issuer_keys == []  # from the database (tlog init on one host)


def test_systemd_unit_runs_tlog_serve_with_the_config():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / "tlog.service").read_text())
    svc = unit["Service"]
    argv = shlex.split(svc["ExecStart"])
    assert Path(argv[0]).name == "tlog" and argv[1] == "serve"
    assert argv[argv.index("--config") + 1] == "/etc/tlog/tlog.toml"
    argv[argv.index("--config") + 1] = str(DEPLOY / "tlog.toml")
    args = tcli.build_parser().parse_args(argv[1:])
    cfg = tcli.config_from_args(args)
    assert cfg.data_dir == "/var/lib/tlog" and svc["ReadWritePaths"] == cfg.data_dir
    assert svc["User"] == "tlog" and svc["UMask"] == "0077" and unit["Install"]["WantedBy"] == "multi-user.target"


def test_tlog_data_is_ignored_by_git():
    r = subprocess.run(["git", "check-ignore", "-q", "tlog-data/log.sqlite"], cwd=ROOT)
    if r.returncode == 128:  # not a git checkout (an sdist): read the file instead
        assert "tlog-data/" in (ROOT / ".gitignore").read_text().split()
    else:
        assert r.returncode == 0
