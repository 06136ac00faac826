"""Moves accepted messages to the SMSC pool and feeds receipts back to the store.

Order is kept per destination: each destination is a lane that one worker at a time owns, so a
throttled or retried part delays only later messages to the same number. All parts of a message
go back to back on the same bind. Anything the store holds as unacknowledged is resubmitted on
start (at-least-once); a graceful stop finishes the messages in flight and leaves the rest queued.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import json
import logging
import random
import time
from collections import deque
from dataclasses import replace
from typing import Awaitable, Callable, Iterable, Sequence

from bridge.config import Config
from bridge.core.errors import ErrorName
from bridge.core.model import Address, Ingress, meta_strings
from bridge.core.policy import doubling_delay
from bridge.core.receipts import Receipt, smsc_id_keys
from bridge.core.states import MessageState, Retry, receipt_part_state, upstream_verdict
from bridge.metrics import OutboundMetrics
from bridge.ids import new_message_id
from bridge.outbound.smpp.client import MoMessage, NotBound, SmppBind, SubmitOutcomeUnknown, SubmitSm
from bridge.outbound.smpp.pool import SmscPool, first_bound
from bridge.store.base import InboundMessage, OutboundMessage, OutboundPart, ReceiptOutcome, Store

log = logging.getLogger("bridge.dispatcher")


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 §7.1.1 relative time `YYMMDDhhmmss000R`, at least one minute."""
    return _relative_validity(max(60, int(seconds)))


@functools.lru_cache(maxsize=4096)
def _relative_validity(total: int) -> str:
    # Cached: messages submitted in the same second with the same validity share the string.
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    years, days = divmod(days, 365)
    months, days = divmod(days, 30)
    return f"{min(years, 99):02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def decode_tlvs(tlvs_json: str) -> tuple[tuple[str, int | bytes], ...]:
    if tlvs_json == "[]":  # the common single-part case: skip the JSON parser per submit
        return ()
    out: list[tuple[str, int | bytes]] = []
    for name, value in json.loads(tlvs_json):
        out.append((name, bytes.fromhex(value["hex"]) if isinstance(value, dict) else int(value)))
    return tuple(out)


def worker_count(windows: Iterable[int]) -> int:
    """Enough workers to fill every window twice over (one window in flight while the other's
    acknowledgements commit). Also the bound on what a crash can send twice, in messages."""
    return max(16, 2 * sum(windows))


class Dispatcher:
    def __init__(self, config: Config, store: Store, *, metrics: OutboundMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.pool: SmscPool | None = None
        self._lanes: dict[str, deque[OutboundMessage]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: list[tuple[float, str, OutboundMessage]] = []
        self._schedule_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._stopping = False
        self.queue_depth = 0
        self.resubmitted_on_start = 0

    def attach(self, pool: SmscPool) -> None:
        self.pool = pool
        metrics_source: Callable[[], int] = lambda: self.queue_depth
        self.metrics.set_queue_depth_source(metrics_source)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        pending = await self.store.load_pending()
        self.resubmitted_on_start = sum(1 for m in pending if m.state is not MessageState.SCHEDULED)
        if pending:
            log.info("restart: %d unacknowledged messages to (re)submit", len(pending))
        self.enqueue(pending)
        assert self.pool is not None, "attach() the pool before start()"
        workers = worker_count(b.config.window for b in self.pool.binds.values())
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(workers)]
        self._tasks.append(loop.create_task(self._scheduler()))

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking new messages; let the ones being sent finish (bounded), then stop."""
        self._stopping = True
        deadline = time.monotonic() + drain_timeout
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.store.flush()
        except Exception as exc:  # a dead store must not stop the shutdown (nothing to flush)
            log.error("stop: the store could not flush: %s", exc)

    # ------------------------------------------------------------------ intake

    def enqueue(self, messages: Sequence[OutboundMessage]) -> None:
        now = self.clock()
        for message in messages:
            self.queue_depth += 1
            if message.send_at is not None and message.send_at > now and \
                    message.state is MessageState.SCHEDULED:
                heapq.heappush(self._scheduled, (message.send_at, message.id, message))
                self._schedule_changed.set()
                continue
            lane = self._lanes.get(message.recipient)
            if lane is None:
                self._lanes[message.recipient] = deque((message,))
                self._ready.put_nowait(message.recipient)
            else:
                lane.append(message)

    async def _scheduler(self) -> None:
        while True:
            self._schedule_changed.clear()
            now = self.clock()
            due: list[OutboundMessage] = []
            while self._scheduled and self._scheduled[0][0] <= now:
                due.append(heapq.heappop(self._scheduled)[2])
            for message in due:
                self.queue_depth -= 1  # enqueue counts it again
                self.store.record_state(message.id, MessageState.QUEUED, at=now,
                                        detail="send_at reached")
                self.enqueue([replace(message, state=MessageState.QUEUED)])
            timeout = (self._scheduled[0][0] - now) if self._scheduled else 3600.0
            try:
                await asyncio.wait_for(self._schedule_changed.wait(), max(0.01, min(timeout, 60)))
            except asyncio.TimeoutError:
                pass

    async def _worker(self) -> None:
        while not self._stopping:
            destination = await self._ready.get()
            lane = self._lanes[destination]
            message = lane.popleft()
            self._busy += 1
            try:
                await self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the worker or lose the lane
                log.exception("message=%s delivery failed unexpectedly; left queued", message.id)
            finally:
                self._busy -= 1
                self.queue_depth -= 1
            if lane:
                self._ready.put_nowait(destination)
            else:
                del self._lanes[destination]

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, message: OutboundMessage) -> None:
        assert self.pool is not None
        if self.clock() >= message.expires_at:
            self.store.record_state(message.id, MessageState.EXPIRED, at=self.clock(),
                                    detail="validity ended before submission")
            log.info("expired id=%s: validity ended before submission", message.id)
            return
        policy = self.config.policy
        bind: SmppBind | None = None
        routes: list[SmppBind] | None = None  # looked up once per message
        source = Address(message.source_addr or "", message.source_ton, message.source_npi)
        destination = Address(message.recipient.lstrip("+"), message.dest_ton, message.dest_npi)
        recorded: Awaitable[object] | None = None
        for part in message.parts:
            if part.smsc_id is not None:
                continue  # acknowledged before a restart
            attempt = 0
            while True:
                now = self.clock()
                if now >= message.expires_at:
                    self.store.record_state(message.id, MessageState.EXPIRED, at=now,
                                            detail=f"validity ended at part {part.seq}/{part.total}")
                    log.info("expired id=%s: validity ended at part %d/%d", message.id, part.seq,
                             part.total)
                    return
                if bind is None or not bind.bound:
                    if routes is None:
                        routes = self.pool.candidates(message.recipient)
                    if not routes:
                        self.store.record_state(message.id, MessageState.FAILED, at=now,
                                                error=ErrorName.INVALID_DESTINATION.value,
                                                detail="no SMSC route for this number")
                        log.warning("failed id=%s: no SMSC route for this number", message.id)
                        return
                    bind = first_bound(routes)
                    if bind is None:  # routes exist but none is bound: wait, keep order
                        await asyncio.sleep(0.2)
                        continue
                started = time.monotonic()
                try:
                    result = await bind.submit(self._submit_sm(message, part, source,
                                                               destination, now))
                except NotBound:
                    bind = None
                    await asyncio.sleep(0.05)
                    continue
                except SubmitOutcomeUnknown as exc:
                    # The SMSC may have it; resubmitting risks a duplicate but never a loss.
                    attempt += 1
                    self.store.record_event(message.id, "retry", at=now,
                                            detail=f"part {part.seq}/{part.total}: {exc}")
                    log.warning("retry id=%s part=%d/%d smsc=%s: %s", message.id, part.seq,
                                part.total, bind.config.name, exc)
                    bind = None
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                latency = time.monotonic() - started
                status = result.command_status
                self.metrics.submit_result(bind.config.name, f"0x{status:02X}", latency)
                if status == 0 and result.message_id:
                    recorded = self.store.record_submitted(
                        message.id, part.seq, smsc=bind.config.name, smsc_id=result.message_id,
                        id_keys=smsc_id_keys(result.message_id, bind.config.id_format),
                        at=self.clock())
                    log.info("submitted id=%s part=%d/%d smsc=%s smsc_id=%s", message.id,
                             part.seq, part.total, bind.config.name, result.message_id)
                    break
                verdict = upstream_verdict(status if status else 0xFF)
                attempt += 1
                if verdict.retry is Retry.BACKOFF and attempt <= policy.retry_max:
                    self.store.record_event(message.id, "throttled", at=now,
                                            detail=f"part {part.seq}/{part.total} status "
                                                   f"0x{status:08X}, retry {attempt}")
                    log.info("throttled id=%s part=%d/%d smsc=%s status=0x%08X retry=%d",
                             message.id, part.seq, part.total, bind.config.name, status, attempt)
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                self.store.record_state(message.id, MessageState.FAILED, at=now,
                                        error=verdict.error.value,
                                        detail=f"part {part.seq}/{part.total}: submit_sm_resp "
                                               f"0x{status:08X} after {attempt} attempt(s)")
                log.warning("failed id=%s part=%d/%d smsc=%s error=%s: submit_sm_resp 0x%08X "
                            "after %d attempt(s)", message.id, part.seq, part.total,
                            bind.config.name, verdict.error.value, status, attempt)
                return
        if recorded is not None:
            # The worker takes its next message only once this one's acknowledgements are
            # durable (the writer commits in order, so the last covers every part). That bounds
            # what a crash can send twice to what the workers hold: in flight, or acknowledged
            # but not yet on disk.
            await recorded

    def _backoff(self, attempt: int) -> float:
        policy = self.config.policy
        ceiling = doubling_delay(attempt - 1, base_s=policy.retry_base_s,
                                 max_s=policy.retry_max_s)
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not crypto

    def _submit_sm(self, message: OutboundMessage, part: OutboundPart, source: Address,
                   destination: Address, now: float) -> SubmitSm:
        return SubmitSm(
            source=source,
            destination=destination,
            short_message=part.short_message,
            data_coding=message.data_coding,
            esm_class=message.esm_class,
            registered_delivery=message.registered_delivery,
            validity_period=relative_validity(message.expires_at - now),
            tlvs=decode_tlvs(part.tlvs_json),
        )

    # ------------------------------------------------------------------ upstream events

    def on_receipt(self, smsc: str, receipt: Receipt) -> asyncio.Future[None]:
        """Durable when the returned future completes: the SMPP client answers deliver_sm_resp
        only then. A plain function returning a future, not a coroutine, so the client needs
        no task per receipt."""
        bind = self.pool.binds.get(smsc) if self.pool else None
        fmt = bind.config.id_format if bind else "auto"
        part_state = receipt_part_state(receipt.stat, receipt.message_state)
        stored = asyncio.ensure_future(self.store.record_receipt(
            smsc=smsc, id_keys=smsc_id_keys(receipt.message_id, fmt), part_state=part_state,
            stat=receipt.stat, err=receipt.err, at=self.clock()))
        done: asyncio.Future[None] = stored.get_loop().create_future()
        stored.add_done_callback(functools.partial(
            self._receipt_stored, done, part_state.value if part_state else "interim", smsc,
            receipt))
        return done

    def _receipt_stored(self, done: asyncio.Future[None], state: str, smsc: str,
                        receipt: Receipt, stored: asyncio.Future[ReceiptOutcome]) -> None:
        smsc_id = receipt.message_id
        if stored.cancelled():
            done.cancel()
            return
        exc = stored.exception()  # read even when nobody waits: a failed write is logged
        if done.cancelled():
            if exc is not None:
                log.error("receipt for smsc_id=%s not stored: %s", smsc_id, exc)
            return
        if exc is not None:
            done.set_exception(exc)
            return
        try:
            self.metrics.receipt(state)
            outcome = stored.result()
            if outcome.matched:
                log.info("receipt id=%s smsc=%s smsc_id=%s stat=%s part=%s message=%s",
                         outcome.message_id, smsc, smsc_id, receipt.stat or "-", state,
                         outcome.message_state.value if outcome.message_state is not None
                         else "-")
            else:
                log.info("receipt for unknown smsc=%s smsc_id=%s kept until its submit_sm_resp "
                         "is stored", smsc, smsc_id)
        except Exception as error:  # as the coroutine did: a failure here fails the receipt
            done.set_exception(error)
            return
        done.set_result(None)

    async def on_mo(self, mo: MoMessage) -> None:
        """Store an SMS reply with the message it answers (the last one to that number inside
        the reply window); when that came by mail, the reply is queued to go back by mail in
        the same transaction."""
        now = self.clock()
        source = mo.source.e164
        smtp = self.config.smtp
        previous = await self.store.last_message_to(source, since=now - smtp.mo_reply_window_s)
        mail_reply = (previous is not None and previous.ingress is Ingress.SMTP
                      and smtp.mail_back and smtp.mo_replies
                      and bool(meta_strings(previous.meta_json).get("mail_from")))
        owner = self.config.mo_owner(mo.destination.e164)
        await self.store.record_inbound(InboundMessage(
            id=new_message_id(), smsc=mo.smsc, source=source, destination=mo.destination.e164,
            text=mo.text, received_at=mo.received_at,
            reply_to_message_id=previous.id if previous else None, mail_reply=mail_reply,
            account=owner.name if owner else None, push_url=owner.mo_url if owner else None))
        log.info("mo from=%s stored reply_to=%s%s", source, previous.id if previous else "-",
                 " (mailed back)" if mail_reply else "")

