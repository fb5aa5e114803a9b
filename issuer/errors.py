"""The issuer's single exception type."""

from __future__ import annotations


class IssuerError(Exception):
    """Issuance refused or failed. ``check`` is a stable dotted identifier
    (``appraisal.status``, ``client.rejected``, ...), ``detail`` says why in words."""

    def __init__(self, check: str, detail: str = "") -> None:
        self.check = check
        self.detail = detail
        super().__init__(f"{check}: {detail}" if detail else check)

    def __reduce__(self):
        return (type(self), (self.check, self.detail))
