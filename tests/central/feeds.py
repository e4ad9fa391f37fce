"""Feed messages of simulated beds, built with the bed's own payload builders and checked against
the published schemas, so a central test can set exactly what a bed says (ages, alarms, seq)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from monitord.clock import FakeClock
from monitord.config import load_config
from monitord.engine import Engine
from monitord.events import Event, EventKind
from monitord.mqtt import payloads, schemas
from monitord.readings import Quality, Vital, VitalsReading

ROOT = "monitord/v1"
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@cache
def _state_template() -> dict[str, Any]:
    eng = Engine(load_config(overrides={"bed": {"id": "bed-x", "care_area": "monitored-unit"}}), FakeClock())
    eng.submit(VitalsReading("monitor", {Vital.HR: 70.0, Vital.SPO2: 97.0, Vital.RR: 14.0, Vital.ETCO2: 38.0,
                                         Vital.SBP: 120.0, Vital.DBP: 75.0, Vital.MAP: 90.0}, Quality.VALID))
    return payloads.state(eng.snapshot())


def checked(kind: str, payload: dict[str, Any], check: bool = True) -> bytes:
    if check:
        problems = schemas.errors(kind, payload)
        assert not problems, f"{kind} message not valid against its schema: {problems}"
    return json.dumps(payload).encode()


def alarm(priority: str, rule_id: str, message: str) -> dict[str, Any]:
    return {"rule_id": rule_id, "priority": priority, "kind": "technical", "state": "active",
            "inactivation": "enabled", "latching": False, "message": message, "value": None,
            "source": "test", "since": payloads.iso(T0)}


class SimBed:
    """One bed's messages. ``check=False`` skips schema validation (benchmarks)."""

    def __init__(self, bed_id: str, root: str = ROOT, check: bool = True) -> None:
        self.bed_id, self.root, self.check = bed_id, root, check
        self.seq = 0
        self.alarm_seq = 0

    def topic(self, leaf: str) -> str:
        return f"{self.root}/{self.bed_id}/{leaf}"

    def status(self, online: bool = True, reason: str = "", now: datetime = T0) -> bytes:
        return checked("status", payloads.status(self.bed_id, online, now, reason=reason), self.check)

    def state(self, *, hr: float | None = 72.0, spo2: float = 97.0, rr: float = 14.0, etco2: float = 38.0,
              sbp: float = 120.0, dbp: float = 75.0, vital_age: float = 1.0, stale: tuple[str, ...] = (),
              dose: float | None = 0.5, dose_age: float | None = 1.0, session: str = "running",
              time: str | None = None) -> bytes:
        st = copy.deepcopy(_state_template())
        st.update(bed_id=self.bed_id, seq=self.seq, session=session, time=time or payloads.iso(T0))
        values = {"hr": hr, "spo2": spo2, "rr": rr, "etco2": etco2, "sbp": sbp, "dbp": dbp}
        for name, value in values.items():
            st["vitals"][name].update(value=value, age_s=vital_age, stale=name in stale or value is None)
        st["infusion"]["dose_rate"]["value"] = dose
        st["infusion"]["age_s"] = dose_age
        st["infusion"]["pump_state"] = "running" if dose else "stopped"
        return checked("state", st, self.check)

    def alarms(self, *active: dict[str, Any]) -> bytes:
        body = {"v": 1, "bed_id": self.bed_id, "seq": self.seq, "alarm_seq": self.alarm_seq,
                "time": payloads.iso(T0), "refresh": False, "alarms": list(active)}
        return checked("alarms", body, self.check)

    def _event(self, kind: EventKind, data: dict[str, Any], when: datetime) -> Event:
        self.seq += 1
        return Event(self.seq, kind, self.bed_id, when, 0.0, True, data)

    def alarm_event(self, a: dict[str, Any], transition: str = "raised", when: datetime = T0,
                    skip: bool = False) -> tuple[str, bytes]:
        """The next alarm transition; ``skip`` consumes its alarm_seq without sending it (a gap)."""
        self.alarm_seq += 1
        ev = self._event(EventKind.ALARM, a | {"alarm_seq": self.alarm_seq, "transition": transition,
                                               "phase": "start" if transition == "raised" else "end",
                                               "actor": "system"}, when)
        return self.topic("events/alarm"), b"" if skip else checked("alarm-event", payloads.alarm_event(ev), self.check)

    def vitals(self, when: datetime = T0, new_nibp: bool = False, **values: float) -> tuple[str, bytes]:
        ev = self._event(EventKind.VITALS, {"device": "monitor", "values": values, "quality": "valid",
                                            "new_nibp": new_nibp}, when)
        return self.topic("vitals"), checked("vitals", payloads.vitals_event(ev), self.check)

    def infusion(self, dose: float, when: datetime = T0) -> tuple[str, bytes]:
        ev = self._event(EventKind.INFUSION, {"device": "pump", "state": "running", "quality": "valid",
                                              "drug": "ketamine", "rate_ml_h": 35.0, "dose_rate_mg_kg_h": dose,
                                              "concentration_mg_ml": 1.0, "cumulative_mg": 1.0,
                                              "infusion_time_s": 60.0, "volume_infused_ml": 1.0,
                                              "volume_to_be_infused_ml": 49.0}, when)
        return self.topic("infusion"), checked("infusion", payloads.infusion_event(ev), self.check)


class Publisher:
    """A plain MQTT client that publishes what a test hands it (QoS 1, waits for the broker)."""

    def __init__(self, port: int, client_id: str = "") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10)
            assert info.is_published(), f"broker did not confirm {topic}"

    def bed(self, bed: SimBed, online: bool = True, **state: Any) -> None:
        """A bed's retained status and state, as a bed publishes them."""
        self.send(bed.topic("status"), bed.status(online), retain=True)
        self.send(bed.topic("state"), bed.state(**state), retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
