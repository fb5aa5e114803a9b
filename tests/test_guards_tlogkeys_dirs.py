"""tlog.keys.make_dirs stops its walk up at the filesystem root (issue 16: a survivor of the final
mutation run): even when no directory on the way reports that it exists (a deleted working
directory, a path on a vanished mount), the walk ends instead of looping at "/" forever."""

from __future__ import annotations

import pathlib

from tlog import keys


def test_the_walk_up_ends_at_the_root_even_when_nothing_exists(tmp_path, monkeypatch):
    calls = []
    real_exists = pathlib.Path.exists

    def exists(self, *a, **kw):
        calls.append(self)
        assert len(calls) < 200, "make_dirs kept walking up past the root"
        return False  # nothing on the way up reports that it exists

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    target = tmp_path / "a" / "b"
    assert keys.make_dirs(target) == target
    monkeypatch.setattr(pathlib.Path, "exists", real_exists)
    assert target.is_dir()
    assert calls[-1] == pathlib.Path("/")  # it went up to the root and stopped there
