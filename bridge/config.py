"""Configuration: TOML validated once into frozen objects; every problem names its key path.

No globals: `load_config(path)` returns a `Config` that is passed to whatever needs it.
Secrets may be given as `{ env = "NAME" }` instead of a literal string; they are never logged.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from bridge.core.addresses import is_known_region, parse_sender
from bridge.core.callbacks import callback_host_pattern_problem, callback_url_problem
from bridge.core.errors import BridgeError
from bridge.core.floods import AuthRule, ConnectionLimits
from bridge.core.mailback import parse_notify

T = TypeVar("T")

DEFAULT_CONFIG_PATH = Path("conf/bridge.toml")
#: Names the config file when no -c is given (a service, a shell profile).
CONFIG_ENV = "SMS_BRIDGE_CONFIG"


def default_config_path(env: Mapping[str, str]) -> Path:
    return Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else DEFAULT_CONFIG_PATH


@dataclass(frozen=True)
class SmtpConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    domains: tuple[str, ...] = ("sms.localhost",)
    lmtp: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    require_tls: bool = False
    # AUTH without TLS is only allowed when the listener is loopback and this is set.
    auth_without_tls_on_loopback: bool = True
    max_recipients: int = 100
    max_message_bytes: int = 1_048_576
    subject: str = "prepend"  # prepend | ignore | only-if-body-empty
    too_long: str = "reject"  # reject | truncate
    hostname: str = "sms-bridge.localhost"
    max_connections: int = 500  # sessions on the listener, every address together
    max_connections_per_client: int = 20  # an address's share of them
    idle_evict_s: float = 5.0  # idle this long: closed when a newcomer needs the slot
    command_timeout_s: float = 300.0
    auth: AuthRule = AuthRule()
    # Mail back to email senders (bridge.outbound.notify.mailback): DSNs and SMS replies go to this relay,
    # "host:port"; empty = no mail goes back.
    smarthost: str = ""
    smarthost_tls: str = "none"  # none | starttls | tls
    smarthost_user: str | None = None
    smarthost_password: str | None = field(default=None, repr=False)
    smarthost_timeout_s: float = 30.0
    dsn: bool = True  # delivery status notifications (RFC 3464) as NOTIFY asks
    notify_default: str = "FAILURE"  # NOTIFY when a RCPT gives none: NEVER or a list
    dsn_delay_after_s: float = 3600.0  # NOTIFY=DELAY: one notice after this long; 0 = never
    report_from: str = ""  # From of DSNs; empty = MAILER-DAEMON@<first domain>
    mo_replies: bool = True  # an SMS reply goes to whoever mailed that number last
    mo_reply_window_s: float = 7 * 86400.0
    mail_max_attempts: int = 10
    mail_retry_base_s: float = 60.0
    mail_retry_max_s: float = 3600.0

    @property
    def mail_back(self) -> bool:
        return bool(self.smarthost)

    @property
    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(self.max_connections, self.max_connections_per_client,
                                self.idle_evict_s)

    @property
    def smarthost_address(self) -> tuple[str, int]:
        """(host, port) of `smarthost`, which the config has checked."""
        address = split_host_port(self.smarthost)
        assert address is not None, "smarthost is checked when the config is read"
        return address

    @property
    def report_address(self) -> str:
        return self.report_from or f"MAILER-DAEMON@{self.domains[0]}"


@dataclass(frozen=True)
class HttpLimits:
    """What an HTTP listener (aiohttp: [soap]'s, or [http]'s own) allows a connection."""

    max_connections: int = 1000
    max_connections_per_client: int = 100
    idle_evict_s: float = 5.0
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its head
    idle_timeout_s: float = 30.0  # without a byte, between requests or before the first

    @property
    def connections(self) -> ConnectionLimits:
        return ConnectionLimits(self.max_connections, self.max_connections_per_client,
                                self.idle_evict_s)


@dataclass(frozen=True)
class SoapConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    path: str = "/soap"
    tls_cert: str | None = None
    tls_key: str | None = None
    max_request_bytes: int = 1_048_576
    max_recipients: int = 1000
    limits: HttpLimits = HttpLimits()
    auth: AuthRule = AuthRule()
    # SendSms callback_url: POSTed once the message is final (bridge.outbound.notify.callbacks)
    callbacks: bool = True
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 10
    callback_retry_base_s: float = 5.0
    callback_retry_max_s: float = 600.0


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP dialects (bridge.ingress.http). No `listen`: served on the SOAP listener, so
    one port answers both; a path set to "" turns its dialect off."""

    listen_host: str | None = None  # None: on the [soap] listener
    listen_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    require_tls: bool = False
    max_recipients: int = 1000
    max_request_bytes: int = 262_144
    #: The connection limits of its own listener (with `listen`; else [soap]'s apply).
    limits: HttpLimits = HttpLimits()
    auth: AuthRule = AuthRule()
    bulksms_path: str = "/bulksms/bulksms"
    json_path: str = "/api/sms"
    kannel_path: str = "/cgi-bin/sendsms"
    jasmin_path: str = "/send"
    # Delivery reports (and inbound SMS to mo_url) through the durable callback queue
    reports: bool = True
    report_timeout_s: float = 10.0
    report_max_attempts: int = 10
    report_retry_base_s: float = 5.0
    report_retry_max_s: float = 600.0

    @property
    def shared(self) -> bool:
        """Served on the SOAP listener (no listener of its own)."""
        return self.listen_host is None


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///var/bridge.db"
    # Group commit: most operations in one transaction. The writer never waits for companions:
    # they gather while the previous commit syncs (measured: waiting added latency, no throughput).
    commit_max_batch: int = 2000
    # Final messages unchanged this long are deleted with their timeline (bridge.outbound.retention);
    # 0 keeps everything (SPEC §4: every state change stays queryable).
    retention_days: float = 0.0
    # PostgreSQL: the password (else the URL's, or PGPASSWORD), the connections per process,
    # and how long an instance's claims outlive its last heartbeat (then the living take them).
    password: str | None = field(default=None, repr=False)
    pool_size: int = 8
    lease_s: float = 30.0
    # This instance's name among those sharing the store (default: the host name); a restart
    # takes over at once what its crashed predecessor of this name on this host held.
    instance: str = ""


@dataclass(frozen=True)
class SmscConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "bridge"
    password: str = field(default="", repr=False)
    system_type: str = ""
    bind: str = "transceiver"  # transceiver | transmitter+receiver
    window: int = 10
    max_tps: float = 0.0  # 0 = unlimited
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    # A submit_sm_resp later than response_timeout_s is still the answer up to this long
    # after the submit (Kannel's wait-ack); only then is the outcome unknown (sent again).
    wait_ack_s: float = 60.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    tls: bool = False
    tls_ca: str | None = None  # trust this CA file instead of the system store
    tls_verify_hostname: bool = True
    prefixes: tuple[str, ...] = ()  # empty = catch-all
    id_format: str = "auto"  # auto | hex | dec
    concat: str = "udh8"  # udh8 | udh16 | sar | payload
    # The encodings this SMSC takes for text (bridge.core.segmentation.RouteForm); a message
    # in another is planned again for it.
    encodings: tuple[str, ...] = ("gsm7", "latin1", "ucs2")
    # Share of its routing tier's traffic (bridge.core.routing); 0 = fail-over only.
    weight: int = 0
    source_ton_short_code: int = 3
    source_npi_short_code: int = 0
    # Binds the SMSC allows the whole cluster (0 = every instance binds): that many live
    # instances hold it, and the bind moves when its holder dies (bridge.core.cluster).
    cluster_binds: int = 0
    # Health (bridge.core.health): out of routing for breaker_cooldown_s once at least
    # breaker_min_submits outcomes within breaker_window_s were breaker_failure_rate link
    # faults (system errors, failed submits, timeouts); 0 = never.
    breaker_failure_rate: float = 0.5
    breaker_min_submits: int = 10
    breaker_window_s: float = 30.0
    breaker_cooldown_s: float = 30.0


@dataclass(frozen=True)
class SimulatorConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "bridge"
    password: str = field(default="secret", repr=False)
    receipts: bool = True
    receipt_delay_s: float = 0.05
    id_format: str = "hex"  # form of ids in submit_sm_resp: hex | dec
    receipt_id_format: str = "dec"  # form of ids in the receipt: hex | dec | padded
    throttle_every: int = 0  # answer every Nth submit with 0x58
    error_every: int = 0  # answer every Nth submit with error_status
    error_status: int = 0x08  # ESME_RSYSERR
    silent_every: int = 0  # never answer every Nth submit
    fail_receipt_every: int = 0  # every Nth receipt is UNDELIV
    drop_after: int = 0  # close the connection after N submits (once)
    throttle_part: int = 0  # answer part K of concatenated messages with 0x58
    throttle_part_times: int = 0  # only its first T arrivals per message (0 = always)
    drop_between_parts: int = 0  # close after part 1 of the Nth concatenated message (once)
    response_delay_s: float = 0.0
    delay_every: int = 0  # 0: response_delay_s for every submit, N: for every Nth only
    reply_every: int = 0  # the handset of every Nth message answers with an MO
    reply_text: str = "Thanks, got it."
    # A deliver_sm (receipt or MO) answered with an error status is delivered again after
    # this long, as SMSCs do; 0 = never.
    redeliver_s: float = 1.0


@dataclass(frozen=True)
class PolicyConfig:
    duplicate_window_s: float = 60.0
    flood_max: int = 50
    flood_gap_s: float = 30.0
    max_parts: int = 10
    auto_encodings: tuple[str, ...] = ("gsm7", "latin1", "ucs2")
    validity_default_minutes: int = 2880
    retry_max: int = 8
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    part_deadline_s: float = 60.0  # all parts of one message go within this


@dataclass(frozen=True)
class AccountConfig:
    name: str
    password: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    senders: tuple[str, ...] = ()
    default_sender: str | None = None
    default_region: str = "GB"
    rate_per_s: float = 15.0
    quota: int = 0  # 0 = unlimited
    smtp_from: tuple[str, ...] = ()
    callback_hosts: tuple[str, ...] = ()  # SendSms callback_url host patterns; () = any
    #: Signs this account's callbacks (HMAC-SHA256, bridge.core.callbacks.callback_signature).
    callback_secret: str | None = field(default=None, repr=False)
    relay_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    mobile_only: bool = False
    #: Bearer tokens of the JSON API, as password hashes (bridge.intake.credentials).
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: Where the bulk-SMS dialect's delivery reports go (a form POST), for requests with dlr=1.
    dlr_url: str | None = None
    #: Where inbound SMS to this account's numbers (its numeric `senders`) are POSTed, as JSON.
    mo_url: str | None = None
    #: The SMSCs this account sends through, in fail-over order (bridge.core.routing); () =
    #: the prefix routes.
    smscs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class AdminUser:
    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class AdminConfig:
    """The operator's console (bridge.ingress.console): who may log in, whether it shows
    phone numbers whole, and where it listens (None: on the [soap] listener)."""

    users: tuple[AdminUser, ...] = ()
    show_numbers: bool = False
    listen_host: str | None = None
    listen_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None

    def password_hashes(self) -> dict[str, str]:
        return {user.name: user.password_hash for user in self.users}


@dataclass(frozen=True)
class Config:
    smtp: SmtpConfig = SmtpConfig()
    soap: SoapConfig = SoapConfig()
    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    smsc: tuple[SmscConfig, ...] = ()
    simulator: SimulatorConfig = SimulatorConfig()
    policy: PolicyConfig = PolicyConfig()
    accounts: tuple[AccountConfig, ...] = ()
    log: LogConfig = LogConfig()
    admin: AdminConfig = AdminConfig()
    base_dir: Path = Path(".")

    def account(self, name: str) -> AccountConfig | None:
        for acct in self.accounts:
            if acct.name == name:
                return acct
        return None

    def mo_owner(self, number: str) -> AccountConfig | None:
        """The account with an `mo_url` one of whose numeric senders is `number` (with or
        without its "+"): inbound SMS to it are pushed there."""
        digits = number.lstrip("+")
        for acct in self.accounts:
            if acct.mo_url and any(s.lstrip("+") == digits for s in acct.senders
                                   if s.lstrip("+").isdigit()):
                return acct
        return None


class ConfigError(Exception):
    """All problems found in one config, each prefixed with its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- validation


class _Reader:
    """Reads one TOML table, collecting problems instead of stopping at the first."""

    def __init__(self, table: Mapping[str, Any], path: str, problems: list[str],
                 env: Mapping[str, str]) -> None:
        self.table = table
        self.path = path
        self.problems = problems
        self.env = env
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str) -> None:
        self.problems.append(f"{self.key(name)}: {message}")

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: T,
            check: Callable[[Any], str | None] | None = None) -> T:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool:
            self.fail(name, f"must be {_kind_name(kind)}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.fail(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
            return default
        if check is not None:
            problem = check(value)
            if problem:
                self.fail(name, problem)
                return default
        return value  # type: ignore[return-value]

    def secret(self, name: str) -> str | None:
        """A literal string or `{ env = "VAR" }`; the value is never echoed in a problem."""
        self.used.add(name)
        if name not in self.table:
            return None
        value = self.table[name]
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
            var = value["env"]
            if var not in self.env:
                self.fail(name, f"environment variable {var} is not set")
                return None
            return self.env[var]
        self.fail(name, 'must be a string or { env = "VARIABLE" }')
        return None

    def strings(self, name: str, default: tuple[str, ...] = (),
                check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(name, "must be a list of strings")
            return default
        if check is not None:
            for i, item in enumerate(value):
                problem = check(item)
                if problem:
                    self.problems.append(f"{self.key(name)}[{i}]: {problem}")
        return tuple(value)

    def listen(self, name: str, default_host: str, default_port: int) -> tuple[str, int]:
        raw = self.get(name, str, f"{default_host}:{default_port}")
        address = split_host_port(raw)
        if address is None:
            self.fail(name, f'must be "host:port" with a port 0..65535, got "{raw}"')
            return default_host, default_port
        problem = host_problem(address[0])
        if problem:
            self.fail(name, f'{problem}, got "{raw}"')
            return default_host, default_port
        return address[0] or "127.0.0.1", address[1]

    def finish(self) -> None:
        for name in self.table:
            if name not in self.used:
                self.fail(name, "unknown key" + did_you_mean(name, self.used))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the known name closest to a typo, or nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be {lo:g}..{hi:g}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else "must be one of " + ", ".join(
        f'"{c}"' for c in choices)


def _reply_text_problem(value: str) -> str | None:
    return None if 0 < len(value) <= 1000 else "must be 1..1000 characters"


def _sub(root: Mapping[str, Any], name: str, problems: list[str],
         env: Mapping[str, str]) -> _Reader:
    table = root.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name}: must be a table")
        table = {}
    return _Reader(table, name, problems, env)


def _smtp(r: _Reader) -> SmtpConfig:
    d = SmtpConfig()
    host, port = r.listen("listen", d.listen_host, d.listen_port)
    cfg = SmtpConfig(
        listen_host=host, listen_port=port,
        domains=tuple(x.lower() for x in r.strings("domains", d.domains)),
        lmtp=r.get("lmtp", bool, d.lmtp),
        tls_cert=r.get("tls_cert", str, None), tls_key=r.get("tls_key", str, None),
        require_tls=r.get("require_tls", bool, d.require_tls),
        auth_without_tls_on_loopback=r.get("auth_without_tls_on_loopback", bool,
                                           d.auth_without_tls_on_loopback),
        max_recipients=r.get("max_recipients", int, d.max_recipients, _between(1, 10_000)),
        max_message_bytes=r.get("max_message_bytes", int, d.max_message_bytes,
                                _between(1024, 100 * 1024 * 1024)),
        subject=r.get("subject", str, d.subject, _one_of("prepend", "ignore", "only-if-body-empty")),
        too_long=r.get("too_long", str, d.too_long, _one_of("reject", "truncate")),
        hostname=r.get("hostname", str, d.hostname),
        max_connections=r.get("max_connections", int, d.max_connections,
                              _between(1, 100_000)),
        max_connections_per_client=r.get("max_connections_per_client", int,
                                         d.max_connections_per_client, _between(1, 10_000)),
        idle_evict_s=r.get("idle_evict_s", float, d.idle_evict_s, _between(0, 3600)),
        command_timeout_s=r.get("command_timeout_s", float, d.command_timeout_s,
                                _between(1, 3600)),
        auth=_auth_rule(r),
        smarthost=r.get("smarthost", str, d.smarthost, _smarthost_problem),
        smarthost_tls=r.get("smarthost_tls", str, d.smarthost_tls,
                            _one_of("none", "starttls", "tls")),
        smarthost_user=r.get("smarthost_user", str, None),
        smarthost_password=r.secret("smarthost_password"),
        smarthost_timeout_s=r.get("smarthost_timeout_s", float, d.smarthost_timeout_s,
                                  _between(0.1, 600)),
        dsn=r.get("dsn", bool, d.dsn),
        notify_default=r.get("notify_default", str, d.notify_default, _notify_problem),
        dsn_delay_after_s=r.get("dsn_delay_after_s", float, d.dsn_delay_after_s,
                                _between(0, 30 * 86400)),
        report_from=r.get("report_from", str, d.report_from,
                          lambda v: None if "@" in v and not any(c.isspace() or c in "<>"
                                                                  for c in v)
                          else "must be a mail address like MAILER-DAEMON@sms.example"),
        mo_replies=r.get("mo_replies", bool, d.mo_replies),
        mo_reply_window_s=r.get("mo_reply_window_s", float, d.mo_reply_window_s,
                                _between(0, 366 * 86400)),
        mail_max_attempts=r.get("mail_max_attempts", int, d.mail_max_attempts,
                                _between(1, 100)),
        mail_retry_base_s=r.get("mail_retry_base_s", float, d.mail_retry_base_s,
                                _between(0.01, 86400)),
        mail_retry_max_s=r.get("mail_retry_max_s", float, d.mail_retry_max_s,
                               _between(0.01, 7 * 86400)),
    )
    if not cfg.domains:
        r.fail("domains", "must name at least one domain")
    if cfg.max_connections_per_client > cfg.max_connections:
        r.fail("max_connections_per_client", "must not be more than max_connections")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        r.fail("tls_key", "tls_cert and tls_key go together")
    if cfg.require_tls and cfg.tls_cert is None:
        r.fail("require_tls", "needs tls_cert and tls_key")
    if (cfg.smarthost_user is None) != (cfg.smarthost_password is None):
        r.fail("smarthost_password", "smarthost_user and smarthost_password go together")
    if cfg.smarthost_user is not None and cfg.smarthost_tls == "none" and cfg.mail_back \
            and not is_loopback(cfg.smarthost_address[0]):
        r.fail("smarthost_tls", "a password goes to a smarthost beyond loopback only over "
                                "TLS: set starttls or tls")
    if cfg.mail_retry_max_s < cfg.mail_retry_base_s:
        r.fail("mail_retry_max_s", "must not be less than mail_retry_base_s")
    r.finish()
    return cfg


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def host_problem(host: str) -> str | None:
    """Why `host` is neither an IP address nor a host name (empty: all addresses), or None.
    Dotted digits must be an IPv4 address: "999.1.1.1" is a typo, not a name to resolve."""
    if not host:
        return None
    if ":" in host or re.fullmatch(r"[\d.]+", host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return "the host is not an IP address"
        return None
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        return "the host is not a host name"
    return None


def split_host_port(raw: str) -> tuple[str, int] | None:
    """"host:port" (an IPv6 host in brackets or not) → (host, port); None when it is not
    that, with a port 0..65535. The host may be empty."""
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def _smarthost_problem(value: str) -> str | None:
    """Empty, or "host:port" with a host and a port 1..65535."""
    if not value:
        return None
    address = split_host_port(value)
    if address is None or not address[0] or address[1] == 0:
        return f'must be "host:port" with a port 1..65535, got "{value}"'
    return None


def _notify_problem(value: str) -> str | None:
    try:
        parse_notify(value)
    except ValueError:
        return 'must be "NEVER" or a list of SUCCESS, FAILURE, DELAY ("SUCCESS,FAILURE")'
    return None


def is_loopback(host: str) -> bool:
    """A host name or address that never leaves this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _soap(r: _Reader) -> SoapConfig:
    d = SoapConfig()
    host, port = r.listen("listen", d.listen_host, d.listen_port)
    cfg = SoapConfig(
        listen_host=host, listen_port=port,
        path=r.get("path", str, d.path, lambda v: None if v.startswith("/") else 'must start with "/"'),
        tls_cert=r.get("tls_cert", str, None), tls_key=r.get("tls_key", str, None),
        max_request_bytes=r.get("max_request_bytes", int, d.max_request_bytes,
                                _between(1024, 64 * 1024 * 1024)),
        max_recipients=r.get("max_recipients", int, d.max_recipients, _between(1, 100_000)),
        limits=_http_limits(r),
        auth=_auth_rule(r),
        callbacks=r.get("callbacks", bool, d.callbacks),
        callback_timeout_s=r.get("callback_timeout_s", float, d.callback_timeout_s,
                                 _between(0.1, 300)),
        callback_max_attempts=r.get("callback_max_attempts", int, d.callback_max_attempts,
                                    _between(1, 100)),
        callback_retry_base_s=r.get("callback_retry_base_s", float, d.callback_retry_base_s,
                                    _between(0.01, 3600)),
        callback_retry_max_s=r.get("callback_retry_max_s", float, d.callback_retry_max_s,
                                   _between(0.01, 86400)),
    )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        r.fail("tls_key", "tls_cert and tls_key go together")
    if cfg.callback_retry_max_s < cfg.callback_retry_base_s:
        r.fail("callback_retry_max_s", "must not be less than callback_retry_base_s")
    r.finish()
    return cfg


_LIMIT_KEYS = ("max_connections", "max_connections_per_client", "idle_evict_s",
               "header_timeout_s", "idle_timeout_s")


def _http_limits(r: _Reader) -> HttpLimits:
    """An aiohttp listener's connection limits ([soap], or [http] with its own listener)."""
    d = HttpLimits()
    limits = HttpLimits(
        max_connections=r.get("max_connections", int, d.max_connections, _between(1, 100_000)),
        max_connections_per_client=r.get("max_connections_per_client", int,
                                         d.max_connections_per_client, _between(1, 100_000)),
        idle_evict_s=r.get("idle_evict_s", float, d.idle_evict_s, _between(0, 3600)),
        header_timeout_s=r.get("header_timeout_s", float, d.header_timeout_s,
                               _between(0.1, 3600)),
        idle_timeout_s=r.get("idle_timeout_s", float, d.idle_timeout_s, _between(0.1, 86400)),
    )
    if limits.max_connections_per_client > limits.max_connections:
        r.fail("max_connections_per_client", "must not be more than max_connections")
    return limits


def _auth_rule(r: _Reader) -> AuthRule:
    """How a listener slows and refuses authentication failures (bridge.core.floods)."""
    d = AuthRule()
    rule = AuthRule(
        window_s=r.get("auth_window_s", float, d.window_s, _between(1, 86400)),
        free_failures=r.get("auth_free_failures", int, d.free_failures, _between(0, 1000)),
        delay_s=r.get("auth_delay_s", float, d.delay_s, _between(0, 60)),
        delay_max_s=r.get("auth_delay_max_s", float, d.delay_max_s, _between(0, 60)),
        max_failures=r.get("auth_max_failures", int, d.max_failures, _between(1, 100_000)),
        max_failures_per_user=r.get("auth_max_failures_per_user", int,
                                    d.max_failures_per_user, _between(1, 100_000)),
    )
    if rule.delay_max_s < rule.delay_s:
        r.fail("auth_delay_max_s", "must not be less than auth_delay_s")
    return rule


def _path_problem(value: str) -> str | None:
    if value and (not value.startswith("/") or any(c.isspace() or c in "?#{}" for c in value)):
        return 'must be "" (off) or a path starting with "/", without spaces, "?", "#" or braces'
    return None


def _http(r: _Reader, soap: SoapConfig) -> HttpConfig:
    d = HttpConfig()
    own = "listen" in r.table
    host, port = r.listen("listen", "127.0.0.1", 0) if own else (None, 0)
    paths = {name: r.get(name, str, getattr(d, name), _path_problem)
             for name in ("bulksms_path", "json_path", "kannel_path", "jasmin_path")}
    cfg = HttpConfig(
        listen_host=host, listen_port=port,
        tls_cert=r.get("tls_cert", str, None), tls_key=r.get("tls_key", str, None),
        require_tls=r.get("require_tls", bool, d.require_tls),
        max_recipients=r.get("max_recipients", int, d.max_recipients, _between(1, 100_000)),
        max_request_bytes=r.get("max_request_bytes", int, d.max_request_bytes,
                                _between(1024, 64 * 1024 * 1024)),
        limits=_http_limits(r),
        auth=_auth_rule(r),
        reports=r.get("reports", bool, d.reports),
        report_timeout_s=r.get("report_timeout_s", float, d.report_timeout_s, _between(0.1, 300)),
        report_max_attempts=r.get("report_max_attempts", int, d.report_max_attempts,
                                  _between(1, 100)),
        report_retry_base_s=r.get("report_retry_base_s", float, d.report_retry_base_s,
                                  _between(0.01, 3600)),
        report_retry_max_s=r.get("report_retry_max_s", float, d.report_retry_max_s,
                                 _between(0.01, 86400)),
        **paths,
    )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        r.fail("tls_key", "tls_cert and tls_key go together")
    if cfg.tls_cert is not None and not own:
        r.fail("tls_cert", "needs listen: on the [soap] listener the [soap] certificate serves")
    for key in _LIMIT_KEYS:
        if key in r.table and not own:
            r.fail(key, "needs listen: on the [soap] listener the [soap] limits apply")
    if cfg.require_tls and (cfg.tls_cert if own else soap.tls_cert) is None:
        r.fail("require_tls", "needs tls_cert and tls_key" if own else
               "needs [soap] tls_cert and tls_key (the dialects are on the SOAP listener)")
    served = [p for p in paths.values() if p]
    if len(set(served)) != len(served):
        r.fail("jasmin_path", "each dialect needs a path of its own")
    if not own and soap.path.rstrip("/") in {p.rstrip("/") for p in served}:
        r.fail("bulksms_path", f"a dialect path equals [soap] path \"{soap.path}\"")
    if cfg.report_retry_max_s < cfg.report_retry_base_s:
        r.fail("report_retry_max_s", "must not be less than report_retry_base_s")
    r.finish()
    return cfg


def _store(r: _Reader) -> StoreConfig:
    d = StoreConfig()

    def check_url(url: str) -> str | None:
        if url.startswith("sqlite:///"):
            return None
        if url.startswith(("postgresql://", "postgres://")):
            return None
        return 'must be "sqlite:///PATH" or "postgresql://USER@HOST:PORT/DB"'

    cfg = StoreConfig(
        url=r.get("url", str, d.url, check_url),
        commit_max_batch=r.get("commit_max_batch", int, d.commit_max_batch, _between(1, 100_000)),
        retention_days=r.get("retention_days", float, d.retention_days, _between(0, 36_500)),
        password=r.secret("password"),
        pool_size=r.get("pool_size", int, d.pool_size, _between(5, 1000)),
        lease_s=r.get("lease_s", float, d.lease_s, _between(2, 30)),
        instance=r.get("instance", str, d.instance,
                       lambda v: None if len(v) <= 64 and "/" not in v
                       else "must be at most 64 characters, without \"/\""),
    )
    r.finish()
    return cfg


def _smsc(r: _Reader, index: int) -> SmscConfig:
    d = SmscConfig(name="")
    name = r.get("name", str, f"smsc{index}")
    cfg = SmscConfig(
        name=name,
        host=r.get("host", str, d.host),
        port=r.get("port", int, d.port, _between(1, 65535)),
        system_id=r.get("system_id", str, d.system_id,
                        lambda v: None if 0 < len(v) <= 15 else "must be 1..15 characters"),
        password=r.secret("password") or "",
        system_type=r.get("system_type", str, d.system_type,
                          lambda v: None if len(v) <= 12 else "must be at most 12 characters"),
        bind=r.get("bind", str, d.bind, _one_of("transceiver", "transmitter+receiver")),
        window=r.get("window", int, d.window, _between(1, 1000)),
        max_tps=r.get("max_tps", float, d.max_tps, _between(0, 100_000)),
        enquire_link_s=r.get("enquire_link_s", float, d.enquire_link_s, _between(1, 3600)),
        response_timeout_s=r.get("response_timeout_s", float, d.response_timeout_s,
                                 _between(0.1, 600)),
        wait_ack_s=r.get("wait_ack_s", float, d.wait_ack_s, _between(0.1, 3600)),
        reconnect_min_s=r.get("reconnect_min_s", float, d.reconnect_min_s, _between(0.01, 600)),
        reconnect_max_s=r.get("reconnect_max_s", float, d.reconnect_max_s, _between(0.01, 3600)),
        tls=r.get("tls", bool, d.tls),
        tls_ca=r.get("tls_ca", str, None),
        tls_verify_hostname=r.get("tls_verify_hostname", bool, d.tls_verify_hostname),
        prefixes=r.strings("prefixes", (), lambda p: None if p.startswith("+") and p[1:].isdigit()
                           else 'must be "+" followed by digits'),
        id_format=r.get("id_format", str, d.id_format, _one_of("auto", "hex", "dec")),
        concat=r.get("concat", str, d.concat, _one_of("udh8", "udh16", "sar", "payload")),
        encodings=r.strings("encodings", d.encodings, _one_of("gsm7", "latin1", "ucs2")),
        weight=r.get("weight", int, d.weight, _between(0, 1_000_000)),
        source_ton_short_code=r.get("source_ton_short_code", int, d.source_ton_short_code,
                                    _between(0, 6)),
        source_npi_short_code=r.get("source_npi_short_code", int, d.source_npi_short_code,
                                    _between(0, 18)),
        cluster_binds=r.get("cluster_binds", int, d.cluster_binds, _between(0, 1000)),
        breaker_failure_rate=r.get("breaker_failure_rate", float, d.breaker_failure_rate,
                                   _between(0, 1)),
        breaker_min_submits=r.get("breaker_min_submits", int, d.breaker_min_submits,
                                  _between(1, 1_000_000)),
        breaker_window_s=r.get("breaker_window_s", float, d.breaker_window_s,
                               _between(0.1, 86400)),
        breaker_cooldown_s=r.get("breaker_cooldown_s", float, d.breaker_cooldown_s,
                                 _between(0.01, 86400)),
    )
    if "ucs2" not in cfg.encodings:
        r.fail("encodings", 'must include "ucs2" so every text has an encoding this SMSC takes')
    r.finish()
    return cfg


def parse_simulator(table: Mapping[str, Any]) -> SimulatorConfig:
    """A `[simulator]` table alone, checked as in a whole config (`sms-bridge simulator`'s
    options go through it); ConfigError names each bad key."""
    problems: list[str] = []
    config = _simulator(_Reader(table, "simulator", problems, {}))
    if problems:
        raise ConfigError(problems)
    return config


def _simulator(r: _Reader) -> SimulatorConfig:
    d = SimulatorConfig()
    cfg = SimulatorConfig(
        enabled=r.get("enabled", bool, d.enabled),
        host=r.get("host", str, d.host),
        port=r.get("port", int, d.port, _between(0, 65535)),
        system_id=r.get("system_id", str, d.system_id),
        password=r.secret("password") or d.password,
        receipts=r.get("receipts", bool, d.receipts),
        receipt_delay_s=r.get("receipt_delay_s", float, d.receipt_delay_s, _between(0, 3600)),
        id_format=r.get("id_format", str, d.id_format, _one_of("hex", "dec")),
        receipt_id_format=r.get("receipt_id_format", str, d.receipt_id_format,
                                _one_of("hex", "dec", "padded")),
        throttle_every=r.get("throttle_every", int, d.throttle_every, _between(0, 1_000_000)),
        error_every=r.get("error_every", int, d.error_every, _between(0, 1_000_000)),
        error_status=r.get("error_status", int, d.error_status,
                           lambda v: None if 0 < v <= 0xFFFFFFFF else "must be 0x1..0xFFFFFFFF"),
        silent_every=r.get("silent_every", int, d.silent_every, _between(0, 1_000_000)),
        fail_receipt_every=r.get("fail_receipt_every", int, d.fail_receipt_every,
                                 _between(0, 1_000_000)),
        drop_after=r.get("drop_after", int, d.drop_after, _between(0, 1_000_000_000)),
        throttle_part=r.get("throttle_part", int, d.throttle_part, _between(0, 255)),
        throttle_part_times=r.get("throttle_part_times", int, d.throttle_part_times,
                                  _between(0, 1_000_000)),
        drop_between_parts=r.get("drop_between_parts", int, d.drop_between_parts,
                                 _between(0, 1_000_000_000)),
        response_delay_s=r.get("response_delay_s", float, d.response_delay_s,
                               _between(0, 3600)),
        delay_every=r.get("delay_every", int, d.delay_every, _between(0, 1_000_000)),
        reply_every=r.get("reply_every", int, d.reply_every, _between(0, 1_000_000)),
        reply_text=r.get("reply_text", str, d.reply_text, _reply_text_problem),
        redeliver_s=r.get("redeliver_s", float, d.redeliver_s, _between(0, 3600)),
    )
    r.finish()
    return cfg


def _policy(r: _Reader) -> PolicyConfig:
    d = PolicyConfig()
    cfg = PolicyConfig(
        duplicate_window_s=r.get("duplicate_window_s", float, d.duplicate_window_s,
                                 _between(0, 86400 * 7)),
        flood_max=r.get("flood_max", int, d.flood_max, _between(0, 1_000_000)),
        flood_gap_s=r.get("flood_gap_s", float, d.flood_gap_s, _between(0, 86400)),
        max_parts=r.get("max_parts", int, d.max_parts, _between(1, 255)),
        auto_encodings=r.strings("auto_encodings", d.auto_encodings,
                                 _one_of("gsm7", "latin1", "ucs2")),
        validity_default_minutes=r.get("validity_default_minutes", int,
                                       d.validity_default_minutes, _between(1, 60 * 24 * 30)),
        retry_max=r.get("retry_max", int, d.retry_max, _between(0, 1000)),
        retry_base_s=r.get("retry_base_s", float, d.retry_base_s, _between(0.001, 3600)),
        retry_max_s=r.get("retry_max_s", float, d.retry_max_s, _between(0.001, 86400)),
        part_deadline_s=r.get("part_deadline_s", float, d.part_deadline_s, _between(1, 3600)),
    )
    if "ucs2" not in cfg.auto_encodings:
        r.fail("auto_encodings", 'must include "ucs2" so every text has an exact encoding')
    r.finish()
    return cfg


def _sender_problem(text: str) -> str | None:
    """The core's own sender rules, so a sender the service would refuse fails at startup."""
    try:
        parse_sender(text)
    except BridgeError as exc:
        return f'"{text}" is not a valid sender id: {exc.detail}'
    return None


def _account(r: _Reader, index: int) -> AccountConfig:
    d = AccountConfig(name="")
    name = r.get("name", str, "", lambda v: None if v else "must not be empty")
    if "name" not in r.table:
        r.fail("name", "is required")

    def check_network(text: str) -> str | None:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f'"{text}" is not an IP network'
        return None

    networks = r.strings("relay_networks", (), check_network)
    parsed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
    password = r.secret("password")
    password_hash = r.secret("password_hash")
    if password is not None and password_hash is not None:
        r.fail("password_hash", "give password or password_hash, not both")
    cfg = AccountConfig(
        name=name,
        password=password,
        password_hash=password_hash,
        senders=r.strings("senders", (), _sender_problem),
        default_sender=r.get("default_sender", str, None, _sender_problem),
        default_region=r.get("default_region", str, d.default_region,
                             lambda v: None if len(v) == 2 and v.isupper() and is_known_region(v)
                             else "must be an ISO 3166 alpha-2 region libphonenumber knows, "
                                  "such as \"GB\""),
        rate_per_s=r.get("rate_per_s", float, d.rate_per_s, _between(0, 100_000)),
        quota=r.get("quota", int, d.quota, _between(0, 10**12)),
        smtp_from=tuple(x.lower() for x in r.strings("smtp_from")),
        callback_hosts=tuple(x.lower() for x in r.strings("callback_hosts",
                                                          check=callback_host_pattern_problem)),
        relay_networks=tuple(parsed),
        mobile_only=r.get("mobile_only", bool, d.mobile_only),
        callback_secret=r.secret("callback_secret"),
        api_tokens=r.strings("api_tokens", (), _hash_problem),
        dlr_url=r.get("dlr_url", str, None, lambda v: callback_url_problem(v, "dlr_url")),
        mo_url=r.get("mo_url", str, None, lambda v: callback_url_problem(v, "mo_url")),
        smscs=r.strings("smscs"),
    )
    if cfg.callback_secret is not None and len(cfg.callback_secret) < 16:
        r.fail("callback_secret", "must be at least 16 characters")
    r.finish()
    return cfg


def _admin(r: _Reader, env: Mapping[str, str]) -> AdminConfig:
    own = "listen" in r.table
    host, port = r.listen("listen", "127.0.0.1", 0) if own else (None, 0)
    r.used.add("users")
    raw = r.table.get("users", [])
    if isinstance(raw, dict):
        raw = [raw]
    users: list[AdminUser] = []
    if not isinstance(raw, list) or not all(isinstance(u, dict) for u in raw):
        r.fail("users", 'must be a list of tables like { name = "ops", password_hash = "…" }')
        raw = []
    for i, table in enumerate(raw):
        user = _Reader(table, f"{r.key('users')}[{i}]", r.problems, env)
        name = user.get("name", str, "", lambda v: None if 0 < len(v) <= 64 and ":" not in v
                        else 'must be 1..64 characters, without ":"')
        secret = user.secret("password_hash")
        if "name" not in table:
            user.fail("name", "is required")
        if "password_hash" not in table:
            user.fail("password_hash", "is required (sms-bridge passwd makes one)")
        elif secret is not None and _hash_problem(secret):
            user.fail("password_hash", "must be a hash from sms-bridge passwd "
                                       "(pbkdf2_sha256$iterations$salt_hex$hash_hex)")
        user.finish()
        if name and secret:
            users.append(AdminUser(name, secret))
    if len({u.name for u in users}) != len(users):
        r.fail("users", "each user needs a name of its own")
    cfg = AdminConfig(users=tuple(users), show_numbers=r.get("show_numbers", bool, False),
                      listen_host=host, listen_port=port,
                      tls_cert=r.get("tls_cert", str, None), tls_key=r.get("tls_key", str, None))
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        r.fail("tls_key", "tls_cert and tls_key go together")
    if cfg.tls_cert is not None and not own:
        r.fail("tls_cert", "needs listen: on the [soap] listener the [soap] certificate serves")
    r.finish()
    return cfg


def _hash_problem(stored: str) -> str | None:
    """An `api_tokens` entry must be a hash in `password_hash`'s form, never a token."""
    fields = stored.split("$")
    if len(fields) != 4 or fields[0] != "pbkdf2_sha256" or not fields[1].isdigit() or \
            any(c not in "0123456789abcdef" for c in fields[2] + fields[3]) or not fields[3]:
        return "must be a hash like password_hash (pbkdf2_sha256$iterations$salt_hex$hash_hex)"
    return None


def _tables(root: Mapping[str, Any], name: str, problems: list[str]) -> list[dict[str, Any]]:
    value = root.get(name, [])
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append(f"{name}: must be an array of tables ([[{name}]])")
        return []
    return value


def parse_config(data: Mapping[str, Any], *, base_dir: Path = Path("."),
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    known = {"smtp", "soap", "http", "store", "smsc", "simulator", "policy", "account", "log",
             "admin"}
    for key in data:
        if key not in known:
            problems.append(f"{key}: unknown section" + did_you_mean(key, known))
    smtp = _smtp(_sub(data, "smtp", problems, env))
    soap = _soap(_sub(data, "soap", problems, env))
    http = _http(_sub(data, "http", problems, env), soap)
    store = _store(_sub(data, "store", problems, env))
    simulator = _simulator(_sub(data, "simulator", problems, env))
    policy = _policy(_sub(data, "policy", problems, env))
    admin = _admin(_sub(data, "admin", problems, env), env)
    log_reader = _sub(data, "log", problems, env)
    log = LogConfig(level=log_reader.get("level", str, "info",
                                         _one_of("debug", "info", "warning", "error")))
    log_reader.finish()
    smscs = tuple(_smsc(_Reader(t, f"smsc[{i}]", problems, env), i)
                  for i, t in enumerate(_tables(data, "smsc", problems)))
    accounts = tuple(_account(_Reader(t, f"account[{i}]", problems, env), i)
                     for i, t in enumerate(_tables(data, "account", problems)))
    for label, names in (("smsc", [s.name for s in smscs]), ("account", [a.name for a in accounts])):
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                problems.append(f"{label}[{i}].name: duplicate name \"{name}\"")
            seen.add(name)
    routable = {s.name for s in smscs} or ({"simulator"} if simulator.enabled else set())
    for i, acct in enumerate(accounts):
        for name in acct.smscs:
            if name not in routable:
                problems.append(f"account[{i}].smscs: no [[smsc]] named \"{name}\"")
        if acct.password is None and acct.password_hash is None and not acct.relay_networks:
            problems.append(f"account[{i}]: needs password, password_hash or relay_networks")
        if acct.default_sender is not None and acct.senders and \
                acct.default_sender not in acct.senders:
            problems.append(f"account[{i}].default_sender: must be one of senders")
    if not accounts:
        problems.append("account: no [[account]]: nothing could be sent or received "
                        "(conf/README.md shows one)")
    if not smscs and not simulator.enabled:
        problems.append("smsc: at least one [[smsc]] is required unless [simulator] is enabled")
    if problems:
        raise ConfigError(problems)
    return Config(smtp=smtp, soap=soap, http=http, store=store, smsc=smscs, simulator=simulator,
                  policy=policy, accounts=accounts, log=log, admin=admin, base_dir=base_dir)


def load_config(path: Path | str = DEFAULT_CONFIG_PATH,
                env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror}); name the config with "
                           f"-c FILE or {CONFIG_ENV}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(data, base_dir=path.resolve().parent.parent, env=env)


def effective_smscs(config: Config) -> tuple[SmscConfig, ...]:
    """The [[smsc]] list, or one entry pointing at the embedded simulator when none is given."""
    if config.smsc:
        return config.smsc
    sim = config.simulator
    return (SmscConfig(name="simulator", host=sim.host, port=sim.port,
                       system_id=sim.system_id, password=sim.password, window=50),)
