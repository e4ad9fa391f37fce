"""A bed with its publisher in its own process, so a test can kill it abruptly (SIGKILL).

    python -m tests.mqtt.bed_process PORT BED_ID
Prints ``connected`` once the publisher's CONNACK arrived, then runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from tests.mqtt.conftest import Bed, bed_config


async def main(port: int, bed_id: str) -> None:
    bed = await Bed(bed_config(port, bed_id)).start()
    print("connected", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await bed.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
