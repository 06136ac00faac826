"""Which instances hold an SMSC's binds when the SMSC allows fewer binds than there are
instances (`[[smsc]] cluster_binds`). Pure: every instance applies the same rule to the same
picture (the live instances, and which of them say they hold the bind), so together they
settle on `limit` holders, and a holder that dies is replaced by the next in line.

The rule keeps holders that hold (a bind is not moved while it works), drops the surplus by a
fixed order (instance id) when there are too many, and fills free places by the same order.
Between two heartbeats the pictures of two instances may differ: for that long one bind more
or one fewer than the limit can exist (an SMSC refusing the extra bind is logged and retried).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def should_hold(me: str, *, limit: int, live: Collection[str],
                holding: Sequence[str]) -> bool:
    """Whether instance `me` should hold the bind. `live`: the instances alive now (me
    among them); `holding`: those that say they hold it. limit 0 = every instance binds."""
    if limit <= 0:
        return True
    holders = sorted({h for h in holding if h in live})
    if me in holders:
        return me in holders[:limit]
    free = limit - len(holders)
    waiting = sorted(i for i in live if i not in holders)
    return free > 0 and me in waiting[:free]
