"""The monitor, the auditor and the witness against the real log core (tlog.log.Log on SQLite),
its tiles served over loopback HTTP by the test fixture server."""

from __future__ import annotations

import base64
import io
from hashlib import sha256

import pytest

from witness import Witness, create_app
from verifier.monitor import Auditor, HttpLog, Monitor, MonitorAlert, Reporter
from verifier.note import Checkpoint, CosignatureSigner, Signer, open_checkpoint
from verifier.tiles import TileHashReader, TileNotFound

from .test_monitor_fixture import FixtureServer

log_mod = pytest.importorskip("tlog.log")
layout = pytest.importorskip("tlog.layout")

ORIGIN = "integration.example/log"


class RealLogView:
    """Adapts tlog.log.Log to the fixture server's ``get(path)``."""

    def __init__(self, lg) -> None:
        self.lg = lg
        self.down = False
        self.requests = 0
        self.override: str | None = None

    def get(self, path: str) -> bytes:
        if path == "checkpoint":
            return (self.override or self.lg.latest().checkpoint).encode()
        try:
            ref = layout.parse_tile_path(path)
        except ValueError:
            raise TileNotFound(path) from None
        w = None if ref.width == 256 else ref.width
        if ref.level is None:
            data = self.lg.entry_bundle(ref.index, w if w else 256)
        else:
            data = self.lg.tile(ref.level, ref.index, w if w else 256)
        if data is None:
            raise TileNotFound(path)
        return data


def test_monitor_audit_witness_against_real_log(tmp_path):
    signer = Signer.generate(ORIGIN)
    lg = log_mod.Log.open(str(tmp_path / "log.db"), origin=ORIGIN, note_signer=signer, poll_interval=0.05)
    try:
        view = RealLogView(lg)
        cos = CosignatureSigner.generate("witness.example")
        wit = Witness(tmp_path / "w.db", {ORIGIN: [signer.verifier()]}, [cos])
        wc = create_app(wit).test_client()
        with FixtureServer(view) as srv:  # type: ignore[arg-type]
            out = io.StringIO()
            mon = Monitor(HttpLog(srv.url), signer.verifier(), tmp_path / "m.json", reporter=Reporter(out, io.StringIO()))
            wsize = 0
            n = 0
            for batch in [1, 255, 300, 1000, 7]:
                lg.append([(sha256(b"e%d" % (n + i)).digest(), b"data", ()) for i in range(batch)])
                n += batch
                assert mon.poll() is True
                assert mon.state.size == n
                note = lg.latest().checkpoint
                cp = Checkpoint.parse(note.split("\n\n")[0] + "\n")
                proof = TileHashReader(HttpLog(srv.url).fetch, n).consistency_proof(wsize) if wsize else []
                body = ("old %d\n" % wsize + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
                        + "\n" + note).encode()
                r = wc.post("/add-checkpoint", data=body)
                assert r.status_code == 200, r.data
                open_checkpoint(note + r.data.decode(), signer.verifier(), [cos.verifier()])
                wsize = n
            st = Auditor(HttpLog(srv.url).fetch, tmp_path / "a.json").audit(cp, note)
            assert st.audited_size == n == 1563
            # the log presents an older checkpoint: size regression alert
            view.override = lg.tree_head(556).checkpoint
            with pytest.raises(MonitorAlert) as e:
                mon.poll()
            assert e.value.kind == "size-regressed"
    finally:
        lg.close()
