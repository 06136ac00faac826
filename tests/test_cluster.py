"""The whole bridge on PostgreSQL: one instance end to end, then several instances on one
database (issue 17: fail-over and scale-out)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.core.model import Ingress
from bridge.core.states import MessageState
from bridge.intake.service import Recipient, SubmitRequest
from tests.conftest import make_config, running_bridge


async def test_one_instance_on_postgresql_end_to_end(tmp_path: Path, pg_url: str) -> None:
    config = make_config(tmp_path, store={"url": pg_url})
    async with running_bridge(config) as bridge:
        assert bridge.service is not None
        results = await bridge.service.submit(SubmitRequest(
            "demo", (Recipient("+447400123456"), Recipient("+447400123457")), "hello pg",
            Ingress.SOAP))
        ids = [r.message_id for r in results if r.message_id]
        assert len(ids) == 2
        for _ in range(200):
            views = await bridge.store.get_messages(ids)
            if all(v.state is MessageState.DELIVERED for v in views):
                break
            await asyncio.sleep(0.05)
        assert [v.state for v in views] == [MessageState.DELIVERED] * 2
        events = [e.state for e in await bridge.store.timeline(ids[0])]
        assert events[:2] == ["queued", "part_submitted"] and events[-1] == "delivered"
        health = await bridge.health()
        assert health["store"] == "ok" and health["status"] == "ok"
