"""The ``monitord`` command. Each subcommand lives in its own module with
``add_arguments(parser)`` and ``main(args) -> int``; this file only dispatches, sets up logging
(``monitord.logs``) and turns a start-up error into exit code 2 with its message."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from monitord import __version__
from monitord.errors import StartupError
from monitord.logs import LEVELS, report_error, setup_logging

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("monitord.commands", "run the daemon for one bed"),
    "check-config": ("monitord.commands", "validate a configuration file"),
    "rules": ("monitord.commands", "print the rule table (docs/rules.md)"),
    "scenario": ("monitord.scenario", "play scripted clinical scenarios through the engine"),
    "demo": ("simulators.demo", "simulated pump and monitor, the daemon and the dashboard"),
    "sim": ("simulators.cli", "run a device simulator on a pty, serial port or TCP"),
    "dashboard": ("monitord.dashboard.app", "the bedside dashboard (connects to the daemon)"),
    "central": ("monitord.central.app", "multi-bed overview from the MQTT feed"),
    "archive": ("monitord.central.archive", "archive every bed's MQTT feed into PostgreSQL"),
    "export": ("monitord.store.export", "export a session's readings, alarms and notes"),
    "doctor": ("monitord.doctor", "check this box's set-up and print the fix for each problem"),
}
EXIT_STARTUP = 2  # configuration or start-up error: restarting will not fix it (systemd unit)

log = logging.getLogger(__name__)


def _module(name: str) -> Any:
    mod_name = COMMANDS[name][0]
    mod = importlib.import_module(mod_name)
    return getattr(mod, "COMMANDS", {}).get(name, mod)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="monitord",
        description="Bedside monitoring of intravenous ketamine infusions (not a certified medical device). "
                    "Start with `monitord check-config FILE`, then `monitord doctor -c FILE`.",
    )
    parser.add_argument("--version", action="version", version=f"monitord {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (same as --log-level debug)")
    parser.add_argument("--log-level", choices=sorted(LEVELS, key=LEVELS.__getitem__), default="info",
                        help="lowest level logged (default info; libraries log warnings only, unless debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            _module(name).add_arguments(p)
    args = parser.parse_args(argv)
    setup_logging("debug" if args.verbose else args.log_level)
    try:
        return int(_module(args.command).main(args) or 0)
    except StartupError as exc:
        report_error(f"monitord {args.command}: {exc}")
        return EXIT_STARTUP
    except Exception:  # through logging: in the journal, every line of the traceback at priority 2
        log.critical("monitord %s failed", args.command, exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
