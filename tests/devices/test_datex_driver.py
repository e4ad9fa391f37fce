"""How the Datex driver turns displayed-values records into readings and alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitord.drivers import datex_s5 as dx
from monitord.drivers.monitor_datex import NibpClock, alarms_of, readings_of
from monitord.readings import DeviceAlarmCode, Quality, Vital

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
OK = dx.ST_EXISTS | dx.ST_ACTIVE


def nibp(sys: float | None, label: int = dx.NIBP_AUTO) -> dx.DisplayedValues:
    return dx.DisplayedValues(
        nibp=dx.GroupHeader(OK, label),
        nibp_sys=sys,
        nibp_dia=None if sys is None else 80.0,
        nibp_mean=None if sys is None else 95.0,
    )


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


# --- NIBP measurement time ---------------------------------------------------------------


def test_nibp_on_screen_at_connect_is_dated_back_by_the_60s_flag() -> None:
    clock = NibpClock()
    assert clock.update(nibp(120), at(0)) == (True, at(-60))
    assert clock.update(nibp(120), at(5)) == (True, at(-60))  # same measurement, same time


def test_nibp_of_unknown_age_is_withheld_until_a_new_measurement() -> None:
    clock = NibpClock()
    old = dx.NIBP_AUTO | dx.NIBP_OLDER_THAN_60S
    assert clock.update(nibp(120, old), at(0)) == (False, None)
    assert clock.update(nibp(120, old), at(5)) == (False, None)
    assert clock.update(nibp(131), at(10)) == (True, at(10))


def test_a_repeat_measurement_with_identical_values_gets_a_new_time() -> None:
    clock = NibpClock()
    clock.update(nibp(120), at(0))
    clock.update(nibp(120, dx.NIBP_AUTO | dx.NIBP_MEASURING), at(300))
    assert clock.update(nibp(120), at(305)) == (True, at(305))


def test_old_flag_clearing_marks_a_new_measurement() -> None:
    clock = NibpClock()
    clock.update(nibp(120), at(0))
    clock.update(nibp(120, dx.NIBP_AUTO | dx.NIBP_OLDER_THAN_60S), at(70))
    assert clock.update(nibp(120), at(300)) == (True, at(300))


def test_failed_measurement_reports_none_then_next_one_is_new() -> None:
    clock = NibpClock()
    clock.update(nibp(120), at(0))
    assert clock.update(nibp(None), at(300)) == (True, None)
    assert clock.update(nibp(118), at(600)) == (True, at(600))


# --- readings ----------------------------------------------------------------------------


def full(**kw: object) -> dx.DisplayedValues:
    base = dict(
        time=int(T0.timestamp()),
        ecg=dx.GroupHeader(OK, 2),
        hr=70.0,
        imp_rr=18.0,
        spo2_group=dx.GroupHeader(OK, 0),
        spo2=96.0,
        spo2_pr=69.0,
        co2=dx.GroupHeader(OK, 1),
        co2_et=5.0,
        co2_rr=12.0,
        amb_press=760.0,
        temps=(None, 36.5, None, None),
        nibp=dx.GroupHeader(OK, dx.NIBP_AUTO),
        nibp_sys=120.0,
        nibp_dia=80.0,
        nibp_mean=93.0,
    )
    base.update(kw)
    return dx.DisplayedValues(**base)  # type: ignore[arg-type]


def test_all_vitals_in_one_valid_reading_with_device_time() -> None:
    (r,) = readings_of("mon", full(), report_nibp=True, nibp_time=at(-30))
    assert r.quality is Quality.VALID
    assert r.values == {
        Vital.HR: 70.0,
        Vital.SPO2: 96.0,
        Vital.PULSE: 69.0,
        Vital.ETCO2: 38.0,  # 5.0 % of 760 mmHg
        Vital.RR: 12.0,
        Vital.TEMP: 36.5,
        Vital.SBP: 120.0,
        Vital.DBP: 80.0,
        Vital.MAP: 93.0,
    }
    assert r.device_time == T0 and r.nibp_time == at(-30)


def test_withheld_nibp_is_absent_not_none() -> None:
    (r,) = readings_of("mon", full(), report_nibp=False, nibp_time=None)
    assert Vital.SBP not in r.values and r.nibp_time is None


def test_noisy_ecg_values_are_questionable_others_valid() -> None:
    dv = full(ecg=dx.GroupHeader(OK | dx.ECG_NOISE, 2), co2_rr=None)
    valid, doubtful = readings_of("mon", dv, report_nibp=True, nibp_time=at(0))
    assert doubtful.quality is Quality.QUESTIONABLE
    assert doubtful.values == {Vital.HR: 70.0, Vital.RR: 18.0}  # RR fell back to impedance
    assert Vital.SPO2 in valid.values and valid.nibp_time == at(0)


def test_invalid_markers_reach_the_engine_as_none() -> None:
    (r,) = readings_of("mon", full(hr=None, spo2=None, amb_press=None), report_nibp=True, nibp_time=None)
    assert r.values[Vital.HR] is None and r.values[Vital.SPO2] is None
    assert r.values[Vital.ETCO2] is None  # no ambient pressure, no conversion


# --- alarms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "status", "code", "words"),
    [
        ("ecg", dx.ECG_CH1_OFF | dx.ECG_CH3_OFF, DeviceAlarmCode.LEADS_OFF, "ECG lead off (channel 1, 3)"),
        ("co2", dx.CO2_OCCLUSION, DeviceAlarmCode.SENSOR_OFF, "sampling line occluded"),
        ("co2", dx.CO2_AIR_LEAK, DeviceAlarmCode.SENSOR_OFF, "air leak"),
        ("co2", dx.CO2_APNEA, DeviceAlarmCode.APNOEA, "apnoea"),
    ],
)
def test_status_bits_map_to_device_alarm_codes(group: str, status: int, code: DeviceAlarmCode, words: str) -> None:
    codes, detail = alarms_of(full(**{group: dx.GroupHeader(OK | status, 2)}))
    assert codes == {code}
    assert words in detail


def test_clean_status_means_no_alarm() -> None:
    assert alarms_of(full()) == (frozenset(), "")


# --- plausibility of what EtCO2 is derived from --------------------------------------------


@pytest.mark.parametrize("ambient", [101.3, 29.9, 1013.0, 0.0, 349.9, 850.1])
def test_implausible_ambient_pressure_withholds_etco2_and_raises_implausible(ambient: float) -> None:
    dv = full(amb_press=ambient)  # 5 % of ambient: 1013 hPa read as 101.3 mmHg would give 5.1 mmHg
    valid, invalid = readings_of("mon", dv, report_nibp=False, nibp_time=None)
    assert Vital.ETCO2 not in valid.values
    assert invalid.quality is Quality.INVALID and invalid.values == {Vital.ETCO2: None}
    assert valid.values[Vital.RR] == 12.0  # not derived from the pressure: still reported
    codes, detail = alarms_of(dv)
    assert codes == {DeviceAlarmCode.IMPLAUSIBLE}
    assert f"ambient pressure {ambient:g} mmHg" in detail and "EtCO2 withheld" in detail


@pytest.mark.parametrize("ambient", [350.0, 405.0, 760.0, 813.0, 850.0])
def test_plausible_ambient_pressures_give_etco2(ambient: float) -> None:
    (r,) = readings_of("mon", full(amb_press=ambient), report_nibp=False, nibp_time=None)
    assert r.values[Vital.ETCO2] == pytest.approx(0.05 * ambient, abs=0.06)
    assert alarms_of(full(amb_press=ambient)) == (frozenset(), "")


# --- time stamps ---------------------------------------------------------------------------


def test_device_time_falls_back_to_the_record_time() -> None:
    (r,) = readings_of("mon", full(time=0, record_time=int(T0.timestamp()) + 3), report_nibp=False, nibp_time=None)
    assert r.device_time == at(3)
    (r,) = readings_of("mon", full(time=0, record_time=0), report_nibp=False, nibp_time=None)
    assert r.device_time is None


def test_readings_carry_the_age_they_arrived_with() -> None:
    readings = readings_of("mon", full(ecg=dx.GroupHeader(OK | dx.ECG_NOISE, 2)), report_nibp=True,
                           nibp_time=at(-30), age_s=12.0)
    assert [r.age_s for r in readings] == [12.0, 12.0]
