"""The ``monitord`` command. Each subcommand lives in its own module with
``add_arguments(parser)`` and ``main(args) -> int``; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("monitord.commands", "run the daemon for one bed"),
    "check-config": ("monitord.commands", "validate a configuration file"),
    "rules": ("monitord.commands", "print the rule table (docs/rules.md)"),
    "scenario": ("monitord.scenario", "play scripted clinical scenarios through the engine"),
    "demo": ("simulators.demo", "simulated pump and monitor, the daemon and the dashboard"),
    "sim": ("simulators.cli", "run a device simulator on a pty, serial port or TCP"),
    "dashboard": ("monitord.dashboard.app", "the bedside dashboard (connects to the daemon)"),
    "central": ("monitord.central.app", "multi-bed overview from the MQTT feed"),
    "export": ("monitord.store.export", "export a session's readings, alarms and notes"),
    "doctor": ("monitord.doctor", "check this box's set-up and print the fix for each problem"),
}


def _module(name: str) -> Any:
    mod_name = COMMANDS[name][0]
    mod = importlib.import_module(mod_name)
    return getattr(mod, "COMMANDS", {}).get(name, mod)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="monitord", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            _module(name).add_arguments(p)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(_module(args.command).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
