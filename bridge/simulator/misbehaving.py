"""SMSCs that misbehave on purpose, for the bridge's failure tests (in the spirit of Jasmin's
tests/protocols/smpp/smsc_simulator.py). Each is an `SmscSimulator` with one behaviour changed
through its hooks; without a config each listens on 127.0.0.1, port 0, receipts after 10 ms.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import replace
from typing import Any, Literal

from bridge.config import SimulatorConfig
from bridge.simulator import pdu as P
from bridge.simulator.server import ReceivedSubmit, SmscSimulator, Verdict, _Session

__all__ = [
    "SilentSubmitSimulator", "BindRefusingSimulator", "GenericNackSimulator",
    "UnbindingSimulator", "ReceiptBeforeResponseSimulator", "DeadPeerSimulator",
    "DroppingSimulator", "ThrottlingSimulator", "ReceiptFormatSimulator", "ReceiptStyle",
    "default_config",
]


def default_config(**overrides: Any) -> SimulatorConfig:
    """Loopback, ephemeral port, receipts after 10 ms."""
    return replace(SimulatorConfig(), enabled=True, host="127.0.0.1", port=0,
                   receipt_delay_s=0.01, **overrides)


class SilentSubmitSimulator(SmscSimulator):
    """Binds fine, answers enquire_link, never answers submit_sm (the client must time out).
    `max_in_flight` then shows the client's window."""

    def __init__(self, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)

    def submit_verdict(self, session: _Session, n_total: int, n_session: int) -> Verdict:
        return "silent"


class BindRefusingSimulator(SmscSimulator):
    """Refuses every bind with `status` (default 0x0D ESME_RBINDFAIL)."""

    def __init__(self, status: int = P.ESME_RBINDFAIL, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.refuse_status = status

    def bind_status(self, bind: P.Bind) -> int:
        return self.refuse_status


class GenericNackSimulator(SmscSimulator):
    """Answers every `every`-th submit_sm with generic_nack(status) instead of submit_sm_resp."""

    def __init__(self, every: int = 1, config: SimulatorConfig | None = None, *,
                 status: int = P.ESME_RSYSERR, ssl_context: ssl.SSLContext | None = None,
                 **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.every = max(1, every)
        self.nack_status = status

    def submit_verdict(self, session: _Session, n_total: int, n_session: int) -> Verdict:
        if n_total % self.every == 0:
            return "nack"
        return super().submit_verdict(session, n_total, n_session)


class UnbindingSimulator(SmscSimulator):
    """Sends unbind itself after answering the `after`-th submit_sm of each session, then
    closes on unbind_resp (or after 5 s)."""

    def __init__(self, after: int = 1, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.after = max(1, after)

    def after_response(self, session: _Session, submit: ReceivedSubmit) -> None:
        if session.submits_seen >= self.after:
            self.send_unbind(session)


class ReceiptBeforeResponseSimulator(SmscSimulator):
    """Writes the receipt of a submit before its submit_sm_resp; the resp follows `lag_s`
    later (so it also races on a separate receiver session)."""

    def __init__(self, config: SimulatorConfig | None = None, *, lag_s: float = 0.02,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.receipt_first = True
        self.receipt_first_lag_s = lag_s


class DeadPeerSimulator(SmscSimulator):
    """After `after` PDUs received on a session it answers nothing more (enquire_link
    included) and sends nothing, but keeps the socket open and keeps reading."""

    def __init__(self, after: int = 2, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.dead_after = max(1, after)


class DroppingSimulator(SmscSimulator):
    """Closes the TCP connection on the `after`-th submit_sm of a session without answering
    it (nor anything after it); every new session gets the same treatment unless
    repeat=False (then it is `drop_after`: once)."""

    def __init__(self, after: int = 1, config: SimulatorConfig | None = None, *,
                 repeat: bool = True, ssl_context: ssl.SSLContext | None = None,
                 **kw: Any) -> None:
        super().__init__(config or default_config(), ssl_context=ssl_context, **kw)
        self.after = max(1, after)
        self.repeat = repeat
        self._dropped = False

    def submit_verdict(self, session: _Session, n_total: int, n_session: int) -> Verdict:
        if n_session >= self.after and (self.repeat or not self._dropped):
            self._dropped = True
            return "drop"
        return super().submit_verdict(session, n_total, n_session)


class ThrottlingSimulator(SmscSimulator):
    """Answers every `every`-th submit_sm with 0x58 ESME_RTHROTTLED."""

    def __init__(self, every: int = 2, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        super().__init__(replace(config or default_config(), throttle_every=max(1, every)),
                         ssl_context=ssl_context, **kw)


ReceiptStyle = Literal["capital_text", "seconds", "missing_fields", "tlv_only",
                       "hex_in_receipt_dec_in_resp", "padded"]
_STYLES = ("capital_text", "seconds", "missing_fields", "tlv_only",
           "hex_in_receipt_dec_in_resp", "padded")


class ReceiptFormatSimulator(SmscSimulator):
    """Receipts in the variants real SMSCs send:

    - capital_text: `Text:` instead of `text:`
    - seconds: 12-digit dates (YYMMDDhhmmss)
    - missing_fields: only `id:… stat:…`
    - tlv_only: empty short_message, receipted_message_id and message_state TLVs only
    - hex_in_receipt_dec_in_resp: submit_sm_resp ids decimal, receipt ids hexadecimal
    - padded: receipt ids decimal zero-padded to 20 digits (resp ids per config, hex default)
    """

    def __init__(self, style: ReceiptStyle, config: SimulatorConfig | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, **kw: Any) -> None:
        if style not in _STYLES:
            raise ValueError(f"unknown receipt style {style!r}; one of {', '.join(_STYLES)}")
        config = config or default_config()
        if style == "hex_in_receipt_dec_in_resp":
            config = replace(config, id_format="dec", receipt_id_format="hex")
        elif style == "padded":
            config = replace(config, receipt_id_format="padded")
        super().__init__(config, ssl_context=ssl_context, **kw)
        self.style: ReceiptStyle = style

    def format_receipt(self, submit: ReceivedSubmit | None, receipt_id: str, stat: str,
                       err: str, submit_time: float, done_time: float, *,
                       dlvrd: str | None = None, message_state: int | None = None,
                       text: str | None = None) -> tuple[bytes, dict[int, bytes]]:
        short_message, tlvs = super().format_receipt(
            submit, receipt_id, stat, err, submit_time, done_time, dlvrd=dlvrd,
            message_state=message_state, text=text)
        style = self.style
        if style == "capital_text":
            short_message = short_message.replace(b" text:", b" Text:")
        elif style == "seconds":
            short_message = (
                short_message
                .replace(b"submit date:" + self._date10(submit_time).encode(),
                         b"submit date:" + _date12(submit_time).encode())
                .replace(b"done date:" + self._date10(done_time).encode(),
                         b"done date:" + _date12(done_time).encode()))
        elif style == "missing_fields":
            short_message = f"id:{receipt_id} stat:{stat}".encode("latin-1")
        elif style == "tlv_only":
            short_message = b""
        return short_message, tlvs


def _date12(t: float) -> str:
    return time.strftime("%y%m%d%H%M%S", time.gmtime(t))
