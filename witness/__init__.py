"""The witness actor: a C2SP tlog-witness v1.0.0 witness: ``POST <prefix>/add-checkpoint``.

For each configured log (origin and trusted log verifier keys) the witness keeps the latest
checkpoint it cosigned in SQLite. A request is checked in the order of the spec:

- body malformed -> 400; origin unknown -> 404; no signature by a trusted log key verifies -> 403
  (a signature by a trusted key that fails is also 403);
- old size > checkpoint size -> 400;
- old size != the witness's latest cosigned size for the origin -> 409, body ``<size>\\n``,
  ``Content-Type: text/x.tlog.size``; same size but a different root -> 409 likewise;
- consistency proof (RFC 6962/9162, empty when old size is 0 or equal sizes) fails -> 422;
- otherwise the new state is committed (``BEGIN IMMEDIATE``: check and update are one
  transaction, so concurrent requests cannot roll the witness back) and the response is the
  tlog-cosignature/v1 line(s) of the witness key(s), ``200``.

Extension (not in the spec): ``GET <prefix>/checkpoint?origin=<origin>`` returns the latest
cosigned checkpoint note (log signatures + this witness's cosignature), for monitors comparing
views (``twi-verify monitor --witness``).

Run: ``twi-witness --data-dir DIR --log-vkey VKEY [--origin O] [--port P]`` (or ``python -m
witness``). It is served by the same production server as the log (granian through
:mod:`serving.httpd`: header and body timeouts, bodies read outside Python threads), one process,
``--threads`` Python threads.

The witness runs on other hosts than the log, so this package imports nothing of ``tlog/``: only
``verifier/`` (notes, checkpoints, cosignatures, consistency proofs) and ``serving/``. Modules:
:mod:`witness.core` (request parsing, the checks and the state), :mod:`witness.http` (the routes),
:mod:`witness.cli` (arguments, key, the server process). The log's side (asking witnesses for
cosignatures) is :mod:`tlog.witnessing`.
"""

from .cli import main
from .core import Witness, WitnessResult, parse_add_checkpoint
from .http import create_app

__all__ = ["Witness", "WitnessResult", "create_app", "parse_add_checkpoint", "main"]
