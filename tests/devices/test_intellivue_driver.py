"""What the IntelliVue driver makes of poll results: values in monitord's units with their
quality, NIBP only with its own measurement time, unknown units withheld, alarm lists as device alarms."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from monitord.drivers import intellivue as iv
from monitord.drivers.monitor_intellivue import alarm_entries, alert_codes, numerics_of, readings_of
from monitord.readings import DeviceAlarmCode, Quality, Vital

T = datetime(2026, 2, 3, 10, 0, 0)


def to_utc(t: datetime | None) -> datetime | None:
    return None if t is None else t.replace(tzinfo=UTC)


def result(*obs: iv.Observation, obj: int = iv.NOM_MOC_VMO_METRIC_NU) -> iv.PollResult:
    msg = iv.decode_message(iv.encode_poll_result(1, 1, obj, list(obs), abs_time=T))
    assert isinstance(msg, iv.PollResult)
    return msg


def nu(handle: int, physio: int, value: float, unit: int, state: int = 0, stamp: datetime | None = None) -> iv.Observation:
    attrs = {iv.NOM_ATTR_NU_VAL_OBS: iv.encode_nu_obs(physio, value, unit, state)}
    if stamp is not None:
        attrs[iv.NOM_ATTR_TIME_STAMP_ABS] = iv.encode_abs_time(stamp)
    return iv.Observation(0, handle, attrs)


def nibp(stamp: datetime | None, unit: int = iv.NOM_DIM_MMHG, values: tuple[float, ...] = (120, 80, 93),
         state: int = 0) -> iv.Observation:
    parts = [(p, v, unit, state) for p, v in zip((0x4A05, 0x4A06, 0x4A07), values, strict=True)]
    attrs = {iv.NOM_ATTR_NU_CMPD_VAL_OBS: iv.encode_nu_cmpd(parts)}
    if stamp is not None:
        attrs[iv.NOM_ATTR_TIME_STAMP_ABS] = iv.encode_abs_time(stamp)
    return iv.Observation(0, 0x104, attrs)


def convert(*obs: iv.Observation):  # type: ignore[no-untyped-def]
    return readings_of("monitor", numerics_of(result(*obs)), device_time=to_utc(T), to_utc=to_utc)


def test_numerics_become_one_reading_per_quality_with_nibp_time() -> None:
    measured = datetime(2026, 2, 3, 9, 55, 0)
    readings, problems, withheld = convert(
        nu(1, iv.NOM_ECG_CARD_BEAT_RATE, 72, iv.NOM_DIM_BEAT_PER_MIN),
        nu(2, iv.NOM_PULS_OXIM_SAT_O2, 97, iv.NOM_DIM_PERCENT, iv.MS_QUESTIONABLE),
        nu(3, iv.NOM_PLETH_PULS_RATE, 71, iv.NOM_DIM_BEAT_PER_MIN),
        nu(4, iv.NOM_RESP_RATE, 16, iv.NOM_DIM_RESP_PER_MIN),  # impedance RR: the airway RR wins
        nu(5, iv.NOM_AWAY_RESP_RATE, 14, iv.NOM_DIM_RESP_PER_MIN),
        nu(6, iv.NOM_AWAY_CO2_ET, 38, iv.NOM_DIM_MMHG, iv.MS_CALIBRATION_ONGOING),
        nu(7, iv.NOM_TEMP, 36.8, iv.NOM_DIM_DEGC),
        nibp(measured))
    assert problems == [] and not withheld
    valid, doubtful = readings
    assert valid.quality is Quality.VALID and doubtful.quality is Quality.QUESTIONABLE
    assert valid.values == {Vital.HR: 72, Vital.PULSE: 71, Vital.SBP: 120, Vital.DBP: 80, Vital.MAP: 93,
                            Vital.RR: 14, Vital.TEMP: 36.8}
    assert doubtful.values == {Vital.SPO2: 97, Vital.ETCO2: 38}
    assert valid.nibp_time == measured.replace(tzinfo=UTC) and doubtful.nibp_time is None
    assert valid.device_time == T.replace(tzinfo=UTC)


def test_invalid_states_and_special_values_are_none_and_invalid() -> None:
    readings, _, _ = convert(
        nu(1, iv.NOM_ECG_CARD_BEAT_RATE, 72, iv.NOM_DIM_BEAT_PER_MIN, iv.MS_INVALID),
        nu(2, iv.NOM_PULS_OXIM_SAT_O2, math.nan, iv.NOM_DIM_PERCENT),
        nu(3, iv.NOM_AWAY_CO2_ET, 38, iv.NOM_DIM_MMHG, iv.MS_DEMO_DATA),
        nu(4, iv.NOM_TEMP, 36.8, iv.NOM_DIM_DEGC, iv.MS_UNAVAILABLE))
    (only,) = readings
    assert only.quality is Quality.INVALID
    assert only.values == {Vital.HR: None, Vital.SPO2: None, Vital.ETCO2: None, Vital.TEMP: None}


def test_kpa_and_fahrenheit_are_converted_and_an_unknown_unit_is_withheld() -> None:
    readings, problems, _ = convert(
        nu(1, iv.NOM_AWAY_CO2_ET, 5.07, iv.NOM_DIM_KILO_PASCAL),
        nu(2, iv.NOM_TEMP, 98.24, iv.NOM_DIM_FAHR),
        nu(3, iv.NOM_PULS_OXIM_SAT_O2, 0.97, 0x0200),  # a fraction, not %
        nibp(T, iv.NOM_DIM_KILO_PASCAL, (16.0, 10.67, 12.4)))
    by_q = {r.quality: r.values for r in readings}
    assert by_q[Quality.VALID][Vital.ETCO2] == 38.0
    assert by_q[Quality.VALID][Vital.TEMP] == 36.8
    assert (by_q[Quality.VALID][Vital.SBP], by_q[Quality.VALID][Vital.DBP]) == (120.0, 80.0)
    assert by_q[Quality.INVALID] == {Vital.SPO2: None}
    assert problems == ["spo2 sent in unit 0x0200: withheld"]


def test_nibp_without_its_own_time_stamp_is_withheld() -> None:
    readings, _, withheld = convert(nu(1, iv.NOM_ECG_CARD_BEAT_RATE, 72, iv.NOM_DIM_BEAT_PER_MIN), nibp(None))
    assert withheld
    assert all(v not in r.values for r in readings for v in (Vital.SBP, Vital.DBP, Vital.MAP))


def test_alarm_lists_map_to_device_alarm_codes() -> None:
    p = [iv.AlarmEntry(iv.NOM_AWAY_RESP_RATE, iv.NOM_EVT_APNEA, iv.HI_PRI_P_AL, 8, "APNEA")]
    t = [iv.AlarmEntry(iv.NOM_ECG_CARD_BEAT_RATE, iv.NOM_EVT_LEADS_OFF, iv.MED_PRI_T_AL, 0),
         iv.AlarmEntry(iv.NOM_PULS_OXIM_SAT_O2, iv.NOM_EVT_SENSOR_DISCONN, iv.MED_PRI_T_AL, 0),
         iv.AlarmEntry(iv.NOM_AWAY_CO2_ET, iv.NOM_EVT_TUBE_OCCL, iv.MED_PRI_T_AL, 0),
         iv.AlarmEntry(iv.NOM_TEMP, 0x1234, iv.LOW_PRI_T_AL, 0)]  # an alert monitord does not map
    obs = iv.Observation(0, 1, {iv.NOM_ATTR_AL_MON_P_AL_LIST: iv.encode_alarm_list(p),
                                iv.NOM_ATTR_AL_MON_T_AL_LIST: iv.encode_alarm_list(t)})
    codes, details = alert_codes(alarm_entries(result(obs, obj=iv.NOM_MOC_VMO_AL_MON)))
    assert codes == {DeviceAlarmCode.APNOEA, DeviceAlarmCode.LEADS_OFF, DeviceAlarmCode.PROBE_OFF,
                     DeviceAlarmCode.SENSOR_OFF}
    assert "monitor reports apnoea (APNEA)" in details
    assert alert_codes([]) == (set(), [])
