"""Every malformed configuration is refused the same way by ``check-config`` and by ``run``:
exit code 2, a message naming the file and the key, never a traceback.

Each case is a site file merged over the shipped defaults, as a site would write it. Both
commands run in-process through the CLI's ``main``; ``check-config`` goes first, so a case that
wrongly validated fails there instead of starting a daemon.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from monitord import cli
from monitord.config import ConfigError, load_config

DEVICE = '[devices.pump]\ndriver = "modbus"\n'

# (name, site file text, a fragment the message must contain)
CASES: list[tuple[str, str, str]] = [
    # not finite
    ("limit-below-nan", '[[vitals.limits]]\nid = "spo2_low"\nbelow = nan\n', "vitals.limits[spo2_low].below"),
    ("limit-above-inf", '[[vitals.limits]]\nid = "hr_high"\nabove = inf\n', "finite number"),
    ("physical-range-nan", "[vitals.physical_range]\nhr = { min = 0, max = nan }\n", "vitals.physical_range.hr.max"),
    ("hard-max-inf", "[ketamine.dose]\nhard_max_mg_kg_h = inf\n", "ketamine.dose.hard_max_mg_kg_h"),
    ("flush-inf", "[store]\nflush_interval_s = inf\n", "store.flush_interval_s"),
    ("stale-minus-inf", "[vitals]\nstale_after_s = -inf\n", "vitals.stale_after_s"),
    ("escalate-nan", "[alarms]\nescalate_after_s = { medium = nan }\n", "alarms.escalate_after_s.medium"),
    ("observation-nan", "[observations]\ninterval_s = nan\n", "observations.interval_s"),
    ("monitor-timeout-inf", '[devices.monitor]\ndriver = "datex"\nserial = { port = "/dev/x" }\ntimeout_s = inf\n',
     "devices.monitor.timeout_s"),
    # out of range: zero, negative, tiny, huge
    ("tick-1e-9", "[watchdog]\ntick_s = 1e-9\n", "greater than or equal to 0.01"),
    ("tick-zero", "[watchdog]\ntick_s = 0\n", "watchdog.tick_s"),
    ("tick-negative", "[watchdog]\ntick_s = -1.0\n", "watchdog.tick_s"),
    ("tick-huge", "[watchdog]\ntick_s = 1e300\n", "less than or equal to 2"),
    ("flush-zero", "[store]\nflush_interval_s = 0\n", "store.flush_interval_s"),
    ("flush-hour", "[store]\nflush_interval_s = 3600\n", "less than or equal to 5"),
    ("limit-outside-range", '[[vitals.limits]]\nid = "hr_high"\nabove = 1e300\n', "cannot alarm"),
    ("limit-below-floor", '[[vitals.limits]]\nid = "spo2_low"\nbelow = 0\n', "cannot alarm"),
    ("limit-delay-huge", '[[vitals.limits]]\nid = "hr_high"\ndelay_s = 1e9\n', "vitals.limits[hr_high].delay_s"),
    ("limit-delay-negative", '[[vitals.limits]]\nid = "hr_high"\ndelay_s = -5\n', "vitals.limits[hr_high].delay_s"),
    ("audio-pause-huge", "[alarms]\naudio_pause_s = 1e9\n", "alarms.audio_pause_s"),
    ("device-delay-huge", "[alarms]\ndevice_alarm_delay_s = { occlusion = 1e6 }\n", "device_alarm_delay_s.occlusion"),
    ("source-missing-zero", "[vitals]\nsource_missing_s = { spo2 = 0 }\n", "vitals.source_missing_s.spo2"),
    ("baud-huge", DEVICE + 'serial = { port = "/dev/x", baudrate = 12345678901 }\n', "devices.pump.serial.baudrate"),
    ("poll-zero", DEVICE + 'serial = { port = "/dev/x" }\npoll_interval_s = 0\n', "devices.pump.poll_interval_s"),
    ("weight-huge", "[patient_limits]\nweight_kg_max = 1e308\n", "patient_limits.weight_kg_max"),
    ("batch-beyond-int64", "[store]\nbatch_max = 99999999999999999999\n", "store.batch_max"),
    ("mqtt-port", "[mqtt]\nport = 70000\n", "mqtt.port"),
    ("keepalive-zero", "[mqtt]\nkeepalive_s = 0\n", "mqtt.keepalive_s"),
    ("concentration-negative", "[ketamine]\nconcentrations_mg_ml = [10.0, -1.0]\n", "ketamine.concentrations_mg_ml"),
    ("dose-unordered", "[ketamine.dose]\nlow_mg_kg_h = 3\n", "low_mg_kg_h < soft_max_mg_kg_h"),
    ("poss-unordered", "[sedation]\nposs_medium = 4\nposs_high = 3\n", "poss_medium must not be above"),
    ("range-unordered", "[vitals.physical_range]\nhr = { min = 300, max = 100 }\n", "min must be below max"),
    # wrong types
    ("limit-above-string", '[[vitals.limits]]\nid = "hr_high"\nabove = "120"\n', "valid number"),
    ("limit-above-bool", '[[vitals.limits]]\nid = "hr_high"\nabove = true\n', "valid number"),
    ("enabled-string", '[[vitals.limits]]\nid = "hr_high"\nenabled = "no"\n', "valid boolean"),
    ("priority-unknown", '[[vitals.limits]]\nid = "hr_high"\npriority = "urgent"\n', "vitals.limits[hr_high].priority"),
    ("vital-unknown", '[[vitals.limits]]\nid = "hr_high"\nvital = "pulse_ox"\n', "vitals.limits[hr_high].vital"),
    ("care-area-int", "[bed]\ncare_area = 3\n", "bed.care_area"),
    ("treatments-float", "[course]\ntreatments_per_year_max = 1.5\n", "valid integer"),
    ("mqtt-enabled-string", '[mqtt]\nenabled = "yes"\n', "mqtt.enabled"),
    ("vitals-not-table", "vitals = 5\n", "vitals"),
    ("limits-not-list", '[vitals]\nlimits = "all"\n', "vitals.limits"),
    ("limits-not-tables", "[vitals]\nlimits = [1, 2]\n", "not a table"),
    ("checklist-kind", '[[checklist]]\nid = "pregnancy"\nkind = "maybe"\n', "checklist[pregnancy].kind"),
    # unknown keys
    ("limit-typo", '[[vitals.limits]]\nid = "hr_high"\nabvoe = 130\n', "unknown key"),
    ("section-unknown", "[alarm]\naudio_pause_s = 60\n", "unknown key"),
    ("key-unknown", "[vitals]\nstale_after = 5\n", "vitals.stale_after: unknown key"),
    # empty lists and strings
    ("limits-empty", "[vitals]\nlimits = []\n", "enabled = false"),
    ("checklist-empty", "checklist = []\n", "checklist = []"),
    ("concentrations-empty", "[ketamine]\nconcentrations_mg_ml = []\n", "ketamine.concentrations_mg_ml"),
    ("port-empty", DEVICE + 'serial = { port = "" }\n', "devices.pump.serial.port"),
    ("state-dir-empty", '[store]\nstate_dir = ""\n', "store.state_dir"),
    ("socket-empty", '[dashboard]\nsocket = ""\n', "dashboard.socket"),
    # ids: missing, duplicated, not a string; a single new entry that is incomplete
    ("limit-no-id", '[[vitals.limits]]\nvital = "hr"\nabove = 100\n', "has no id"),
    ("limit-id-int", "[[vitals.limits]]\nid = 5\n", "has no id"),
    ("limit-duplicate", '[[vitals.limits]]\nid = "hr_high"\nabove = 130\n[[vitals.limits]]\nid = "hr_high"\nabove = 140\n',
     "given twice"),
    ("checklist-no-id", '[[checklist]]\ntext = "Allergic?"\n', "has no id"),
    ("single-new-limit-incomplete", '[[vitals.limits]]\nid = "hr_very_high"\nvital = "hr"\nabove = 170\n',
     "vitals.limits[hr_very_high].delay_s: required"),
    ("limit-both-bounds", '[[vitals.limits]]\nid = "hr_high"\nbelow = 40\n', "exactly one of"),
    # other values
    ("bed-id", '[bed]\nid = "bed 7"\n', "bed.id = 'bed 7'"),
    ("timezone", '[bed]\ntimezone = "Mars/Olympus_Mons"\n', "bed.timezone"),
    ("store-url", '[store]\nurl = "mysql://db/monitord"\n', "store.url"),
    ("register-map-missing", DEVICE + 'serial = { port = "/dev/x" }\nregister_map = "/nonexistent/pump-map.toml"\n',
     "devices.pump.register_map"),
    # not a configuration at all
    ("not-toml", "[bed\n", "not valid TOML"),
    ("deep-nesting", "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


def check_refused(path: Path, fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["check-config", str(path)], ["run", "-c", str(path)]):
        code, text = run_cli(argv, capsys)
        assert code == 2, f"{argv[0]}: exit {code}\n{text}"
        assert "Traceback" not in text
        assert str(path) in text, f"{argv[0]}: message does not name the file:\n{text}"
        assert fragment in text, f"{argv[0]}: {fragment!r} not in:\n{text}"


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "text", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_malformed_config_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 name: str, text: str, fragment: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    check_refused(path, fragment, capsys)


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("missing", lambda p: p / "absent.toml", "no such file"),
        ("directory", lambda p: p, "is a directory"),
        ("not-utf8", lambda p: (p / "latin1.toml", (p / "latin1.toml").write_bytes(b'[bed]\nid = "b\xe9d"\n'))[0],
         "not UTF-8"),
    ],
)
def test_unreadable_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: Any,
                                        fragment: str) -> None:
    check_refused(make(tmp_path), fragment, capsys)


def test_valid_site_file_passes_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[bed]\nid = "bed-7"\ncare_area = "icu"\n')
    code, text = run_cli(["check-config", str(path)], capsys)
    assert code == 0, text
    assert "OK (bed bed-7, care area icu)" in text


# -- generated configurations ----------------------------------------------------------------

NASTY = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(), st.text(max_size=8), st.just([]), st.lists(st.floats(), max_size=3), st.just({}),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf of the defaults, entries of keyed lists addressed by their id."""
    out: list[tuple[Any, ...]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key)) or [(*prefix, key)]
    elif isinstance(data, list) and data and all(isinstance(e, dict) and "id" in e for e in data):
        for entry in data:
            out += [(*prefix, ("id", entry["id"]), key) for key in entry if key != "id"]
    return out


def _defaults() -> dict[str, Any]:
    import tomllib

    from monitord.config import DEFAULTS_PATH

    return tomllib.loads(DEFAULTS_PATH.read_text())


LEAVES = _paths(_defaults())


def _override(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path):
        # a keyed-list entry becomes [[...]] with its id and the changed key
        out = [{"id": part[1], **out}] if isinstance(part, tuple) else {part: out}
    return out  # type: ignore[no-any-return]


def _floats(obj: Any) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in _floats(v)]
    if isinstance(obj, list | tuple):
        return [f for v in obj for f in _floats(v)]
    return []


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES), NASTY)
def test_generated_configs_are_valid_or_refused_with_a_message(path: tuple[Any, ...], value: Any) -> None:
    """One leaf of the defaults replaced by an arbitrary value: either ConfigError, or a config
    in which every number is finite and every vital limit can still fire."""
    try:
        cfg = load_config(overrides=_override(path, value))
    except ConfigError as exc:
        assert "invalid configuration" in str(exc)
        return
    assert all(math.isfinite(f) for f in _floats(cfg.model_dump()))
    for lim in cfg.vitals.limits:
        rng = cfg.vitals.physical_range[lim.vital]
        bound = lim.above if lim.above is not None else lim.below
        assert bound is not None and rng.min <= bound <= rng.max


@pytest.mark.parametrize(
    ("name", "prepare", "fragment"),
    [
        ("state-dir-under-a-file", lambda d: (d / "state").write_text(""), "cannot use the state directory"),
        ("database-is-a-directory", lambda d: (d / "state" / "monitord.db").mkdir(parents=True),
         "cannot open the local database"),
    ],
)
def test_valid_config_on_an_unusable_state_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       name: str, prepare: Any, fragment: str) -> None:
    """The configuration is fine (check-config says OK) but the box is not: ``run`` still exits 2
    with a message, before monitoring could start on a store it cannot keep."""
    prepare(tmp_path)
    state_dir = tmp_path / "state" / "sub" if name == "state-dir-under-a-file" else tmp_path / "state"
    path = tmp_path / "site.toml"
    path.write_text(f'[store]\nstate_dir = "{state_dir}"\n[mqtt]\nenabled = false\n'
                    f'[dashboard]\nsocket = "{tmp_path / "d.sock"}"\n')
    assert run_cli(["check-config", str(path)], capsys)[0] == 0
    code, text = run_cli(["run", "-c", str(path)], capsys)
    assert code == 2, text
    assert fragment in text and "Traceback" not in text
