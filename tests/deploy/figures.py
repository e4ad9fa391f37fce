"""Fault figures from tests, for ``bench/faults.py``: when ``MONITORD_FAULT_FIGURES`` names a
file, ``record`` appends one JSON line per measured fault (how many tries, how many the daemon
survived, how many records were lost) with the test case that measured it. Without it nothing
is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "MONITORD_FAULT_FIGURES"


def record(fault: str, tries: int, survived: int, lost: int, **detail: object) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]  # which case measured it
    line = {"fault": fault, "tries": tries, "survived": survived, "lost": lost, "test": test, **detail}
    with Path(path).open("a") as fh:
        fh.write(json.dumps(line) + "\n")
