"""The ingress details kept with a message (`meta_json`), by typed key.

Each ingress writes what its own reports need later (the SMTP envelope for a DSN, a SOAP
`reference` for a callback, an HTTP dialect and its report settings); the readers (mail back,
the report sender, the dispatcher's reply routing) read them back. Both sides name a key by
`MetaKey`, so a misspelt key is a type error rather than a detail that silently goes missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import Enum
from functools import lru_cache


class MetaKey(str, Enum):
    # SMTP: the envelope and the mail, for DSNs and replies (bridge.outbound.notify.mailback)
    MAIL_FROM = "mail_from"
    CLIENT_IP = "client_ip"
    HELO = "helo"
    RET = "ret"
    ENVID = "envid"
    RCPT_TO = "rcpt_to"
    NOTIFY = "notify"
    ORCPT = "orcpt"
    MESSAGE_ID = "message_id"
    SUBJECT = "subject"
    # SOAP and HTTP: the request's idempotency key, echoed by its report
    REFERENCE = "reference"
    # HTTP: which dialect took the message (bridge.core.reports formats its report)
    DIALECT = "dialect"
    #: The sender as the client wrote it (Kannel's %P, the bulk-SMS sSender)
    SENDER = "sender"
    #: Kannel: the sendsms user (%n); Jasmin: the dlr-level and dlr-method
    USER = "user"
    DLR_LEVEL = "dlr_level"
    DLR_METHOD = "dlr_method"


#: What an ingress hands the intake: (key, value) pairs, request- or recipient-wide.
Meta = tuple[tuple[MetaKey, str], ...]

_KEYS = {key.value: key for key in MetaKey}


def meta_json(*parts: Iterable[tuple[MetaKey, str]]) -> str:
    """The stored form: one JSON object, keys sorted; later parts win."""
    if len(parts) == 1 and isinstance(parts[0], tuple):
        return _one_json(parts[0])  # a request's own details: most requests repeat them
    return _merged_json(parts)


@lru_cache(maxsize=4096)
def _one_json(part: Meta) -> str:
    return _merged_json((part,))


def _merged_json(parts: Iterable[Iterable[tuple[MetaKey, str]]]) -> str:
    merged: dict[str, str] = {}
    for part in parts:
        merged.update((key.value, value) for key, value in part)
    return json.dumps(merged, sort_keys=True) if merged else "{}"


def read_meta(stored: str) -> Mapping[MetaKey, str]:
    """The typed details of a stored `meta_json`: string values under known keys (anything
    else, or JSON that cannot be read, is left out)."""
    try:
        data = json.loads(stored)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {_KEYS[k]: v for k, v in data.items() if k in _KEYS and isinstance(v, str)}
