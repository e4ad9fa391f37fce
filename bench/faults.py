"""The fault matrix: run the tests that inject each fault and print the table of
docs/reliability.md.

    .venv/bin/python -m bench.faults [--runs N] [--only NAME ...] [--markdown | --write-doc]

``--write-doc`` puts the Markdown table into docs/reliability.md, between its ``faults:begin``
and ``faults:end`` markers, with the date and the command.

Each fault names the tests that inject it. They run under pytest (one session per fault and
run, every marker, no cache) with ``MONITORD_FAULT_FIGURES`` naming a file where a test that
counts its injections writes them (tests/deploy/figures.py). A row's figures:

- a test case that counts its injections adds its counts (tries, survived, lost);
- any other case adds one try, survived if it passed. Its losses are not counted: each such
  test asserts its own no-loss condition, so a pass means it held ("-" when no case counts).

A test that is not there (renamed or not yet written) is listed as missing; a skipped case (no
PostgreSQL here, no browser) is counted apart and neither survived nor failed. Exit status 1 if
any case failed or lost anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
FIGURES_ENV = "MONITORD_FAULT_FIGURES"


@dataclass(frozen=True)
class Fault:
    name: str
    injected: str  # what the tests do
    expected: str  # what must hold
    tests: tuple[str, ...]  # pytest node ids (a function without parameters selects all of its cases)


MATRIX: tuple[Fault, ...] = (
    Fault("device unplug", "pump or monitor line dropped, then back (pty, TCP)",
          "one technical alarm, reconnect, readings resume",
          ("tests/devices/test_pump_e2e.py::test_unplug_then_replug_reconnects",
           "tests/devices/test_datex_e2e.py::test_unplug_then_replug_reconnects",
           "tests/devices/test_datex_e2e.py::test_tcp_drop_goes_reconnecting_then_connected",
           "tests/e2e/test_device_faults.py::test_monitor_unplugged_raises_one_technical_alarm_then_recovers")),
    Fault("garbled bytes", "corrupt frames, bad checksums, partial frames, 1 MB/s of garbage, fuzzed replies",
          "counted as protocol errors, no value taken from them, log throttled",
          ("tests/e2e/test_device_faults.py::test_garbled_bytes_are_counted_and_readings_carry_on",
           "tests/devices/test_datex_e2e.py::test_garbled_bytes_are_counted_and_readings_continue",
           "tests/devices/test_datex_e2e.py::test_bad_checksum_and_partial_frames_are_counted",
           "tests/devices/test_datex_e2e.py::test_a_megabyte_a_second_of_garbage_writes_a_few_lines",
           "tests/devices/test_pump_e2e.py::test_corrupted_replies_are_counted_without_crash",
           "tests/devices/test_datex_fuzz.py", "tests/devices/test_pump_fuzz.py")),
    Fault("broker down", "MQTT broker unreachable at start, stopped and restarted under a running bed",
          "bedside technical alarm; every alarm transition delivered in order once it is back",
          ("tests/mqtt/test_link.py::test_unreachable_broker_raises_the_bedside_technical_alarm",
           "tests/mqtt/test_link.py::test_alarm_events_gapless_and_in_order_across_a_broker_restart",
           "tests/deploy/test_degraded_start.py::test_unreachable_broker_and_unusable_socket_dir_start_degraded_then_recover")),
    Fault("database deleted", "SQLite file deleted or replaced under the running daemon, reset while down, "
                              "an older copy restored",
          "store alarm, database opened again, numbering never reused, session row rebuilt",
          ("tests/store/test_store_faults.py::test_database_deleted_under_the_running_daemon",
           "tests/store/test_store_faults.py::test_database_reset_while_down_never_reuses_a_number",
           "tests/store/test_store_faults.py::test_database_restored_from_an_older_copy_is_not_resumed")),
    Fault("disk full / writes refused", "the database refuses every write (read-only, full) for a while",
          "store alarm; monitoring goes on; queued events written once it is back; entries answered "
          "\"accepted, not yet stored\", then \"stored\"",
          ("tests/store/test_store.py::test_refused_writes_raise_the_store_alarm_and_nothing_is_lost",
           "tests/store/test_store.py::test_full_queue_drops_oldest_readings_and_keeps_the_rest",
           "tests/link/test_durable.py::test_store_down_answers_accepted_not_yet_stored_then_stored_and_the_loop_runs_on")),
    Fault("poison value", "an event the database refuses for its data (over-long text, NaN)",
          "isolated, stored cleaned, reported; later events kept",
          ("tests/store/test_store_faults.py::test_an_event_the_database_refuses_is_isolated_stored_cleaned_and_reported",
           "tests/store/test_store_faults.py::test_text_longer_than_its_column_is_cut_and_later_entries_are_kept")),
    Fault("SIGKILL", "the daemon killed mid-infusion, mid-alarm, mid-entry, and restarted",
          "session, alarms and dose resumed; seq gapless; every entry answered ok is stored",
          ("tests/store/test_sigkill_recovery.py",
           "tests/deploy/test_durable_entries.py::test_every_entry_answered_ok_is_stored_across_sigkills",
           "tests/mqtt/test_link.py::test_no_alarm_transition_is_lost_across_a_sigkill")),
    Fault("clock jump", "wall clock stepped forward and back under a running course",
          "no duration or alarm changes; records say whether the clock was synchronised",
          ("tests/deploy/test_clock_jump.py",)),
    Fault("config abuse", "malformed, non-finite, out-of-range and generated site files",
          "exit 2 with a message, never a traceback; site lists merge, never silence the defaults",
          ("tests/config/test_malformed.py", "tests/config/test_site_merge.py")),
    Fault("command flood (MQTT)", "oversized, deeply nested, junk and over-rate commands",
          "dropped or refused and audited; the rule loop never stalls; stale acks refused",
          ("tests/mqtt/test_commands.py", "tests/mqtt/test_security.py::test_a_stale_ack_does_not_silence_a_later_occurrence")),
    Fault("link flood", "1,024 connections held, 200 idle clients, a client that never reads, an over-long "
                        "line, a stream of garbage",
          "at most 8 sessions, the rest refused; devices reconnect; memory and descriptors bounded",
          ("tests/link/test_limits.py", "tests/deploy/test_link_flood.py")),
    Fault("link misuse", "clients dying mid-message, garbage commands, spoofed actor, markup in ids",
          "answered with an error, audited, shown as typed",
          ("tests/dashboard/test_link.py::test_garbage_gets_error_replies_and_the_link_keeps_serving",
           "tests/dashboard/test_link.py::test_client_dying_mid_message_does_not_hurt_the_daemon",
           "tests/link/test_durable.py::test_every_accepted_action_has_an_audit_row_and_every_refusal_too",
           "tests/dashboard/test_plain_text.py")),
    Fault("second daemon", "a second daemon started on the same state directory",
          "exits 2 naming the first; the first goes on", ("tests/deploy/test_single_instance.py",)),
    Fault("stalled rule loop", "a rule that blocks, evaluations that fail",
          "the systemd watchdog stops being petted; recovery resumes it",
          ("tests/deploy/test_watchdog.py::test_a_blocked_rule_stops_the_watchdog_and_recovery_resumes_it",
           "tests/deploy/test_watchdog.py::test_failing_evaluations_do_not_pet_though_the_event_loop_runs")),
    Fault("broken optional output", "missing TLS files, unusable socket directory at start",
          "starts degraded with the output's technical alarm; recovers by itself",
          ("tests/deploy/test_degraded_start.py",)),
)


@dataclass
class Case:
    name: str  # junit classname::name
    outcome: str  # passed, failed, skipped
    figures: list[dict[str, int]] = field(default_factory=list)


@dataclass
class Row:
    fault: Fault
    cases: list[Case] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def _ran(self) -> list[Case]:
        return [c for c in self.cases if c.outcome != "skipped"]

    @property
    def tries(self) -> int:
        return sum(sum(f["tries"] for f in c.figures) if c.figures else 1 for c in self._ran())

    @property
    def survived(self) -> int:
        return sum(sum(f["survived"] for f in c.figures) if c.figures else int(c.outcome == "passed")
                   for c in self._ran())

    @property
    def lost(self) -> str:
        measured = [f["lost"] for c in self.cases for f in c.figures]
        return str(sum(measured)) if measured else "-"

    @property
    def measured(self) -> list[str]:
        return sorted({str(f["fault"]) for c in self.cases for f in c.figures})

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.cases if c.outcome == "failed"]

    @property
    def skipped(self) -> int:
        return sum(c.outcome == "skipped" for c in self.cases)

    @property
    def ok(self) -> bool:
        return not self.failed and self.lost in ("0", "-") and bool(self._ran())


def present(node: str) -> bool:
    """Is the test there? (A missing node id would make pytest refuse the whole session.)"""
    path, _, name = node.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    return not name or re.search(rf"^(async )?def {re.escape(name)}\(", file.read_text(), re.M) is not None


def run_fault(fault: Fault, runs: int, python: str) -> Row:
    row = Row(fault)
    nodes = [n for n in fault.tests if present(n)]
    row.missing = [n for n in fault.tests if n not in nodes]
    if not nodes:
        return row
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faults") as tmp:
        for i in range(runs):
            junit, figures = Path(tmp) / f"run{i}.xml", Path(tmp) / f"run{i}.jsonl"
            env = dict(os.environ, **{FIGURES_ENV: str(figures)})
            subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
                            f"--junitxml={junit}", *nodes], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            row.cases += _cases(junit, figures)
    row.seconds = time.monotonic() - started
    return row


def _junit_name(nodeid: str) -> str:
    """``tests/a/test_b.py::Class::test_c[x]`` as junit names it: ``tests.a.test_b.Class::test_c[x]``."""
    path, *rest = nodeid.split("::")
    return ".".join([path.removesuffix(".py").replace("/", "."), *rest[:-1]]) + "::" + (rest[-1] if rest else "")


def _cases(junit: Path, figures: Path) -> list[Case]:
    if not junit.exists():
        return [Case("pytest did not run", "failed")]
    measured: dict[str, list[dict[str, int]]] = {}
    if figures.exists():
        for line in figures.read_text().splitlines():
            fig = json.loads(line)
            measured.setdefault(_junit_name(fig.get("test", "")), []).append(fig)
    cases = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        name = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if tc.find("skipped") is not None:
            outcome = "skipped"
        elif tc.find("failure") is not None or tc.find("error") is not None:
            outcome = "failed"
        else:
            outcome = "passed"
        cases.append(Case(name, outcome, measured.get(name, [])))
    return cases


def notes(row: Row) -> str:
    out = []
    if row.measured:
        out.append("counted by " + ", ".join(row.measured))
    if row.skipped:
        out.append(f"{row.skipped} skipped")
    if row.failed:
        out.append("FAILED: " + ", ".join(row.failed[:3]) + (" ..." if len(row.failed) > 3 else ""))
    if row.missing:
        out.append("missing: " + ", ".join(row.missing))
    return "; ".join(out)


def table(rows: Sequence[Row], markdown: bool) -> str:
    if markdown:
        head = ("fault", "injected", "must hold", "tries", "survived", "lost", "notes")
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            cells = (row.fault.name, row.fault.injected, row.fault.expected, str(row.tries), str(row.survived),
                     row.lost, notes(row))
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out += ["", "Tests per fault:", ""]
        out += [f"- **{row.fault.name}**: " + ", ".join(f"`{n}`" for n in row.fault.tests) for row in rows]
        return "\n".join(out)
    lines = [("fault", "tries", "survived", "lost", "notes")]
    lines += [(row.fault.name, str(row.tries), str(row.survived), row.lost, notes(row)) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="run each fault's tests this many times (default 1)")
    parser.add_argument("--only", nargs="*", default=None, metavar="NAME", help="only faults whose name contains NAME")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--write-doc", action="store_true", help=f"also write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    faults = [f for f in MATRIX if not args.only or any(o.lower() in f.name.lower() for o in args.only)]
    rows = []
    for fault in faults:
        print(f"running: {fault.name} ...", file=sys.stderr, flush=True)
        row = run_fault(fault, max(1, args.runs), sys.executable)
        print(f"  {row.tries} tries, {row.survived} survived, lost {row.lost} ({row.seconds:.0f} s)", file=sys.stderr,
              flush=True)
        rows.append(row)
    print(table(rows, args.markdown or args.write_doc))
    if args.write_doc:
        write_doc(table(rows, True), args.runs, args.only, sum(r.seconds for r in rows))
    return 0 if all(r.ok for r in rows) else 1


def write_doc(markdown: str, runs: int, only: list[str] | None, seconds: float) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    command = "python -m bench.faults --write-doc" + (f" --runs {runs}" if runs != 1 else "") + (
        " --only " + " ".join(repr(o) for o in only) if only else "")
    stamp = (f"Last refreshed {time.strftime('%Y-%m-%d')} with `{command}` ({seconds / 60:.0f} min, "
             f"Python {sys.version.split()[0]}).")
    DOC.write_text(text[:start] + "\n" + stamp + "\n\n" + markdown + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
