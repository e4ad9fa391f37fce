"""Reading shell lines as the docs write them: where ``monitord`` is run, with which arguments,
and the docs' notation (``[optional]``, ``a|b``, ``FILE``, ``...``) filled in."""

from __future__ import annotations

import re
import shlex

from monitord.cli import COMMANDS, build_parser

# Placeholders the docs use for a value; numbers where an option wants one.
NUMBERS = {"ID", "N", "S", "PORT", "SECONDS"}
OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&"}
NOT_OURS = ("pytest",)  # python -m tools that are not part of monitord
GLOBAL_OPTIONS = {s for a in build_parser()._actions for s in a.option_strings}


def words(text: str) -> list[str] | None:
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:
        return None
    for i, t in enumerate(tokens):
        if t in OPERATORS:
            return tokens[:i]
    return tokens


def monitord_args(text: str) -> list[str] | None:
    """The arguments after the ``monitord`` program in a shell line, or None if it runs none."""
    tokens = words(text)
    if not tokens:
        return None
    for i, t in enumerate(tokens[:-1]):
        if (t == "monitord" or t.endswith("/bin/monitord")) and (tokens[i + 1] in COMMANDS
                                                                   or tokens[i + 1] in GLOBAL_OPTIONS):
            return tokens[i + 1:]
    return None


def python_target(text: str) -> list[str] | None:
    """``[-m, module]`` or ``[script]`` for a ``python ...`` line of ours, else None."""
    tokens = words(text)
    if not tokens or tokens[0] not in ("python", "python3"):
        return None
    if tokens[1:2] == ["-m"] and len(tokens) > 2:
        return None if tokens[2].startswith(NOT_OURS) else ["-m", tokens[2]]
    return [tokens[1]] if len(tokens) > 1 and tokens[1].endswith(".py") else None


def variants(args: list[str]) -> list[list[str]]:
    """The shown arguments with the docs' notation filled in: [optional] parts kept, a|b -> a,
    FILE/ID placeholders -> values, and '...' dropped or (after an option) a value."""
    filled = []
    for a in args:
        a = a.strip("[]")
        if not a:
            continue
        if "|" in a and "/" not in a:
            a = a.split("|")[0]
        base = a.rstrip(".")
        if base and re.fullmatch(r"[A-Z][A-Z_]*", base):
            a = "1" if base in NUMBERS else "x.toml"
        filled.append(a)
    return [[a for a in filled if a != "..."], ["x" if a == "..." else a for a in filled]]
