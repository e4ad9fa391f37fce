"""Errors the engine reports to whoever submitted an action."""


class Refused(ValueError):
    """An input or action the engine will not accept; the message says why, for a nurse to read."""
