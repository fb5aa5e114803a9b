"""Guards of the storage layer found unchecked by mutation testing (issue 16, tools/mutate.py)."""

from __future__ import annotations

import pytest

from tlog.storage import open_storage


@pytest.mark.parametrize("url", ["", "mysql://db.example/log", "file:///tmp/x.sqlite", "sqlite://relative/path"])
def test_open_storage_refuses_what_it_cannot_open(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)  # a mistaken SQLite open would create its file here
    with pytest.raises(ValueError):
        open_storage(url)
    assert list(tmp_path.iterdir()) == []
