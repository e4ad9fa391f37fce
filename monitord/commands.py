"""Small subcommands: ``run``, ``check-config``, ``rules``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from monitord.config import Config, load_or_report
from monitord.rules import build_rules, rules_markdown

DEFAULT_CONFIG = "/etc/monitord/monitord.toml"
REFERENCE_DIR = Path(__file__).parent / "reference"  # the texts the rules cite, shipped with the package
GUIDELINE = ("Cohen SP et al., Consensus Guidelines on the Use of Intravenous Ketamine Infusions for Chronic "
             "Pain (ASRA/AAPM/ASA), Reg Anesth Pain Med 2018;43:521-546")
PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "advisory": "dim"}
WIDE_TABLE = 140  # columns from which priority, delay, latching and after-stop get columns of their own


# --loop-debug: a callback that holds the event loop longer than this is logged (asyncio's own
# check, "Executing <...> took 0.023 seconds"). The rule loop's budget for one step.
SLOW_CALLBACK_S = 0.010


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"site configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("--loop-debug", action="store_true",
                   help=f"asyncio debug mode: log every callback that holds the event loop over "
                        f"{SLOW_CALLBACK_S * 1000:.0f} ms, and calls into it from other threads (slower; for "
                        "commissioning and benchmarks, not for service)")


def _run(args: argparse.Namespace) -> int:
    from monitord.daemon import run_daemon

    config = load_or_report(args.config)
    if config is None:
        return 2
    asyncio.run(_debugged(run_daemon(config)) if args.loop_debug else run_daemon(config), debug=args.loop_debug)
    return 0


async def _debugged(main: Any) -> None:
    asyncio.get_running_loop().slow_callback_duration = SLOW_CALLBACK_S
    await main


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="configuration file to validate (merged over the shipped defaults)")


def _check(args: argparse.Namespace) -> int:
    config = load_or_report(Path(args.file))
    if config is None:
        return 2
    print(f"{args.file}: OK (bed {config.bed.id}, care area {config.bed.care_area.value})")
    for note in config.notes:  # what differs from the shipped defaults; DISABLED entries first
        print(f"  {note}")
    return 0


def _rules_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, metavar="FILE",
                   help="site configuration file (default: the shipped defaults)")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown (as in docs/rules.md)")


def _rules(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    if args.markdown:
        sys.stdout.write(rules_markdown(config))
    else:
        print_rules_table(config, args.config)
    return 0


def print_rules_table(config: Config, config_file: str | None, width: int | None = None) -> None:
    """The rules as a table that fits the terminal: the condition with its source and the reason
    for its priority beneath; on a narrow terminal priority, delay, latching and after-stop go
    under the rule id instead of in columns of their own."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=width, highlight=False)
    wide = console.width >= WIDE_TABLE
    latching = set(config.alarms.latching)
    rules = build_rules(config)
    table = Table(expand=True, pad_edge=False, header_style="bold", show_lines=True)
    table.add_column("rule", no_wrap=True, min_width=max(len(r.id) for r in rules))  # an id is never cut
    if wide:
        table.add_column("priority", no_wrap=True)
    table.add_column("condition (default), source, why", ratio=1)
    if wide:
        for name in ("delay", "latching", "after stop"):
            table.add_column(name, no_wrap=True, justify="right" if name == "delay" else "left")
    for r in rules:
        prio = Text(r.priority.value, style=PRIORITY_STYLE.get(r.priority.value, ""))
        delay, latch, after = f"{r.delay_s:g} s", "yes" if r.id in latching else "no", "yes" if r.after_stop else "no"
        what = Text(r.condition)
        what.append(f"\nsource: {r.source}", style="dim")
        if r.why_priority:
            what.append(f"\nwhy: {r.why_priority}", style="dim")
        if wide:
            table.add_row(Text(r.id, style="bold"), prio, what, delay, latch, after)
        else:
            rule = Text(r.id, style="bold")
            rule.append("\n").append_text(prio)
            rule.append(f"\ndelay {delay}" + ("\nlatching" if latch == "yes" else "")
                        + ("\nafter stop" if after == "yes" else ""), style="dim")
            table.add_row(rule, what)
    console.print(table)
    console.print(f"{len(rules)} rules, {'as configured in ' + config_file if config_file else 'shipped defaults'}; "
                  "`monitord rules --markdown` prints them as Markdown.", style="dim")
    console.print(f"'guideline lines N', 'Table N': {GUIDELINE}.", style="dim")
    console.print("alarm-defaults.md, clinical-rules.md, course-care.md are installed in:", style="dim")
    console.print(f"  {REFERENCE_DIR}", style="dim", soft_wrap=True)  # a path is never broken

COMMANDS = {
    "run": SimpleNamespace(add_arguments=_run_args, main=_run),
    "check-config": SimpleNamespace(add_arguments=_check_args, main=_check),
    "rules": SimpleNamespace(add_arguments=_rules_args, main=_rules),
}
