"""A bed with its publisher in its own process, so a test can kill it abruptly (SIGKILL).

    python -m tests.mqtt.bed_process PORT BED_ID [STATE_DIR]
Prints ``connected`` once the publisher's CONNACK arrived, then runs until killed. Each line on
standard input ``fault`` or ``clear`` makes the pump report a device fault or clear it.
"""

from __future__ import annotations

import asyncio
import sys

from tests.mqtt.conftest import Bed, bed_config


async def main(port: int, bed_id: str, state_dir: str | None) -> None:
    bed = await Bed(bed_config(port, bed_id, state_dir=state_dir)).start()
    print("connected", flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() in ("fault", "clear"):
                bed.fault(line.strip() == "fault")
        await asyncio.Event().wait()
    finally:
        await bed.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
