"""Moves accepted messages to the SMSC pool and feeds receipts back to the store.

Order is kept per destination: each destination is a lane that one worker at a time owns, so a
throttled or retried part delays only later messages to the same number. All parts of a message
go back to back on the same bind. Anything the store holds as unacknowledged is resubmitted on
start (at-least-once); a graceful stop finishes the messages in flight and leaves the rest queued.

An operator may cancel a message at any time (bridge.core.operator). Before the first part of
a message goes to an SMSC, its worker takes the store's fence (`Store.begin_submit`): in the
store's transaction either the cancel came first, and nothing of the message is sent, or the
fence did, and the cancel is refused. A submit the SMSC did not take (throttled, refused, no
bind) lets the fence go (`end_submit`) while no part is acknowledged; an outcome unknown keeps it.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import random
import time
from collections import deque
from dataclasses import replace
from enum import Enum
from typing import Any, Awaitable, Callable, Iterable, Sequence

from bridge.config import Config
from bridge.core.encoding import Encoding
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.health import Fault, submit_fault
from bridge.core.model import Ingress, meta_strings
from bridge.core.policy import doubling_delay
from bridge.core.receipts import Receipt, smsc_id_keys
from bridge.core.segmentation import SegmentPlan, decode_tlvs, plan_fits, plan_for_route
from bridge.core.states import MessageState, Retry, receipt_part_state, upstream_verdict
from bridge.metrics import OutboundMetrics
from bridge.ids import new_message_id
from bridge.outbound.smpp.client import (
    MoMessage,
    NotBound,
    OutOfRouting,
    SmppBind,
    SubmitOutcomeUnknown,
    SubmitSm,
    TryLater,
)
from bridge.outbound.attempt import (
    Delivery,
    Shape,
    new_reference,
    replanned,
    rereferenced,
)
from bridge.outbound.smpp.pool import SmscPool
from bridge.outbound.gate import RecordGate
from bridge.core.cluster import should_hold
from bridge.outbound.membership import HOLD_MAX, InstanceView, Membership, default_name, holders
from bridge.store.base import (
    InboundMessage,
    MoPart,
    NewPart,
    OutboundMessage,
    OutboundPart,
    ReceiptOutcome,
    Store,
    StoreRefused,
    StoreUnavailable,
)

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


#: How long a starting dispatcher waits for its binds before it claims (it claims what they
#: can send; later claims see binds that came up later).
START_BIND_WAIT_S = 3.0
#: How long the parts of a concatenated inbound SMS are waited for, and how often checked.
MO_REASSEMBLY_S = 600.0
MO_SWEEP_S = 30.0


def worker_count(windows: Iterable[int]) -> int:
    """Enough workers to fill every window twice over (one window in flight while the other's
    acknowledgements commit). Also the bound on what a crash can send twice, in messages."""
    return max(16, 2 * sum(windows))


_WAIT = object()  # `_bind_for`: routes exist, none is bound and in routing right now


class _Step(Enum):
    SENT = "sent"  # the part is with the SMSC
    DONE = "done"  # every part is, or the message ended (recorded)


def _first_admitted(binds: list[SmppBind]) -> SmppBind | None:
    """The fail-over rule: the first bind that is up and that its health lets through."""
    return next((b for b in binds if b.bound and b.health.admit()), None)


class Dispatcher:
    def __init__(self, config: Config, store: Store, *, metrics: OutboundMetrics,
                 clock: Callable[[], float] = time.time, exclusive: bool = True) -> None:
        """`exclusive`: no other outbound side runs on this store (a SQLite file)."""
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
        self._encodings = tuple(Encoding(e) for e in config.policy.auto_encodings)
        self.gate = RecordGate(self._heartbeat_once)
        self._pausing: set[asyncio.Task[None]] = set()
        self.membership = Membership(
            store, self.gate, name=config.store.instance or default_name(),
            lease_s=config.store.lease_s, exclusive=exclusive, clock=clock,
            bound_smscs=self._bound_smscs, take=self.enqueue, held=lambda: self.queue_depth,
            drop_unstarted=self._drop_unstarted, info=self._info, on_peers=self._on_peers)

    def attach(self, pool: SmscPool) -> None:
        self.pool = pool
        metrics_source: Callable[[], int] = lambda: self.queue_depth
        self.metrics.set_queue_depth_source(metrics_source)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Workers first, then what waits in the store: claimed by this instance (after a
        restart: what the previous run held and never had acknowledged)."""
        assert self.pool is not None, "attach() the pool before start()"
        workers = worker_count(b.config.window for b in self.pool.binds.values())
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(workers)]
        self._tasks.append(loop.create_task(self._scheduler()))
        self._tasks.append(loop.create_task(self._mo_sweeps()))
        await self.membership.join()  # a heartbeat, and which limited binds are this one's
        await self.pool.wait_bound(START_BIND_WAIT_S)  # claims take what the binds can send
        await self.membership.start()
        self.resubmitted_on_start = self.membership.claimed
        if self.resubmitted_on_start:
            log.info("start: %d unacknowledged messages claimed to (re)submit",
                     self.resubmitted_on_start)

    @property
    def instance(self) -> str:
        return self.membership.id

    def owner(self) -> str | None:
        """Who holds what this instance accepts: itself, while it can hold more."""
        return self.membership.id if self.queue_depth < HOLD_MAX else None

    def able(self) -> tuple[str, ...] | None:
        """The SMSCs this instance can send to now: what it accepts for the others waits to
        be claimed by their holders (`[[smsc]] cluster_binds`). None: any."""
        if self.pool is None:
            return None
        return tuple(name for name, bind in self.pool.binds.items() if bind.holding)

    def _bound_smscs(self) -> list[str]:
        return [name for name, bind in self.pool.binds.items() if bind.bound] \
            if self.pool is not None else []

    def _info(self) -> dict[str, object]:
        holding = [name for name, bind in self.pool.binds.items() if bind.holding] \
            if self.pool is not None else []
        return {"queue_depth": self.queue_depth, "binds": self._bound_smscs(),
                "holding": holding}

    def _on_peers(self, peers: Sequence[InstanceView]) -> None:
        """Every heartbeat, with every instance's picture: each bind takes its share of its
        SMSC's max_tps among the live instances bound, and an SMSC that allows fewer binds
        than there are instances is held by the ones core.cluster.should_hold names."""
        if self.pool is None:
            return
        bound = holders(peers)
        live = [p.id for p in peers if p.alive]
        for name, bind in self.pool.binds.items():
            bind.share_tps(bound.get(name, 1))
            limit = bind.config.cluster_binds
            if limit <= 0:
                continue
            holding = [p.id for p in peers if p.alive and name in p.holding]
            if should_hold(self.membership.id, limit=limit, live=live, holding=holding):
                bind.resume()
            elif bind.holding:
                task = asyncio.get_running_loop().create_task(bind.pause())
                self._pausing.add(task)
                task.add_done_callback(self._pausing.discard)

    def _drop_unstarted(self) -> int:
        """Forget every held message no worker has begun (see bridge.outbound.membership)."""
        dropped = sum(len(lane) for lane in self._lanes.values()) + len(self._scheduled)
        for lane in self._lanes.values():
            lane.clear()
        self._scheduled.clear()
        self.queue_depth -= dropped
        return dropped

    def forget(self, ids: Sequence[str]) -> int:
        """Messages an operator cancelled through this instance: out of the lanes and the
        schedule now, so that what this dispatcher holds counts them no more (a worker that
        has one already finds the store's fence closed). How many were dropped."""
        gone = set(ids)
        dropped = 0
        for lane in self._lanes.values():
            kept = [m for m in lane if m.id not in gone]
            dropped += len(lane) - len(kept)
            if len(kept) != len(lane):
                lane.clear()
                lane.extend(kept)
        scheduled = [entry for entry in self._scheduled if entry[1] not in gone]
        dropped += len(self._scheduled) - len(scheduled)
        if len(scheduled) != len(self._scheduled):
            heapq.heapify(scheduled)
            self._scheduled[:] = scheduled
        self.queue_depth -= dropped
        return dropped

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking new messages; let the ones being sent finish (bounded), then stop."""
        self._stopping = True
        deadline = time.monotonic() + drain_timeout
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.membership.stop()
        await self.gate.stop()
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
        # Not `while True`: woken (a scheduled message came) and cancelled by stop() in one
        # iteration, Python 3.11's wait_for returns the wake-up and the cancel is lost.
        while not self._stopping:
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

    async def _heartbeat_once(self) -> None:
        await self.membership.heartbeat_once()

    async def _worker(self) -> None:
        while not self._stopping:
            destination = await self._ready.get()
            lane = self._lanes.get(destination)
            if not lane:  # emptied by _drop_unstarted
                self._lanes.pop(destination, None)
                continue
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
                self._lanes.pop(destination, None)

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, message: OutboundMessage) -> None:
        """Every part not yet acknowledged, in order, on one bind within the part deadline;
        the message again whole when that cannot hold; then the records of what the SMSC
        acknowledged, durable before the worker moves on."""
        delivery = Delivery(message)
        try:
            if self.clock() >= message.expires_at:
                await self._end(delivery, MessageState.EXPIRED, None,
                                "validity ended before submission")
                return
            assert self.pool is not None
            delivery.resume(self.pool.binds, self.clock())
            while True:
                reason = await self._attempt(delivery)
                if reason is None or not await self._restart(delivery, reason):
                    return
        finally:
            # The worker takes its next message only once this one's acknowledgements are
            # durable. That bounds what a crash can send twice to what the workers hold: in
            # flight, or acknowledged but not yet on disk.
            await self._settle(delivery)

    async def _attempt(self, delivery: Delivery) -> str | None:
        """The parts of one attempt, in order: None when every one is acknowledged or the
        message ended (recorded); else why it must go again whole."""
        while delivery.next_part() is not None:
            outcome = await self._send_next(delivery)
            if outcome is _Step.DONE:
                return None
            if isinstance(outcome, str):
                return outcome
        return None

    async def _restart(self, delivery: Delivery, reason: str) -> bool:
        """Abandon the attempt: the message goes again whole on the next route chosen (new
        parts, stored before they go), or fails once it has been sent again retry_max
        times. False when it ended."""
        message = delivery.message
        limit = self.config.policy.retry_max
        if delivery.restarts >= limit:
            await self._end(delivery, MessageState.FAILED, ErrorName.INTERNAL_ERROR,
                            f"{reason}; sent again whole {limit} time(s), given up")
            return False
        delivery.abandon(reason)
        log.warning("restart id=%s (%d/%d): %s", message.id, delivery.restarts, limit,
                    delivery.restart_reason)
        if self._other_route(delivery, None) is None:
            await asyncio.sleep(self._backoff(delivery.restarts))
        return True

    async def _send_next(self, delivery: Delivery) -> _Step | str:
        """Submit the next part until the SMSC takes it (SENT); DONE once the message ended
        (recorded); why it must go again whole. Throttling and unknown outcomes back off."""
        attempt = 0
        outcome: _Step | str | None
        while True:
            chosen = await self._bind_for_part(delivery)
            if not isinstance(chosen, SmppBind):
                return chosen
            part = delivery.next_part()
            assert part is not None
            await self.gate.wait_open()  # nothing goes out that the store cannot record
            fence = await self._fence(delivery)
            if fence is None:
                continue  # the store could not say: the gate is closed, wait for it
            if not fence:
                return _Step.DONE  # cancelled (or ended) before anything went: nothing sent
            now, started = self.clock(), time.monotonic()
            try:
                result = await chosen.submit(self._submit_sm(delivery, part, now),
                                             within_s=self._time_left(delivery, now))
            except NotBound as exc:
                self._unfence(delivery)
                if delivery.pinned:
                    return f"part {part.seq}/{part.total} not sent on smsc={chosen.name}: {exc}"
                delivery.bind = None
                if not isinstance(exc, OutOfRouting):  # else another route takes it at once
                    await asyncio.sleep(0.05)
                continue
            except SubmitOutcomeUnknown as exc:
                attempt += 1
                outcome = await self._unknown(delivery, part, chosen, exc, attempt)
            else:
                status = result.command_status
                self.metrics.submit_result(chosen.name, f"0x{status:02X}",
                                           time.monotonic() - started)
                if status == 0 and result.message_id:
                    self._record_submit(delivery, part, chosen, result.message_id)
                    delivery.acknowledged(chosen, part.seq, result.message_id, now)
                    return _Step.SENT
                attempt += 1
                self._unfence(delivery)
                outcome = await self._refused(delivery, part, chosen, status, attempt)
            if outcome is not None:
                return outcome

    async def _bind_for_part(self, delivery: Delivery) -> SmppBind | _Step | str:
        """The bind the next part goes on: the pinned one while it can still take it in
        time; else a route in routing, the message planned for it when needed. DONE when
        the message ended (expired, unroutable; recorded), or why it goes again whole."""
        message = delivery.message
        while True:
            now = self.clock()
            if now >= message.expires_at:
                part = delivery.next_part()
                await self._end(delivery, MessageState.EXPIRED, None, "validity ended at part "
                                f"{part.seq if part else '-'}/{len(message.parts)}")
                return _Step.DONE
            if delivery.pinned:
                return self._pinned_bind(delivery, now)
            bind = self._bind_for(delivery)
            if bind is None:
                routed = bool(delivery.routes)
                await self._end(delivery, MessageState.FAILED,
                                ErrorName.INVALID_MESSAGE if routed
                                else ErrorName.INVALID_DESTINATION,
                                "no route can carry this message" if routed
                                else "no SMSC route for this number")
                return _Step.DONE
            if bind is _WAIT:  # routes exist but none is bound and in routing: wait, keep order
                await asyncio.sleep(0.2)
                continue
            assert isinstance(bind, SmppBind)
            fitted = await self._fit(delivery, bind)
            if fitted is not None:
                return fitted
            if delivery.bind is bind:
                return bind

    def _pinned_bind(self, delivery: Delivery, now: float) -> SmppBind | str:
        """The bind this attempt's parts went on, or why the message must go again whole."""
        bind = delivery.bind
        assert bind is not None and delivery.first_at is not None
        part = delivery.next_part()
        where = f"part {part.seq}/{part.total}" if part else "a part"
        deadline = self.config.policy.part_deadline_s
        if now - delivery.first_at >= deadline:
            return f"{where} could not go within part_deadline_s ({deadline:g} s) of part 1"
        if not bind.bound:
            return f"{where}: smsc={bind.name} lost between parts"
        if not bind.health.available():
            return f"{where}: smsc={bind.name} taken out of routing between parts"
        return bind

    def _time_left(self, delivery: Delivery, now: float) -> float | None:
        if delivery.first_at is None:
            return None
        return delivery.first_at + self.config.policy.part_deadline_s - now

    def _past_deadline(self, delivery: Delivery, delay: float) -> bool:
        """A pinned attempt whose next part, after `delay`, would miss the part deadline."""
        left = self._time_left(delivery, self.clock())
        return left is not None and delay >= left

    async def _fence(self, delivery: Delivery) -> bool | None:
        """Take the store's fence before a part goes (module docstring): True when it is ours
        (or not needed), False when the message may not be sent any more, None when the
        store could not answer (the gate closes)."""
        if delivery.fenced:
            return True
        message = delivery.message
        try:
            ok = await self.store.begin_submit(message.id, self.membership.id)
        except StoreRefused as exc:
            log.error("id=%s fence refused by the store: %s", message.id, exc)
            return False
        except StoreUnavailable as exc:
            self.gate.failed(f"begin submit: {exc}")
            return None
        if not ok:
            log.info("not sent id=%s: cancelled (or ended) before any part went", message.id)
            return False
        delivery.fenced = True
        return True

    def _unfence(self, delivery: Delivery) -> None:
        """The SMSC did not take the submit: while no part is acknowledged, let the fence go
        (written in order before the next take; a lost one only keeps cancel refusing)."""
        if delivery.fenced and not delivery.records and not delivery.sent_ids and \
                delivery.restarts == 0 and \
                all(part.smsc_id is None for part in delivery.message.parts):
            delivery.fenced = False
            self.store.end_submit(delivery.message.id, self.membership.id)

    async def _unknown(self, delivery: Delivery, part: OutboundPart, bind: SmppBind,
                       exc: SubmitOutcomeUnknown, attempt: int) -> str | None:
        """No answer in time, or the connection went with the submit: the SMSC may have it;
        sending it again risks a duplicate but never a loss. Unpinned, another route first;
        pinned, the same bind within the deadline, else the message again whole."""
        message = delivery.message
        self._event(message.id, "retry", f"part {part.seq}/{part.total}: {exc}")
        log.warning("retry id=%s part=%d/%d smsc=%s: %s", message.id, part.seq, part.total,
                    bind.name, exc)
        delay = self._backoff(attempt)
        if delivery.pinned:
            if attempt > self.config.policy.retry_max or self._past_deadline(delivery, delay):
                return f"part {part.seq}/{part.total}: {exc}"
        else:
            delivery.avoid(bind)
        await asyncio.sleep(delay)
        return None

    async def _refused(self, delivery: Delivery, part: OutboundPart, bind: SmppBind,
                       status: int, attempt: int) -> _Step | str | None:
        """A submit_sm_resp with an error. The link's fault (core.health) with another route
        in routing: that route takes the message (again whole once a part went). Else
        upstream_verdict: None after the backoff of a transient error, the message again
        whole when that backoff would miss the part deadline, DONE once it failed
        (recorded)."""
        message = delivery.message
        known = status or 0xFF  # OK without a message id: the SMSC cannot say
        where = f"part {part.seq}/{part.total}"
        if submit_fault(known) is Fault.LINK and self._other_route(delivery, bind):
            self._event(message.id, "retry", f"{where} status 0x{status:08X}: "
                                             f"smsc={bind.name}'s fault, next route")
            if delivery.pinned:
                return f"{where}: smsc={bind.name} answered 0x{status:08X}"
            delivery.avoid(bind)
            return None
        verdict = upstream_verdict(known)
        retries_left = attempt <= self.config.policy.retry_max
        if verdict.retry is Retry.BACKOFF and delivery.pinned:
            delay = self._backoff(attempt)
            if not retries_left:
                return f"{where} throttled (0x{status:08X}) {attempt} times"
            if self._past_deadline(delivery, delay):
                return f"{where} throttled (0x{status:08X}) past part_deadline_s"
        if verdict.retry is Retry.BACKOFF and retries_left:
            delay = self._backoff(attempt)
            self._event(message.id, "throttled", f"{where} status 0x{status:08X}, "
                                                 f"retry {attempt}")
            log.info("throttled id=%s part=%d/%d smsc=%s status=0x%08X retry=%d", message.id,
                     part.seq, part.total, bind.name, status, attempt)
            await asyncio.sleep(delay)
            return None
        await self._end(delivery, MessageState.FAILED, verdict.error,
                        f"{where}: submit_sm_resp 0x{status:08X} after {attempt} attempt(s)",
                        smsc=bind.name)
        return _Step.DONE

    def _bind_for(self, delivery: Delivery) -> SmppBind | None | object:
        """The route this message takes: the one chosen for it while it stays bound and in
        routing, else the first of its routes (fail-over order, weights drawn once per
        message) that is bound and admitted by its health (a cooled link's probe included),
        preferring those it has not just failed on. None when no SMSC routes the number or
        none can carry the message; `_WAIT` while routes exist but none can take it now."""
        bind = delivery.bind
        if bind is not None and bind.bound and bind.health.available():
            return bind
        assert self.pool is not None
        if delivery.routes is None:
            message = delivery.message
            delivery.routes = self.pool.ordered(message.recipient, message.account,
                                                random.random())  # noqa: S311 - spreading
        usable = [b for b in delivery.routes if b.name not in delivery.unfit]
        if not usable:
            return None
        fresh = [b for b in usable if b.name not in delivery.avoided]
        delivery.bind = _first_admitted(fresh) or _first_admitted(usable)
        return delivery.bind if delivery.bind is not None else _WAIT

    def _other_route(self, delivery: Delivery, bind: SmppBind | None) -> SmppBind | None:
        """A route of this message other than `bind` that could take it now."""
        assert self.pool is not None
        routes = delivery.routes if delivery.routes is not None else self.pool.candidates(
            delivery.message.recipient, delivery.message.account)
        return next((b for b in routes if b is not bind and b.name not in delivery.avoided
                     and b.name not in delivery.unfit and b.bound and b.health.available()),
                    None)

    async def _fit(self, delivery: Delivery, bind: SmppBind) -> _Step | None:
        """Parts for `bind`: as stored when they fit its form and encodings (and no restart
        is pending), else stored anew before they go: the same with a new concatenation
        reference, or planned for its form. None when the parts are ready (the route stays
        chosen unless it cannot carry the message: then it is marked unfit); DONE when the
        message is no longer pending."""
        message = delivery.message
        assert self.pool is not None
        form = self.pool.routes.form(bind.name)
        shape = delivery.shape
        same = shape.wap or plan_fits(shape.concat, shape.encoding, form)
        if same and delivery.restart_reason is None:
            return None
        if same:
            reference = new_reference(shape.reference, shape.concat)
            parts = rereferenced(message, reference)
            data_coding, esm_class, encoding = message.data_coding, message.esm_class, \
                shape.encoding.value
            how = f"sent again whole on smsc={bind.name} with reference {reference}"
        else:
            plan = await self._plan_for(delivery, bind, shape)
            if plan is None:
                return None
            parts = replanned(plan)
            data_coding, esm_class, encoding = plan.data_coding, plan.esm_class, \
                plan.encoding.value
            how = f"planned for smsc={bind.name} ({form.concat.value}, {encoding}, " \
                  f"{len(parts)} part(s))"
        why = delivery.restart_reason
        return await self._store_parts(delivery, parts, data_coding, esm_class, encoding,
                                       f"{why}: {how}" if why else how)

    async def _plan_for(self, delivery: Delivery, bind: SmppBind,
                        shape: Shape) -> SegmentPlan | None:
        """The message planned anew for `bind`'s form from its stored text (read now, not
        with every message); None, with the route marked unfit, when it cannot carry it."""
        message = delivery.message
        assert self.pool is not None
        text = await self.gate.record(functools.partial(self.store.message_text, message.id))
        try:
            if text is None:
                raise BridgeError(ErrorName.INVALID_MESSAGE, "its text is gone")
            return plan_for_route(
                text, self.pool.routes.form(bind.name), auto=self._encodings,
                encoding=shape.encoding, flash=shape.flash, message_class=shape.message_class,
                max_parts=self.config.policy.max_parts,
                reference=new_reference(shape.reference, None))
        except BridgeError as exc:
            log.warning("id=%s cannot go on smsc=%s: %s", message.id, bind.name, exc.detail)
            delivery.unfit.add(bind.name)
            delivery.bind = None
            return None

    async def _store_parts(self, delivery: Delivery, parts: tuple[NewPart, ...],
                           data_coding: int, esm_class: int, encoding: str,
                           detail: str) -> _Step | None:
        """The new parts durable (after the abandoned attempt's records) before any goes."""
        message = delivery.message
        await self._settle(delivery)
        restarted = await self.gate.record(functools.partial(
            self.store.restart_message, message.id, parts, data_coding=data_coding,
            esm_class=esm_class, encoding=encoding, at=self.clock(), detail=detail))
        if not restarted:
            log.info("id=%s not sent again: it is no longer pending", message.id)
            return _Step.DONE
        log.info("restarted id=%s: %s", message.id, detail)
        delivery.take_parts(parts, data_coding=data_coding, esm_class=esm_class)
        return None

    def _record_submit(self, delivery: Delivery, part: OutboundPart, bind: SmppBind,
                       smsc_id: str) -> None:
        """Record the acknowledgement without waiting (parts go back to back); `_settle` makes
        sure it is durable. A failure closes the gate at once, not when it is awaited."""
        message = delivery.message
        write = functools.partial(
            self.store.record_submitted, message.id, part.seq, smsc=bind.config.name,
            smsc_id=smsc_id, id_keys=smsc_id_keys(smsc_id, bind.config.id_format),
            at=self.clock())
        future = asyncio.ensure_future(write())
        future.add_done_callback(self._record_done)
        if not delivery.records and all(p.smsc_id is None for p in message.parts):
            due = max(message.created_at, message.send_at or message.created_at)
            self.metrics.latency("accept_to_submit", self.clock() - due)
        delivery.records.append((future, write))
        log.info("submitted id=%s part=%d/%d smsc=%s smsc_id=%s", message.id, part.seq,
                 part.total, bind.config.name, smsc_id)

    def _record_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, StoreUnavailable) and not isinstance(exc, StoreRefused):
            self.gate.failed(str(exc))

    async def _settle(self, delivery: Delivery) -> None:
        """Every record of this message durable: one that failed is made again, in order,
        until the store takes it (the SMSC has that part: dropping the record would send it
        twice after a restart). One the store refuses for good is logged and left."""
        for future, write in delivery.records:
            try:
                await future
            except StoreRefused as exc:
                log.error("id=%s record refused by the store: %s", delivery.message.id, exc)
            except StoreUnavailable:
                try:
                    await self.gate.record(write)
                except StoreRefused as exc:
                    log.error("id=%s record refused by the store: %s", delivery.message.id,
                              exc)
        delivery.records.clear()

    async def _end(self, delivery: Delivery, state: MessageState, error: ErrorName | None,
                   detail: str, *, smsc: str = "") -> None:
        """The message failed or expired: recorded durably before the worker moves on."""
        message = delivery.message
        write = functools.partial(self.store.record_state, message.id, state, at=self.clock(),
                                  error=error.value if error is not None else None,
                                  detail=detail)
        try:
            await self.gate.record(write)
        except StoreRefused as exc:
            log.error("id=%s record refused by the store: %s", message.id, exc)
        where = f" smsc={smsc}" if smsc else ""
        if state is MessageState.EXPIRED:
            log.info("expired id=%s: %s", message.id, detail)
        else:
            log.warning("failed id=%s%s error=%s: %s", message.id, where,
                        error.value if error is not None else "-", detail)

    def _event(self, message_id: str, name: str, detail: str) -> None:
        """A timeline entry that changes no state: written in order, not waited for (a lost
        one costs a line of history, never a duplicate)."""
        self.store.record_event(message_id, name, at=self.clock(), detail=detail)

    def _backoff(self, attempt: int) -> float:
        policy = self.config.policy
        ceiling = doubling_delay(attempt - 1, base_s=policy.retry_base_s,
                                 max_s=policy.retry_max_s)
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not crypto

    def _submit_sm(self, delivery: Delivery, part: OutboundPart, now: float) -> SubmitSm:
        message = delivery.message
        return SubmitSm(
            source=delivery.source,
            destination=delivery.destination,
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
            if isinstance(exc, StoreUnavailable) and not isinstance(exc, StoreRefused):
                self.gate.failed(f"receipt: {exc}")
                exc = TryLater(str(exc))
            done.set_exception(exc)
            return
        try:
            self.metrics.receipt(state)
            outcome = stored.result()
            if outcome.submitted_at is not None and state != "interim":
                self.metrics.latency("submit_to_receipt", self.clock() - outcome.submitted_at)
            if outcome.matched:
                # The SMSC id as the submit line gave it (a receipt may write it in decimal
                # where the submit_sm_resp had hex); the receipt's own form beside it then.
                known = outcome.smsc_id or smsc_id
                log.info("receipt id=%s smsc=%s smsc_id=%s%s stat=%s part=%s message=%s",
                         outcome.message_id, smsc, known,
                         "" if known == smsc_id else f" receipt_id={smsc_id}",
                         receipt.stat or "-", state,
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
        the same transaction. A part of a concatenated SMS is kept by the store until its set
        is complete (whichever instance the other parts came through)."""
        inbound = await self._inbound(mo.smsc, mo.source.e164, mo.destination.e164, mo.text,
                                      mo.received_at)
        if mo.concat is None:
            stored: Awaitable[object] = self.store.record_inbound(inbound)
        else:
            ref, total, seq = mo.concat
            stored = self.store.record_mo_part(MoPart(
                smsc=mo.smsc, source=inbound.source, destination=inbound.destination, ref=ref,
                total=total, seq=seq, text=mo.text, received_at=mo.received_at), inbound)
        try:
            complete = await stored
        except StoreRefused:
            raise
        except StoreUnavailable as exc:
            self.gate.failed(f"inbound SMS: {exc}")
            raise TryLater(str(exc)) from exc  # 0x64: the SMSC delivers it again later
        if mo.concat is None or complete:
            self._log_mo(inbound)

    async def _inbound(self, smsc: str, source: str, destination: str, text: str,
                       received_at: float) -> InboundMessage:
        """The inbound SMS to store: routed as a reply to the last message sent to `source`
        inside the reply window (mailed back when that one came by mail), and pushed to the
        mo_url of the account owning `destination`."""
        smtp = self.config.smtp
        previous = await self.store.last_message_to(
            source, since=self.clock() - smtp.mo_reply_window_s)
        mail_reply = (previous is not None and previous.ingress is Ingress.SMTP
                      and smtp.mail_back and smtp.mo_replies
                      and bool(meta_strings(previous.meta_json).get("mail_from")))
        owner = self.config.mo_owner(destination)
        return InboundMessage(
            id=new_message_id(), smsc=smsc, source=source, destination=destination, text=text,
            received_at=received_at, reply_to_message_id=previous.id if previous else None,
            mail_reply=mail_reply, account=owner.name if owner else None,
            push_url=owner.mo_url if owner else None)

    @staticmethod
    def _log_mo(inbound: InboundMessage) -> None:
        log.info("mo from=%s stored reply_to=%s%s", inbound.source,
                 inbound.reply_to_message_id or "-", " (mailed back)" if inbound.mail_reply else "")

    async def _mo_sweeps(self) -> None:
        """Concatenated SMS whose parts stopped coming: after MO_REASSEMBLY_S, what arrived is
        stored with the gaps marked (each set by one instance)."""
        while True:
            await asyncio.sleep(MO_SWEEP_S)
            try:
                await self._give_up_stale_sets()
            except StoreUnavailable as exc:
                log.debug("mo sweep: %s", exc)

    async def _give_up_stale_sets(self) -> None:
        for mo_set in await self.store.stale_mo_sets(before=self.clock() - MO_REASSEMBLY_S,
                                                     limit=100):
            inbound = await self._inbound(mo_set.smsc, mo_set.source, mo_set.destination, "",
                                          mo_set.first_at)
            if await self.store.record_mo_partial(mo_set, inbound):
                log.warning("mo from=%s ref=%d incomplete (%d of %d parts) after %.0f s: "
                            "stored what arrived", mo_set.source, mo_set.ref,
                            len(mo_set.texts), mo_set.total, MO_REASSEMBLY_S)
