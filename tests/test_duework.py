"""DueWork, the loop behind delivery callbacks and mail back: bounded concurrency, no store
row worked twice at once (even when batches overlap), a failing attempt paused, not spun."""

from __future__ import annotations

import asyncio

from bridge.outbound.notify.duework import DueWork

Item = tuple[int, ...]  # the store rows an item covers


class Queue:
    """Due items as a store would return them: every call, all that are still due."""

    def __init__(self, items: list[Item]) -> None:
        self.due_items = list(items)
        self.started: list[Item] = []
        self.gates: dict[Item, asyncio.Event] = {}
        self.fail: set[Item] = set()

    async def due(self, limit: int) -> list[Item]:
        return self.due_items[:limit]

    async def work(self, item: Item) -> None:
        self.started.append(item)
        gate = self.gates.setdefault(item, asyncio.Event())
        await gate.wait()
        if item in self.fail:
            raise RuntimeError("store in trouble")
        self.due_items.remove(item)  # recorded: no longer due


def make(queue: Queue, concurrency: int = 4) -> DueWork[Item]:
    return DueWork("test", concurrency=concurrency, poll_s=0.01, due=queue.due,
                   work=queue.work, ids=lambda item: item)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_items_sharing_a_row_never_run_together() -> None:
    queue = Queue([(1, 2), (2, 3), (4,)])
    work = make(queue)
    work.start()
    await settle()
    assert queue.started == [(1, 2), (4,)]  # (2, 3) waits: row 2 is in flight
    queue.gates[(1, 2)].set()
    await settle()
    assert queue.started == [(1, 2), (4,), (2, 3)]
    for item in [(4,), (2, 3)]:
        queue.gates[item].set()
    await settle()
    assert queue.due_items == []
    await work.stop(1.0)


async def test_concurrency_is_bounded() -> None:
    queue = Queue([(i,) for i in range(10)])
    work = make(queue, concurrency=3)
    work.start()
    await settle()
    assert queue.started == [(0,), (1,), (2,)]
    queue.gates[(1,)].set()
    await settle()
    assert queue.started == [(0,), (1,), (2,), (3,)]
    await work.stop(0.01)  # the ones in flight are cut short: they stay due
    assert queue.due_items[:3] == [(0,), (2,), (3,)]


async def test_a_failing_attempt_stays_due_and_is_tried_again() -> None:
    queue = Queue([(7,)])
    queue.fail.add((7,))
    queue.gates[(7,)] = asyncio.Event()
    queue.gates[(7,)].set()
    work = make(queue)
    work.start()
    await settle()
    tries = queue.started.count((7,))
    assert 2 <= tries <= 20  # again after each pause of poll_s, not in a tight loop
    queue.fail.clear()
    await settle()
    assert queue.due_items == []
    await work.stop(1.0)
