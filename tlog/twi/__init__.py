"""The TWI personality of the log (apart from the log core, which imports nothing of it).

- :mod:`tlog.twi.index`: the lookup attributes of TWI Credential Provenance and status statements;
- :mod:`tlog.twi.routes`: ``GET /twi/v1/cpr`` (a Flask blueprint) answering from them;
- :data:`TWI`: the :class:`tlog.personality.Personality` the composition (tlog.server.app,
  tlog.procs) gives the log service: those attributes, plus ``twi.cpr.iss_rid`` (``[iss, record
  id]``) as a unique attribute, so that a second, different record for a record id the same issuer
  already registered is refused (409).
"""

from __future__ import annotations

import json
from typing import Any

from tlog.personality import Personality

from .index import ATTR_ISS_RID, ATTR_RID, attrs_for_statement, pair_key

__all__ = ["TwiPersonality", "TWI"]


class TwiPersonality(Personality):
    unique_attrs = frozenset({ATTR_ISS_RID})

    def attributes(self, statement: Any) -> list[tuple[str, str]]:
        out = attrs_for_statement(statement)
        rid = next((v for k, v in out if k == ATTR_RID), None)
        if rid is not None:  # one record per (issuer, record id)
            out.append((ATTR_ISS_RID, pair_key(statement.iss, rid)))
        return out

    def conflict(self, key: str, value: str) -> str:
        if key != ATTR_ISS_RID:
            return super().conflict(key, value)
        iss, rid = json.loads(value)
        return f"issuer {iss[:200]!r} already registered a different record with id {rid[:200]!r}"


TWI = TwiPersonality()
