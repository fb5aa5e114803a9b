from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The conformance vectors ship with the repository (tests/vectors/README.md: source and licence of each).
VECTORS = ROOT / "tests" / "vectors"


def vectors(*parts: str, glob: str | None = None, expect: int | None = None):
    """The vector file or folder ``tests/vectors/<parts>`` (with ``glob``: its sorted matching files).

    A missing or incomplete set fails with what to do, not with a bare count assertion.
    """
    p = VECTORS.joinpath(*parts)
    what = f"conformance vectors {p.relative_to(ROOT)}"
    fix = ("they ship with the repository: restore them with `git checkout -- tests/vectors` "
           "(sources in tests/vectors/README.md)")
    if not p.exists():
        pytest.fail(f"{what} missing: {fix}", pytrace=False)
    if glob is None:
        return p
    found = sorted(p.rglob(glob))
    if expect is not None and len(found) != expect:
        pytest.fail(f"{what}: {len(found)} files matching {glob}, expected {expect}: {fix}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return vectors()
