"""Errors shared by the log's modules below the HTTP layer (kept apart so that the modules the
service uses, e.g. tlog.witnessing, need not import the service)."""

from __future__ import annotations


class Unavailable(Exception):
    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after
