"""``python -m tlog.storage.copy_tiles DB``: copy a migrated SQLite log's full level-0 tile rows into its
tile file (sqlite_tiles) while the log keeps serving. Apart from both so that neither imports the other."""
from __future__ import annotations

from .sqlite import SQLiteStorage
from .sqlite_tiles import copy_table_tiles


def main(argv=None) -> int:
    import argparse
    import sys
    import time

    ap = argparse.ArgumentParser(description="move a migrated SQLite log's full level-0 tiles into its tile file")
    ap.add_argument("db", help="path of log.sqlite")
    args = ap.parse_args(argv)
    st = SQLiteStorage(args.db)
    t0 = time.perf_counter()
    try:
        n = copy_table_tiles(st, progress=lambda b, n: print(f"{b:,} / {n:,} tiles", file=sys.stderr, flush=True)
                             if b % 65536 < 1024 or b == n else None)
    finally:
        st.close()
    print(f"{n:,} tiles copied in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
