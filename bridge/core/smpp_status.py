"""SMPP 3.4 command_status values by name (§5.1.3) and as Kannel 1.4.5 describes them, for
the reports that quote a submit_sm_resp (Jasmin's level-1 `message_status`, Kannel's NACK
text), and the reading of the dispatcher's own words for a refused submit."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

#: (name, Kannel 1.4.5's smpp_error_to_string) per status.
_STATUSES: Mapping[int, tuple[str, str]] = MappingProxyType({
    0x00: ("ESME_ROK", "OK"),
    0x01: ("ESME_RINVMSGLEN", "Message Length is invalid"),
    0x02: ("ESME_RINVCMDLEN", "Command Length is invalid"),
    0x03: ("ESME_RINVCMDID", "Invalid Command ID"),
    0x04: ("ESME_RINVBNDSTS", "Incorrect BIND Status for given command"),
    0x05: ("ESME_RALYBND", "ESME Already in Bound State"),
    0x06: ("ESME_RINVPRTFLG", "Invalid Priority Flag"),
    0x07: ("ESME_RINVREGDLVFLG", "Invalid Registered Delivery Flag"),
    0x08: ("ESME_RSYSERR", "System Error"),
    0x0A: ("ESME_RINVSRCADR", "Invalid Source Address"),
    0x0B: ("ESME_RINVDSTADR", "Invalid Destination Address"),
    0x0C: ("ESME_RINVMSGID", "Unknown/Reserved"),
    0x0D: ("ESME_RBINDFAIL", "Bind Failed"),
    0x0E: ("ESME_RINVPASWD", "Invalid Password"),
    0x0F: ("ESME_RINVSYSID", "Invalid System ID"),
    0x11: ("ESME_RCANCELFAIL", "Cancel SM Failed"),
    0x13: ("ESME_RREPLACEFAIL", "Replace SM Failed"),
    0x14: ("ESME_RMSGQFUL", "Message Queue Full"),
    0x15: ("ESME_RINVSERTYP", "Invalid Service Type"),
    0x40: ("ESME_RINVDESTFLAG", "Destination flag is invalid"),
    0x43: ("ESME_RINVESMCLASS", "Invalid esm_class field data"),
    0x45: ("ESME_RSUBMITFAIL", "Submit failed"),
    0x48: ("ESME_RINVSRCTON", "Invalid Source address TON"),
    0x49: ("ESME_RINVSRCNPI", "Invalid Source address NPI"),
    0x50: ("ESME_RINVDSTTON", "Unknown/Reserved"),
    0x51: ("ESME_RINVDSTNPI", "Unknown/Reserved"),
    0x53: ("ESME_RINVSYSTYP", "Invalid system_type field"),
    0x55: ("ESME_RINVNUMMSGS", "Invalid number of messages"),
    0x58: ("ESME_RTHROTTLED", "Throttling error"),
    0x61: ("ESME_RINVSCHED", "Unknown/Reserved"),
    0x62: ("ESME_RINVEXPIRY", "Unknown/Reserved"),
    0x67: ("ESME_RQUERYFAIL", "query_sm request failed"),
    0xC1: ("ESME_ROPTPARNOTALLWD", "TLV not allowed"),
    0xC2: ("ESME_RINVPARLEN", "Invalid Parameter Length"),
    0xC3: ("ESME_RMISSINGOPTPARAM", "Expected TLV missing"),
    0xC4: ("ESME_RINVOPTPARAMVAL", "Invalid TLV value"),
    0xFE: ("ESME_RDELIVERYFAILURE", "Transaction Delivery Failure"),
    0xFF: ("ESME_RUNKNOWNERR", "Unknown Error"),
})


def status_name(status: int) -> str:
    """`ESME_RINVSRCADR` for 0x0A; an unlisted value as `ESME_R0x…`."""
    entry = _STATUSES.get(status)
    return entry[0] if entry else f"ESME_R0x{status:08X}"


def kannel_description(status: int) -> str:
    entry = _STATUSES.get(status)
    return entry[1] if entry else "Unknown/Reserved"


#: How the dispatcher words a message it failed on a submit_sm_resp
#: (bridge.outbound.dispatcher: "part 1/1: submit_sm_resp 0x0000000A after 1 attempt(s)").
_REFUSED = re.compile(r"submit_sm_resp 0x([0-9A-Fa-f]{8})")


def refused_status(error_detail: str | None) -> int | None:
    """The command_status a failed message was refused with, or None when it failed for
    another reason (no route, retries of a transient error exhausted, expired)."""
    match = _REFUSED.search(error_detail or "")
    return int(match.group(1), 16) if match else None
