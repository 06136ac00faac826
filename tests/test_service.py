"""Service rules that do not depend on an ingress: recipient limits and RCPT-time policy peeks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from bridge.core.errors import BridgeError, ErrorName
from bridge.service import Recipient, Service, SubmitRequest
from bridge.store import open_store
from bridge.store.base import AcceptOutcome, NewMessage
from tests.conftest import make_config


@pytest.mark.parametrize(("ingress", "limit"), [("smtp", 3), ("soap", 5)])
async def test_each_ingress_has_its_own_recipient_limit(tmp_path: Path, ingress: str,
                                                        limit: int) -> None:
    config = make_config(tmp_path, smtp={"max_recipients": 3}, soap={"max_recipients": 5})
    store = open_store(config.store, tmp_path)
    await store.open()
    try:
        service = Service(config, store)
        numbers = [f"+4474001237{n:02d}" for n in range(limit + 1)]
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", tuple(Recipient(n) for n in numbers),
                                               "hi", ingress))
        assert info.value.name is ErrorName.TOO_MANY_RECIPIENTS
        results = await service.submit(SubmitRequest(
            "demo", tuple(Recipient(n) for n in numbers[:limit]), "hi", ingress))
        assert [r.status for r in results] == ["accepted"] * limit
    finally:
        await store.close()


async def test_rcpt_check_peeks_without_consuming(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"flood_max": 2, "flood_gap_s": 30})
    store = open_store(config.store, tmp_path)
    await store.open()
    try:
        service = Service(config, store, clock=lambda: 1000.0)
        account = service.account("demo")
        assert account is not None
        for _ in range(5):  # peeking never uses up the subscriber's allowance
            service.check_recipient(account, "+447400123480")
        for text in ("a", "b"):
            [result] = await service.submit(SubmitRequest(
                "demo", (Recipient("+447400123480"),), text, "smtp"))
            assert result.status == "accepted"
        with pytest.raises(BridgeError) as info:
            service.check_recipient(account, "+447400123480")
        assert info.value.name is ErrorName.FLOOD
    finally:
        await store.close()


async def test_a_huge_text_is_refused_before_planning(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 10})
    store = open_store(config.store, tmp_path)
    await store.open()
    try:
        service = Service(config, store)
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", (Recipient("+447400123481"),),
                                               "€" * 1_000_000, "soap"))
        assert info.value.name is ErrorName.INVALID_MESSAGE and info.value.too_big
        assert info.value.detail == "1000000 characters need more than 10 parts"
        # At the bound the real planner decides, with the exact part count.
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", (Recipient("+447400123481"),),
                                               "€" * 1530, "soap"))
        assert info.value.detail == "needs 21 parts, max_parts is 10"  # 76 escape pairs a part
    finally:
        await store.close()


async def test_drained_waits_for_a_submit_in_flight(tmp_path: Path) -> None:
    """A graceful stop waits here before closing the store: the client is answered."""
    config = make_config(tmp_path)
    store = open_store(config.store, tmp_path)
    await store.open()
    release = asyncio.Event()
    real_accept = store.accept

    async def slow_accept(messages: Sequence[NewMessage], *, now: float) -> list[AcceptOutcome]:
        await release.wait()
        return await real_accept(messages, now=now)

    try:
        service = Service(config, store)
        store.accept = slow_accept  # type: ignore[method-assign]
        assert await service.drained(0.01)  # nothing in flight
        pending = asyncio.ensure_future(service.submit(
            SubmitRequest("demo", (Recipient("+447400123456"),), "hi", "smtp")))
        await asyncio.sleep(0)
        assert not await service.drained(0.05)
        release.set()
        assert await service.drained(5)
        assert [r.status for r in pending.result()] == ["accepted"]
    finally:
        await store.close()


async def test_truncate_cuts_a_too_long_text_and_stores_what_is_sent(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 1})
    store = open_store(config.store, tmp_path)
    await store.open()
    try:
        service = Service(config, store)
        huge = "word " * 200_000  # a megabyte: the cheap bound cuts it before any planning
        results = await service.submit(SubmitRequest(
            "demo", (Recipient("+447400123456"),), huge, "smtp", truncate=True))
        assert [(r.status, r.parts) for r in results] == [("accepted", 1)]
        (view,) = await store.get_messages([results[0].message_id or ""])
        assert view.parts == 1
        with pytest.raises(BridgeError) as info:  # without the flag: refused, as before
            await service.submit(SubmitRequest("demo", (Recipient("+447400123457"),), huge,
                                               "smtp"))
        assert info.value.too_big
    finally:
        await store.close()
