"""The one exception type of the verifier library.

Every failed check raises :class:`VerificationError`. ``check`` names the check that
failed (a short stable identifier such as ``"inclusion.root-mismatch"``), ``detail`` says
what was wrong in words. Callers that need to branch (the log's HTTP layer mapping a
failure to a problem-details title, say) branch on ``check``; people read ``str(err)``.
"""

from __future__ import annotations


class VerificationError(Exception):
    """A check failed. ``check`` is a stable identifier, ``detail`` a human explanation."""

    def __init__(self, check: str, detail: str = "") -> None:
        self.check = check
        self.detail = detail
        super().__init__(f"{check}: {detail}" if detail else check)

    def __reduce__(self):  # keep check/detail across pickling (multiprocessing, logging)
        return (type(self), (self.check, self.detail))
