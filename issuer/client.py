"""The issuer's SCRAPI client: :class:`verifier.scrapi.ScrapiClient` (register, follow a closed
log's successor, retry, fetch and verify the receipt; shared with relying parties and the log's
``tlog register``) raising the issuer's own :class:`IssuerError`, so that the issuance pipeline
handles a log's refusal like its other refusals."""

from __future__ import annotations

from verifier import scrapi
from verifier.scrapi import MAX_SUCCESSORS, Registered, _problem, successor_of

from .errors import IssuerError

__all__ = ["ScrapiClient", "Registered", "successor_of", "MAX_SUCCESSORS", "_problem"]


class ScrapiClient(scrapi.ScrapiClient):
    error = IssuerError
