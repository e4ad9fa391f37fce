"""``monitord central``: the overview in a terminal (Textual), or ``--web`` in a browser.

A row per bed: status, the age of its data, its highest active alarm, dose rate, key vitals and
session; highest alarm first, then by name. Status and age come first so they stay on screen at
80 columns. Which values are blanked and why: ``monitord.central.view``. Read-only: it sends
the beds nothing but delivery receipts for the alarm transitions it has drawn
(``monitord.central.receipts``; ``--no-receipts``: none).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

from monitord.central import view as v
from monitord.central.consumer import FeedConsumer
from monitord.central.feed import Overview
from monitord.central.receipts import default_station, valid_station
from monitord.config import Config, ConfigError, MqttConfig, TLSConfig, load_config

REFRESH_S = 0.5
# (key, label, fixed width or None). Fixed widths: a cell never cuts OFFLINE / NO DATA or an age.
# The alarm column takes what the screen leaves beyond the others, within these bounds.
ALARM_WIDTH_MIN, ALARM_WIDTH_MAX, OTHER_COLUMNS_WIDTH = 24, 60, 86
COLUMNS: list[tuple[str, str, int | None]] = [
    ("bed", "Bed", None), ("status", "Status", 9), ("age", "Age", 6), ("alarm", "Highest alarm", None),
    ("dose", "Dose mg/kg/h", None), ("hr", "HR", 3), ("spo2", "SpO2", 4), ("rr", "RR", 3),
    ("etco2", "EtCO2", 5), ("nibp", "NIBP", 7), ("session", "Session", None),
]
PRIORITY_STYLE = {"high": "bold reverse red", "medium": "bold reverse yellow", "low": "bold cyan",
                  "advisory": "dim"}
STATUS_STYLE = {"offline": "bold reverse red", "no_data": "bold reverse yellow"}


def status_cell(tile: v.Tile) -> Text:
    if tile.live:
        return Text("online", style="green")
    return Text(f" {tile.label} ", style=STATUS_STYLE[tile.condition])


def alarm_width(screen_width: int) -> int:
    return max(ALARM_WIDTH_MIN, min(ALARM_WIDTH_MAX, screen_width - OTHER_COLUMNS_WIDTH))


def alarm_cell(tile: v.Tile, width: int) -> Text:
    a = tile.alarm
    if a is None:
        return Text("" if not tile.live else "none", style="dim")
    text = f"{v.PRIORITY_MARK[a['priority']]} {a['priority'].upper()} {a['message']}".strip()
    more = f" (+{tile.alarm_count - 1})" if tile.alarm_count > 1 else ""
    room = width - len(more)
    if len(text) > room:
        text = text[:room - 1] + "…"
    return Text(text + more, style=PRIORITY_STYLE.get(a["priority"], ""))


def row_cells(tile: v.Tile, alarm_w: int) -> dict[str, Any]:
    vit = tile.vitals
    sbp, dbp = vit["sbp"], vit["dbp"]
    return {
        "bed": Text(tile.bed_id, style="bold"),
        "status": status_cell(tile),
        "age": v.fmt_age(tile.age_s),
        "alarm": alarm_cell(tile, alarm_w),
        "dose": v.fmt_num(tile.dose, 2),
        "hr": v.fmt_num(vit["hr"]),
        "spo2": v.fmt_num(vit["spo2"]),
        "rr": v.fmt_num(vit["rr"]),
        "etco2": v.fmt_num(vit["etco2"]),
        "nibp": f"{v.fmt_num(sbp)}/{v.fmt_num(dbp)}" if sbp.value is not None or dbp.value is not None else "--",
        "session": v.session_text(tile),
    }


class CentralApp(App[None]):
    TITLE = "monitord central"
    BINDINGS = [("q", "quit", "Quit")]
    CSS = "DataTable { height: 1fr; }"

    def __init__(self, overview: Overview, consumer: FeedConsumer | None, limits: v.Limits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``consumer`` None: the caller feeds ``overview`` itself (tests)."""
        super().__init__()
        self.overview = overview
        self.consumer = consumer
        self.limits = limits
        self.clock = clock
        self._drawn: dict[str, dict[str, str]] = {}  # bed -> its cells as drawn (plain text + style)
        self._order: list[str] = []
        self._alarm_w = ALARM_WIDTH_MIN

    @property
    def broker_connected(self) -> bool:
        return self.consumer.connected if self.consumer is not None else True

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="beds", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self._columns()
        self.sub_title = "connecting to the broker"
        if self.consumer is not None:
            self.consumer.start()
        self.set_interval(REFRESH_S, self.refresh_rows)

    def _columns(self) -> None:
        """(Re)build the columns for this screen width; rows follow on the next refresh."""
        self._alarm_w = alarm_width(self.size.width)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=self._alarm_w if key == "alarm" else width)
        self._drawn, self._order = {}, []

    def on_unmount(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()

    def refresh_rows(self) -> None:
        """Redraw the cells that changed (data, status and ages change with time), then re-sort."""
        if alarm_width(self.size.width) != self._alarm_w:  # the screen was resized
            self._columns()
        table = self.query_one(DataTable)
        now = self.clock()
        receipts = self.consumer.receipts if self.consumer is not None else None
        arrived = receipts.take() if receipts is not None else []  # before reading the model: all drawn below
        tiles = [v.tile(bed, now, self.limits) for bed in self.overview.all()]
        for tile in tiles:
            cells = row_cells(tile, self._alarm_w)
            drawn = {k: f"{c}|{c.style}" if isinstance(c, Text) else str(c) for k, c in cells.items()}
            old = self._drawn.get(tile.bed_id)
            if old is None:
                table.add_row(*(cells[k] for k, _, _ in COLUMNS), key=tile.bed_id)
            else:
                for key, _, _ in COLUMNS[1:]:
                    if drawn[key] != old[key]:
                        table.update_cell(tile.bed_id, key, cells[key])
            self._drawn[tile.bed_id] = drawn
        order = [t.bed_id for t in v.ordered(tiles)]
        if order != self._order:
            index = {bed: i for i, bed in enumerate(order)}
            table.sort("bed", key=lambda cell: index[str(cell)])
            self._order = order
        self.sub_title = (v.beds_text(len(tiles)) if self.broker_connected
                          else "BROKER DISCONNECTED: nothing shown is current")
        if receipts is not None:
            receipts.send(arrived)


def create_app(mqtt_cfg: MqttConfig, client_id: str | None = None, config: Config | None = None,
               station: str | None = None) -> CentralApp:
    """``station``: the id of this overview's delivery receipts (None: it sends none)."""
    overview = Overview(mqtt_cfg.topic_root)
    return CentralApp(overview, FeedConsumer(mqtt_cfg, overview, client_id, station), v.Limits.from_config(config))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    broker_arguments(parser)
    parser.add_argument("--web", action="store_true", help="serve the overview to browsers instead of the terminal")
    parser.add_argument("--web-host", default="127.0.0.1",
                        help="address the web view listens on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--web-port", type=int, default=8080, help="HTTP port of the web view (default 8080)")


def broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="site configuration file (its [mqtt] table names the broker)")
    parser.add_argument("--host", help="broker host (overrides the config)")
    parser.add_argument("--port", type=int, help="broker port")
    parser.add_argument("--root", help="topic root, e.g. monitord/v1")
    parser.add_argument("--username", help="broker user name (password from MONITORD_MQTT_PASSWORD)")
    parser.add_argument("--ca-file", help="CA certificate: connect with TLS")
    parser.add_argument("--station", help="station id in the delivery receipts this sends "
                                          "(default <central|archive>-<host name>)")
    parser.add_argument("--no-receipts", action="store_true",
                        help="send no delivery receipts (beds expecting them then raise 'central not confirming')")


def station_from_args(args: argparse.Namespace, kind: str) -> str | None:
    """The receipts' station id, or None with ``--no-receipts``. Raises ValueError if invalid."""
    if getattr(args, "no_receipts", False):
        return None
    return valid_station(args.station) if getattr(args, "station", None) else default_station(kind)


def mqtt_config_from_args(args: argparse.Namespace, config: Config | None = None) -> MqttConfig:
    cfg = config.mqtt if config is not None else MqttConfig()
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
        config = load_config(args.config)
        mqtt_cfg = mqtt_config_from_args(args, config if args.config else None)
        station = station_from_args(args, "central")
    except (ConfigError, ValueError) as exc:
        print(exc)
        return 2
    if args.web:
        from monitord.central.web import serve

        return serve(mqtt_cfg, config, args.web_host, args.web_port, station)
    create_app(mqtt_cfg, config=config, station=station).run()
    return 0
