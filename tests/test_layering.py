"""The layering the developers' guide asks for, read from the source's import statements (every
``import``/``from ... import``, also those inside functions and ``try`` blocks):

- the log core takes its personality (tlog.twi) through tlog.personality and imports nothing of
  it; only the composition (the server app, the child processes' entry points) and the explorer
  (a page about TWI records) do;
- ``tlog/`` imports nothing of ``issuer/`` (the SCRAPI client both use is ``verifier.scrapi``);
- ``verifier/`` imports nothing of ours (``tlog``, ``issuer``, ``witness``, ``serving``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of the modules ``name`` imports (``from a import b`` counts a and a.b)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _within(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


TLOG = _modules("tlog")
# who may import the TWI personality: itself, the compositions and the explorer's TWI pages
TWI_USERS = {"tlog.server.app", "tlog.procs", "tlog.explorer.model"}


def test_the_log_core_imports_nothing_of_the_twi_personality():
    assert {"tlog.service", "tlog.log", "tlog.claims", "tlog.personality", "tlog.twi"} <= set(TLOG)
    offenders = {
        name: sorted(_within(_imports(name, path), "tlog.twi"))
        for name, path in TLOG.items()
        if name not in TWI_USERS and not _within({name}, "tlog.twi")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    # nor through another module: what the core modules reach within tlog/
    for core in ("tlog.service", "tlog.log", "tlog.claims"):
        seen, todo = set(), [core]
        while todo:
            m = todo.pop()
            if m in seen or m not in TLOG:
                continue
            seen.add(m)
            todo.extend(_within(_imports(m, TLOG[m]), "tlog"))
        assert not _within(seen, "tlog.twi"), (core, sorted(_within(seen, "tlog.twi")))
        assert not seen & TWI_USERS, (core, sorted(seen & TWI_USERS))


def test_the_import_reader_sees_relative_and_nested_imports(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .twi import X\n")
    (pkg / "m.py").write_text("def f():\n    try:\n        from .twi.index import Y\n    except ImportError:\n"
                              "        pass\nimport tlog.twi\n")
    assert _within(_imports("p", pkg / "__init__.py"), "p.twi") == {"p.twi", "p.twi.X"}
    assert _within(_imports("p.m", pkg / "m.py"), "p.twi") == {"p.twi.index", "p.twi.index.Y"}
    assert "tlog.twi" in _imports("p.m", pkg / "m.py")


def test_tlog_imports_nothing_of_the_issuer():
    assert "tlog.clientcmd" in TLOG  # tlog register: verifier.scrapi
    found = {name: sorted(_within(_imports(name, path), "issuer")) for name, path in TLOG.items()}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_verifier_imports_nothing_of_ours():
    verifier = _modules("verifier")
    assert "verifier.scrapi" in verifier
    ours = ("tlog", "issuer", "witness", "serving")
    found = {name: sorted(n for p in ours for n in _within(_imports(name, path), p))
             for name, path in verifier.items()}
    assert {k: v for k, v in found.items() if v} == {}
