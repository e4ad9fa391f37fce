"""Small subcommands: ``run``, ``check-config``, ``rules``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace

from monitord.config import load_or_report
from monitord.rules import rules_markdown


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default="/etc/monitord/monitord.toml", help="site configuration file")


def _run(args: argparse.Namespace) -> int:
    from monitord.daemon import run_daemon

    config = load_or_report(args.config)
    if config is None:
        return 2
    asyncio.run(run_daemon(config))
    return 0


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="configuration file to validate (merged over the shipped defaults)")


def _check(args: argparse.Namespace) -> int:
    config = load_or_report(Path(args.file))
    if config is None:
        return 2
    print(f"{args.file}: OK (bed {config.bed.id}, care area {config.bed.care_area.value})")
    for note in config.notes:  # what differs from the shipped defaults; DISABLED entries first
        print(f"  {note}")
    return 0


def _rules_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="configuration file (default: shipped defaults)")


def _rules(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    sys.stdout.write(rules_markdown(config))
    return 0


COMMANDS = {
    "run": SimpleNamespace(add_arguments=_run_args, main=_run),
    "check-config": SimpleNamespace(add_arguments=_check_args, main=_check),
    "rules": SimpleNamespace(add_arguments=_rules_args, main=_rules),
}
