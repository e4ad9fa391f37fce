"""The ``monitord`` command as people meet it: help written for them, a version, ``-c`` wherever a
configuration is read, plain errors (never a traceback) on bad files, ``doctor`` naming what it
skipped, ``rules`` as a table that fits the terminal, and shell completion from the parser."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitord import __version__, doctor
from monitord.cli import COMMANDS, build_parser
from monitord.commands import REFERENCE_DIR
from monitord.completion import script
from monitord.config import load_config
from monitord.rules import build_rules, rules_markdown
from monitord.scenario import library
from tests.cli.conftest import ROOT, monitord, user_env
from tests.cli.shell import monitord_args


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version() -> None:
    proc = monitord("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"monitord {__version__}"


def test_help_is_written_for_the_people_who_run_it() -> None:
    proc = monitord("--help")
    assert proc.returncode == 0
    out = proc.stdout
    assert "Not a certified medical device" in out and "monitord demo" in out and "Exit codes" in out
    for name, cmd in COMMANDS.items():
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
        assert cmd.summary.split()[0] in out
    for developer_words in ("add_arguments", "dispatch", "argparse", "module"):
        assert developer_words not in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_explains_itself(name: str) -> None:
    text = _subparsers(build_parser(every=True))[name].format_help()
    assert COMMANDS[name].summary[1:].split(",")[0] in text
    for example in COMMANDS[name].examples:  # examples parse with the command's real options
        args = monitord_args(example)
        assert args is not None and args[0] == name, example
        build_parser(name).parse_args(args)


def test_every_command_that_reads_a_configuration_takes_dash_c() -> None:
    readers = []
    for name, p in _subparsers(build_parser(every=True)).items():
        for action in p._actions:
            if action.dest == "config" and action.option_strings:
                readers.append(name)
                assert "-c" in action.option_strings and "--config" in action.option_strings, name
    assert {"run", "rules", "dashboard", "central", "archive", "export", "doctor"} <= set(readers)


# -- bad files: a message, never a traceback -----------------------------------------------------


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> str:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "Error:" not in text.replace("ERROR", ""), text
    return text


def test_scenario_errors_name_the_file(tmp_path: Path) -> None:
    nameless = tmp_path / "nameless.toml"
    nameless.write_text('duration = "1min"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        str(tmp_path / "missing.toml"): f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory",
        str(nameless): f"{nameless}: missing key 'name'",
        str(broken): f"{broken}: not valid TOML",
        str(empty): f"{empty}: no scenario files",
        "no-such-scenario": "no such file, and no scenario of that name in the shipped library",
    }
    for arg, says in cases.items():
        proc = monitord("scenario", arg)
        assert proc.returncode != 0, arg
        assert says in _no_traceback(proc), arg
        assert "0 passed, 0 failed" not in proc.stdout


def test_scenario_plays_a_library_name_and_lists_the_library() -> None:
    proc = monitord("scenario", "occlusion")
    assert proc.returncode == 0 and "PASS occlusion.toml" in proc.stdout and "1 passed, 0 failed" in proc.stdout
    listed = monitord("scenario", "--list")
    assert listed.stdout.split() == [p.stem for p in library()] and len(library()) > 10


@pytest.mark.parametrize("args, says", [
    (["check-config", "/nonexistent/site.toml"], "/nonexistent/site.toml"),
    (["rules", "-c", "/nonexistent/site.toml"], "/nonexistent/site.toml"),
    (["export", "-c", "/nonexistent/site.toml"], "/nonexistent/site.toml"),
    (["run", "-c", "/nonexistent/site.toml"], "/nonexistent/site.toml"),
    (["sim", "--scenario", "/nonexistent/course.toml"], "/nonexistent/course.toml: cannot read"),
    (["demo", "--scenario", "no-such-course", "--no-dashboard"], "no-such-course: no such file"),
])
def test_a_missing_file_is_a_message_and_exit_2(args: list[str], says: str) -> None:
    proc = monitord(*args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in _no_traceback(proc)


# -- doctor ------------------------------------------------------------------------------------------


def test_doctor_says_which_checks_it_skipped_and_why(tmp_path: Path) -> None:
    proc = monitord("doctor", "-c", str(tmp_path / "nope.toml"), "--broker-timeout", "1")
    assert proc.returncode == 1
    out = _no_traceback(proc)
    for check in doctor.NEEDS_CONFIG:
        assert f"SKIP {check}: not checked: the configuration did not load" in out
    assert "4 check(s) skipped (reason on each SKIP line): serial, mqtt broker, disk, database." in out
    assert "FAIL config:" in out and "-c FILE" in out


def test_doctor_creates_the_service_user_as_the_install_guide_does() -> None:
    install = (ROOT / "docs" / "install.md").read_text()
    joined = re.sub(r"\s*\\\n\s*", " ", install)  # shell continuation lines joined
    assert doctor.USERADD in joined
    assert doctor.EXAMPLE_CONFIG.is_file()


# -- rules -------------------------------------------------------------------------------------------


def test_rules_is_a_table_that_fits_the_terminal_and_names_its_sources() -> None:
    rules = build_rules(load_config())
    for columns in ("80", "200"):
        proc = monitord("rules", env=user_env(COLUMNS=columns))
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[-1].strip() == str(REFERENCE_DIR)  # whole, on a line of its own
        assert max(len(line) for line in lines[:-1]) <= int(columns)
        assert lines[0].startswith("┏")
        for r in rules:  # every id whole, on one line
            assert any(r.id in line for line in lines), r.id
    assert "Reg Anesth Pain Med 2018" in " ".join(proc.stdout.split())
    cited = {m for r in rules for m in re.findall(r"[a-z-]+\.md", r.source)}
    assert cited and all((REFERENCE_DIR / name).is_file() for name in cited), cited


def test_rules_markdown_is_the_documented_table() -> None:
    proc = monitord("rules", "--markdown")
    assert proc.returncode == 0 and proc.stdout == rules_markdown(load_config())


# -- completion ----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_offers_what_the_parser_accepts(tmp_path: Path) -> None:
    proc = monitord("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    completion = tmp_path / "monitord.bash"
    completion.write_text(proc.stdout)
    cases = {
        "monitord ex": "export",
        "monitord export --fo": "--format",
        "monitord export --format ": "csv json svg png",  # a new, empty word
        "monitord --log-level w": "warning",
        "monitord sim --scenario occ": "occlusion",
        "monitord scenario normal-out": "normal-outpatient-4h",
        "monitord rules --mark": "--markdown",
        "monitord central -": None,  # checked below: -c among them
    }
    lines = [f"source {completion}", "t() { COMP_WORDS=($1); [[ $1 == *' ' ]] && COMP_WORDS+=('');"
             " COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _monitord; echo \"${COMPREPLY[*]}\"; }"]
    lines += [f"t {line!r}" for line in cases]
    run = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    got = run.stdout.splitlines()
    for (line, want), answer in zip(cases.items(), got, strict=True):
        if want is not None:
            assert answer == want, line
    assert "-c" in got[-1].split() and "--web" in got[-1].split()


def test_zsh_and_fish_scripts_cover_every_command() -> None:
    parser = build_parser(every=True)
    for shell in ("zsh", "fish"):
        text = script(shell, parser)
        for name in COMMANDS:
            assert re.search(rf"\b{re.escape(name)}\b", text), (shell, name)
    assert "bashcompinit" in script("zsh", parser)
    assert "-l markdown" in script("fish", parser)
