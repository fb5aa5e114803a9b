import os
from pathlib import Path

import pytest
from hypothesis import Phase, settings

# Property tests are deterministic and keep no example database: the same examples on every run
# and machine (CI included), so a run never fails because of what an earlier run found, and a
# failure reproduces. To explore new examples locally: HYPOTHESIS_PROFILE=explore.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
# tools/mutate.py: the same examples, but a failure is not shrunk (a mutant is killed by the first
# failing example; shrinking it can take minutes).
settings.register_profile("mutation", derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

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
