"""Service rules that do not depend on an ingress: recipient limits and RCPT-time policy peeks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.states import MessageState
from bridge.ids import new_message_id, random_reference
from bridge.core.meta import MetaKey
from bridge.core.model import Ingress
from bridge.intake.service import Recipient, Service, SubmitRequest
from bridge.runtime import open_store
from bridge.store.base import AcceptOutcome, NewMessage, Store
from bridge.store.rows import accept_rows, outbound_message
from tests.conftest import make_config


@contextlib.asynccontextmanager
async def opened(config: Config) -> AsyncIterator[Store]:
    """The config's store, open for the test's duration."""
    store = open_store(config.store, config.base_dir)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize(("ingress", "limit"), [(Ingress.SMTP, 3), (Ingress.SOAP, 5)])
async def test_each_ingress_has_its_own_recipient_limit(tmp_path: Path, ingress: Ingress,
                                                        limit: int) -> None:
    config = make_config(tmp_path, smtp={"max_recipients": 3}, soap={"max_recipients": 5})
    async with opened(config) as store:
        service = Service(config, store)
        numbers = [f"+4474001237{n:02d}" for n in range(limit + 1)]
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", tuple(Recipient(n) for n in numbers),
                                               "hi", ingress))
        assert info.value.name is ErrorName.TOO_MANY_RECIPIENTS
        results = await service.submit(SubmitRequest(
            "demo", tuple(Recipient(n) for n in numbers[:limit]), "hi", ingress))
        assert [r.status for r in results] == ["accepted"] * limit


async def test_rcpt_check_peeks_without_consuming(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"flood_max": 2, "flood_gap_s": 30})
    async with opened(config) as store:
        service = Service(config, store, clock=lambda: 1000.0)
        account = service.account("demo")
        assert account is not None
        for _ in range(5):  # peeking never uses up the subscriber's allowance
            await service.check_recipient(account, "+447400123480")
        for text in ("a", "b"):
            [result] = await service.submit(SubmitRequest(
                "demo", (Recipient("+447400123480"),), text, Ingress.SMTP))
            assert result.status == "accepted"
        with pytest.raises(BridgeError) as info:
            await service.check_recipient(account, "+447400123480")
        assert info.value.name is ErrorName.FLOOD


async def test_a_huge_text_is_refused_before_planning(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 10})
    async with opened(config) as store:
        service = Service(config, store)
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", (Recipient("+447400123481"),),
                                               "€" * 1_000_000, Ingress.SOAP))
        assert info.value.name is ErrorName.INVALID_MESSAGE and info.value.too_big
        assert info.value.detail == "1000000 characters need more than 10 parts"
        # At the bound the real planner decides, with the exact part count.
        with pytest.raises(BridgeError) as info:
            await service.submit(SubmitRequest("demo", (Recipient("+447400123481"),),
                                               "€" * 1530, Ingress.SOAP))
        assert info.value.detail == "needs 21 parts, max_parts is 10"  # 76 escape pairs a part


async def test_drained_waits_for_a_submit_in_flight(tmp_path: Path) -> None:
    """A graceful stop waits here before closing the store: the client is answered."""
    config = make_config(tmp_path)
    release = asyncio.Event()
    async with opened(config) as store:
        real_accept = store.accept

        async def slow_accept(messages: Sequence[NewMessage], *,
                              now: float) -> list[AcceptOutcome]:
            await release.wait()
            return await real_accept(messages, now=now)

        service = Service(config, store)
        store.accept = slow_accept  # type: ignore[method-assign]
        assert await service.drained(0.01)  # nothing in flight
        pending = asyncio.ensure_future(service.submit(
            SubmitRequest("demo", (Recipient("+447400123456"),), "hi", Ingress.SMTP)))
        await asyncio.sleep(0)
        assert not await service.drained(0.05)
        release.set()
        assert await service.drained(5)
        assert [r.status for r in pending.result()] == ["accepted"]


async def test_truncate_cuts_a_too_long_text_and_stores_what_is_sent(tmp_path: Path) -> None:
    config = make_config(tmp_path, policy={"max_parts": 1})
    async with opened(config) as store:
        service = Service(config, store)
        huge = "word " * 200_000  # a megabyte: the cheap bound cuts it before any planning
        results = await service.submit(SubmitRequest(
            "demo", (Recipient("+447400123456"),), huge, Ingress.SMTP, truncate=True))
        assert [(r.status, r.parts) for r in results] == [("accepted", 1)]
        (view,) = await store.get_messages([results[0].message_id or ""])
        assert view.parts == 1
        with pytest.raises(BridgeError) as info:  # without the flag: refused, as before
            await service.submit(SubmitRequest("demo", (Recipient("+447400123457"),), huge,
                                               Ingress.SMTP))
        assert info.value.too_big


class _CapturingStore:
    """Accepts everything at once and keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[NewMessage] = []

    async def accept(self, messages: Sequence[NewMessage], *, now: float) -> list[AcceptOutcome]:
        self.messages.extend(messages)
        return [AcceptOutcome(m.id, "accepted") for m in messages]

    async def limits_peek(self, account: str, recipients: Sequence[str],
                          **limits: float) -> list[str | None]:
        return [None] * len(recipients)


async def test_messages_carry_request_and_recipient_fields(tmp_path: Path) -> None:
    """What every recipient of a request shares is worked out once; each message still gets
    its own id, number, key, digest and meta, and the dispatcher's view of it (built in the
    store process) matches and survives the pipe."""
    config = make_config(tmp_path)
    store = _CapturingStore()
    service = Service(config, store, clock=lambda: 1000.0)
    requests = [
        SubmitRequest("demo", (Recipient("+447400123460"), Recipient("07400123461")), "hi",
                      Ingress.SOAP, reference="r1", callback_url="https://example.com/cb"),
        SubmitRequest("demo", (Recipient("+447400123462", "mid-1",
                                                 ((MetaKey.NOTIFY, "SUCCESS"),)),),
                      "x" * 400, Ingress.SMTP, sender="+447400000001",
                      meta=((MetaKey.MAIL_FROM, "a@b"),),
                      send_at=5000.0, validity_minutes=5, dlr=False),
        SubmitRequest("demo", (Recipient("+447400123463"),), "ünïcödé ✓", Ingress.SOAP, flash=True),
    ]
    for req in requests:
        results = await service.submit(req)
        assert all(r.status == "accepted" for r in results)
    accepted = store.messages
    assert len(accepted) == 4
    for message in accepted:
        [row] = accept_rows([message])
        out = outbound_message(row)
        assert pickle.loads(pickle.dumps(out)) == out  # it may cross to another process
        assert (out.id, out.recipient, out.parts[0].short_message) == (
            message.id, message.recipient, message.parts[0].short_message)
    first, second, third, fourth = store.messages
    assert (first.idempotency_key, second.idempotency_key) == ("ref:r1\x1f+447400123460",
                                                               "ref:r1\x1f+447400123461")
    assert first.callback_url == "https://example.com/cb"
    assert json.loads(first.meta_json) == {"reference": "r1"}  # a callback reports it
    assert third.idempotency_key == "mid-1" and third.registered_delivery == 0
    assert json.loads(third.meta_json) == {"mail_from": "a@b", "notify": "SUCCESS"}
    assert third.state is MessageState.SCHEDULED and third.send_at == 5000.0
    assert third.expires_at == 5000.0 + 300 and len(third.parts) == 3
    assert fourth.encoding == "ucs2" and first.dup_digest != second.dup_digest
    assert len({m.id for m in accepted}) == 4


def test_message_ids_are_unique_time_ordered_hex() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_message_id() for _ in range(3000)]  # several refills of the random pool
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids) and len(set(i[12:] for i in ids)) == len(ids)
    assert all(len(i) == 28 and int(i, 16) >= 0 for i in ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)
    assert ids == sorted(ids, key=lambda i: i[:12])
    assert all(0 <= random_reference() <= 0xFFFF for _ in range(1000))


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_message_id()  # the pool now holds random bytes the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_message_id()[12:].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != new_message_id()[12:]


async def test_a_destination_read_at_rcpt_time_is_not_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path)
    store = _CapturingStore()
    service = Service(config, store)  # type: ignore[arg-type]
    account = service.account("demo")
    assert account is not None
    address = await service.check_recipient(account, "07400123456")

    def read_again(*args: object) -> None:
        raise AssertionError("the number was read a second time")

    monkeypatch.setattr(service, "_destination", read_again)
    [result] = await service.submit(SubmitRequest(
        "demo", (Recipient(address.e164, destination=address),), "hi", Ingress.SMTP))
    assert result.status == "accepted" and store.messages[0].recipient == "+447400123456"


async def test_the_request_line_says_what_the_request_came_to(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Accepted only when something new was taken on; all refused is `refused`; a repeat of
    an idempotency key or a duplicate is `nothing new`, naming the ids it stands for. The
    accepted counter counts only what is new."""
    from bridge.intake.service import report_results
    from bridge.metrics import Metrics

    config = make_config(tmp_path, policy={"duplicate_window_s": 60})
    metrics = Metrics()

    async def send(numbers: tuple[str, ...], text: str, key: str | None = None) -> str:
        caplog.clear()
        results = await service.submit(SubmitRequest(
            "demo", tuple(Recipient(n) for n in numbers), text, Ingress.SOAP, reference=key))
        report_results(results, ingress=Ingress.SOAP, account="demo", metrics=metrics)
        [line] = [r.getMessage() for r in caplog.records if r.name == "bridge.soap"
                  and not r.getMessage().startswith("soap recipient refused")]
        return line

    async with opened(config) as store:
        service = Service(config, store)
        with caplog.at_level("INFO", logger="bridge.soap"):
            first = await send(("+447400123490", "12"), "hello")
            assert first.startswith("soap accepted account=demo ids=") and "refused=1" in first
            [new_id] = first.split("ids=")[1].split()[0].split(",")
            assert await send(("12", "+44"), "x") == "soap refused account=demo ids= refused=2"
            assert await send(("+447400123490",), "hello") == \
                f"soap nothing new account=demo ids= refused=0 duplicate_of={new_id}"
            keyed = await send(("+447400123491",), "keyed", key="k-1")
            [keyed_id] = keyed.split("ids=")[1].split()[0].split(",")
            assert await send(("+447400123491",), "keyed", key="k-1") == \
                f"soap nothing new account=demo ids= refused=0 repeated={keyed_id}"
    assert 'sms_bridge_accepted_total{ingress="soap"} 2.0' in metrics.render()[0].decode()
