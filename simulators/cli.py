"""``monitord sim``: play a scenario on simulated devices over ptys, serial ports or TCP.

The simulated monitor (Datex S/5 or Philips IntelliVue), pump (Modbus or NE-500) and, when the
scenario has an ``[oximeter]`` table or ``--oximeter-port`` asks for one, a standalone pulse
oximeter (Masimo) show what the scenario says, on its timeline. The command prints the paths a
daemon should open (for a pty, the /dev/pts/N, or a stable symlink to it) and runs until the
scenario ends or Ctrl-C. With
``--link`` the scenario's session and nurse steps (admit, order, start, sedation...) are sent to
a running daemon through its dashboard socket; without it they are skipped.

    monitord sim --scenario normal-outpatient-4h --pump ne500 --pump-port pty
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from monitord.scenario import LIBRARY_DIR, Scenario, ScenarioError, find_scenario, load_scenario
from monitord.simulators.scenario_runner import PUMP_PROTOCOLS, LinkSteps, Ports, ScenarioRunner, StepOutcome

DEFAULT_SCENARIO = LIBRARY_DIR / "demo.toml"
# Above this speed-up a scenario's faults and clinical delays no longer mean what they say
# against the daemon's real-time timeouts (docs/devices.md, "Speed").
SPEED_WARN = 2.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), metavar="FILE|NAME",
                   help="scenario file, or a name from the shipped library (`monitord scenario --list`; "
                        "default: demo)")
    p.add_argument("--pump", choices=[*PUMP_PROTOCOLS, "none"], default="modbus", help="pump protocol (default modbus)")
    p.add_argument("--pump-port", default="pty", help="pty | tcp[:PORT] | a serial device such as /dev/ttyUSB0")
    p.add_argument("--ne500-safe", action="store_true",
                   help="NE-500 safe mode (framing with CRC-16); the daemon needs ne500_safe_mode = true")
    p.add_argument("--monitor", choices=["datex", "intellivue"], default="datex",
                   help="monitor protocol: datex (S/5 Computer Interface) or intellivue (Data Export, MIB/RS-232)")
    p.add_argument("--monitor-port", default="pty", help="pty | tcp[:PORT] | a serial device | none")
    p.add_argument("--oximeter-port", default="auto",
                   help="a Masimo oximeter following the course: pty | tcp[:PORT] | a serial device | none | "
                        "auto (default: pty if the scenario has an [oximeter] table, else none)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="scenario seconds per real second (default 1; see docs/devices.md before going above 1)")
    p.add_argument("--link", metavar="SOCKET", help="send session/nurse steps to the daemon's dashboard socket")
    p.add_argument("--wait-link", type=float, default=60.0, metavar="S",
                   help="with --link: start the course once connected, waiting at most S seconds (default 60)")
    p.add_argument("--paths-file", metavar="FILE", help="also write the device paths as JSON to FILE")
    p.add_argument("--workdir", metavar="DIR", help="where the pump's pty symlink goes (default: a temp dir)")


def ports_json(ports: Ports) -> dict[str, Any]:
    return {"monitor": ports.monitor, "pump": ports.pump, "pump_protocol": ports.pump_protocol,
            "pump_pty": ports.pump_pty, "oximeter": ports.oximeter}


def oximeter_port(spec: str, scenario: Scenario) -> str | None:
    """``--oximeter-port``: "auto" is a pty when the scenario has an oximeter, else none."""
    if spec == "auto":
        return "pty" if scenario.oximeter is not None else None
    return None if spec == "none" else spec


def _clock(t: float) -> str:
    t = int(t)
    return f"{t // 3600:d}:{t // 60 % 60:02d}:{t % 60:02d}"


def _print_outcome(o: StepOutcome) -> None:
    s = o.step
    if o.skipped:
        verdict = "skipped (not sent)"
    elif o.error:
        verdict = ("refused as expected: " if s.expect_refused else "REFUSED: ") + o.error
    else:
        verdict = "accepted" + (" (expected a refusal!)" if s.expect_refused else "")
    print(f"[{_clock(s.at_s)}] {s.action}: {verdict}", flush=True)


async def run_sim(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(find_scenario(args.scenario))
    except (ScenarioError, OSError) as exc:
        print(f"monitord sim: {exc}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("monitord sim: --speed must be positive", file=sys.stderr)
        return 2
    if args.speed > SPEED_WARN:
        print(f"warning: at --speed {args.speed:g} faults shorter than {args.speed:g} x a device timeout go "
              "unnoticed and alarm delays stretch in scenario time (docs/devices.md, 'Speed')", file=sys.stderr)
    client = None
    steps = None
    if args.link:
        from monitord.link.client import LinkClient

        client = LinkClient(args.link, lambda _msg: None)
        steps = LinkSteps(client)
    pump = None if args.pump == "none" else args.pump
    monitor_port = None if args.monitor_port == "none" else args.monitor_port
    try:
        runner_class = ScenarioRunner
        if getattr(args, "monitor", "datex") == "intellivue":
            from monitord.simulators.intellivue_sim import IntelliVueScenarioRunner as runner_class
        runner = runner_class(scenario, pump=pump, pump_port=args.pump_port if pump else None,
                              monitor_port=monitor_port,
                              oximeter_port=oximeter_port(getattr(args, "oximeter_port", "auto"), scenario),
                              speed=args.speed, steps=steps, workdir=args.workdir,
                              ne500_safe_mode=args.ne500_safe)
    except (ScenarioError, ValueError) as exc:
        print(f"monitord sim: {exc}", file=sys.stderr)
        return 2
    runner.on_outcome = _print_outcome
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        runner.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    link_task = asyncio.create_task(client.run()) if client is not None else None
    try:
        try:
            ports = await runner.open()
        except (OSError, ValueError) as exc:
            print(f"monitord sim: cannot open a device: {exc}", file=sys.stderr)
            return 1
        print(f"scenario: {scenario.name} ({_clock(scenario.duration_s)}, speed x{args.speed:g})")
        for line in ports.describe():
            print(line)
        if args.paths_file:
            tmp = Path(args.paths_file + ".tmp")
            tmp.write_text(json.dumps(ports_json(ports)))
            tmp.replace(args.paths_file)
        if client is not None:
            print(f"waiting for the daemon on {args.link} ...", flush=True)
            end = loop.time() + args.wait_link
            while not client.connected and loop.time() < end and not interrupted:
                await asyncio.sleep(0.1)
            if not client.connected:
                print(f"no daemon on {args.link} ({client.last_error}); session steps will be refused", flush=True)
        sys.stdout.flush()
        if interrupted:
            return 0
        ended = await runner.play()
        print("scenario ended" if ended else "stopped", flush=True)
        refused = [o for o in runner.outcomes if o.error and not o.step.expect_refused]
        if refused:
            print(f"{len(refused)} step(s) refused", flush=True)
        return 0
    finally:
        await runner.close()
        if client is not None:
            await client.close()
        if link_task is not None:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run_sim(args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="monitord sim", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
