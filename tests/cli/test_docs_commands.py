"""Every command the README and docs/ show still runs: each ``monitord ...`` line in a code block
parses with the real parser (placeholders like FILE and ID filled in), each one in running text
names a real command and real options, every command shown answers ``--help``, and every
``python -m MODULE`` / ``python bench/SCRIPT.py`` shown starts and prints its usage."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from monitord.cli import COMMANDS, build_parser
from tests.cli.conftest import ROOT, monitord, user_env
from tests.cli.shell import monitord_args, python_target, variants

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARSER = build_parser(every=True)
SUBPARSERS = dict(next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices)


@dataclass(frozen=True)
class Shown:
    where: str  # file:line
    text: str
    in_code: bool  # a code block (run as written), or code in running text (a reference)


def shown() -> list[Shown]:
    out: list[Shown] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        fenced = False
        joined = ""
        for i, line in enumerate(lines, 1):
            where = f"{doc.relative_to(ROOT)}:{i}"
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            indented = line.startswith("    ") and (not lines[i - 2].strip() or lines[i - 2].startswith("    "))
            if fenced or indented:
                joined += line.rstrip("\\").strip() + " "
                if not line.rstrip().endswith("\\"):
                    out.append(Shown(where, joined.strip(), True))
                    joined = ""
                continue
            out += [Shown(where, span, False) for span in re.findall(r"`([^`]*)`", line)]
    return out


def _parses(args: list[str]) -> str | None:
    """None if the parser accepts ``args``, else its complaint."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            PARSER.parse_args(args)
        except SystemExit as exc:
            return None if exc.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None


def _options_exist(args: list[str]) -> str | None:
    command = next((a for a in args if a in COMMANDS), None)
    if args and not args[0].startswith("-") and command is None:
        return f"no command {args[0]!r}"
    parser = SUBPARSERS[command] if command else PARSER
    known = {s for a in parser._actions for s in a.option_strings} | {s for a in PARSER._actions for s in a.option_strings}
    unknown = [a.split("=")[0] for a in args if a.startswith("-") and a.split("=")[0] not in known and a != "-"]
    return f"unknown option(s) {unknown}" if unknown else None


def test_the_docs_show_monitord_commands_at_all() -> None:
    found = [s for s in shown() if monitord_args(s.text) is not None]
    assert len([s for s in found if s.in_code]) >= 20
    assert {a[0] for s in found for a in [monitord_args(s.text) or ["-"]] if a[0] in COMMANDS} >= {
        "run", "check-config", "doctor", "export", "rules", "scenario", "sim", "demo", "completion"}


def test_every_monitord_command_shown_is_one_monitord_accepts() -> None:
    problems = []
    for s in shown():
        args = monitord_args(s.text)
        if args is None:
            continue
        if s.in_code:
            complaints = [_parses(v) for v in variants(args)]
            if all(complaints):
                problems.append(f"{s.where}: `{s.text}`: {complaints[0]}")
        else:
            complaint = _options_exist([a.strip("[]") for a in args])
            if complaint:
                problems.append(f"{s.where}: `{s.text}`: {complaint}")
    assert problems == []


def test_every_command_shown_answers_help() -> None:
    commands = sorted({a[0] for s in shown() if (a := monitord_args(s.text)) and a[0] in COMMANDS})
    for name in commands:
        proc = monitord(name, "--help", timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: monitord {name}"), (name, proc.stderr)


def _python_targets() -> list[tuple[str, list[str]]]:
    found: dict[str, list[str]] = {}
    for s in shown():
        if s.in_code and (target := python_target(s.text)):
            found.setdefault(" ".join(target), target)
    return sorted(found.items())


@pytest.mark.parametrize("target", [t for _, t in _python_targets()], ids=[k for k, _ in _python_targets()])
def test_every_python_entry_point_shown_starts(target: list[str]) -> None:
    if not target[0].startswith("-"):
        assert (ROOT / target[0]).is_file(), f"{target[0]} is shown in the docs but does not exist"
    proc = subprocess.run([sys.executable, *target, "--help"], cwd=ROOT, env=user_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 0 or (proc.returncode == 2 and "usage" in out.lower()), out


def test_the_scripts_the_readme_starts_with_exist() -> None:
    for script in ("demo", "run-tests"):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script
