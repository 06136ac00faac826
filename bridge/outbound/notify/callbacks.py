"""Delivery callbacks: POST each due callback to its URL and record what came of it.

The store queues a callback in the very transaction that makes a message with a
`callback_url` final (a trigger: bridge.store.schema), so no crash between the verdict and
the POST can lose it: after a restart it is simply still due. The sender runs with the
outbound side (bridge.runtime.outbound), so it is the one process that may send for a database.

Delivery is at least once: a POST whose answer never arrives (a timeout, a restart mid-way)
is sent again, so a receiver should treat (message_id, state) as the key. What each answer
means and when to try again is `bridge.core.callbacks`; every attempt leaves a timeline event
(`callback`, `callback_retry`, `callback_failed`) and a log line without the URL's
credentials or query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp

from bridge.config import SoapConfig
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
from bridge.core.meta import MetaKey, read_meta
from bridge.outbound.notify.duework import DueWork
from bridge.metrics import OutboundMetrics
from bridge.store.base import DueCallback, Store

log = logging.getLogger("bridge.callbacks")

#: POSTs in flight at once.
CONCURRENCY = 8
#: How long a stop waits for the POSTs in flight (one cut short goes again after a restart).
DRAIN_S = 5.0
#: The longest wait between two looks for due callbacks (shorter when retry_base_s is).
POLL_S = 1.0
_JSON = {"Content-Type": "application/json; charset=utf-8"}


def _why(exc: BaseException) -> str:
    """Why a POST got no answer, without the URL (aiohttp puts it in some messages)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return type(exc).__name__


class CallbackSender:
    def __init__(self, config: SoapConfig, store: Store, metrics: OutboundMetrics, *,
                 secrets: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`secrets`: account name → callback_secret, for the accounts whose callbacks are
        signed."""
        self.store = store
        self.secrets = dict(secrets or {})
        self.metrics = metrics
        self.clock = clock
        self.schedule = RetrySchedule(config.callback_max_attempts, config.callback_retry_base_s,
                                      config.callback_retry_max_s)
        self.timeout_s = config.callback_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._work = DueWork[DueCallback](
            "callbacks", concurrency=CONCURRENCY,
            poll_s=min(POLL_S, config.callback_retry_base_s),
            due=lambda limit: self.store.callbacks_due(now=self.clock(), limit=limit),
            work=self._attempt, ids=lambda callback: (callback.id,))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=CONCURRENCY),
            headers={"User-Agent": "sms-bridge"})
        self._work.start()

    async def stop(self, timeout: float) -> None:
        """Stop looking; give the POSTs in flight `timeout` seconds. One cut short stays due
        and goes again after a restart."""
        await self._work.stop(timeout)
        if self._session is not None:
            await self._session.close()

    async def _attempt(self, callback: DueCallback) -> None:
        assert self._session is not None
        attempt = callback.attempts + 1
        body = callback_document(CallbackFacts(
            message_id=callback.message_id, state=callback.state, at=callback.at,
            recipient=callback.recipient,
            reference=read_meta(callback.meta_json).get(MetaKey.REFERENCE),
            parts=callback.parts, parts_delivered=callback.parts_delivered,
            error=callback.error, error_detail=callback.error_detail, attempt=attempt))
        headers = _JSON
        secret = self.secrets.get(callback.account)
        if secret is not None:
            timestamp = int(self.clock())
            headers = {**_JSON, TIMESTAMP_HEADER: str(timestamp),
                       SIGNATURE_HEADER: callback_signature(secret, timestamp, body)}
        status: int | None = None
        try:
            async with self._session.post(callback.url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
            answer = f"HTTP {status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as exc:
            answer = _why(exc)
        outcome = verdict(status, attempt, self.schedule)
        now = self.clock()
        url = redact_url(callback.url)
        detail = f"POST {url}: {answer} (attempt {attempt} of {self.schedule.max_attempts})"
        next_at, note = next_due(outcome, attempt, self.schedule, now)
        detail += note
        # Not recorded (the store is in trouble): it stays due and goes again (DueWork).
        await self.store.record_callback(callback.id, callback.message_id,
                                         outcome=outcome.value, attempts=attempt,
                                         next_at=next_at, at=now, detail=detail)
        self.metrics.callback(outcome.value)
        level = logging.WARNING if outcome is Verdict.GAVE_UP else logging.INFO
        log.log(level, "callback %s id=%s state=%s: %s", outcome.value, callback.message_id,
                callback.state, detail)
