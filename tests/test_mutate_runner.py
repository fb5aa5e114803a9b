"""tools/mutate.py's job server: nothing a test starts outlives the pytest run that started it,
whether the run ends, times out, or the runner is stopped (a leaked server would hold ports and
CPU for the rest of a mutation run, and after it)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTATE = ROOT / "tools" / "mutate.py"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# A test that starts a "server" in its own session (so the process group kill misses it), writes
# its pid, then ends (passes) or waits forever (a hang).
LEAKER = '''
import os, subprocess, sys, time
def test_leak():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    with open("server.pid", "w") as f:
        f.write(str(p.pid))
    if os.environ.get("LEAK_HANG"):
        time.sleep(300)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_pid(path: Path, seconds: float = 60) -> int:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the test never started its server")


def _gone(pid: int, seconds: float = 10) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _server(tmp_path: Path, hang: bool):
    (tmp_path / "test_leaker.py").write_text(LEAKER)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if hang:
        env["LEAK_HANG"] = "1"
    return subprocess.Popen([sys.executable, str(MUTATE), "--serve", str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_server_left_by_a_passing_test_is_killed_when_its_run_ends(tmp_path):
    srv = _server(tmp_path, hang=False)
    pid = 0
    try:
        srv.stdin.write(json.dumps({"tests": ["test_leaker.py"], "timeout": 120}) + "\n")
        srv.stdin.flush()
        ans = json.loads(srv.stdout.readline())
        pid = _wait_pid(tmp_path / "server.pid")
        assert ans["rc"] == 0
        assert _gone(pid), "the server a test started in its own session outlived the pytest run"
    finally:
        srv.stdin.close()
        srv.wait(30)
        if pid:
            _kill(pid)


def test_a_stopped_runner_leaves_no_server_running(tmp_path):
    srv = _server(tmp_path, hang=True)
    pid = 0
    try:
        srv.stdin.write(json.dumps({"tests": ["test_leaker.py"], "timeout": 300}) + "\n")
        srv.stdin.flush()
        pid = _wait_pid(tmp_path / "server.pid")
        assert _alive(pid)
        srv.send_signal(signal.SIGTERM)  # what the runner's own SIGTERM/SIGINT handler sends
        assert srv.wait(30) == 143
        assert _gone(pid), "stopping the job server left a test's server running"
    finally:
        if srv.poll() is None:
            srv.kill()
        if pid:
            _kill(pid)


def test_a_hung_run_is_killed_with_its_servers_and_names_the_test_it_hung_in(tmp_path):
    """No CPU used by any of the run's processes for HANG_SECONDS: a hang, killed (servers too),
    and the test it hung in is reported (the runner tries it first for that mutant next time)."""
    srv = _server(tmp_path, hang=True)
    pid = 0
    try:
        srv.stdin.write(json.dumps({"tests": ["test_leaker.py"], "timeout": 300}) + "\n")
        srv.stdin.flush()
        ans = json.loads(srv.stdout.readline())
        pid = _wait_pid(tmp_path / "server.pid")
        assert ans["rc"] == "timeout" and ans["running"] == "test_leaker.py::test_leak"
        assert _gone(pid)
    finally:
        srv.stdin.close()
        srv.wait(30)
        if pid:
            _kill(pid)


def test_a_test_path_that_does_not_exist_is_refused_before_any_mutant_runs():
    """pytest exits non-zero on a missing file for every mutant alike: that must never read as kills."""
    r = subprocess.run([sys.executable, str(MUTATE), "--tests", "tests/no_such_test_file.py", "--list"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "no such test file" in r.stderr and "tests/no_such_test_file.py" in r.stderr
    ok = subprocess.run([sys.executable, str(MUTATE), "--tests", "tests/test_mutate_runner.py::test_leak", "--list"],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_a_job_copy_holds_every_top_level_part_the_tests_read(tmp_path):
    """tests/test_deploy.py reads deploy/, tests/test_readme.py the README and .ci/run: a part left
    out of the job's copy fails its tests there only, they are set aside as flaky and their kills
    are lost (deploy/ was, in the run of 2026-12-01)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutate_tool", MUTATE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[spec.name]
    mod._copy_tree(tmp_path)
    for part in ("deploy", ".ci", "README.md", "pyproject.toml", "tests", "tlog", "verifier", "issuer", "tools"):
        if (ROOT / part).exists():
            assert (tmp_path / part).exists(), part
    assert not (tmp_path / ".git").exists() and not (tmp_path / ".venv").exists()
