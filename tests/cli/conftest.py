"""A recorded session in a SQLite store, made once per test module and copied for each test, and a
way to run ``monitord`` as a user does (a child process, from outside the checkout)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.store.conftest import Bed, make_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Recorded:
    config: Path  # a site file whose [store] state_dir holds the database
    db: Path


async def _record(state: Path) -> None:
    bed = Bed(make_config({"state_dir": str(state)}))
    await bed.start()
    bed.admit_and_start(pain=8)
    bed.run(600)
    bed.spo2 = 84.0  # a desaturation: vital.spo2_low
    bed.run(40)
    bed.spo2 = 97.0
    bed.run(600)
    bed.stop_and_discharge(pain=4)
    bed.flush()
    await bed.stop()


@pytest.fixture(scope="module")
def recorded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("recorded") / "state"
    asyncio.run(_record(state))
    return state


@pytest.fixture
def recorded(recorded_template: Path, tmp_path: Path) -> Recorded:
    state = tmp_path / "state"
    shutil.copytree(recorded_template, state)
    config = tmp_path / "site.toml"
    config.write_text(f'[store]\nstate_dir = "{state}"\n')
    return Recorded(config, state / "monitord.db")


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a person at a terminal: not under systemd, no width forced."""
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "COLUMNS", "LINES")}
    return env | extra


def monitord(*args: str, cwd: Path | None = None, timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``monitord ARGS`` as a child process, from a directory outside the checkout."""
    return subprocess.run([sys.executable, "-m", "monitord.cli", *args], cwd=cwd or "/", env=env or user_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
