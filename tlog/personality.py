"""What the log core takes from a statement personality (the log's application: TWI is one,
:mod:`tlog.twi`), so that the core imports nothing of any personality.

The core (tlog.service, tlog.log, tlog.claims) records its own lookup attributes with every
entry (tlog.attrs) and asks the personality for two more things:

- :meth:`Personality.attributes`: the lookup pairs to record with a checked statement, beyond
  the core's own;
- :attr:`Personality.unique_attrs`: the keys among those pairs whose value one claim only may
  hold (a second, different claim with the same value is refused, 409: before the queue and, for
  claims sent at the same instant, in the commit, ``Log.unique_attrs``), and
  :meth:`Personality.conflict` words that refusal.

The composition (tlog.server.app for the server, tlog.procs for the log's child processes)
passes its personality to :class:`tlog.service.LogService`; the default, :data:`PLAIN`, adds
nothing (a log of signed statements and the core's lookups only).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Personality", "PLAIN"]


class Personality:
    """The plain log: no attributes of its own, no unique values. Personalities subclass it."""

    #: attribute keys whose value one claim (one dedup key) only may hold
    unique_attrs: frozenset[str] = frozenset()

    def attributes(self, statement: Any) -> list[tuple[str, str]]:
        """Lookup pairs ``(key, value)`` for a parsed, checked ``verifier.statement.SignedStatement``
        (raising ``verifier.VerificationError`` means none)."""
        return []

    def conflict(self, key: str, value: str) -> str:
        """The detail of the 409 for a claim refused because another claim holds ``value``
        under the unique attribute ``key``."""
        return f"another entry holds {key} {value[:200]!r}"


PLAIN = Personality()
