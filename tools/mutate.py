#!/usr/bin/env python3
"""Mutation testing of the guard modules: does every check fail a test when it is broken?

    python3 tools/mutate.py                  # map tests to lines, then every mutant (2 jobs)
    python3 tools/mutate.py --sample 60      # a random sample of 60 mutants (seeded)
    python3 tools/mutate.py --module verifier/receipt.py --module tlog/log.py
    python3 tools/mutate.py --list           # the mutants, without running anything
    python3 tools/mutate.py --show ID        # the diff of one mutant

Each mutant is one plausible one-line bug in a guard: a guard ``if ...: raise`` (or ``return``,
``continue``, ``break``) skipped, one operand of an ``and``/``or`` in a condition dropped, a
comparison operator in a condition changed (``<``/``<=``, ``==``/``!=``, ``in``/``not in``, ``is``/
``is not``), a ``return True``/``False`` flipped, or a statement that only calls a check (a call
named like verify, check, validate, require, open, execute, ...) deleted. Mutants are generated from the AST, so the list follows
the code; their ids name file, function, operator and source text, not line numbers.

Which tests run for a mutant: the tests that executed its line, from a mapping run of the whole
suite under coverage with one context per test (``--map``; reused from ``.mutate/map.json`` when
the sources have not changed since). They run the module's own test files first, then the
fastest, up to ``--max-test-seconds`` of mapped test time (default 60), and stop at the first
failure (``-x``), in a private copy of the tree per job (a fork server that has imported the
third-party libraries once), each bounded by a timeout (a hang counts as killed). A mutant no
test executes is a survivor.

Equivalent mutants (the program's behaviour cannot change) are listed with the reason in
``tools/mutate_equivalent.txt`` and left out of the score. Exit status 0 when the score reaches
``--target`` (default 95%), 1 otherwise, 2 on a usage error or a red baseline.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The guard modules (files, or packages: every .py under them). The one place to change scope.
GUARD_MODULES = [
    "verifier/merkle.py", "verifier/receipt.py", "verifier/transparent.py", "verifier/cose.py", "verifier/cbor.py",
    "verifier/statement.py", "verifier/x509.py", "verifier/note.py", "verifier/keys.py",
    "verifier/policy.py", "verifier/credential",
    "tlog/log.py", "tlog/pending.py", "tlog/logreads.py", "tlog/tree.py", "tlog/policy.py", "tlog/keys.py", "tlog/storage",
    "verifier/scrapi.py", "issuer/appraisal.py",
]

EQUIVALENT_FILE = ROOT / "tools" / "mutate_equivalent.txt"
KILLERS_FILE = ROOT / "tools" / "mutate_killers.json"  # committed: mutant id -> the test that killed it
STATE_DIR = ROOT / ".mutate"
CHECK_CALL_WORDS = ("verify", "check", "validate", "require", "ensure", "open", "assert", "need", "refuse",
                    "reject", "fsync", "sync", "execute", "_x")
COMPARE_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
}  # is / in are not swapped: their inversion breaks every caller, a boundary slip does not


# ---------------------------------------------------------------------------------- mutants


@dataclass
class Mutant:
    path: str          # relative to ROOT
    line: int          # first line of the mutated code (for test selection and reports)
    lines: tuple       # all lines of the mutated node
    func: str          # enclosing qualified name
    op: str            # operator name
    start: int         # character offsets into the source
    end: int
    new: str           # replacement text
    old: str
    id: str = ""
    status: str = ""   # killed | survived | timeout | no-tests | equivalent
    detail: str = ""
    seconds: float = 0.0
    tests: list = field(default_factory=list)
    killer: str = ""   # the node id of the test that failed
    cpu: float = 0.0   # CPU seconds of its pytest runs


def _offsets(src: str) -> list[int]:
    out, pos = [0], 0
    for line in src.splitlines(keepends=True):
        pos += len(line)
        out.append(pos)
    return out


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, src: str):
        self.path, self.src = path, src
        self.offs = _offsets(src)
        self.stack: list[str] = []
        self.out: list[Mutant] = []

    def _span(self, node) -> tuple[int, int]:
        return (self.offs[node.lineno - 1] + _col(self.src, self.offs, node.lineno, node.col_offset),
                self.offs[node.end_lineno - 1] + _col(self.src, self.offs, node.end_lineno, node.end_col_offset))

    def _add(self, node, op: str, new: str) -> None:
        if not self.stack:
            return  # module level: constants and imports, not guards
        s, e = self._span(node)
        old = self.src[s:e]
        if old == new:
            return
        self.out.append(Mutant(self.path, node.lineno, tuple(range(node.lineno, node.end_lineno + 1)),
                               ".".join(self.stack), op, s, e, new, old))

    def _scoped(self, node):
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    # --- conditions: the tests of if/while/conditional expressions/comprehensions, and returns
    def _condition(self, test) -> None:
        for node in ast.walk(test):
            if isinstance(node, ast.BoolOp):
                for i in range(len(node.values)):
                    rest = node.values[:i] + node.values[i + 1:]
                    new = rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest)
                    self._add(node, "drop-operand", _paren(new))
            elif isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    swap = COMPARE_SWAPS.get(type(op))
                    if swap is not None:
                        ops = list(node.ops)
                        ops[i] = swap()
                        self._add(node, "compare",
                                  _paren(ast.Compare(left=node.left, ops=ops, comparators=node.comparators)))

    def visit_If(self, node: ast.If) -> None:
        if _ends_in_exit(node.body):
            self._add(node.test, "skip-guard", "False")
        self._condition(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._condition(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._condition(node.test)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for cond in node.ifs:
            self._condition(cond)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        v = node.value
        if isinstance(v, ast.Constant) and isinstance(v.value, bool):
            self._add(v, "flip-return", str(not v.value))
        elif isinstance(v, (ast.BoolOp, ast.Compare)):
            self._condition(v)
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        c = node.value
        if isinstance(c, ast.Call):
            name = _call_name(c.func).lower()
            if any(w in name for w in CHECK_CALL_WORDS):
                self._add(node, "drop-call", "pass")
        self.generic_visit(node)


def _col(src: str, offs: list[int], lineno: int, col: int) -> int:
    """AST columns are UTF-8 byte offsets; convert to a character offset on that line."""
    line = src[offs[lineno - 1]:offs[lineno]]
    return len(line.encode("utf-8")[:col].decode("utf-8", "replace"))


def _paren(node) -> str:
    return "(" + ast.unparse(node) + ")"


def _call_name(f) -> str:
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return ""


def _ends_in_exit(body) -> bool:
    last = body[-1]
    return isinstance(last, (ast.Raise, ast.Return, ast.Continue, ast.Break))


def module_files(modules: list[str]) -> list[str]:
    out = []
    for m in modules:
        p = ROOT / m
        if p.is_dir():
            out += sorted(str(f.relative_to(ROOT)) for f in p.rglob("*.py"))
        elif p.is_file():
            out.append(m)
        else:
            raise SystemExit(f"mutate: no module {m}")
    return out


def find_mutants(files: list[str]) -> list[Mutant]:
    out: list[Mutant] = []
    for rel in files:
        src = (ROOT / rel).read_text()
        f = _Finder(rel, src)
        f.visit(ast.parse(src))
        seen: dict[str, int] = {}
        for m in sorted(f.out, key=lambda m: (m.start, m.op, m.new)):
            snippet = " ".join(m.old.split())[:60].rstrip() + " => " + " ".join(m.new.split())[:40].rstrip()  # no trailing blank: the ids are listed in mutate_equivalent.txt
            base = f"{m.path}:{m.func}:{m.op}:{snippet}"
            n = seen.get(base, 0) + 1
            seen[base] = n
            m.id = base if n == 1 else f"{base}#{n}"
            out.append(m)
    return out


def apply(src: str, m: Mutant) -> str:
    return src[:m.start] + m.new + src[m.end:]


def load_equivalent() -> dict[str, str]:
    out: dict[str, str] = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                mid, _, why = line.partition("  -- ")
                out[mid.strip()] = why.strip()
    return out


# ----------------------------------------------------------------------- mapping (coverage)


def _sources_digest(files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(set(files) | {str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*.py")}):
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes())
    return h.hexdigest()


PLUGIN = '''
import time, coverage, pytest
_cov = coverage.Coverage(data_file={data!r}, include={include!r}, branch=False)
_cov.start()
_durations = {{}}

_failed = set()
_pg = set()

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _cov.switch_context(item.nodeid)
    if item.get_closest_marker("postgres") is not None or "postgres" in item.nodeid:
        _pg.add(item.nodeid)
    t = time.perf_counter()
    yield
    _durations[item.nodeid] = time.perf_counter() - t
    _cov.switch_context("")

def pytest_runtest_logreport(report):
    if report.failed:
        _failed.add(report.nodeid)

def pytest_sessionfinish(session, exitstatus):
    _cov.stop()
    _cov.save()
    import json
    with open({dur!r}, "w") as f:
        json.dump({{"durations": _durations, "failed": sorted(_failed), "pg": sorted(_pg),
                   "exitstatus": int(exitstatus)}}, f)
'''


def build_map(files: list[str], pytest_args: list[str]) -> dict:
    """``pytest_args``: the tests of the mapping run (default: the whole suite)."""
    """Run the suite once under coverage, one context per test: line -> tests, test -> seconds."""
    try:
        import coverage  # noqa: F401
    except ImportError:
        raise SystemExit("mutate: the mapping run needs coverage (pip install -e '.[test]')") from None
    STATE_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mutate-map-"))
    data, dur = work / ".coverage", work / "durations.json"
    (work / "mutate_map_plugin.py").write_text(PLUGIN.format(
        data=str(data), include=[str(ROOT / f) for f in files], dur=str(dur)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]))
    t = time.time()
    print(f"mutate: mapping run (the whole suite under coverage) ...", flush=True)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutate_map_plugin",
                        *(pytest_args or ["tests"])], cwd=ROOT, env=env)
    info = json.loads(dur.read_text())
    failed = set(info.get("failed", ()))
    if r.returncode != 0 and not failed:
        raise SystemExit(f"mutate: the mapping run failed (exit {r.returncode})")
    if failed:
        # a red test would "kill" every mutant it runs: left out of every selection, and said so
        print(f"mutate: WARNING: {len(failed)} tests failed on the unmutated code and are not used: "
              + ", ".join(sorted(failed)), flush=True)
    import coverage

    cd = coverage.CoverageData(basename=str(data))
    cd.read()
    lines: dict[str, dict[str, list[str]]] = {}
    for f in files:
        by_line = cd.contexts_by_lineno(str(ROOT / f))
        lines[f] = {str(n): sorted(c for c in ctxs if c and c not in failed) for n, ctxs in by_line.items()
                    if any(c and c not in failed for c in ctxs)}
    out = {"digest": _sources_digest(files), "args": pytest_args, "failed": sorted(failed), "lines": lines, "durations": info["durations"],
           "pg": info.get("pg", []),
           "seconds": round(time.time() - t, 1)}
    (STATE_DIR / "map.json").write_text(json.dumps(out))
    shutil.rmtree(work, ignore_errors=True)
    print(f"mutate: mapped in {out['seconds']} s", flush=True)
    return out


def add_to_map(files: list[str], pytest_args: list[str]) -> dict:
    """Map only some tests (new or changed test files) and merge them into the saved map."""
    p = STATE_DIR / "map.json"
    if not p.exists():
        raise SystemExit("mutate: --map-add needs an earlier mapping run (.mutate/map.json)")
    old = json.loads(p.read_text())
    new = build_map(files, pytest_args)
    for f, by_line in new["lines"].items():
        dst = old["lines"].setdefault(f, {})
        for ln, nodes in by_line.items():
            dst[ln] = sorted(set(dst.get(ln, ())) | set(nodes))
    old["durations"].update(new["durations"])
    old["pg"] = sorted(set(old.get("pg", ())) | set(new.get("pg", ())))
    old["digest"] = new["digest"]  # the merged map stands for the current sources
    p.write_text(json.dumps(old))
    return old


def get_map(files: list[str], pytest_args: list[str], remap: bool, reuse: bool = False) -> dict:
    p = STATE_DIR / "map.json"
    if p.exists() and not remap:
        m = json.loads(p.read_text())
        if reuse:
            print("mutate: reusing .mutate/map.json although the sources may have changed (--reuse-map)")
            return m
        if (m.get("digest") == _sources_digest(module_files(GUARD_MODULES)) and m.get("args") == pytest_args
                and all(f in m["lines"] for f in files)):
            return m
    return build_map(module_files(GUARD_MODULES), pytest_args)


# ---------------------------------------------------------------------------------- running


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".mutate", ".hypothesis", "*.egg-info",
                                    ".pytest_cache")
    # every top-level file and directory of the checkout (tests read deploy/, docs/, README.md, ...):
    # a test that fails in the copy only would be set aside as flaky and its kills lost
    skip = {"test-artifacts", "build", "dist"}
    for s in sorted(ROOT.iterdir()):
        name = s.name
        if (name.startswith(".") and name != ".ci") or name in skip or name.endswith(".egg-info"):
            continue
        if s.is_dir():
            shutil.copytree(s, dst / name, ignore=ignore)
        elif s.exists():
            shutil.copy2(s, dst / name)


PRELOAD = ("pytest", "hypothesis", "cryptography.hazmat.primitives.asymmetric.ec", "cryptography.x509",
           "cryptography.x509.verification", "flask", "werkzeug", "requests", "cbor2", "jwt", "psycopg",
           "pymerkle")


STOPPING = threading.Event()  # the run is being stopped (SIGTERM/SIGINT/SIGHUP)
HANG_SECONDS = 12.0  # a pytest run whose processes (all of them, servers too) used no CPU this long waits for nothing
BASE_TIMEOUT = 30.0  # seconds per pytest run of a mutant, plus 5x its tests' mapped time (a busy hang)


class _Running:
    """pytest plugin of a job's run: the node id of the test running now, in a file (a run that
    hangs is killed; the test it hung in is then its killer, tried first next time)."""

    def __init__(self, path: str):
        self.path = path

    def pytest_runtest_logstart(self, nodeid, location):
        with open(self.path, "w") as f:
            f.write(nodeid)


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks so far) of every live process (Linux /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            out[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))  # ppid; utime stime cutime cstime
    return out


def _descendants(root: int, table: dict | None = None) -> list[int]:
    table = _proc_table() if table is None else table
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), ()):
            out.append(k)
            todo.append(k)
    return out


def _tree_cpu(root: int) -> int:
    """CPU ticks used so far by the live descendants of ``root`` (servers in their own sessions too)."""
    table = _proc_table()
    return sum(table[p][1] for p in _descendants(root, table) if p in table)


def _kill_descendants(root: int) -> None:
    """SIGKILL every descendant of ``root`` and reap them. ``root`` is a child subreaper (see
    ``serve``), so a process whose parent died (a server a test started in its own session, whose
    pytest was killed) is still its descendant and is found here, not left running."""
    import signal

    for _ in range(20):
        pids = _descendants(root)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap()
        time.sleep(0.05)
    _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _prctl(option: int, value: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the process group kill still applies


PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def serve(workdir: str) -> None:
    """A job: imports the third-party libraries once, then per request (a JSON line on stdin)
    forks a child that runs pytest in ``workdir`` (our packages imported fresh from the copy,
    after the mutated file was written) and answers with a JSON line on stdout."""
    import importlib
    import signal

    sys.dont_write_bytecode = True
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    out = sys.stdout
    child = [0]
    # Every process a test starts stays our descendant (orphans are reparented to us, not to init),
    # and we get SIGTERM when the runner dies, even by SIGKILL: nothing a test started outlives us.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the runner died before the line above
        os._exit(143)

    def on_term(*_):  # the run was stopped: the running pytest and everything it started, with us
        if child[0]:
            try:
                os.killpg(child[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
        _kill_descendants(os.getpid())
        os._exit(143)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    for line in sys.stdin:
        req = json.loads(line)
        log = Path(workdir) / ".mutate-out.txt"
        running = Path(workdir) / ".mutate-running.txt"
        running.unlink(missing_ok=True)
        pid = os.fork()
        child[0] = pid
        if pid == 0:  # child
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 3
            try:
                import pytest

                code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *req["tests"]],
                                       plugins=[_Running(str(running))]))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.time() + req["timeout"]
        rc, cpu = None, 0.0
        last_cpu, last_change, next_look = -1, time.time(), time.time() + 2
        while rc is None:
            done, status, ru = os.wait4(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                cpu = ru.ru_utime + ru.ru_stime  # the pytest run and the processes it waited for
            elif time.time() > deadline or time.time() - last_change > HANG_SECONDS:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                ru = os.wait4(pid, 0)[2]
                cpu = ru.ru_utime + ru.ru_stime
                rc = "timeout"
            else:
                time.sleep(0.02)
                if time.time() > next_look and os.path.isdir("/proc"):
                    next_look = time.time() + 2
                    now = _tree_cpu(os.getpid())  # pytest and every process it started
                    if now != last_cpu:
                        last_cpu, last_change = now, time.time()
        child[0] = 0
        _kill_descendants(os.getpid())  # servers a test left running (killed or not, they are done)
        text = log.read_text(errors="replace") if log.exists() else ""
        failed = next((ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))), "")
        # a node id the map names but the tests no longer have (a stale map): not a kill
        stale = rc in (4, 5) and any(s in text for s in ("ERROR: not found", "ERROR: file or directory not found", "no tests ran"))
        hung = running.read_text() if rc == "timeout" and running.exists() else ""
        out.write(json.dumps({"rc": 0 if stale else rc, "failed": failed[:200], "cpu": cpu, "stale": stale,
                              "running": hung}) + "\n")
        out.flush()


class Job:
    """One private copy of the tree and its fork server."""

    def __init__(self, workdir: Path, env: dict):
        self.dir = workdir
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(workdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=workdir)

    def run(self, m: Mutant, stages: list[list[str]], timeouts: list[float]) -> None:
        """Run the stages one after another (each a fresh pytest, -x) until one fails."""
        target = self.dir / m.path
        original = target.read_text()
        target.write_text(apply(original, m))
        t = time.time()
        try:
            for tests, timeout in zip(stages, timeouts):
                self.proc.stdin.write(json.dumps({"tests": tests, "timeout": timeout}) + "\n")
                self.proc.stdin.flush()
                ans = json.loads(self.proc.stdout.readline())
                m.cpu += ans.get("cpu", 0.0)
                if ans.get("stale"):
                    m.detail = "some mapped tests no longer exist (remap)"
                if ans["rc"] != 0:
                    break
        finally:
            if not STOPPING.is_set():  # stopped: the copy is being removed, do not recreate it
                target.write_text(original)
            m.seconds = time.time() - t
        rc = ans["rc"]
        if rc == "timeout":
            m.status, m.detail = "timeout", f"no result in {timeout:.0f} s, or no CPU used for {HANG_SECONDS:.0f} s"
            m.killer = ans.get("running", "")  # the test it hung in
        elif rc == 0:
            m.status = "survived"
        else:  # 1: a test failed; 2-4: the mutant broke collection or pytest itself
            m.status, m.detail = "killed", ans["failed"] or f"pytest exit {rc}"
            word, _, rest = m.detail.partition(" ")
            if word in ("FAILED", "ERROR") and "::" in rest:
                m.killer = rest.split(" - ")[0].strip()

    def baseline(self, tests: list[str], timeout: float) -> bool:
        """Do these tests pass on the unmutated code (now, under the same load)?"""
        self.proc.stdin.write(json.dumps({"tests": tests, "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["rc"] == 0

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def stages(tests: list[str], known: bool = False) -> list[list[str]]:
    """Pytest collects every file it is given before it runs the first test, and collecting the
    files of server tests costs more than most unit tests: so the likeliest killer runs alone
    first, then the tests of the next two files, then the rest. ``known``: the first test killed
    this very mutant last time (the killer map): if it no longer does, the code changed, and the
    rest run in one pytest (one collection) instead of two."""
    if len(tests) <= 1:
        return [tests]
    if known:
        return [tests[:1], tests[1:]]
    out, files = [tests[:1]], {tests[0].split("::")[0]}
    second = []
    for i, n in enumerate(tests[1:], 1):
        f = n.split("::")[0]
        if f not in files and len(files) >= 3:
            out.append(second)
            out.append(tests[i:])
            return out
        files.add(f)
        second.append(n)
    out.append(second)
    return out


def select_tests(m: Mutant, mp: dict, max_seconds: float, killers: "Killers | None" = None) -> list[str]:
    """The tests that executed the mutant's lines, cheapest likely killer first: the test that
    killed this very mutant last run, then tests that killed other mutants of the same function,
    then of the same file (learned during the run), then the module's own test files, then the
    rest, fastest first; cut when their mapped time passes ``max_seconds`` (0: no cut)."""
    lines = mp["lines"].get(m.path, {})
    nodes: set[str] = set()
    for ln in m.lines:
        nodes.update(lines.get(str(ln), ()))
    dur = mp["durations"]
    parts = Path(m.path).with_suffix("").parts[1:]  # e.g. ("receipt",), ("credential", "binding")
    own = lambda n: any(p in n.split("::")[0] for p in parts)  # noqa: E731 - the module's own tests first
    if not os.environ.get("TLOG_TEST_PG_URL"):  # PostgreSQL-backed tests would only skip
        pg = set(mp.get("pg", ()))
        nodes = {n for n in nodes if n not in pg and "postgres" not in n and "/test_pg_" not in n}
    rank = killers.rank(m) if killers else {}
    ordered = sorted(nodes, key=lambda n: (rank.get(n, 9), not own(n), dur.get(n, 1.0), n))
    if not max_seconds:
        return ordered
    out, total = [], 0.0
    for n in ordered:
        total += dur.get(n, 1.0)
        if out and total > max_seconds:
            break
        out.append(n)
    return out


class Killers:
    """Which test killed which mutant, so that the likely killer runs first: the committed map
    (``tools/mutate_killers.json``, by mutant id: a fresh clone starts from the last full run's
    knowledge), overridden by this checkout's earlier runs (``.mutate/killers.json``), and what
    this run learns (by mutant, function and file). A killer that no longer kills is only a first
    guess: the other covering tests follow."""

    def __init__(self, path: Path | None, committed: Path | None = None):
        self.path = path
        self.by_id: dict[str, str] = {}
        for p in (committed, path):
            if p and p.exists():
                try:
                    self.by_id.update(json.loads(p.read_text()))
                except ValueError:
                    pass
        self.by_func: dict[tuple, list[str]] = {}
        self.by_file: dict[str, list[str]] = {}

    def rank(self, m: Mutant) -> dict[str, int]:
        r: dict[str, int] = {}
        for n in reversed(self.by_file.get(m.path, [])[-8:]):
            r[n] = 3
        for n in reversed(self.by_func.get((m.path, m.func), [])[-8:]):
            r[n] = 2
        if m.id in self.by_id:
            r[self.by_id[m.id]] = 1
        return r

    def learn(self, m: Mutant, test: str) -> None:
        self.by_id[m.id] = test
        for lst in (self.by_func.setdefault((m.path, m.func), []), self.by_file.setdefault(m.path, [])):
            if test in lst:
                lst.remove(test)
            lst.append(test)

    def save(self, also: Path | None = None, keep: set[str] | None = None) -> None:
        """Merged with what another run saved meanwhile; ``also``: write the committed map too,
        keeping only the ids in ``keep`` (the mutants that exist now)."""
        for p in (self.path, also):
            if not p:
                continue
            p.parent.mkdir(exist_ok=True)
            old = {}
            if p.exists():
                try:
                    old = json.loads(p.read_text())
                except ValueError:
                    old = {}
            merged = old | self.by_id
            if p is also and keep is not None:
                merged = {k: v for k, v in merged.items() if k in keep}
            p.write_text(json.dumps(merged, indent=0, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--module", action="append", default=[], help="limit to these guard modules (repeatable)")
    ap.add_argument("--op", action="append", default=[], help="limit to these operators (repeatable)")
    ap.add_argument("--match", default="", help="only mutants whose id contains this text")
    ap.add_argument("--ids", metavar="FILE",
                    help="only these mutants: ids one per line, or the survivors of a --json report (a re-run)")
    ap.add_argument("--sample", type=int, default=0, help="run a random sample of N mutants")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="parallel jobs (default: the cores)")
    ap.add_argument("--timeout", type=float, default=0,
                    help=f"seconds per pytest run of a mutant (default: {BASE_TIMEOUT:.0f} + 5x its tests' mapped time)")
    ap.add_argument("--max-test-seconds", type=float, default=60.0,
                    help="per mutant, run covering tests up to this much mapped test time (0: all)")
    ap.add_argument("--target", type=float, default=95.0, help="required score in %% of non-equivalent mutants")
    ap.add_argument("--remap", action="store_true", help="redo the mapping run even if the sources are unchanged")
    ap.add_argument("--reuse-map", action="store_true",
                    help="use the last mapping even if sources changed (while writing tests; pair with --tests)")
    ap.add_argument("--tests", action="append", default=[],
                    help="run these tests (pytest arguments) first for every mutant, e.g. a new test file")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--show", metavar="ID", help="print the diff of one mutant (its id or a unique part) and exit")
    ap.add_argument("--json", metavar="FILE", help="write every mutant's result to FILE")
    ap.add_argument("--results", metavar="FILE", help="one JSON line per mutant as it finishes "
                    "(default .mutate/results.jsonl)")
    ap.add_argument("--resume", action="append", default=[], metavar="FILE",
                    help="keep the kills recorded in FILE (a --results file of an earlier, stopped run) "
                         "and run only the rest; their killing tests are still checked unmutated")
    ap.add_argument("--map-add", action="append", default=[],
                    help="map these tests (pytest arguments, e.g. a new test file) and merge them into the saved map")
    ap.add_argument("--map-tests", action="append", default=[],
                    help="tests (pytest arguments) of the mapping run, repeatable (default: the whole suite)")
    ap.add_argument("--save-killers", action="store_true",
                    help=f"also write the learned killers into {KILLERS_FILE.relative_to(ROOT)} (commit it after a full run)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve(a.serve)
        return 0

    # a test path that does not exist makes pytest exit non-zero for every mutant: never a kill
    missing = [t for t in a.tests + a.map_add + a.map_tests
               if not t.startswith("-") and not (ROOT / t.split("::")[0]).exists()]
    if missing:
        print(f"mutate: no such test file or directory: {', '.join(missing)} (repeat --tests for each)", file=sys.stderr)
        return 2
    mods = a.module or GUARD_MODULES
    unknown = [m for m in mods if not any(m == g or m.startswith(g.rstrip("/") + "/") for g in GUARD_MODULES)]
    if unknown:
        print(f"mutate: not a guard module: {', '.join(unknown)} (see GUARD_MODULES)", file=sys.stderr)
        return 2
    files = module_files(mods)
    mutants = find_mutants(files)
    equivalent = load_equivalent()
    if not a.module:
        stale = sorted(set(equivalent) - {m.id for m in mutants})
        if stale:
            print(f"mutate: {len(stale)} entries of {EQUIVALENT_FILE.name} name no mutant (the code changed; "
                  "review them): " + "; ".join(stale), file=sys.stderr)
    if a.op:
        mutants = [m for m in mutants if m.op in a.op]
    if a.match:
        mutants = [m for m in mutants if a.match in m.id]
    if a.ids:
        text = Path(a.ids).read_text()
        if text.lstrip().startswith("["):  # a --json report: its survivors and unrun mutants
            wanted = {r["id"] for r in json.loads(text) if r["status"] in ("survived", "no-tests")}
        else:
            wanted = {ln.strip() for ln in text.splitlines() if ln.strip()}
        gone = wanted - {m.id for m in mutants}
        if gone:
            print(f"mutate: {len(gone)} of the ids no longer exist (the code changed): " + "; ".join(sorted(gone)))
        mutants = [m for m in mutants if m.id in wanted]
    if a.show:
        hits = [m for m in mutants if m.id == a.show] or [m for m in mutants if a.show in m.id]
        if len(hits) != 1:
            print(f"mutate: {len(hits)} mutants match {a.show!r} (give the full id or a unique part)", file=sys.stderr)
            return 2
        m = hits[0]
        src = (ROOT / m.path).read_text()
        sys.stdout.writelines(difflib.unified_diff(src.splitlines(True), apply(src, m).splitlines(True),
                                                   f"a/{m.path}", f"b/{m.path}"))
        return 0
    if a.list:
        for m in mutants:
            print(f"{m.path}:{m.line}  {m.id}")
        print(f"{len(mutants)} mutants", file=sys.stderr)
        return 0

    if a.sample and a.sample < len(mutants):
        mutants = sorted(random.Random(a.seed).sample(mutants, a.sample), key=lambda m: (m.path, m.start))
    if a.map_add:
        mp = add_to_map(module_files(GUARD_MODULES), a.map_add)
    else:
        mp = get_map(files, a.map_tests, a.remap, a.reuse_map)

    import signal

    work = Path(tempfile.mkdtemp(prefix="mutate-"))
    jobs = []

    def on_term(*_):  # stop the jobs and remove the copies on kill too
        STOPPING.set()
        try:
            killers.save()
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        for jb in jobs:
            jb.proc.terminate()  # each job kills its running pytest's process group
        for jb in jobs:
            try:
                jb.proc.wait(10)
            except subprocess.TimeoutExpired:
                jb.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
        time.sleep(0.2)  # a job thread that was past its check
        shutil.rmtree(work, ignore_errors=True)
        os._exit(143)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    for j in range(max(1, a.jobs)):
        d = work / f"w{j}"
        d.mkdir()
        _copy_tree(d)
        # PYTHONPATH: processes the tests start (servers, crash loops) import the mutated copy too
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(d),
                   HYPOTHESIS_PROFILE="mutation")  # tests/conftest.py: no shrinking
        jobs.append(Job(d, env))
    free = list(jobs)
    killers = Killers(STATE_DIR / "killers.json", KILLERS_FILE)
    STATE_DIR.mkdir(exist_ok=True)
    results = open(a.results or STATE_DIR / "results.jsonl", "w")  # one line per mutant as it finishes


    lock = threading.Lock()
    t0 = time.time()
    load0 = os.getloadavg()
    done = [0]
    flaky: set[str] = set()
    resumed: dict[str, dict] = {}  # --resume: the kills of earlier runs (same mutant id) kept
    for f in a.resume:
        for ln in Path(f).read_text().splitlines():
            r = json.loads(ln) if ln.strip() else {}
            if r.get("status") in ("killed", "timeout"):
                resumed[r["id"]] = r

    def job(m: Mutant) -> None:
        if STOPPING.is_set():  # the run is being stopped: no more runs, no results without one
            return
        if m.id in equivalent:
            m.status, m.detail = "equivalent", equivalent[m.id]
            return
        if m.id in resumed:
            r = resumed[m.id]
            m.status, m.detail, m.killer, m.cpu, m.seconds = r["status"], r["detail"], r.get("killer", ""), 0.0, 0.0
            with lock:
                results.write(json.dumps(_row(m) | {"resumed": True}) + "\n")
            return
        tests = [n for n in a.tests + select_tests(m, mp, a.max_test_seconds, killers) if n not in flaky]
        m.tests = tests
        if not tests:
            m.status = "no-tests"
            return
        with lock:
            jb = free.pop()
        try:
            plan = stages(tests, known=bool(tests) and killers.by_id.get(m.id) == tests[0])
            budgets = [a.timeout or BASE_TIMEOUT + 5 * sum(mp["durations"].get(n, 1.0) for n in st) for st in plan]
            jb.run(m, plan, budgets)
        finally:
            with lock:
                free.append(jb)
                done[0] += 1
                if m.killer:  # used only where it covers the mutant's lines (select_tests)
                    killers.learn(m, m.killer)
                if done[0] % 25 == 0:
                    killers.save()  # a stopped run keeps what it learned
                if m.status:  # none when the run was stopped under it
                    results.write(json.dumps(_row(m)) + "\n")
                    results.flush()
                if m.status in ("survived", "timeout"):
                    print(f"  [{done[0]}/{len(mutants)}] {m.status}: {m.id}", flush=True)
                elif done[0] % 25 == 0:
                    print(f"  [{done[0]}/{len(mutants)}] {time.time() - t0:.0f} s", flush=True)

    print(f"mutate: {len(mutants)} mutants in {len(files)} files, {a.jobs} jobs", flush=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
            list(ex.map(job, mutants))
            # A kill counts only if the killing test passes on the unmutated code: a test that
            # fails on its own (timing under load) would "kill" every mutant it runs. Each test that
            # killed something runs once unmutated; the mutants a failing one killed run again
            # without it.
            checked: set[str] = set()
            for _ in range(3):
                used = sorted({m.killer for m in mutants if m.status == "killed" and m.killer} - checked)
                if not used:
                    break
                print(f"mutate: checking the {len(used)} killing tests on the unmutated code", flush=True)

                def check(n: str) -> None:
                    with lock:
                        jb = free.pop()
                    try:
                        if not jb.baseline([n], 60 + 5 * mp["durations"].get(n, 1.0)):
                            flaky.add(n)
                    finally:
                        with lock:
                            free.append(jb)

                list(ex.map(check, used))
                checked.update(used)
                again = [m for m in mutants if m.status == "killed" and m.killer in flaky]
                for m in again:
                    resumed.pop(m.id, None)
                if not again:
                    break
                print(f"mutate: {len(flaky)} killing tests fail without a mutant too (not used): "
                      + ", ".join(sorted(flaky)) + f"; {len(again)} mutants run again without them", flush=True)
                for m in again:
                    m.status, m.detail, m.killer = "", "", ""
                list(ex.map(job, again))
    finally:
        for jb in jobs:
            jb.close()
        for _ in range(3):  # a file written by a process that was being killed can race the first pass
            shutil.rmtree(work, ignore_errors=True)
            if not work.exists():
                break
            time.sleep(0.5)
        results.close()
        killers.save(KILLERS_FILE if a.save_killers else None, {m.id for m in find_mutants(module_files(GUARD_MODULES))})
    return report(mutants, time.time() - t0, a, load0, flaky)


def _row(m: Mutant) -> dict:
    return {k: getattr(m, k) for k in ("id", "path", "line", "op", "status", "detail", "killer", "seconds", "cpu")} | {
        "tests": len(m.tests)}


def report(mutants: list[Mutant], seconds: float, a, load0=(0.0, 0.0, 0.0), flaky=()) -> int:
    by = {s: [m for m in mutants if m.status == s] for s in ("killed", "timeout", "survived", "no-tests", "equivalent")}
    live = len(mutants) - len(by["equivalent"])
    killed = len(by["killed"]) + len(by["timeout"])
    score = 100.0 * killed / live if live else 100.0
    print()
    for s in ("survived", "no-tests"):
        for m in by[s]:
            print(f"{s.upper():9} {m.path}:{m.line}  {m.id}")
    if flaky:
        print("mutate: tests that failed on the unmutated code and were not counted: " + ", ".join(sorted(flaky)))
    print(f"\nmutate: {len(mutants)} mutants, {len(by['equivalent'])} equivalent (tools/mutate_equivalent.txt), "
          f"{len(by['killed'])} killed, {len(by['timeout'])} timed out (counted killed), {len(by['survived'])} "
          f"survived, {len(by['no-tests'])} run by no test; score {killed}/{live} = {score:.1f}% "
          f"(target {a.target:.0f}%) in {seconds / 60:.1f} min")
    # CPU time of this process and every process it waited for (the jobs, their forked pytest runs,
    # the servers those tests started): on a shared machine the wall time says little, the CPU time
    # divided by the cores is what the run needs on an idle machine of that many cores.
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    load1 = os.getloadavg()
    per = sum(m.cpu for m in mutants)
    print(f"mutate: the mutants' pytest runs took {per / 60:.1f} CPU min "
          f"({per / max(1, len(mutants) - len(by['equivalent'])):.2f} s a mutant)")
    print(f"mutate: CPU {cpu / 60:.1f} min (mapping run included when it ran), = {cpu / 60 / max(1, a.jobs):.1f} min "
          f"on {max(1, a.jobs)} idle cores; wall {seconds / 60:.1f} min; load average "
          f"{load0[0]:.1f} at the start, {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at the end; "
          f"PostgreSQL tests {'ran' if os.environ.get('TLOG_TEST_PG_URL') else 'skipped (TLOG_TEST_PG_URL unset)'}")
    if a.json:
        Path(a.json).write_text(json.dumps([_row(m) for m in mutants], indent=1))
    return 0 if score >= a.target else 1


if __name__ == "__main__":
    sys.exit(main())
