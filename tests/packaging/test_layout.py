"""How the repository becomes one package: drivers/, simulators/ and scenarios/ stay top-level
folders but are imported (and installed) inside ``monitord``; one name per module, so no module is
ever loaded twice; package data the commands need is inside the package; every runtime dependency
has an upper bound, and what is installed here lies within the bounds."""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

import monitord
from monitord.commands import REFERENCE_DIR
from monitord.config import load_config
from monitord.doctor import EXAMPLE_CONFIG
from monitord.rules import build_rules
from monitord.scenario import LIBRARY_DIR, library

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LINKED = {"drivers": "drivers", "simulators": "simulators", "scenarios": "scenarios"}


def test_the_folders_are_linked_into_the_package() -> None:
    package = Path(monitord.__file__).parent
    for inside, folder in LINKED.items():
        link = package / inside
        assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve(), inside
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {
        "": ".", "monitord.drivers": "drivers", "monitord.simulators": "simulators"}
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["monitord*"]


def test_nothing_imports_drivers_or_simulators_by_their_folder_names() -> None:
    """``import drivers`` would work from a checkout only, and load a second copy of each module
    (two ``LinkLost`` classes, two loggers): everything says ``monitord.drivers``."""
    offenders = []
    for folder in ("monitord", "drivers", "simulators", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if any(part in LINKED for part in path.relative_to(ROOT).parts[1:-1]) and folder == "monitord":
                continue  # the links themselves: the same files as drivers/ and simulators/
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in ("drivers", "simulators")]
    assert offenders == []


def test_what_the_commands_read_is_package_data() -> None:
    assert LIBRARY_DIR.is_relative_to(Path(monitord.__file__).parent) and len(library()) >= 40
    assert (LIBRARY_DIR / "demo.toml").is_file()
    assert EXAMPLE_CONFIG.is_file() and load_config(EXAMPLE_CONFIG).bed.id
    assert (ROOT / "config" / "monitord.example.toml").resolve() == EXAMPLE_CONFIG.resolve()
    cited = {word.strip("(),;'") for r in build_rules(load_config()) for word in r.source.split()
             if word.strip("(),;'").endswith(".md")}
    assert cited and {p.name for p in REFERENCE_DIR.glob("*.md")} >= cited
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["monitord"]
    assert {"scenarios/*.toml", "reference/*.md", "defaults/*.toml"} <= set(data)


def test_every_runtime_dependency_has_an_upper_bound_and_the_installed_one_is_within() -> None:
    project = PYPROJECT["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    extras = [Requirement(r) for name, reqs in project["optional-dependencies"].items() if name != "dev" for r in reqs]
    for req in runtime + extras:  # an extra (postgres, ...) is installed on a box too
        assert any(s.operator in ("<", "<=", "~=", "==") for s in req.specifier), f"{req} has no upper bound"
    for req in runtime:
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is outside {req}"


def test_the_snapshot_pin_is_a_dev_constraint_and_the_licence_an_spdx_expression() -> None:
    project = PYPROJECT["project"]
    textual = [Requirement(r) for r in project["dependencies"] if r.startswith("textual")]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"] if r.startswith("textual")]
    assert textual and str(textual[0].specifier) in (">=8.2,<9", "<9,>=8.2")
    assert dev and dev[0].specifier.contains("8.2.9") and not dev[0].specifier.contains("8.3.0")
    assert project["license"] == "Apache-2.0"
