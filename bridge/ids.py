"""Identifiers made from the clock and the OS's randomness: message ids and concatenation
references. Apart from the core (which gets ids as arguments) and shared by the intake (new
messages) and the outbound side (stored replies)."""

from __future__ import annotations

import os
import time


def new_message_id() -> str:
    """Time-ordered (so ids sort by creation) and random (so instances never collide)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


def random_reference() -> int:
    """A concatenation reference, 0..65535 (the service reduces it to the mode's range)."""
    return int.from_bytes(os.urandom(2), "big")
