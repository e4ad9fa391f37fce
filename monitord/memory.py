"""Keep the daemon's resident memory small on a Pi (glibc only; elsewhere these do nothing).

- ``limit_arenas`` before any thread starts: glibc gives each thread that contends for malloc an
  arena of its own (up to 8 per core), each keeping freed memory. The daemon's few threads
  (store writer, MQTT network loop, short-lived workers) allocate little; two arenas serve them.
- ``settle`` once start-up is done: the garbage of imports and configuration (pydantic schema
  building, SQLAlchemy compilation) is collected, the survivors are moved out of the collector's
  way (``gc.freeze``: they are never freed and never scanned again), and free heap pages are
  returned to the system.

Together about 3 MB of a ~60 MB daemon (``bench/soak.py`` measures RSS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc <malloc.h>
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas() -> None:
    libc = _libc()
    if libc is not None and not libc.mallopt(M_ARENA_MAX, ARENAS):
        log.debug("mallopt(M_ARENA_MAX) refused")


def settle() -> None:
    gc.collect()
    gc.freeze()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
