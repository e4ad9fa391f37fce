"""monitord doctor --sound: the commissioning check that an alarm at this bedside is heard."""

from __future__ import annotations

import pytest

from monitord.buzzer import PATTERNS
from monitord.doctor import sound_test


def test_patterns_played_and_heard_is_ok(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TERM", "xterm")
    result = sound_test(None, ask=lambda q: "y")
    assert result.ok
    bells = capsys.readouterr().out.count("\a")
    assert bells == sum(PATTERNS[p].pulses for p in ("high", "medium", "low"))  # every pulse of every pattern


def test_not_heard_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    result = sound_test(None, ask=lambda q: "n")
    assert not result.ok and "not heard" in result.render()


def test_no_output_that_can_sound_is_a_problem_and_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERM", raising=False)
    asked: list[str] = []
    result = sound_test(None, ask=lambda q: asked.append(q) or "y")
    assert not result.ok and "no output can sound" in result.render() and asked == []
