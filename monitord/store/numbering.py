"""The bed's numbers, kept outside the database.

``seq`` and ``alarm_seq`` are reserved ahead of use in ``<state_dir>/numbering.json``, written
(and fsynced) before any event beyond the reservation is committed, a block at a time. So a
database deleted, emptied, replaced or restored from an older copy never makes numbering start
again: a restart continues after the reservation, every number stays unique for the bed, and
consumers that drop a repeated ``alarm_seq`` never drop a real alarm. The cost is a gap (at most
one block) after such a reset, announced by the ``store_reset`` event.

The file also names the database the numbers were committed to (``store_meta.database_id``)
and the highest seq known committed when it was written, which is how a restart tells a reset
database from its own.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "numbering.json"
# Reserved at a time: one fsynced write per ~half block. 4096 events are about half an hour of
# a bed (pump 1 Hz + monitor 1 Hz); 64 alarm transitions are days of a normal course.
SEQ_BLOCK = 4096
ALARM_BLOCK = 64


@dataclass(frozen=True, slots=True)
class Reserved:
    seq: int = 0  # every seq up to here may have been used
    alarm_seq: int = 0
    database_id: str | None = None  # the database the bed's events were last committed to
    committed_seq: int = 0  # committed to that database when this was written


class Numbering:
    """The reservation of one bed. Written by the store's writer thread (and at start)."""

    def __init__(self, state_dir: str | Path, bed_id: str) -> None:
        self.path = Path(state_dir) / FILENAME
        self.bed_id = bed_id
        self.reserved = Reserved()

    def load(self) -> Reserved:
        """The stored reservation (none if the file is absent; an unreadable file is logged)."""
        try:
            beds = json.loads(self.path.read_text(encoding="utf-8")).get("beds", {})
            b = beds.get(self.bed_id)
            if b is not None:
                self.reserved = Reserved(int(b["seq"]), int(b["alarm_seq"]), b.get("database_id"),
                                         int(b.get("committed_seq", 0)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("%s is unreadable (%s): numbering continues from the database alone", self.path, exc)
        return self.reserved

    def needs(self, seq: int, alarm_seq: int, database_id: str | None) -> bool:
        r = self.reserved
        return seq > r.seq - SEQ_BLOCK // 2 or alarm_seq > r.alarm_seq - ALARM_BLOCK // 2 \
            or database_id != r.database_id

    def ensure(self, seq: int, alarm_seq: int, database_id: str | None, committed_seq: int,
               force: bool = False) -> None:
        """Make sure ``seq`` and ``alarm_seq`` are reserved for ``database_id``; writes (and
        fsyncs) only when less than half a block is left, or with ``force`` (a clean stop
        records exactly what is committed). Raises ``OSError`` if it cannot."""
        if not force and not self.needs(seq, alarm_seq, database_id):
            return
        r = self.reserved
        new = Reserved(max(r.seq, seq + SEQ_BLOCK), max(r.alarm_seq, alarm_seq + ALARM_BLOCK), database_id,
                       max(committed_seq, 0))
        self._write(new)
        self.reserved = new

    def _write(self, new: Reserved) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            beds = doc.get("beds", {}) if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            beds = {}
        beds[self.bed_id] = {"seq": new.seq, "alarm_seq": new.alarm_seq, "database_id": new.database_id,
                             "committed_seq": new.committed_seq}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "beds": beds}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
