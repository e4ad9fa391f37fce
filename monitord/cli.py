"""The ``monitord`` command. Each subcommand lives in its own module with
``add_arguments(parser)`` and ``main(args) -> int``; this file builds the parser (the help text
people read, and the shell completion generated from it), dispatches, sets up logging
(``monitord.logs``), turns a start-up error into exit code 2 with its message and a closed
output pipe (``monitord export | head``) into a quiet exit."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from monitord import __version__
from monitord.errors import StartupError
from monitord.logs import LEVELS, report_error, setup_logging


@dataclass(frozen=True)
class Command:
    module: str
    summary: str  # one line, in the command list
    examples: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "check-config": Command("monitord.commands", "validate a site configuration file", (
        "monitord check-config /etc/monitord/monitord.toml",)),
    "doctor": Command("monitord.doctor", "check this box's set-up (ports, broker, clock, disk, database) "
                      "and print the fix for each problem", (
                          "sudo -u monitord monitord doctor -c /etc/monitord/monitord.toml",)),
    "run": Command("monitord.commands", "run the daemon for one bed (systemd starts it as monitord.service)", (
        "monitord run -c /etc/monitord/monitord.toml",)),
    "dashboard": Command("monitord.dashboard.app", "the bedside screen: the daemon's bed, its alarms and the "
                         "nurse's entries", ("monitord dashboard -c /etc/monitord/monitord.toml",)),
    "central": Command("monitord.central.app", "overview of every bed from the MQTT feed (terminal or web)", (
        "monitord central -c /etc/monitord/monitord.toml", "monitord central -c /etc/monitord/monitord.toml --web")),
    "archive": Command("monitord.central.archive", "keep every bed's MQTT feed in PostgreSQL", (
        "monitord archive -c site.toml --url postgresql://archive@db.example/monitord",)),
    "hl7": Command("monitord.hl7.gateway", "every bed's feed to the EHR: HL7 PCD-01/PCD-04 over MLLP"),
    "export": Command("monitord.store.export", "a session's readings, alarms, notes, plan and controlled-drug "
                      "record (CSV, JSON) or its one-page picture (SVG, PNG)", (
                          "monitord export -c /etc/monitord/monitord.toml",
                          "monitord export -c /etc/monitord/monitord.toml --session 12 -o session-12.csv",
                          "monitord export -c /etc/monitord/monitord.toml --session 12 -o session-12.png")),
    "rules": Command("monitord.commands", "the alarm rules as configured: condition, priority, delay, source", (
        "monitord rules -c /etc/monitord/monitord.toml", "monitord rules --markdown > rules.md")),
    "demo": Command("monitord.simulators.demo", "try it: simulated pump and monitor, the daemon and the dashboard", (
        "monitord demo", "monitord demo --no-dashboard --no-mqtt --duration 60")),
    "scenario": Command("monitord.scenario", "play clinical scenarios through the rules and check the alarms "
                        "they expect", ("monitord scenario", "monitord scenario occlusion --events")),
    "sim": Command("monitord.simulators.cli", "simulated pump and monitor on a pty, serial port or TCP port", (
        "monitord sim --scenario occlusion --pump ne500",)),
    "completion": Command("monitord.completion", "print a shell completion script (bash, zsh, fish)", (
        "monitord completion bash > /etc/bash_completion.d/monitord",)),
}
EXIT_STARTUP = 2  # configuration or start-up error: restarting will not fix it (systemd unit)
EXIT_PIPE = 128 + 13  # the reader of our output went away (SIGPIPE), as a shell reports it

DESCRIPTION = """\
monitord watches an intravenous ketamine infusion at the bedside: it reads the syringe pump and
the patient monitor, checks dose and vital signs against the 2018 consensus guideline and
documented defaults, shows alarms on the bedside screen and sends them to central stations.

Not a certified medical device: its alarms supplement, never replace, the pump's and the
monitor's own alarms."""

EPILOG = """\
Setting up a bedside box:
  monitord check-config /etc/monitord/monitord.toml
  monitord doctor -c /etc/monitord/monitord.toml
  sudo systemctl enable --now monitord monitord-dashboard   (see docs/install.md)
Trying it without devices:
  monitord demo

`monitord COMMAND --help` explains each command. Exit codes: 0 ok, 1 a check or command failed,
2 a configuration, file or usage error, 130 interrupted (Ctrl-C)."""

log = logging.getLogger(__name__)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the paragraphs and examples as written; wraps option help to the terminal."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _module(name: str) -> Any:
    mod = importlib.import_module(COMMANDS[name].module)
    return getattr(mod, "COMMANDS", {}).get(name, mod)


def build_parser(chosen: str | None = None, *, every: bool = False) -> argparse.ArgumentParser:
    """The parser; a subcommand's own arguments are added for ``chosen`` only (its module is
    imported only when it runs), or for every subcommand with ``every`` (completion, docs tests)."""
    parser = argparse.ArgumentParser(prog="monitord", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"monitord {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (same as --log-level debug)")
    parser.add_argument("--log-level", choices=sorted(LEVELS, key=LEVELS.__getitem__), default="info",
                        help="lowest level logged (default info; libraries log warnings only, unless debug)")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in cmd.examples) if cmd.examples else None
        p = sub.add_parser(name, help=cmd.summary, description=cmd.summary[0].upper() + cmd.summary[1:] + ".",
                           epilog=epilog, formatter_class=_Formatter)
        if every or name == chosen:
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(chosen).parse_args(argv)
    setup_logging("debug" if args.verbose else args.log_level)
    try:
        return int(_module(args.command).main(args) or 0)
    except StartupError as exc:
        report_error(f"monitord {args.command}: {exc}")
        return EXIT_STARTUP
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return 130
    except Exception:  # through logging: in the journal, every line of the traceback at priority 2
        log.critical("monitord %s failed", args.command, exc_info=True)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
