"""User-facing errors.

A ``WebtextError`` is something the user can fix. The CLI prints it as one line
(``error: <what>. <fix>``) and exits non-zero, without a traceback.
"""

from __future__ import annotations


class WebtextError(Exception):
    """An error with a one-line explanation and, where possible, how to fix it."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None):
        self.what = what.rstrip(".")
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.what}. {self.fix}" if self.fix else f"{self.what}."


class MissingInputError(WebtextError):
    """A stage found nothing to read: the previous stage has not run, or a path is wrong."""


class ConfigError(WebtextError):
    """The configuration file or a flag is invalid."""
