"""The sample messages in docs/hl7.md, made by the code from a real course.

``python -m monitord.hl7.samples`` plays scenarios/respiratory-depression.toml through the engine,
turns its feed messages into HL7 with a 60 s export interval, and prints the first PCD-01 of the
monitor that has a cuff measurement, the first of the pump while it infuses, and the start and a
later transition of the SpO2 alarm. A test checks that docs/hl7.md shows exactly these.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from monitord import scenario
from monitord.events import EventKind
from monitord.hl7 import pcd
from monitord.hl7.translate import Translator
from monitord.mqtt import payloads
from monitord.mqtt import topics as t

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "respiratory-depression.toml"
IDENTITY = pcd.Identity(facility="GENERAL", receiving_application="EHR", receiving_facility="GENERAL",
                        point_of_care="INFUSION")


def feed(path: Path = SCENARIO) -> list[tuple[str, dict[str, object]]]:
    """The course's feed: its state (patient, care area) first, then every forwarded event."""
    engine, events, problems = scenario.play(scenario.load_scenario(path))
    if problems:
        raise RuntimeError(f"{path.name}: {problems}")
    state = payloads.state(engine.snapshot())
    admitted = next(e for e in events if e.kind is EventKind.SESSION and e.data.get("action") == "admitted")
    state["patient_id"] = admitted.data["patient"]["id"]
    out: list[tuple[str, dict[str, object]]] = [(t.STATE, state)]
    for ev in events:
        route = payloads.FORWARDED.get(ev.kind)
        if route is not None and route[0] in (t.VITALS, t.INFUSION, t.ALARM_EVENTS):
            out.append((route[0], route[1](ev)))
    return out


def samples() -> list[tuple[str, str]]:
    """``(title, message)`` pairs, the message with ``\\r`` segment ends."""
    tr = Translator(IDENTITY, 60.0)
    built: list[pcd.Built] = []
    for leaf, payload in feed():
        now = datetime.fromisoformat(str(payload["time"]).replace("Z", "+00:00"))  # as if sent at once
        built += tr.handle("bed-01", leaf, payload, now, 0.0)
    monitor = next(b for b in built if b.kind == "pcd01" and "MDC_PRESS_CUFF_SYS" in b.text)
    pump = next(b for b in built if b.kind == "pcd01" and "MDC_DEV_PUMP" in b.text and "|NM|157784^" in b.text
                and "|NM|157784^MDC_FLOW_FLUID_PUMP^MDC|2.1.1.1|0|" not in b.text)
    alarms = [b for b in built if b.kind == "pcd04" and "vital.spo2_low" in b.text]
    return [("PCD-01, patient monitor (one 60 s interval, with a cuff measurement)", monitor.text),
            ("PCD-01, infusion pump", pump.text),
            ("PCD-04, SpO2 alarm starts", alarms[0].text),
            ("PCD-04, the same alarm escalates (OBR-29 names the alert it belongs to)", alarms[1].text)]


def markdown() -> str:
    return "\n".join(f"#### {title}\n\n```\n{text.replace(chr(13), chr(10))}```\n" for title, text in samples())


if __name__ == "__main__":
    print(markdown(), end="")
