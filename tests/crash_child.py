"""A bridge process for the crash test: serves, and optionally pushes N messages through the
service, printing `ACCEPTED <id> <recipient>` only after each submit returned (durable)."""

from __future__ import annotations

import asyncio
import sys

from bridge.runtime.app import Bridge
from bridge.config import load_config
from bridge.core.model import Ingress
from bridge.intake.service import Recipient, SubmitRequest


async def run(config_path: str, count: int, batch: int) -> None:
    bridge = Bridge(load_config(config_path))
    await bridge.start()
    assert bridge.service is not None
    print("READY", flush=True)
    for start in range(0, count, batch):
        numbers = [f"+4474001{n:05d}" for n in range(start, min(count, start + batch))]
        results = await bridge.service.submit(SubmitRequest(
            account="crash", recipients=tuple(Recipient(n) for n in numbers),
            text=f"crash test {start}", ingress=Ingress.SOAP))
        lines = [f"ACCEPTED {r.message_id} {r.recipient}" for r in results if r.status == "accepted"]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    print("LOADED", flush=True)
    await asyncio.Event().wait()  # serve until killed


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
