"""How the Datex driver turns displayed-values records into readings and alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drivers import datex_s5 as dx
from drivers.monitor_datex import NibpClock, alarms_of, readings_of
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


def test_lead_off_and_co2_line_faults_are_sensor_off() -> None:
    codes, detail = alarms_of(full(ecg=dx.GroupHeader(OK | dx.ECG_CH1_OFF | dx.ECG_CH3_OFF, 2)))
    assert codes == {DeviceAlarmCode.SENSOR_OFF}
    assert "ECG lead off (channel 1, 3)" in detail
    codes, detail = alarms_of(full(co2=dx.GroupHeader(OK | dx.CO2_OCCLUSION, 1)))
    assert codes == {DeviceAlarmCode.SENSOR_OFF} and "occluded" in detail


def test_clean_status_means_no_alarm() -> None:
    assert alarms_of(full()) == (frozenset(), "")
