"""The central overview: one row per bed from the MQTT feed (``<root>/+/#``).

A row shows the bed's link status, session, dose rate, key vitals, its highest active alarm and
how old its data is. An offline bed, or one silent for ``NO_DATA_AFTER_S``, says so in words and
in reverse video, and its numbers are blanked rather than shown as if current. Read-only: it
sends nothing to the beds.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

from monitord.central.feed import NO_DATA_AFTER_S, BedView, Overview
from monitord.config import ConfigError, MqttConfig, TLSConfig, load_config
from monitord.mqtt.client import make_client

REFRESH_S = 0.5
COLUMNS = [("bed", "Bed"), ("status", "Status"), ("session", "Session"), ("dose", "Dose mg/kg/h"),
           ("hr", "HR /min"), ("spo2", "SpO2 %"), ("rr", "RR /min"), ("etco2", "EtCO2 mmHg"),
           ("nibp", "NIBP mmHg"), ("alarm", "Highest alarm"), ("age", "Data age")]
PRIORITY_STYLE = {"high": "bold reverse red", "medium": "bold reverse yellow", "low": "bold cyan",
                  "advisory": "dim"}


def _num(v: dict[str, Any] | None, digits: int = 0) -> str:
    if not v or v.get("value") is None:
        return "--"
    return f"{v['value']:.{digits}f}"


def status_cell(bed: BedView, now: float) -> Text:
    age = bed.age_s(now)
    if bed.status == "offline":
        return Text(" OFFLINE ", style="bold reverse red")
    if bed.status is None or age is None or age > NO_DATA_AFTER_S:
        return Text(" NO DATA ", style="bold reverse yellow")
    return Text("online", style="green")


def current(bed: BedView, now: float) -> bool:
    age = bed.age_s(now)
    return bed.status == "online" and age is not None and age <= NO_DATA_AFTER_S


def row_cells(bed: BedView, now: float) -> dict[str, Any]:
    live = current(bed, now)
    st = bed.state or {}
    inf = st.get("infusion") or {}
    alarm = bed.alarms[0] if bed.alarms else None
    age = bed.age_s(now)
    sbp, dbp = bed.vital("sbp"), bed.vital("dbp")
    cells: dict[str, Any] = {
        "bed": Text(bed.bed_id, style="bold"),
        "status": status_cell(bed, now),
        "session": st.get("session", "--") if live else "--",
        "dose": _num(inf.get("dose_rate"), 2) if live else "--",
        "hr": _num(bed.vital("hr")) if live else "--",
        "spo2": _num(bed.vital("spo2")) if live else "--",
        "rr": _num(bed.vital("rr")) if live else "--",
        "etco2": _num(bed.vital("etco2")) if live else "--",
        "nibp": f"{_num(sbp)}/{_num(dbp)}" if live and (sbp or dbp) else "--",
        "alarm": Text(f"{alarm['priority'].upper()} {alarm['message']}"[:48],
                      style=PRIORITY_STYLE.get(alarm["priority"], "")) if alarm else Text("none", style="dim"),
        "age": "--" if age is None else f"{age:.0f} s",
    }
    if alarm and len(bed.alarms) > 1:
        cells["alarm"].append(f" (+{len(bed.alarms) - 1})")
    return cells


class CentralApp(App[None]):
    TITLE = "monitord central"
    BINDINGS = [("q", "quit", "Quit")]
    CSS = "DataTable { height: 1fr; }"

    def __init__(self, mqtt_cfg: MqttConfig, client_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.mqtt_cfg = mqtt_cfg
        self.client_id = client_id or f"monitord-central-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.overview = Overview(mqtt_cfg.topic_root, clock)
        self.broker_connected = False
        self._client: mqtt.Client | None = None
        self._drawn_live: dict[str, bool] = {}  # bed -> whether its row shows current data

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="beds", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.sub_title = "connecting to the broker"
        client = make_client(self.mqtt_cfg, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda c, u, msg: self.overview.apply(msg.topic, bytes(msg.payload))
        client.connect_async(self.mqtt_cfg.host, self.mqtt_cfg.port, keepalive=self.mqtt_cfg.keepalive_s)
        client.loop_start()
        self._client = client
        self.set_interval(REFRESH_S, self.refresh_rows)

    def on_unmount(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        self.broker_connected = True
        client.subscribe(f"{self.mqtt_cfg.topic_root.strip('/')}/+/#", qos=1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.broker_connected = False

    def refresh_rows(self) -> None:
        """Redraw the beds that changed, and every bed's status and age (they change with time)."""
        table = self.query_one(DataTable)
        now = self.clock()
        changed = {b.bed_id for b in self.overview.take_dirty()}
        added = False
        for bed in self.overview.all():
            live = current(bed, now)
            cells = row_cells(bed, now)
            if bed.bed_id not in self._drawn_live:
                table.add_row(*(cells[k] for k, _ in COLUMNS), key=bed.bed_id)
                added = True
            elif bed.bed_id in changed or live != self._drawn_live[bed.bed_id]:
                for key, _ in COLUMNS[1:]:
                    table.update_cell(bed.bed_id, key, cells[key])
            else:  # only time moved on
                table.update_cell(bed.bed_id, "age", cells["age"])
            self._drawn_live[bed.bed_id] = live
        if added:
            table.sort("bed", key=lambda t: str(t))
        self.sub_title = (f"{len(self._drawn_live)} beds" if self.broker_connected
                          else "BROKER DISCONNECTED: nothing shown is current")


def create_app(mqtt_cfg: MqttConfig, client_id: str | None = None) -> CentralApp:
    return CentralApp(mqtt_cfg, client_id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="site configuration file (its [mqtt] table names the broker)")
    parser.add_argument("--host", help="broker host (overrides the config)")
    parser.add_argument("--port", type=int, help="broker port")
    parser.add_argument("--root", help="topic root, e.g. monitord/v1")
    parser.add_argument("--username", help="broker user name (password from MONITORD_MQTT_PASSWORD)")
    parser.add_argument("--ca-file", help="CA certificate: connect with TLS")


def mqtt_config_from_args(args: argparse.Namespace) -> MqttConfig:
    import os

    cfg = load_config(args.config).mqtt if args.config else MqttConfig()
    over: dict[str, Any] = {}
    if args.host:
        over["host"] = args.host
    if args.port:
        over["port"] = args.port
    if args.root:
        over["topic_root"] = args.root
    if args.username:
        over["username"] = args.username
        over["password"] = os.environ.get("MONITORD_MQTT_PASSWORD")
    if args.ca_file:
        over["tls"] = TLSConfig(ca_file=args.ca_file)
    return cfg.model_copy(update=over)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = mqtt_config_from_args(args)
    except ConfigError as exc:
        print(exc)
        return 2
    create_app(cfg).run()
    return 0
