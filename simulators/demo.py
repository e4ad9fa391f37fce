"""``monitord demo``: a simulated pump and monitor on ptys, the daemon on them, and the dashboard.

Three processes, all children of this one: ``monitord sim`` (the devices, playing a scenario;
default: the shipped ``demo`` scenario; the monitor a GE Datex S/5 or, with ``--monitor
intellivue``, a Philips IntelliVue; with ``--oximeter`` or a scenario ``[oximeter]`` table, a
Masimo oximeter too), ``monitord run`` (the daemon, with a generated configuration
in a temporary directory) and the bedside dashboard in the foreground. The simulator admits
the demo patient and starts the infusion through the dashboard link, as a nurse would.

Without a dashboard (``--no-dashboard``, no terminal, or the dashboard not installed) alarm
events and a line of readings every few seconds are printed instead. Ctrl-C, ``--duration``
or the end of the scenario stops everything: each child is asked to stop, killed if it does not
within a few seconds, and the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitord.config import ConfigError, load_config, merge
from monitord.scenario import Scenario, ScenarioError, find_scenario, load_scenario
from monitord.simulators.cli import DEFAULT_SCENARIO

STOP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 30.0
READINGS_EVERY_S = 5.0
MQTT_PROBE = ("127.0.0.1", 1883)
DEMO_NURSE = "RN-DEMO"  # the staff id the demo dashboard records actions with
MONITORS = ("datex", "intellivue")  # the monitor protocols the simulator speaks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default=str(DEFAULT_SCENARIO), metavar="FILE|NAME",
                   help="scenario file, or a name from the shipped library (default: demo)")
    p.add_argument("--pump", choices=["modbus", "ne500"], default="modbus", help="pump protocol (default modbus)")
    p.add_argument("--monitor", choices=MONITORS, default="datex",
                   help="patient monitor: datex (GE S/5 Computer Interface, default) or intellivue (Philips Data Export)")
    p.add_argument("--oximeter", action="store_true",
                   help="add a standalone pulse oximeter (Masimo) following the course: SpO2 from it, the monitor's "
                        "as fall-back (a scenario with an [oximeter] table has one anyway)")
    p.add_argument("--speed", type=float, default=1.0, help="scenario speed-up (default 1; see docs/devices.md)")
    p.add_argument("--no-dashboard", action="store_true", help="print alarm events and readings instead")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (config, logs, database)")
    p.add_argument("--no-mqtt", action="store_true",
                   help="do not publish, even if a broker listens on 127.0.0.1:1883 (default: publish if one does)")


# -- configuration ---------------------------------------------------------------------------


def mqtt_reachable(addr: tuple[str, int] = MQTT_PROBE, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(addr, timeout_s):
            return True
    except OSError:
        return False


def demo_config(scenario: Scenario, ports: dict[str, Any], workdir: Path, mqtt: bool,
                monitor: str = "datex") -> dict[str, Any]:
    """The daemon's site configuration for the demo bed (merged over the shipped defaults);
    ``monitor``: the monitor driver, the protocol the simulator speaks."""
    theirs = scenario.config_overrides.get("devices") or {}

    def name(role: str) -> str:  # a name the scenario gives a device (e.g. "capnograph") is kept
        return str((theirs.get(role) or {}).get("name", role))

    devices: dict[str, Any] = {}
    if ports.get("pump"):
        devices["pump"] = {"name": name("pump"), "driver": ports["pump_protocol"], "serial": {"port": ports["pump"]},
                           "poll_interval_s": scenario.pump_period_s}
    if ports.get("monitor"):
        # The IntelliVue's 115200 baud is the driver's default (ignored on a pty anyway).
        devices["monitor"] = {"name": name("monitor"), "driver": monitor, "serial": {"port": ports["monitor"]},
                              "poll_interval_s": float(max(1, round(scenario.monitor_period_s)))}
    if ports.get("oximeter"):
        devices["oximeter"] = {"name": name("oximeter"), "driver": "masimo", "serial": {"port": ports["oximeter"]}}
    ours = {
        "bed": {"id": "demo"},
        "devices": devices,
        "store": {"state_dir": str(workdir / "state")},
        # A client id of its own, so two demos on one broker do not take each other's session.
        "mqtt": {"enabled": mqtt, "host": MQTT_PROBE[0], "port": MQTT_PROBE[1],
                 "client_id": f"monitord-demo-{os.getpid()}"},
        "dashboard": {"socket": str(workdir / "dashboard.sock")},
    }
    return merge(scenario.config_overrides, ours)


def toml_dumps(data: dict[str, Any]) -> str:
    """TOML for a configuration table (scalars, lists, nested tables, arrays of tables)."""
    lines: list[str] = []
    _toml_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "-_" for c in k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_table(data: dict[str, Any], path: list[str], lines: list[str]) -> None:
    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    for k, v in data.items():
        if not isinstance(v, dict) and not is_tables(v):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in data.items():
        sub = [*path, _toml_key(k)]
        if isinstance(v, dict):
            lines += ["", f"[{'.'.join(sub)}]"]
            _toml_table(v, sub, lines)
        elif is_tables(v):
            for item in v:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                _toml_table(item, sub, lines)


# -- child processes -------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself is killed (Linux), so nothing is left behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A child process in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log: Path | None, *, own_group: bool = True) -> None:
        self.name = name
        self.log = log
        self.own_group = own_group
        out = open(log, "wb") if log is not None else None  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL if own_group else None, stdout=out, stderr=subprocess.STDOUT if out else None,
                start_new_session=own_group, preexec_fn=_die_with_parent if own_group else None,
            )
        finally:
            if out is not None:
                out.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout_s)
        elif self.own_group:
            self._signal(signal.SIGKILL)  # anything the child left in its group
        return self.proc.returncode

    def tail(self, n: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitord.cli", *args]


def _wait(cond: Callable[[], bool], child: Child, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        if not child.alive():
            return False
        time.sleep(0.05)
    return cond()


# -- what the demo shows without a dashboard -------------------------------------------------


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "--"
    return f"{float(v):.{digits}f}"


def readings_line(snap: dict[str, Any]) -> str:
    vit = snap.get("vitals", {})

    def val(name: str, digits: int = 0) -> str:
        v = vit.get(name) or {}
        return _fmt(v.get("value"), digits) + ("?" if v.get("stale") else "")

    inf = snap.get("infusion") or {}
    pump = (f"pump {inf.get('state') or '--'} {_fmt(inf.get('rate_ml_h'), 1)} mL/h "
            f"{_fmt(inf.get('dose_rate_mg_kg_h'), 2)} mg/kg/h total {_fmt(inf.get('cumulative_mg'), 1)} mg")
    return (f"READINGS HR {val('hr')} SpO2 {val('spo2')} RR {val('rr')} EtCO2 {val('etco2')} "
            f"NIBP {val('sbp')}/{val('dbp')} ({val('map')}) | {pump} | {snap.get('status')}, "
            f"{len(snap.get('alarms', []))} alarm(s) active")


def event_line(event: dict[str, Any]) -> str | None:
    d, kind = event.get("data", {}), event.get("kind")
    if kind == "alarm":
        return (f"ALARM {d.get('transition', ''):<12} {d.get('priority', ''):<8} {d.get('rule_id', ''):<26} "
                f"{d.get('message', '')}")
    if kind == "session":
        return f"SESSION {d.get('action')} by {d.get('actor')}"
    if kind == "link":
        return f"LINK {d.get('device')} {d.get('state')} {d.get('detail') or ''}".rstrip()
    if kind == "device_alarm":
        return f"DEVICE {d.get('device')} reports {', '.join(d.get('active', [])) or 'no alarm'}"
    if kind == "rejected":
        return f"REFUSED {d.get('action')}: {d.get('reason')}"
    if kind == "observation":
        return f"OBSERVATION {json.dumps(d, separators=(',', ':'))[:120]}"
    if kind == "system" and d.get("action") == "vital_source":
        return f"SOURCE {d.get('message')}"
    return None


async def print_events(sock: Path, children: list[Child], duration_s: float | None,
                       out: Callable[[str], None]) -> int:
    """Follow the daemon over the dashboard link and print until the end, a signal or a child exits."""
    from monitord.link.client import LinkClient

    t0 = time.monotonic()
    last: dict[str, Any] = {}

    def stamp(text: str) -> None:
        t = int(time.monotonic() - t0)
        out(f"[{t // 60:02d}:{t % 60:02d}] {text}")

    def on_message(msg: dict[str, Any]) -> None:
        if msg.get("type") == "snapshot":
            last["snap"] = msg.get("snapshot") or {}
        elif msg.get("type") == "event":
            line = event_line(msg.get("event") or {})
            if line:
                stamp(line)

    def on_state(up: bool) -> None:
        if not stop.is_set():
            stamp("connected to the daemon" if up else "link to the daemon lost")

    stop = asyncio.Event()
    client = LinkClient(sock, on_message, on_state=on_state, retry_s=0.5)
    task = asyncio.create_task(client.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    code = 0
    next_readings = time.monotonic() + READINGS_EVERY_S
    try:
        while not stop.is_set():
            now = time.monotonic()
            if duration_s is not None and now - t0 >= duration_s:
                stamp(f"demo ran for {duration_s:g} s; stopping")
                stop.set()
                break
            dead = next((c for c in children if not c.alive()), None)
            if dead is not None:
                if dead.name == "simulator" and dead.proc.returncode == 0:
                    stamp("the scenario has ended; stopping")
                else:
                    stamp(f"the {dead.name} exited (code {dead.proc.returncode}); last lines of its log:")
                    out(dead.tail())
                    code = 1
                stop.set()
                break
            if now >= next_readings and "snap" in last:
                stamp(readings_line(last["snap"]))
                next_readings = now + READINGS_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return code


# -- the demo --------------------------------------------------------------------------------


def dashboard_argv(config_file: Path, sock: Path) -> list[str] | None:
    """How to start the dashboard on this daemon, or None if it is not installed."""
    try:
        from monitord.dashboard import app
    except ImportError:
        return None
    parser = argparse.ArgumentParser()
    app.add_arguments(parser)
    options = {s for a in parser._actions for s in a.option_strings}
    argv = _cli("dashboard")
    if "--socket" in options:
        argv += ["--socket", str(sock)]
    elif "--config" in options:
        argv += ["--config", str(config_file)]
    if "--nurse" in options:
        argv += ["--nurse", DEMO_NURSE]
    return argv


class Demo:
    def __init__(self, args: argparse.Namespace, out: Callable[[str], None] | None = None) -> None:
        self.args = args
        self.out = out or (lambda s: print(s, flush=True))
        self.workdir = Path(tempfile.mkdtemp(prefix="monitord-demo-"))
        self.children: list[Child] = []
        self._cleaned = False
        atexit.register(self.cleanup)

    def _spawn(self, name: str, argv: list[str], log: str | None, own_group: bool = True) -> Child:
        child = Child(name, argv, self.workdir / log if log else None, own_group=own_group)
        self.children.append(child)
        return child

    def run(self) -> int:
        args, out = self.args, self.out
        try:
            scenario_file = find_scenario(args.scenario)
            scenario = load_scenario(scenario_file)
        except (ScenarioError, OSError) as exc:
            out(f"monitord demo: {exc}")
            return 2
        sock = self.workdir / "dashboard.sock"
        ports_file = self.workdir / "ports.json"
        monitor = getattr(args, "monitor", "datex")
        # One simulator process plays every device on the scenario's one timeline (the oximeter
        # too: "auto" opens one when the scenario has an [oximeter] table).
        sim = self._spawn("simulator", _cli("sim", "--scenario", str(scenario_file), "--pump", args.pump,
                                            "--monitor", monitor,
                                            "--oximeter-port", "pty" if getattr(args, "oximeter", False) else "auto",
                                            "--speed", f"{args.speed:g}", "--link", str(sock),
                                            "--paths-file", str(ports_file), "--workdir", str(self.workdir)), "sim.log")
        if not _wait(ports_file.exists, sim, START_TIMEOUT_S):
            out("monitord demo: the simulator did not start; its log:\n" + sim.tail())
            return 1
        ports = json.loads(ports_file.read_text())
        mqtt = not args.no_mqtt and mqtt_reachable()
        config_file = self.workdir / "monitord.toml"
        config_file.write_text(toml_dumps(demo_config(scenario, ports, self.workdir, mqtt, monitor)))
        try:
            load_config(config_file)
        except ConfigError as exc:
            out(f"monitord demo: the demo configuration is not valid: {exc}")
            return 1
        out(f"monitord demo: {scenario.name}")
        out(f"  monitor ({monitor}) {ports.get('monitor')}   pump ({ports.get('pump_protocol')}) {ports.get('pump')}"
            + (f"   oximeter {ports['oximeter']}" if ports.get("oximeter") else ""))
        off = "off (--no-mqtt)" if args.no_mqtt else "off (no broker on 127.0.0.1:1883)"
        out(f"  MQTT {'to ' + ':'.join(map(str, MQTT_PROBE)) if mqtt else off}"
            f"   files in {self.workdir}")
        daemon = self._spawn("daemon", _cli("run", "-c", str(config_file)), "daemon.log")
        if not _wait(sock.exists, daemon, START_TIMEOUT_S):
            out("monitord demo: the daemon did not open its dashboard socket; its log:\n" + daemon.tail())
            return 1
        dash = None if args.no_dashboard or not sys.stdout.isatty() else dashboard_argv(config_file, sock)
        if dash is None:
            if not args.no_dashboard:
                out("  (no dashboard here: printing alarms and readings; Ctrl-C stops)")
            return asyncio.run(print_events(sock, [sim, daemon], args.duration, out))
        started = time.monotonic()
        code = self._dashboard(dash, [sim, daemon])
        if code is not None:
            return code
        out("  (the dashboard failed: printing alarms and readings instead; Ctrl-C stops)")
        left = None if args.duration is None else max(0.0, args.duration - (time.monotonic() - started))
        return asyncio.run(print_events(sock, [sim, daemon], left, out))

    def _dashboard(self, argv: list[str], watch: list[Child]) -> int | None:
        """The dashboard in the foreground, on this terminal; the demo ends when it does.
        None: the dashboard itself failed while the bed was still running."""
        dash = self._spawn("dashboard", argv, None, own_group=False)
        end = None if self.args.duration is None else time.monotonic() + self.args.duration
        try:
            while dash.alive():
                if end is not None and time.monotonic() >= end:
                    break
                if any(not c.alive() for c in watch):
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        failed = not dash.alive() and dash.proc.returncode not in (0, -signal.SIGINT, 130)
        dash.stop()
        if failed and all(c.alive() for c in watch):
            return None
        for c in watch:
            if not c.alive() and c.proc.returncode not in (0, None) and c.name == "daemon":
                print(f"the daemon exited (code {c.proc.returncode}); its log:\n{c.tail()}", file=sys.stderr)
                return 1
        return 0

    def cleanup(self) -> None:
        """Stop every child (dashboard, daemon, then the devices) and remove the temp dir."""
        if self._cleaned:
            return
        self._cleaned = True
        order = {"dashboard": 0, "daemon": 1, "simulator": 2}
        for child in sorted(self.children, key=lambda c: order.get(c.name, 9)):
            child.stop()
        if self.args.keep:
            self.out(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    demo = Demo(args)
    # A closed terminal (SIGHUP) must stop the children as surely as Ctrl-C or SIGTERM.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return demo.run()
    except KeyboardInterrupt:
        return 0
    finally:
        demo.cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="monitord demo", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
