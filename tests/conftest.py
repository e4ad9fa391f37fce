"""Suite-wide settings.

Property tests explore new random examples on every local run; under CI (``CI`` set) they are
derandomized so a run is repeatable, and no test depends on how fast the machine is.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
