"""HL7 messages for one recorded course: they parse with hl7apy at its strictest and carry the
MDC codes, units, identities and alarm facets the mapping promises (docs/hl7.md)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from monitord.hl7 import pcd
from monitord.hl7.samples import markdown
from monitord.hl7.translate import Translator, epoch
from monitord.mqtt import mdc
from monitord.mqtt import topics as t
from monitord.readings import VITAL_UNITS, Vital
from tests.hl7.support import NOW, observations, parse_strict, recorded_course

BED = "bed-01"
INTERVAL = 120.0  # a two-minute export interval: a 4 h course is ~240 PCD-01 messages


def translate(feed: tuple[tuple[str, dict[str, Any]], ...], interval: float) -> tuple[Translator, list[pcd.Built]]:
    tr = Translator(pcd.Identity(facility="GENERAL"), interval)
    out: list[pcd.Built] = []
    for leaf, payload in feed:
        out += tr.handle(BED, leaf, payload, NOW, 0.0)
    out += [b for _, b in tr.flush(NOW)]
    return tr, out


@pytest.fixture(scope="module")
def course() -> tuple[tuple[str, dict[str, Any]], ...]:
    return recorded_course()


@pytest.fixture(scope="module")
def parsed(course: tuple[tuple[str, dict[str, Any]], ...]) -> list[tuple[pcd.Built, Any]]:
    _, built = translate(course, INTERVAL)
    return [(b, parse_strict(b.text)) for b in built]


def cwe(field: Any) -> tuple[str, str, str]:
    parts = field.to_er7().split("^") + ["", "", ""]
    return parts[0], parts[1], parts[2]


def expected_units(vital: Vital) -> int:
    unit = mdc.vital_unit(vital, VITAL_UNITS[vital])
    assert unit is not None
    return unit.code


def test_every_message_of_a_course_parses_strictly(parsed: list[tuple[pcd.Built, Any]],
                                                   course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    kinds = [b.kind for b, _ in parsed]
    alarms_while_admitted = [p for leaf, p in course if leaf == t.ALARM_EVENTS]
    assert kinds.count("pcd04") == len(alarms_while_admitted) > 0
    assert kinds.count("pcd01") > 200  # two devices, a 4 h course, 2 min intervals
    for built, msg in parsed:
        assert msg.msh.msh_9.to_er7() == ("ORU^R01^ORU_R01" if built.kind == "pcd01" else "ORU^R40^ORU_R40")
        assert msg.msh.msh_10.to_er7() == built.control_id
        assert msg.msh.msh_12.to_er7() == "2.6"
        assert msg.msh.msh_21.to_er7().startswith("IHE_PCD_001^" if built.kind == "pcd01" else "IHE_PCD_ACM_001^")
        pid = msg.oru_r01_patient_result.oru_r01_patient
        assert pid.pid.pid_3.to_er7() == "P-10003^^^MONITORD^PI"  # the admitted patient, nobody else
        assert pid.oru_r01_visit.pv1.pv1_3.to_er7() == f"monitored-unit^^{BED}^GENERAL"
    assert len({b.control_id for b, _ in parsed}) == len(parsed)  # MSH-10 unique


def test_observations_carry_the_mdc_codes_and_units(parsed: list[tuple[pcd.Built, Any]]) -> None:
    vitals_by_code = {m.code: v for v, m in mdc.VITALS.items()}
    infusion_by_code = {m.code: (name, m) for name, m in mdc.INFUSION.items()}
    infusion_units = {"rate": "265266", "volume_infused": "263762", "concentration": "264306"}
    seen: set[str] = set()
    for built, msg in parsed:
        if built.kind != "pcd01":
            continue
        rows = observations(msg)
        device, metrics = rows[0], rows[1:]
        dev_code = cwe(device.obx_3)
        assert device.obx_11.to_er7() == "X" and device.obx_4.to_er7().endswith(".0.0.0")
        assert dev_code in (("69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "MDC"),
                            ("69985", "MDC_DEV_PUMP_INFUS_MDS", "MDC"))
        assert device.obx_18.to_er7().split("^")[3] == "UUID"
        for obx in metrics:
            code, refid, system = cwe(obx.obx_3)
            unit_code = obx.obx_6.to_er7().split("^")[0]
            assert obx.obx_2.to_er7() == "NM" and obx.obx_11.to_er7() == "R"
            assert math.isfinite(float(obx.obx_5.to_er7()))
            if system == "MDC" and int(code) in vitals_by_code:
                v = vitals_by_code[int(code)]
                assert refid == mdc.VITALS[v].refid
                assert unit_code == str(expected_units(v)), (v, obx.obx_6.to_er7())
                assert obx.obx_4.to_er7() == f"1.1.1.{pcd.VITAL_METRIC[v.value]}"
                assert bool(obx.obx_14.to_er7()) == (v.value in pcd.EPISODIC)  # NIBP keeps its own time
                seen.add(v.value)
            elif system == "MDC":
                name, m = infusion_by_code[int(code)]
                assert refid == m.refid and obx.obx_4.to_er7() == f"2.1.1.{pcd.INFUSION_METRIC[name]}"
                if name in infusion_units:
                    assert unit_code == infusion_units[name]
                if name == "dose_rate":
                    assert obx.obx_6.to_er7() == "mg/kg/h^mg/kg/h^UCUM"
                seen.add(name)
            else:
                assert (code, system) == ("cumulative_dose", pcd.LOCAL)
                assert unit_code == "263890"  # MDC_DIM_MILLI_G
                seen.add("cumulative")
    assert {"hr", "pulse", "spo2", "rr", "etco2", "temp", "sbp", "dbp", "map"} <= seen
    assert {"rate", "volume_infused", "concentration", "dose_rate", "cumulative"} <= seen


def test_an_interval_reports_the_last_reading_of_each_vital(course: tuple[tuple[str, dict[str, Any]], ...],
                                                             parsed: list[tuple[pcd.Built, Any]]) -> None:
    last: dict[float, dict[str, float]] = defaultdict(dict)
    admitted = False
    for leaf, p in course:
        if leaf == t.STATE:
            admitted = p["patient_id"] is not None
        elif leaf == t.VITALS and admitted:
            start = math.floor(epoch(p["time"]) / INTERVAL) * INTERVAL  # type: ignore[operator]
            for name, q in p["values"].items():
                if q["value"] is not None and name not in pcd.EPISODIC:
                    last[start][name] = q["value"]
    checked = 0
    for built, msg in parsed:
        rows = observations(msg)
        if built.kind != "pcd01" or cwe(rows[0].obx_3)[0] != "69965":
            continue
        obr7 = msg.oru_r01_patient_result.oru_r01_order_observation.obr.obr_7.to_er7()
        start = epoch(f"{obr7[:4]}-{obr7[4:6]}-{obr7[6:8]}T{obr7[8:10]}:{obr7[10:12]}:{obr7[12:14]}Z")
        assert start is not None and start % INTERVAL == 0
        by_metric = {int(o.obx_4.to_er7().split(".")[3]): float(o.obx_5.to_er7()) for o in rows[1:]}
        for name, value in last[start].items():
            assert by_metric[pcd.VITAL_METRIC[name]] == pytest.approx(value), (obr7, name)
            checked += 1
    assert checked > 500


def test_alarm_messages_follow_the_alert_through_its_life(course: tuple[tuple[str, dict[str, Any]], ...],
                                                          parsed: list[tuple[pcd.Built, Any]]) -> None:
    events = [p for leaf, p in course if leaf == t.ALARM_EVENTS]
    alerts = [msg for b, msg in parsed if b.kind == "pcd04"]
    assert len(alerts) == len(events)
    instance: dict[str, str] = {}
    for ev, msg in zip(events, alerts, strict=True):
        order = msg.oru_r01_patient_result.oru_r01_order_observation
        obr = order.obr
        rows = observations(msg)
        assert cwe(obr.obr_4) == ("196616", "MDC_EVT_ALARM", "MDC")
        facets = rows[1:]
        assert [cwe(o.obx_3)[0] for o in facets[2:]] == ["68481", "68482", "68483", "68484", "68485"]
        assert [o.obx_4.to_er7().rsplit(".", 1)[1] for o in facets] == ["1", "2", "3", "4", "5", "6", "7"]
        event_id = facets[0]
        assert cwe(event_id.obx_3)[0] == "196616"
        assert event_id.obx_5.to_er7().split("^")[0] == ev["rule_id"]
        assert event_id.obx_5.to_er7().split("^")[8] == ev["message"]
        phase, state, inactivation, priority, kind = (o.obx_5.to_er7() for o in facets[2:])
        assert phase == ev["phase"] and state == ev["state"]
        assert inactivation == pcd.INACTIVATION_STATE[ev["inactivation"]]
        assert priority == {"high": "PH", "medium": "PM", "low": "PL", "advisory": "PN"}[ev["priority"]]
        assert kind == ("SA" if ev["priority"] == "advisory" else
                        {"physiological": "SP", "technical": "ST", "advisory": "SA"}[ev["kind"]])
        own = obr.obr_3.to_er7().split("^")[0]
        parent = obr.obr_29.to_er7()
        if ev["phase"] == "start":
            assert not parent
            instance[ev["rule_id"]] = own
        else:  # a later message of the same alert names the first one
            assert parent.split("^")[1].split("&")[0] == instance[ev["rule_id"]]
            assert own != instance[ev["rule_id"]]
        if ev["rule_id"] == "vital.spo2_low":
            source = facets[1]
            assert cwe(source.obx_3) == ("150456", "MDC_PULS_OXIM_SAT_O2", "MDC")
            assert float(source.obx_5.to_er7()) == pytest.approx(ev["value"])
            assert source.obx_6.to_er7().split("^")[0] == "262688"
            assert source.obx_4.to_er7() == "1.1.1.3.2"
    assert "vital.spo2_low" in instance


def test_one_message_per_reading_without_an_interval(course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    start = next(i for i, (leaf, p) in enumerate(course) if leaf == t.STATE and p["patient_id"])
    feed = course[:start + 40]
    readings = [p for leaf, p in feed[start:] if leaf in (t.VITALS, t.INFUSION)]
    tr, built = translate(feed, 0)
    assert len(built) == len(readings) > 0
    for b, p in zip(built, readings, strict=True):
        msg = parse_strict(b.text)
        assert b.control_id == f"{BED}.O{p['seq']}"
        obr7 = msg.oru_r01_patient_result.oru_r01_order_observation.obr.obr_7.to_er7()
        assert obr7.startswith(p["time"][:19].replace("-", "").replace("T", "").replace(":", ""))


def test_repeats_are_dropped_and_gaps_counted(course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    state = next(p for leaf, p in course if leaf == t.STATE and p["patient_id"])
    vitals = next(p for leaf, p in course if leaf == t.VITALS)
    alarm = next(p for leaf, p in course if leaf == t.ALARM_EVENTS)
    tr = Translator(pcd.Identity(), 0)
    tr.handle(BED, t.STATE, state, NOW, 0.0)
    assert len(tr.handle(BED, t.VITALS, vitals, NOW, 0.0)) == 1
    assert tr.handle(BED, t.VITALS, vitals, NOW, 0.0) == []  # a QoS 1 repeat
    assert len(tr.handle(BED, t.ALARM_EVENTS, alarm, NOW, 0.0)) == 1
    assert tr.handle(BED, t.ALARM_EVENTS, alarm, NOW, 0.0) == []
    assert tr.stats.repeats == 2
    later = dict(alarm, alarm_seq=alarm["alarm_seq"] + 3, seq=alarm["seq"] + 10)
    assert len(tr.handle(BED, t.ALARM_EVENTS, later, NOW, 0.0)) == 1
    assert tr.stats.alarm_gaps == 1


def test_nothing_is_sent_without_a_patient_and_a_new_patient_closes_the_interval(
        course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    state = next(p for leaf, p in course if leaf == t.STATE and p["patient_id"])
    readings = [p for leaf, p in course if leaf == t.VITALS][:3]
    tr = Translator(pcd.Identity(), 3600.0)
    assert tr.handle(BED, t.VITALS, readings[0], NOW, 0.0) == []
    assert tr.stats.no_patient == 1
    tr.handle(BED, t.STATE, state, NOW, 0.0)
    assert tr.handle(BED, t.VITALS, readings[1], NOW, 0.0) == []  # the interval is open
    closed = tr.handle(BED, t.STATE, dict(state, patient_id="P-OTHER"), NOW, 0.0)
    assert len(closed) == 1
    assert parse_strict(closed[0].text).oru_r01_patient_result.oru_r01_patient.pid.pid_3.to_er7().startswith(
        state["patient_id"] + "^")
    tr.handle(BED, t.VITALS, readings[2], NOW, 0.0)
    (_, again), = tr.flush(NOW)
    assert "PID|||P-OTHER^" in again.text


def test_memory_survives_a_restart(course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    """What a bed's translator remembers, reloaded, goes on as if nothing happened."""
    feed = course[:3000]
    _, whole = translate(feed, INTERVAL)
    first = Translator(pcd.Identity(facility="GENERAL"), INTERVAL)
    out = []
    for leaf, p in feed[:1500]:
        out += first.handle(BED, leaf, p, NOW, 0.0)
    second = Translator(pcd.Identity(facility="GENERAL"), INTERVAL)
    second.load(BED, first.dump(BED), 0.0)
    for leaf, p in feed[1000:]:  # the broker redelivers some: they are repeats
        out += second.handle(BED, leaf, p, NOW, 0.0)
    out += [b for _, b in second.flush(NOW)]
    assert [b.text for b in out] == [b.text for b in whole]


def test_text_with_delimiters_is_escaped(course: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    state = next(p for leaf, p in course if leaf == t.STATE and p["patient_id"])
    alarm = next(p for leaf, p in course if leaf == t.ALARM_EVENTS)
    tr = Translator(pcd.Identity(facility="A|B^C"), 0)
    tr.handle(BED, t.STATE, state, NOW, 0.0)
    text = "pump says: 5 mL|h ^ & ~ \\ done\r\nnext"
    (built,) = tr.handle(BED, t.ALARM_EVENTS, dict(alarm, message=text), NOW, 0.0)
    msg = parse_strict(built.text)
    parts = observations(msg)[1].obx_5.to_er7().split("^")
    assert len(parts) == 9 and parts[0] == alarm["rule_id"]  # no delimiter leaked out of the text
    assert unescape(parts[8]) == "pump says: 5 mL|h ^ & ~ \\ done  next"
    assert unescape(msg.msh.msh_4.to_er7()) == "A|B^C"


def unescape(text: str) -> str:
    """HL7 v2.6 section 2.7.4 escape sequences, as a receiver reads them."""
    table = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
    return re.sub(r"\\([FSTRE])\\", lambda m: table[m.group(1)], text)


def test_docs_show_the_generated_samples() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "hl7.md").read_text()
    assert markdown() in doc, "docs/hl7.md is out of date: paste `python -m monitord.hl7.samples`"
