"""This instance among the others on one store: its heartbeat, the messages it claims, and
what it lets go.

Several instances share one PostgreSQL database, each with its own outbound side; one SQLite
file has exactly one (bridge.runtime.child holds a file lock). Either way the rules are the
store's (Store.accept with an owner, Store.claim, Store.release):

- an instance holds what it accepted itself (unless order per number forbids), and claims
  the rest: what no live instance holds, due, routed to an SMSC it has bound, never a message
  to a number another live instance still has an earlier message pending for;
- it is alive while its heartbeat is younger than `[store] lease_s`; what a dead instance
  held becomes claimable then, so the living carry its work on;
- a heartbeat that comes after a gap longer than the lease means the others may already have
  taken what it held: it drops what it has not started and claims afresh (what it had in
  flight may go twice: the documented bound);
- a graceful stop lets go of everything it still holds, for the others (or its next start)
  to take at once.

A claim is a write, so claims wake on a signal (a commit that left work unheld; PostgreSQL's
NOTIFY) and otherwise on a short poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.outbound.gate import RecordGate
from bridge.store.base import InstanceRow, OutboundMessage, Store, StoreUnavailable

log = logging.getLogger("bridge.dispatcher")

#: How often the heartbeat is written (and so the store's writability checked).
HEARTBEAT_S = 5.0
#: How often claims look for work when nothing woke them.
CLAIM_POLL_S = 2.0
#: Messages claimed at once, and what the dispatcher may hold before it claims no more.
CLAIM_BATCH = 1000
HOLD_MAX = 50_000
#: Scheduled messages are claimed this long before they are due.
SCHEDULE_HORIZON_S = 3600.0


def instance_id(name: str) -> str:
    """Unique for each start of a process: a restart is a new instance, and what the old one
    held passes on when its lease runs out (or at once when it is known dead)."""
    return f"{name}/{os.getpid()}/{os.urandom(3).hex()}"


def default_name() -> str:
    return socket.gethostname() or "sms-bridge"


class Membership:
    def __init__(self, store: Store, gate: RecordGate, *, name: str, lease_s: float,
                 exclusive: bool, clock: Callable[[], float],
                 bound_smscs: Callable[[], Sequence[str]],
                 take: Callable[[Sequence[OutboundMessage]], None],
                 held: Callable[[], int], drop_unstarted: Callable[[], int],
                 info: Callable[[], dict[str, object]],
                 on_peers: Callable[[Sequence[InstanceView]], None] = lambda peers: None) -> None:
        """`exclusive`: no other outbound side can run on this store (a SQLite file), so every
        other instance ever recorded is dead. `take` hands claimed messages to the
        dispatcher, `held` is how many it holds, `drop_unstarted` forgets those not begun."""
        self.store = store
        self.gate = gate
        self.name = name
        self.id = instance_id(name)
        self.lease_s = lease_s
        #: Three heartbeats a lease at least: one late write does not make it look dead.
        self.heartbeat_s = min(HEARTBEAT_S, lease_s / 3)
        self.exclusive = exclusive
        self.clock = clock
        self._bound_smscs = bound_smscs
        self._take = take
        self._held = held
        self._drop_unstarted = drop_unstarted
        self._info = info
        self._on_peers = on_peers  # shown every instance's picture, every heartbeat
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Set by stop() before it cancels the loops, which also end on it: woken and
        #: cancelled in one iteration, Python 3.11's wait_for returns the wake-up and drops
        #: the cancel.
        self._stopping = False
        self.claimed = 0
        self.fenced = 0
        #: Every instance's last heartbeat as read at this one's last (for /healthz, /metrics).
        self.peers: list[InstanceView] = []

    # ------------------------------------------------------------------ lifecycle

    async def join(self) -> None:
        """Say this instance is alive (its first heartbeat also tells it which limited binds
        are its own) and retire the instances known dead."""
        await self.heartbeat_once()
        await self._retire_dead()

    async def start(self) -> None:
        """Claim what waits, then keep the heartbeat and the claims going."""
        self.store.watch_due(self.wake)
        while await self._claim_once() == CLAIM_BATCH and self._held() < HOLD_MAX:
            pass
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._heartbeats()), loop.create_task(self._claims())]

    async def stop(self) -> None:
        """Stop claiming and let go of what is still held (the dispatcher has drained)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            let_go = await self.store.release(self.id, at=self.clock())
        except StoreUnavailable as exc:
            log.warning("stop: could not let go of held messages (%s); they pass on when the "
                        "lease runs out", exc)
            return
        if let_go:
            log.info("stop: let go of %d message(s) for the other instances", let_go)

    def wake(self) -> None:
        """New work may be claimable (a commit left messages unheld)."""
        self._wake.set()

    # ------------------------------------------------------------------ heartbeat

    async def heartbeat_once(self) -> None:
        """One heartbeat; after a gap longer than the lease, start over (see module doc)."""
        now = self.clock()
        previous = await self.store.heartbeat(self.id, at=now, info_json=json.dumps(
            {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
             **self._info()}, sort_keys=True))
        try:
            self.peers = views(await self.store.instances(), now=now, lease_s=self.lease_s)
        except StoreUnavailable:
            pass  # the heartbeat itself went through; the picture waits for the next one
        else:
            self._on_peers(self.peers)
        if previous is not None and now - previous > self.lease_s:
            self.fenced += 1
            dropped = self._drop_unstarted()
            log.warning("heartbeat after %.0f s (lease %.0f s): other instances may have taken "
                        "what this one held; dropped %d not yet started, claiming afresh",
                        now - previous, self.lease_s, dropped)
            await self.store.release(self.id, at=now)
            await self.store.heartbeat(self.id, at=now)
            self.wake()

    async def _heartbeats(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.heartbeat_once()
            except StoreUnavailable as exc:
                self.gate.failed(f"heartbeat: {exc}")
            else:
                self.gate.succeeded()

    async def _retire_dead(self) -> None:
        """The instances known dead, so that what they held is claimable now: every other one
        on an exclusive store, else those of this name on this host whose process is gone."""
        host = socket.gethostname()
        dead = []
        for row in await self.store.instances():
            if row.id == self.id or row.heartbeat_at <= 0:
                continue
            if self.exclusive:
                dead.append(row.id)
                continue
            try:
                info = json.loads(row.info_json)
            except ValueError:
                continue
            if isinstance(info, dict) and info.get("name") == self.name and \
                    info.get("host") == host and not _running(info.get("pid")):
                dead.append(row.id)
        if dead:
            await self.store.retire(dead)
            log.info("retired %d instance(s) known dead: what they held is claimable", len(dead))

    # ------------------------------------------------------------------ claims

    async def _claims(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), CLAIM_POLL_S)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self.gate.is_open:
                continue  # nothing is claimed that could not be recorded
            try:
                while await self._claim_once() == CLAIM_BATCH and self._held() < HOLD_MAX:
                    pass
            except StoreUnavailable as exc:
                log.debug("claim failed: %s", exc)

    async def _claim_once(self) -> int:
        smscs = list(self._bound_smscs())
        room = HOLD_MAX - self._held()
        if not smscs or room <= 0:
            return 0
        now = self.clock()
        got = await self.store.claim(self.id, now=now, live_after=now - self.lease_s,
                                     smscs=smscs, due_before=now + SCHEDULE_HORIZON_S,
                                     limit=min(CLAIM_BATCH, room))
        if got:
            self.claimed += len(got)
            self._take(got)
        return len(got)


@dataclass(frozen=True)
class InstanceView:
    """One instance as an operator sees it: alive or not, where, what it holds and binds."""

    id: str
    name: str
    host: str
    alive: bool
    heartbeat_age_s: float
    binds: tuple[str, ...]
    held: int
    #: SMSCs whose bind this instance holds or is taking (`[[smsc]] cluster_binds`).
    holding: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "host": self.host, "alive": self.alive,
                "heartbeat_age_s": round(self.heartbeat_age_s, 1), "binds": list(self.binds),
                "holding": list(self.holding), "held": self.held}


def views(rows: Sequence[InstanceRow], *, now: float, lease_s: float) -> list[InstanceView]:
    """The instances a store has seen, the live ones first (a retired or stopped one shows as
    not alive until a retention sweep forgets it)."""
    out = []
    for row in rows:
        try:
            info = json.loads(row.info_json)
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        binds = info.get("binds")
        holding = info.get("holding")
        held = info.get("queue_depth")
        out.append(InstanceView(
            id=row.id, name=str(info.get("name", "")), host=str(info.get("host", "")),
            alive=row.heartbeat_at >= now - lease_s, heartbeat_age_s=max(0.0, now - row.heartbeat_at),
            binds=tuple(str(b) for b in binds) if isinstance(binds, list) else (),
            held=held if isinstance(held, int) else 0,
            holding=tuple(str(h) for h in holding) if isinstance(holding, list) else ()))
    return sorted(out, key=lambda v: (not v.alive, v.name, v.id))


def holders(peers: Sequence[InstanceView]) -> dict[str, int]:
    """How many live instances have each SMSC bound (what shares its max_tps)."""
    counts: dict[str, int] = {}
    for view in peers:
        if view.alive:
            for smsc in view.binds:
                counts[smsc] = counts.get(smsc, 0) + 1
    return counts


def _running(pid: object) -> bool:
    """Whether a process of this id runs on this host (a pid reused is taken as running)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
