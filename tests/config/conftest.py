"""Commands run in-process here install the logging set-up; each test gets the default back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitord.logs import reset_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()
