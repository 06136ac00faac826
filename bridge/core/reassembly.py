"""Reassembly of concatenated mobile-originated SMS (UDH IE 0x00 / 0x08, or SAR TLVs). Pure.

The store keeps every part it is given (each part is acknowledged to the SMSC once stored), so
parts that arrive on different binds or instances, or across a restart, come together:

    assemble(total, texts)       # the whole text once every part 1..total is there, else None
    join_partial(total, texts)   # the text of a set that never completed, with gaps marked

A set is named by (source, destination, reference, total), so two senders using the same
8-bit reference do not mix; a part received twice (SMSC redelivery) replaces the first.
"""

from __future__ import annotations

from collections.abc import Mapping

GAP_MARKER = " […] "


def assemble(total: int, texts: Mapping[int, str]) -> str | None:
    """The message's text once parts 1..total are all in `texts` (part number → text)."""
    if any(seq not in texts for seq in range(1, total + 1)):
        return None
    return "".join(texts[seq] for seq in range(1, total + 1))


def join_partial(total: int, texts: Mapping[int, str]) -> str:
    """The text of an incomplete set, with GAP_MARKER where parts are missing."""
    out: list[str] = []
    for seq in range(1, total + 1):
        if seq in texts:
            out.append(texts[seq])
        elif not out or out[-1] is not GAP_MARKER:
            out.append(GAP_MARKER)
    return "".join(out).strip(" ")


# ------------------------------------------------------------------ UDH parsing


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(udh including its length octet, payload) of a short_message sent with UDHI set.
    A header longer than the message is malformed: (b"", short_message) is returned."""
    if not short_message:
        return b"", short_message
    udhl = short_message[0]
    if udhl == 0 or udhl + 1 > len(short_message):
        return b"", short_message
    return short_message[: udhl + 1], short_message[udhl + 1:]


def concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(ref, total, seq) from a UDH's concatenation IE (0x00 8-bit or 0x08 16-bit ref)."""
    if not udh:
        return None
    end = min(len(udh), udh[0] + 1)
    pos = 1
    found: tuple[int, int, int] | None = None
    while pos + 2 <= end:
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2: pos + 2 + length]
        if len(data) < length:
            return found  # truncated IE
        if iei == 0x00 and length == 3:
            found = (data[0], data[1], data[2])
        elif iei == 0x08 and length == 4:
            found = ((data[0] << 8) | data[1], data[2], data[3])
        pos += 2 + length
    return found
