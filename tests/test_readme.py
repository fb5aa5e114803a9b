"""The README, executed: its first block holds the two commands a new user runs, and every shell
block of its walkthrough runs, in order, in one bash, against real servers (``tlog serve``, the
witness) on free loopback ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
WALKTHROUGH = "## Walkthrough"


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def walkthrough_script(text: str, ports: dict[str, int]) -> str:
    """The walkthrough's shell blocks as one script, the README's ports replaced."""
    start = text.find(WALKTHROUGH)
    if start < 0:
        pytest.fail(f"README.md has no '{WALKTHROUGH}' section", pytrace=False)
    end = text.find("\n## ", start + len(WALKTHROUGH))
    blocks = _blocks(text[start:end if end > 0 else len(text)])
    script = "\n".join(blocks)
    for old, new in ports.items():
        script = re.sub(rf"\b{old}\b", str(new), script)
    return script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_starts_with_the_two_commands():
    first = _blocks(README.read_text())[0].splitlines()
    assert first[0].startswith("pip install . && tlog serve --data-dir ./tlog-data")
    assert first[1].startswith("pip install -e '.[test]' && python3 -m pytest -q tests")


def test_walkthrough_blocks_are_found():
    script = walkthrough_script(README.read_text(), {"8000": 1, "8100": 2, "8200": 3})
    for step in ("twi-issuer keys", "tlog serve", "twi-issuer sign", "tlog register", "tlog info",
                 "register-workload-provenance", "dev-verifier init", "dev-verifier ear", "twi-issuer issue",
                 "twi-verify transparent-statement", "twi-verify credential", "twi-verify monitor",
                 "twi-verify audit", "twi-witness", "--witness", "twi-verify checkpoint", "tlog shard close",
                 "--shard-predecessor", "--shards", "twi-verify shards"):
        assert step in script, step
    assert "8000" not in script and "8100" not in script and "8200" not in script


@pytest.mark.slow
def test_walkthrough_runs(tmp_path):
    log_port, witness_port, shard_port = _free_port(), _free_port(), _free_port()
    script = walkthrough_script(README.read_text(), {"8000": log_port, "8100": witness_port, "8200": shard_port})
    (tmp_path / "walkthrough.sh").write_text("set -euo pipefail\nset -x\n" + script)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(ROOT)}
    work = tmp_path / "work"
    work.mkdir()
    out = open(tmp_path / "out.txt", "wb")
    # its own session: the servers the script starts in the background are in this process group
    proc = subprocess.Popen(["bash", str(tmp_path / "walkthrough.sh")], cwd=work, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        code = proc.wait(timeout=240)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the script left running (the group we started)
        except ProcessLookupError:
            pass
        proc.wait()
        out.close()
    text = (tmp_path / "out.txt").read_text(errors="replace")
    assert code == 0, f"walkthrough failed (exit {code}):\n{text[-6000:]}"
    ready = (work / "tlog.out").read_text()
    issuer_kid = re.search(r'"kid": "([0-9a-f]{64})"', text).group(1)
    assert re.match(rf"tlog: ready url=http://127.0.0.1:{log_port} origin=\S+ vkey=\S+\+\S+ "
                    rf"issuer_kids={issuer_kid} receipt_kids=[0-9a-f]{{64}}$", ready.strip()), ready
    for evidence in ("result: OK", "OK wit spiffe://example.org/app", "consistent", "every tile"):
        assert evidence in text, evidence
    assert re.search(r"checkpoint: OK .* signed by \S+, witness\.local", text)
    assert re.search(r"ok: \S+ follows \S+, closed at size \d+, which it still serves", text)
    assert re.search(r"ok: \S+/tlog size \d+: every tile.*its final checkpoint is the one \S+/tlog-2 records", text)
    for f in ("sbom.cose.ts.cose", "sbom.receipt", "wpr.ts.cose", "credential/credential.wit", "log-keys.cbor",
              "tlog-data.final.json", "shard-keys.cbor"):
        assert (work / f).stat().st_size > 0, f
