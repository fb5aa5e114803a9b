"""Guards of ``python -m tlog.storage.copy_tiles``'s progress report (tlog/storage/copy_tiles.py,
issue 16): one line at the first chunk of every 64 Ki tiles and one at the end, not one per
chunk (a copy of 10^8 entries has ~390,000 tiles: 381 chunks of 1,024)."""

from __future__ import annotations

from tlog.storage import copy_tiles, sqlite_tiles


def test_progress_every_64ki_tiles_and_at_the_end(tmp_path, monkeypatch, capsys):
    n = 140_000  # not a multiple of the chunk: the last chunk ends at n

    def copy(st, chunk=1024, progress=None):  # what copy_table_tiles reports: b after each chunk
        for b in [min(n, a + chunk) for a in range(0, n, chunk)]:
            progress(b, n)
        return n

    assert copy_tiles.copy_table_tiles is sqlite_tiles.copy_table_tiles
    monkeypatch.setattr(copy_tiles, "copy_table_tiles", copy)
    assert copy_tiles.main([str(tmp_path / "l.sqlite")]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == ["65,536 / 140,000 tiles", "131,072 / 140,000 tiles", "140,000 / 140,000 tiles"]
    assert out.startswith("140,000 tiles copied in ")

