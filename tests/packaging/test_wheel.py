"""The wheel, as someone installs it: built from the repository's files, installed with its
dependencies into a fresh virtualenv in a temporary directory outside the checkout, and run from
there. It must bring everything its commands need, and put nothing but ``monitord`` into
site-packages. Dependencies come from the package index pip is configured with (its cache makes
repeated runs quick)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitord import __version__
from monitord.scenario import library

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900  # a cold pip cache downloads every dependency

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # a working directory outside the checkout
    wheel: Path

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JOURNAL_STREAM", "PYTHONHOME", "COLUMNS")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.home, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _source_copy(dest: Path) -> Path:
    """The files a clone of the repository has (tracked, plus new ones not ignored), links kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    src = dest / "src"
    for name in filter(None, listed):
        origin, copy = ROOT / name, src / name
        if not os.path.lexists(origin):
            continue  # deleted in the work tree
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, copy)
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT.resolve())
    src = _source_copy(base)
    dist = base / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False, cwd=base)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("monitord-*.whl"))
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    pip = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False, cwd=base)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    home = base / "home"
    home.mkdir()
    yield Installed(env_dir, home, wheel)


def test_version(installed: Installed) -> None:
    proc = installed.run("monitord", "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"monitord {__version__}", proc.stderr


def test_only_monitord_goes_into_site_packages(installed: Installed) -> None:
    proc = installed.run("pip", "show", "-f", "monitord")
    assert proc.returncode == 0, proc.stderr
    files = [line.strip() for line in proc.stdout.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {f.split("/")[0] for f in files if not f.startswith("../")}
    assert tops == {"monitord", f"monitord-{__version__}.dist-info"}, tops
    for wanted in ("monitord/drivers/base.py", "monitord/simulators/cli.py", "monitord/scenarios/demo.toml",
                   "monitord/defaults/monitord.example.toml", "monitord/reference/alarm-defaults.md"):
        assert wanted in files, wanted
    top_level = installed.venv.glob(f"lib/python*/site-packages/monitord-{__version__}.dist-info/top_level.txt")
    assert [p.read_text().split() for p in top_level] in ([], [["monitord"]])


def test_scenario_plays_the_shipped_library_and_fails_when_nothing_ran(installed: Installed) -> None:
    played = installed.run("monitord", "scenario", timeout=600)
    assert played.returncode == 0, played.stdout[-2000:] + played.stderr[-2000:]
    assert f"{len(library())} passed, 0 failed" in played.stdout
    empty = installed.home / "no-scenarios"
    empty.mkdir(exist_ok=True)
    nothing = installed.run("monitord", "scenario", str(empty))
    assert nothing.returncode != 0 and "no scenario files" in nothing.stderr
    assert "passed" not in nothing.stdout


def test_rules_and_their_sources(installed: Installed) -> None:
    proc = installed.run("monitord", "rules")
    assert proc.returncode == 0, proc.stderr
    assert "vital.spo2_low" in proc.stdout
    reference = Path(proc.stdout.splitlines()[-1].strip())  # where the texts the rules cite are
    assert reference.is_relative_to(installed.venv) and (reference / "alarm-defaults.md").is_file()
    markdown = installed.run("monitord", "rules", "--markdown")
    assert markdown.returncode == 0 and markdown.stdout.startswith("| id | priority |")


def test_the_shipped_example_configuration_checks(installed: Installed) -> None:
    example = next(installed.venv.glob("lib/python*/site-packages/monitord/defaults/monitord.example.toml"))
    proc = installed.run("monitord", "check-config", str(example))
    assert proc.returncode == 0 and "OK (bed ward3-bed07" in proc.stdout, proc.stdout + proc.stderr


def test_demo_runs_headless(installed: Installed) -> None:
    proc = installed.run("monitord", "demo", "--no-mqtt", "--duration", "15", timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "no dashboard here" in out  # not a terminal: it prints instead
    assert "SESSION admitted" in out and "READINGS HR " in out, out
    assert "Traceback" not in out + proc.stderr
