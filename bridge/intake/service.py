"""The one entry point both ingresses call: plan via the core, apply policy, persist, return ids.

No wire formats here: adapters build a `SubmitRequest`, get `RecipientResult`s back and turn
`BridgeError`s into their own replies through the error table.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bridge.config import AccountConfig, Config
from bridge.intake.credentials import Credentials
from bridge.ids import new_message_id, random_reference
from bridge.core.addresses import normalise_recipient, parse_sender
from bridge.core.callbacks import callback_host_allowed, callback_url_problem
from bridge.core.encoding import Encoding, choose_encoding
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.meta import Meta, MetaKey, meta_json
from bridge.core.model import Address, Ingress
from bridge.core.policy import duplicate_digester, quota_left
from bridge.core.routing import Routes
from bridge.core.segmentation import (
    ConcatMode,
    RouteForm,
    SegmentPlan,
    encode_tlvs,
    max_text_chars,
    plan_for_route,
    truncate_to_fit,
)
from bridge.core.states import MessageState
from bridge.metrics import Metrics
from bridge.store.base import (
    MessageView,
    NewMessage,
    NewPart,
    Store,
)

PAGE_SIZE = 25
MAX_PAGE = 1_000_000_000  # its offset still fits SQLite's 64-bit integers


@dataclass(frozen=True)
class Recipient:
    raw: str
    idempotency_key: str | None = None  # e.g. SMTP Message-ID + recipient
    meta: Meta = ()  # per-recipient ingress details (DSN NOTIFY, ORCPT)
    #: Already read and routed by `check_recipient` (SMTP, at RCPT time): not read twice.
    destination: Address | None = None
    #: Final outcomes mailed back as a DSN: "SUCCESS", "FAILURE", both, or None.
    dsn_notify: str | None = None


@dataclass(frozen=True)
class SubmitRequest:
    account: str
    recipients: tuple[Recipient, ...]
    text: str
    ingress: Ingress
    sender: str | None = None
    type_code: int | None = None
    flash: bool = False
    dlr: bool = True
    validity_minutes: int | None = None
    send_at: float | None = None  # epoch seconds
    reference: str | None = None  # idempotency key for the whole request
    callback_url: str | None = None
    meta: Meta = ()  # request-level ingress details
    truncate: bool = False  # too long: cut and mark the text instead of refusing it
    #: The HTTP dialects' own coding and class fields (a legacy type_code excludes them).
    encoding: Encoding | None = None
    message_class: int | None = None
    url: str | None = None  # what a WAP Push (type 4) opens
    #: Which report events the callback_url hears of (bridge.core.reports.ReportEvent);
    #: None: the final states, as SOAP callbacks.
    report_mask: int | None = None


_NOT_ROUTABLE = "is not routable"


def is_unroutable(error: BridgeError | None) -> bool:
    """An INVALID_DESTINATION for a dialable number that no SMSC route takes (a dialect may
    answer it apart from an undialable one, as Kannel does)."""
    return error is not None and error.name is ErrorName.INVALID_DESTINATION and \
        error.detail.endswith(_NOT_ROUTABLE)


@dataclass(frozen=True)
class RecipientResult:
    recipient: str
    status: str  # "accepted" or an ErrorName value
    message_id: str | None
    parts: int
    encoding: str | None
    error: BridgeError | None = None
    #: An idempotency key's repeat: the message was accepted by an earlier request.
    repeat: bool = False

    @property
    def accepted(self) -> bool:
        """Accepted now or earlier (idempotent repeat or duplicate): the caller may rely on it."""
        return self.message_id is not None


@dataclass(frozen=True)
class AccountInfo:
    name: str
    quota: int
    quota_left: int | None  # None = unlimited; counts the credit
    rate_per_s: float
    credit: int = 0  # parts an operator topped up beside the quota


#: Each ingress's logger, looked up once rather than per request (getLogger takes a lock).
_INGRESS_LOGS = {ingress: logging.getLogger(f"bridge.{ingress.value}") for ingress in Ingress}


def report_results(results: Sequence[RecipientResult], *, ingress: Ingress, account: str,
                   metrics: Metrics, peer: str = "") -> list[str]:
    """What every ingress does with a submit's results, in one place so they count and log
    alike: `accepted` per message taken on now, `rejected` per recipient error (a DUPLICATE
    too: nothing new was queued), a line per recipient refused and one for the request that
    says what it came to (accepted, refused, or nothing new: repeats and duplicates, with the
    ids they stand for). Returns the ids the caller may rely on (new, repeated or the
    duplicate's first), in order."""
    fresh = [r.message_id for r in results if r.message_id and r.error is None and not r.repeat]
    if fresh:
        metrics.accepted(ingress.value, len(fresh))
    log = _INGRESS_LOGS[ingress]
    for r in results:
        if r.error is None:
            continue
        metrics.rejected(ingress.value, r.error.name.value)
        if not r.accepted:
            log.info("%s recipient refused account=%s rcpt=%s: %s", ingress.value, account,
                     r.recipient, r.error)
    ids = [r.message_id for r in results if r.message_id is not None]
    refused = len(results) - len(ids)
    repeated = [r.message_id for r in results if r.repeat and r.message_id]
    duplicates = [r.message_id for r in results if r.error is not None and r.message_id]
    verb = "accepted" if fresh else "refused" if not ids else "nothing new"
    log.info("%s %s %saccount=%s ids=%s refused=%d%s%s", ingress.value, verb, peer, account,
             ",".join(fresh), refused, f" repeated={','.join(repeated)}" if repeated else "",
             f" duplicate_of={','.join(duplicates)}" if duplicates else "")
    return ids


@dataclass(frozen=True)
class Page:
    number: int
    count: int  # pages in all
    total: int
    messages: tuple[MessageView, ...]


def _new_parts(plan: SegmentPlan) -> tuple[NewPart, ...]:
    return tuple(NewPart(seg.seq, seg.total, seg.short_message, encode_tlvs(plan.tlvs(seg)))
                 for seg in plan.segments)


def _content(req: SubmitRequest) -> str:
    """What makes two requests the same message for the duplicate window: the text, and
    whatever else changes what the handset gets (a WAP Push's link, a coding or class)."""
    extra = (req.url, req.encoding.value if req.encoding else None, req.message_class)
    if extra == (None, None, None):
        return req.text
    return "\x1f".join((req.text, *(str(x) for x in extra)))


#: A limit the store refused a recipient for (core.policy.AcceptVerdict statuses) → its error.
_LIMIT_ERRORS: dict[str, Callable[[AccountConfig, Address], BridgeError]] = {
    "flood": lambda account, address: BridgeError(
        ErrorName.FLOOD, f"too many messages to {address.e164}, try later"),
    "over_limit": lambda account, address: BridgeError(
        ErrorName.OVER_LIMIT, f"{account.rate_per_s:g} messages/s"),
    "over_quota": lambda account, address: BridgeError(
        ErrorName.INSUFFICIENT_CREDIT, "quota exhausted"),
}


class Service:
    """Validates and accepts submissions; knows nothing of SMTP, SOAP or SMPP."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        routes: Routes | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_message_id,
        new_reference: Callable[[], int] = random_reference,
        concat: ConcatMode = ConcatMode.UDH8,
    ) -> None:
        self.config = config
        self.store = store
        #: Which SMSCs may send to a number for an account, in fail-over order, and the form
        #: each wants (bridge.core.routing); none: not routable. None: every number, by any
        #: SMSC, planned in `concat` (tests).
        self.routes = routes
        self.clock = clock
        self.new_id = new_id
        self.new_reference = new_reference
        # A request is planned for the first SMSC's form; a recipient whose first route
        # takes another is planned again for it (the dispatcher plans again on a re-route).
        self._default_form = routes.form(routes.names[0]) if routes is not None and \
            routes.names else RouteForm(concat)
        self._accounts = {a.name: a for a in config.accounts}
        self.credentials = Credentials(config.accounts, clock=clock)
        self._encodings = tuple(Encoding(e) for e in config.policy.auto_encodings)
        # Fixed by the config: the cheap length bound (the loosest form's, with routes).
        self._max_chars = max_text_chars(config.policy.max_parts,
                                         concat if routes is None else ConcatMode.UDH8)
        # Each ingress has its own limit; SMTP also applies it per RCPT, as the protocol wants.
        self._recipient_limits = {Ingress.SMTP: config.smtp.max_recipients,
                                  Ingress.SOAP: config.soap.max_recipients,
                                  Ingress.HTTP: config.http.max_recipients}
        # Whether each ingress's delivery reports are on (SMTP's DSNs go by mail, not here).
        self._reports_on = {Ingress.SMTP: False, Ingress.SOAP: config.soap.callbacks,
                            Ingress.HTTP: config.http.reports}
        self._in_flight = 0
        self._idle: asyncio.Event | None = None  # set while nothing is in flight, once asked

    async def drained(self, timeout: float) -> bool:
        """Wait until no submit is in flight (a graceful stop closes the listeners first, then
        waits here before the store closes, so a client is answered for what it sent)."""
        if self._in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ accounts

    def account(self, name: str) -> AccountConfig | None:
        return self._accounts.get(name)

    def relay_account(self, client_ip: str) -> AccountConfig | None:
        """The account whose relay_networks contain the client address, if any."""
        try:
            ip = ipaddress.ip_address(client_ip.split("%")[0])
        except ValueError:
            return None
        for account in self.config.accounts:
            if any(ip in net for net in account.relay_networks):
                return account
        return None

    @staticmethod
    def mail_from_allowed(account: AccountConfig, mail_from: str) -> bool:
        if not account.smtp_from:
            return True
        address = mail_from.lower()
        return any(fnmatch.fnmatchcase(address, pattern) for pattern in account.smtp_from)

    async def account_info(self, account: AccountConfig) -> AccountInfo:
        [usage] = await self.store.usage([account.name])
        return AccountInfo(account.name, account.quota,
                           quota_left(usage.used, account.quota, usage.credit),
                           account.rate_per_s, usage.credit)

    # ------------------------------------------------------------------ validation

    async def check_recipient(self, account: AccountConfig, raw: str) -> Address:
        """RCPT-time check: a dialable, routable number not currently flooded or rate limited
        (as every instance counts them: the store keeps the limits). Nothing is consumed
        here; `submit` decides for real."""
        address = self._destination(account, raw)
        policy = self.config.policy
        try:
            [refusal] = await self.store.limits_peek(
                account.name, [address.e164], now=self.clock(), flood_max=policy.flood_max,
                flood_gap_s=policy.flood_gap_s, rate_per_s=account.rate_per_s)
        except Exception as exc:  # the store cannot say: refuse for now, the relay retries
            raise BridgeError(ErrorName.STORE_UNAVAILABLE,
                              "the message store is unavailable") from exc
        if refusal is not None:
            raise _LIMIT_ERRORS[refusal](account, address)
        return address

    def _destination(self, account: AccountConfig, raw: str) -> Address:
        address = normalise_recipient(raw, default_region=account.default_region,
                                      mobile_only=account.mobile_only)
        if self.routes is not None and not self.routes.routable(address.e164, account.name):
            raise BridgeError(ErrorName.INVALID_DESTINATION, f"{address.e164} {_NOT_ROUTABLE}")
        return address

    def plan(self, account: AccountConfig,
             req: SubmitRequest) -> tuple[SegmentPlan, Address | None, str]:
        """Request-level checks shared by every recipient (sender, type, text): the plan, the
        source address and the text it plans (cut and marked when `req.truncate` asks)."""
        text = req.text
        if len(text) > self._max_chars:
            if not req.truncate:
                # Certainly too long: refuse before encoding megabytes on the event loop.
                raise BridgeError(ErrorName.INVALID_MESSAGE,
                                  f"{len(text)} characters need more than "
                                  f"{self.config.policy.max_parts} parts", too_big=True)
            text = text[:self._max_chars + 1]  # the cheap bound first: the search plans often
        sender_raw = req.sender if req.sender not in (None, "") else account.default_sender
        source = (parse_sender(sender_raw, allowed=account.senders) if sender_raw else None)
        reference = self.new_reference()

        def planned(candidate: str) -> SegmentPlan:
            return self._plan_text(candidate, req, self._default_form, reference)

        try:
            return planned(text), source, text
        except BridgeError as exc:
            if not (exc.too_big and req.truncate):
                raise

        def fits(candidate: str) -> bool:
            try:
                planned(candidate)
            except BridgeError as exc:
                if exc.too_big:
                    return False
                raise
            return True

        # "…" only where the text is UCS-2 anyway; "..." keeps a GSM/Latin-1 text cheap.
        ucs2 = choose_encoding(text, self._encodings) is Encoding.UCS2
        text = truncate_to_fit(text, fits, "…" if ucs2 else "...")
        return planned(text), source, text

    def _plan_text(self, text: str, req: SubmitRequest, form: RouteForm,
                   reference: int) -> SegmentPlan:
        return plan_for_route(text, form, auto=self._encodings, type_code=req.type_code,
                              flash=req.flash, encoding=req.encoding,
                              message_class=req.message_class, url=req.url,
                              max_parts=self.config.policy.max_parts, reference=reference)

    def _routed_plan(self, plans: dict[RouteForm, tuple[SegmentPlan, tuple[NewPart, ...]]],
                     routes: tuple[str, ...], text: str,
                     req: SubmitRequest) -> tuple[SegmentPlan, tuple[NewPart, ...]]:
        """The plan for a recipient's first route, made once per form in a request. One
        its form cannot carry keeps the request's plan: the dispatcher plans again for the
        route it takes, or fails the message when none can carry it."""
        form = self.routes.form(routes[0]) if self.routes is not None and routes \
            else self._default_form
        found = plans.get(form)
        if found is None:
            try:
                plan = self._plan_text(text, req, form, self.new_reference())
                found = plans[form] = (plan, _new_parts(plan))
            except BridgeError:
                found = plans[form] = plans[self._default_form]
        return found

    # ------------------------------------------------------------------ submit

    async def submit(self, req: SubmitRequest) -> list[RecipientResult]:
        """One result per recipient, in order. Raises BridgeError for request-level refusals
        (unknown account, sender, type, text, too many recipients, store down)."""
        self._in_flight += 1
        try:
            return await self._submit(req)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _submit(self, req: SubmitRequest) -> list[RecipientResult]:
        account = self._accounts.get(req.account)
        if account is None:
            raise BridgeError(ErrorName.AUTH_FAILED, "unknown account")
        if not req.recipients:
            raise BridgeError(ErrorName.INVALID_PARAMETER, "at least one recipient is required")
        limit = self._recipient_limits[req.ingress]
        if len(req.recipients) > limit:
            raise BridgeError(ErrorName.TOO_MANY_RECIPIENTS, f"at most {limit} per request")
        if req.validity_minutes is not None and not 1 <= req.validity_minutes <= 60 * 24 * 30:
            raise BridgeError(ErrorName.INVALID_PARAMETER, "validity_minutes must be 1..43200")
        if req.callback_url is not None:
            if not self._reports_on[req.ingress]:
                raise BridgeError(ErrorName.INVALID_DLR, "callbacks are turned off on this bridge")
            problem = callback_url_problem(req.callback_url)
            if problem is not None:
                raise BridgeError(ErrorName.INVALID_DLR, problem)
            if not callback_host_allowed(req.callback_url, account.callback_hosts):
                raise BridgeError(ErrorName.INVALID_DLR,
                                  "callback_url host is not one this account may use")
        plan, source, text = self.plan(account, req)
        now = self.clock()
        policy = self.config.policy
        validity_s = 60.0 * (req.validity_minutes or policy.validity_default_minutes)
        scheduled = req.send_at is not None and req.send_at > now + 1.0
        start = req.send_at if scheduled and req.send_at is not None else now
        plans = {self._default_form: (plan, _new_parts(plan))}
        planned: dict[int, SegmentPlan] = {}
        # Everything below is the same for every recipient of the request: worked out once.
        source_addr, source_ton, source_npi = \
            (source.value, source.ton, source.npi) if source else (None, 0, 0)
        digest = duplicate_digester(account.name, source_addr, _content(req), req.type_code,
                                    req.flash) if policy.duplicate_window_s > 0 else None
        request_meta: Meta = req.meta
        if req.reference:  # a callback reports it
            request_meta += ((MetaKey.REFERENCE, req.reference),)
        request_meta_json = meta_json(request_meta)
        reference_key = f"ref:{req.reference}\x1f" if req.reference else None
        registered_delivery = 1 if req.dlr else 0
        state = MessageState.SCHEDULED if scheduled else MessageState.QUEUED
        send_at = req.send_at if scheduled else None
        expires_at = start + validity_s
        results: list[RecipientResult | None] = [None] * len(req.recipients)
        pending: list[tuple[int, NewMessage]] = []
        destinations: dict[int, Address] = {}
        for index, recipient in enumerate(req.recipients):
            try:
                destination = recipient.destination if recipient.destination is not None \
                    else self._destination(account, recipient.raw)
            except BridgeError as exc:
                results[index] = RecipientResult(recipient.raw, exc.name.value, None, 0, None, exc)
                continue
            e164 = destination.e164
            key = recipient.idempotency_key or (
                reference_key + e164 if reference_key is not None else None)
            stored_meta = meta_json(request_meta, recipient.meta) if recipient.meta \
                else request_meta_json
            destinations[index] = destination
            routes = tuple(self.routes.candidates(e164, account.name)) \
                if self.routes is not None else ()
            routed, parts = self._routed_plan(plans, routes, text, req)
            planned[index] = routed
            pending.append((index, NewMessage(
                id=self.new_id(), account=account.name, ingress=req.ingress, recipient=e164,
                raw_recipient=recipient.raw, source_addr=source_addr, source_ton=source_ton,
                source_npi=source_npi, dest_ton=destination.ton, dest_npi=destination.npi,
                text=text, encoding=routed.encoding.value, data_coding=routed.data_coding,
                esm_class=routed.esm_class, registered_delivery=registered_delivery,
                parts=parts, state=state, created_at=now, send_at=send_at,
                expires_at=expires_at, idempotency_key=key,
                dup_digest=digest(e164) if digest is not None else None,
                dup_window_s=policy.duplicate_window_s, quota=account.quota,
                flood_max=policy.flood_max, flood_gap_s=policy.flood_gap_s,
                rate_per_s=account.rate_per_s,
                callback_url=req.callback_url, meta_json=stored_meta,
                dsn_notify=recipient.dsn_notify, report_mask=req.report_mask,
                routes=routes)))
        if pending:
            try:
                outcomes = await self.store.accept([m for _, m in pending], now=now)
            except Exception as exc:  # the store said no: nothing was accepted
                raise BridgeError(ErrorName.STORE_UNAVAILABLE, "the message store is unavailable") \
                    from exc
            for (index, _), outcome in zip(pending, outcomes):
                raw = req.recipients[index].raw
                # in message_payload mode the SMSC splits it: billed as it will
                billed, encoding = planned[index].air_parts, planned[index].encoding.value
                if outcome.status in ("accepted", "idempotent"):
                    results[index] = RecipientResult(raw, "accepted", outcome.message_id,
                                                     billed, encoding,
                                                     repeat=outcome.status == "idempotent")
                elif outcome.status == "duplicate":
                    error = BridgeError(ErrorName.DUPLICATE, "same message inside the duplicate window")
                    results[index] = RecipientResult(raw, ErrorName.DUPLICATE.value,
                                                     outcome.message_id, billed, encoding, error)
                else:
                    error = _LIMIT_ERRORS[outcome.status](account, destinations[index])
                    results[index] = RecipientResult(raw, error.name.value, None, 0, None, error)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ queries

    async def status(self, account: AccountConfig, ids: Sequence[str]) -> list[MessageView]:
        """Only the caller's own messages are visible."""
        views = await self.store.get_messages(list(ids))
        return [v for v in views if v.account == account.name]

    async def list_messages(self, account: AccountConfig, *, page: int = 1,
                            state: MessageState | None = None,
                            since: float | None = None) -> Page:
        if not 1 <= page <= MAX_PAGE:
            raise BridgeError(ErrorName.INVALID_PARAMETER, f"page must be 1..{MAX_PAGE}")
        total, views = await self.store.list_messages(
            account.name, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE, state=state, since=since)
        count = max(1, -(-total // PAGE_SIZE))
        return Page(page, count, total, tuple(views))
