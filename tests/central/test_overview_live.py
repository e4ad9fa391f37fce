"""The terminal overview against a real broker, fed by real bed publishers."""

from __future__ import annotations

from textual.widgets import DataTable

from monitord.central.app import CentralApp, create_app
from monitord.config import MqttConfig
from monitord.readings import Quality, Vital, VitalsReading
from tests.mqtt.broker import Mosquitto
from tests.mqtt.conftest import ROOT, Bed, bed_config
from tests.mqtt.support import until


def cell(app: CentralApp, bed_id: str, column: str) -> str:
    try:
        return str(app.query_one(DataTable).get_cell(bed_id, column))
    except Exception:
        return ""


async def test_overview_shows_each_bed_alarm_first_and_makes_offline_unmistakable(broker: Mosquitto) -> None:
    beds = [await Bed(bed_config(broker.port, bed_id)).start() for bed_id in ("bed-2", "bed-1")]
    beds[0].loop.put(VitalsReading("monitor", {Vital.HR: 88.0, Vital.SPO2: 95.0, Vital.SBP: 131.0, Vital.DBP: 77.0},
                                   Quality.VALID))
    beds[0].fault()
    app = create_app(MqttConfig(host="127.0.0.1", port=broker.port, topic_root=ROOT), client_id="central-test")
    try:
        async with app.run_test(size=(160, 20)) as pilot:
            await until(lambda: cell(app, "bed-2", "hr") == "88" and cell(app, "bed-1", "status"),
                        what="both beds in the table")
            assert cell(app, "bed-2", "spo2") == "95"
            assert cell(app, "bed-2", "nibp") == "131/77"
            assert cell(app, "bed-2", "status") == "online"
            await until(lambda: "HIGH" in cell(app, "bed-2", "alarm"), what="highest alarm shown")
            assert "device fault" in cell(app, "bed-2", "alarm")
            assert cell(app, "bed-1", "alarm") == "none"
            table = app.query_one(DataTable)
            assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["bed-2", "bed-1"]
            assert app.sub_title == "2 beds"

            await beds[0].stop()
            await until(lambda: "OFFLINE" in cell(app, "bed-2", "status"), what="offline shown")
            status = table.get_cell("bed-2", "status")
            assert str(status).strip() == "OFFLINE" and "reverse" in str(status.style)
            assert cell(app, "bed-2", "hr") == "--"  # old numbers are not shown as if current
            assert cell(app, "bed-2", "dose") == "--"
            assert cell(app, "bed-1", "status") == "online"
            await pilot.pause()
    finally:
        for b in beds:
            await b.stop()
