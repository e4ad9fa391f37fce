"""Errors the engine and the daemon report to whoever asked."""

from __future__ import annotations

from typing import Any


class Refused(ValueError):
    """An input or action the engine will not accept; the message says why, for a nurse to read."""


class ConfirmationRequired(Refused):
    """An entry that is plausible but unusual: it is accepted only when submitted again with
    ``confirm=True``. ``preview`` holds what the nurse must see first (computed dose, verdict)."""

    def __init__(self, message: str, preview: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.preview = preview or {}


class StartupError(Exception):
    """The daemon or a command cannot start; the message says why and what to do. Exit code 2."""
