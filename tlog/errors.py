"""Errors shared by the log's modules below the HTTP layer (kept apart so that the modules the
service uses, e.g. tlog.witnessing, need not import the service): ``Unavailable`` (503, retry
later), ``NotFound`` (404) and ``BadRequest`` (400) with a problem title and detail."""

from __future__ import annotations


class Unavailable(Exception):
    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


class NotFound(Exception):
    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title, self.detail = title, detail


class BadRequest(Exception):
    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title, self.detail = title, detail
