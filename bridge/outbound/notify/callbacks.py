"""Delivery reports: send each due report to its URL, and each inbound SMS to its account's
mo_url, and record what came of it.

The store queues a report in the very transaction that records its event (a trigger for state
changes, the receipt step for interim receipts: bridge.store), so no crash between the verdict
and the request can lose it: after a restart it is simply still due. The sender runs with the
outbound side (bridge.runtime.outbound), so it is the one process that may send for a database.

A report goes out in the form of the ingress that took its message: SOAP's JSON callback
(bridge.core.callbacks), or the HTTP dialect's own request (bridge.core.dialect_reports:
Kannel's dlr-url GET, Jasmin's DLR, the bulk-SMS form POST, the JSON API's POST). SOAP
callbacks follow the [soap] callback_* settings, the dialects and the mo_url pushes the [http]
report_* ones.

Delivery is at least once: a request whose answer never arrives (a timeout, a restart mid-way)
is sent again, so a receiver should treat (message_id, state) as the key. What each answer
means and when to try again is `bridge.core.callbacks`; every attempt at a report leaves a
timeline event (`callback`, `callback_retry`, `callback_failed`) and a log line without the
URL's credentials or query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge.config import Config, SmscConfig
from bridge.core.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackFacts,
    RetrySchedule,
    Verdict,
    callback_document,
    callback_signature,
    next_due,
    redact_url,
    verdict,
)
from bridge.core.dialect_reports import (
    Dialect,
    ReportFacts,
    ReportRequest,
    dialect_of,
    report_request,
)
from bridge.core.meta import MetaKey, read_meta
from bridge.outbound.notify.duework import DueWork
from bridge.outbound.smpp.pool import routes_of
from bridge.metrics import OutboundMetrics
from bridge.store.base import DueCallback, DuePush, Store

log = logging.getLogger("bridge.callbacks")

#: POSTs in flight at once.
CONCURRENCY = 8
#: How long a stop waits for the POSTs in flight (one cut short goes again after a restart).
DRAIN_S = 5.0
#: The longest wait between two looks for due callbacks (shorter when retry_base_s is).
POLL_S = 1.0
#: How long a taken callback stays this instance's beyond its timeout (then, if this instance
#: died meanwhile, another takes it).
HOLD_S = 60.0
_JSON = {"Content-Type": "application/json; charset=utf-8"}


def _why(exc: BaseException) -> str:
    """Why a POST got no answer, without the URL (aiohttp puts it in some messages)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return type(exc).__name__


#: The most of an answer's body read (enough for any acknowledgement a dialect asks for).
_ANSWER_BYTES = 1024


def _schedule(max_attempts: int, base_s: float, max_s: float) -> RetrySchedule:
    return RetrySchedule(max_attempts, base_s, max_s)


class CallbackSender:
    def __init__(self, config: Config, store: Store, metrics: OutboundMetrics, *,
                 owner: str, smscs: tuple[SmscConfig, ...] = (),
                 clock: Callable[[], float] = time.time) -> None:
        """`owner`: the instance that takes due callbacks (each is attempted by one instance:
        Store.claim_callbacks). `smscs`: the SMSCs as the outbound side binds them (a report
        quotes a bind's system_id and how its ids are written)."""
        self.store = store
        self.owner = owner
        self.secrets = {a.name: a.callback_secret for a in config.accounts if a.callback_secret}
        self.metrics = metrics
        self.clock = clock
        soap, http = config.soap, config.http
        self.soap_schedule = _schedule(soap.callback_max_attempts, soap.callback_retry_base_s,
                                       soap.callback_retry_max_s)
        self.http_schedule = _schedule(http.report_max_attempts, http.report_retry_base_s,
                                       http.report_retry_max_s)
        self.soap_timeout = aiohttp.ClientTimeout(total=soap.callback_timeout_s)
        self.http_timeout = aiohttp.ClientTimeout(total=http.report_timeout_s)
        self.smscs = {s.name: s for s in smscs}
        self.routes = routes_of(smscs, config.accounts)
        self.hold_s = HOLD_S + max(soap.callback_timeout_s, http.report_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._work = DueWork[DueCallback](
            "callbacks", concurrency=CONCURRENCY,
            poll_s=min(POLL_S, soap.callback_retry_base_s, http.report_retry_base_s),
            due=self._due,
            work=self._attempt, ids=lambda callback: (callback.id,))
        self._pushes = DueWork[DuePush](
            "pushes", concurrency=CONCURRENCY,
            poll_s=min(POLL_S, http.report_retry_base_s),
            due=self._due_pushes,
            work=self._push, ids=lambda push: (push.id,))

    async def _due(self, limit: int) -> list[DueCallback]:
        """Due callbacks, held by this instance while attempted (longer than any attempt)."""
        now = self.clock()
        return await self.store.claim_callbacks(self.owner, now=now,
                                                hold_until=now + self.hold_s, limit=limit)

    async def _due_pushes(self, limit: int) -> list[DuePush]:
        now = self.clock()
        return await self.store.claim_pushes(self.owner, now=now, hold_until=now + self.hold_s,
                                             limit=limit)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2 * CONCURRENCY),
            headers={"User-Agent": "sms-bridge"})
        self._work.start()
        self._pushes.start()

    async def stop(self, timeout: float) -> None:
        """Stop looking; give the requests in flight `timeout` seconds. One cut short stays
        due and goes again after a restart."""
        await asyncio.gather(self._work.stop(timeout), self._pushes.stop(timeout))
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ building

    def _signed(self, account: str, body: bytes) -> dict[str, str]:
        secret = self.secrets.get(account)
        if secret is None:
            return dict(_JSON)
        timestamp = int(self.clock())
        return {**_JSON, TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: callback_signature(secret, timestamp, body)}

    def _request(self, callback: DueCallback, attempt: int
                 ) -> tuple[ReportRequest, dict[str, str], bool]:
        """The request that reports `callback`, its headers, and whether it is a SOAP
        callback (which follows the [soap] settings)."""
        meta = read_meta(callback.meta_json)
        dialect = dialect_of(meta)
        if dialect is None:  # SOAP's callback_url
            body = callback_document(CallbackFacts(
                message_id=callback.message_id, state=callback.state, at=callback.at,
                recipient=callback.recipient, reference=meta.get(MetaKey.REFERENCE),
                parts=callback.parts, parts_delivered=callback.parts_delivered,
                error=callback.error, error_detail=callback.error_detail, attempt=attempt))
            return (ReportRequest("POST", callback.url, body, _JSON["Content-Type"]),
                    self._signed(callback.account, body), True)
        request = report_request(dialect, callback.url, self._facts(callback, meta, attempt))
        headers = self._signed(callback.account, request.body) if dialect is Dialect.JSON \
            else {"Content-Type": request.content_type} if request.content_type else {}
        return request, headers, False

    def _smsc(self, callback: DueCallback) -> SmscConfig | None:
        """The SMSC that took the message, or for one refused before any took it, the first
        its route names (the one the dispatcher tries first)."""
        if callback.smsc is not None:
            return self.smscs.get(callback.smsc)
        candidates = self.routes.candidates(callback.recipient, callback.account)
        return self.smscs.get(candidates[0]) if candidates else None

    def _facts(self, callback: DueCallback, meta: Mapping[MetaKey, str],
               attempt: int) -> ReportFacts:
        smsc = self._smsc(callback)
        return ReportFacts(
            message_id=callback.message_id, event=callback.state,
            event_detail=callback.event_detail, at=callback.at, account=callback.account,
            recipient=callback.recipient, raw_recipient=callback.raw_recipient or
            callback.recipient, source_addr=callback.source_addr, text=callback.text,
            created_at=callback.created_at, submitted_at=callback.submitted_at,
            smsc=smsc.name if smsc else None, smsc_id=callback.smsc_id,
            smsc_system_id=smsc.system_id if smsc else "",
            smsc_id_format=smsc.id_format if smsc else "dec",
            receipt_stat=callback.receipt_stat, receipt_err=callback.receipt_err,
            error=callback.error, error_detail=callback.error_detail, parts=callback.parts,
            mask=callback.report_mask, meta=meta, attempt=attempt)

    # ------------------------------------------------------------------ sending

    async def _send(self, request: ReportRequest, headers: Mapping[str, str],
                    timeout: aiohttp.ClientTimeout) -> tuple[int | None, bool, str]:
        """(HTTP status or None, whether the answer acknowledges it, what happened)."""
        assert self._session is not None
        try:
            async with self._session.request(
                    request.method, exact_url(request.url), data=request.body or None,
                    headers=headers, allow_redirects=False, timeout=timeout) as response:
                status = response.status
                if request.ack is None:
                    return status, True, f"HTTP {status}"
                answer = (await response.content.read(_ANSWER_BYTES)).decode("utf-8", "replace")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as exc:
            return None, False, _why(exc)
        if answer == request.ack:
            return status, True, f"HTTP {status} {request.ack}"
        return status, False, f"HTTP {status} without {request.ack}"

    async def _attempt(self, callback: DueCallback) -> None:
        attempt = callback.attempts + 1
        request, headers, soap = self._request(callback, attempt)
        schedule = self.soap_schedule if soap else self.http_schedule
        status, acknowledged, answer = await self._send(
            request, headers, self.soap_timeout if soap else self.http_timeout)
        outcome = verdict(status, attempt, schedule, acknowledged=acknowledged)
        now = self.clock()
        detail = (f"{request.method} {redact_url(request.url)}: {answer} "
                  f"(attempt {attempt} of {schedule.max_attempts})")
        next_at, note = next_due(outcome, attempt, schedule, now)
        detail += note
        # Not recorded (the store is in trouble): it stays due and goes again (DueWork).
        await self.store.record_callback(callback.id, callback.message_id,
                                         outcome=outcome.value, attempts=attempt,
                                         next_at=next_at, at=now, detail=detail)
        self.metrics.callback(outcome.value)
        level = logging.WARNING if outcome is Verdict.GAVE_UP else logging.INFO
        log.log(level, "callback %s id=%s state=%s: %s", outcome.value, callback.message_id,
                callback.state, detail)

    async def _push(self, push: DuePush) -> None:
        """An inbound SMS to its account's mo_url: JSON, signed like the callbacks."""
        attempt = push.attempts + 1
        body = json.dumps({"id": push.inbound_id, "account": push.account,
                           "from": push.source, "to": push.destination, "text": push.text,
                           "receivedAt": _iso(push.received_at), "smsc": push.smsc,
                           "attempt": attempt}, separators=(",", ":")).encode()
        request = ReportRequest("POST", push.url, body, _JSON["Content-Type"])
        status, acknowledged, answer = await self._send(
            request, self._signed(push.account, body), self.http_timeout)
        outcome = verdict(status, attempt, self.http_schedule, acknowledged=acknowledged)
        next_at, note = next_due(outcome, attempt, self.http_schedule, self.clock())
        detail = (f"POST {redact_url(push.url)}: {answer} "
                  f"(attempt {attempt} of {self.http_schedule.max_attempts}){note}")
        await self.store.record_push(push.id, outcome=outcome.value, attempts=attempt,
                                     next_at=next_at, detail=detail)
        self.metrics.callback(outcome.value)
        level = logging.WARNING if outcome is Verdict.GAVE_UP else logging.INFO
        log.log(level, "mo push %s inbound=%s account=%s: %s", outcome.value, push.inbound_id,
                push.account, detail)


def exact_url(url: str) -> URL:
    """`url` as it is to be sent: its %-escapes as written (a Kannel dlr-url's "%2F" is not
    "/" to its receiver), only what cannot go on a request line (spaces, controls, octets
    beyond ASCII) escaped."""
    return URL("".join(c if 0x20 < ord(c) < 0x7F else quote(c, safe="") for c in url),
               encoded=True)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
