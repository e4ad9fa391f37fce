"""Start-up: a database already at the newest schema opens without loading alembic, and the
newest revision read from the migration files is alembic's own head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from monitord.store.database import alembic_config, head_revision

REPO = Path(__file__).resolve().parents[2]
OPEN = """
import sys
from monitord.config import load_config
from monitord.store.database import open_database, schema_revision
opened = open_database(load_config(overrides={{"store": {{"state_dir": {state!r}}}}}))
print(schema_revision(opened.engine), "alembic" in sys.modules)
"""


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_current_database_opens_without_alembic(tmp_path: Path) -> None:
    code = OPEN.format(state=str(tmp_path / "state"))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def run() -> list[str]:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run() == [head, "True"]  # created: migrated by alembic
    assert run() == [head, "False"]  # reopened: already at the head, alembic never imported
