"""The one TLS helper: every listener's server context (SMTP STARTTLS, the SOAP listener, the
HTTP listener) and the SMPP links' client context come from here, with one rule for the files a
config names: a relative path is relative to the config's `base_dir`, as the SQLite path is,
never to whatever directory the bridge was started from.

A file that cannot be loaded is a `ConfigError` naming the key that gave it, so `serve` fails
at start with the same kind of message as any other bad config.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bridge.config import ConfigError


def config_path(base_dir: Path, path: str) -> Path:
    """`path` as the config means it: absolute as given, else under `base_dir`."""
    p = Path(path)
    return p if p.is_absolute() else Path(base_dir) / p


def server_context(base_dir: Path, cert: str | None, key: str | None, *,
                   section: str) -> ssl.SSLContext | None:
    """A listener's context from `[section] tls_cert` and `tls_key`; None when not set (the
    config checks that the two come together)."""
    if not cert or not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config_path(base_dir, cert), config_path(base_dir, key))
    except OSError as exc:
        raise ConfigError([f"{section}.tls_cert: cannot load the certificate and key "
                           f"({_reason(exc)})"]) from None
    return context


def client_context(base_dir: Path, cafile: str | None, *, verify_hostname: bool,
                   key: str) -> ssl.SSLContext:
    """An outgoing link's context: the system's CAs, or only `cafile` when given (`key` names
    it in a refusal)."""
    try:
        context = ssl.create_default_context(
            cafile=str(config_path(base_dir, cafile)) if cafile else None)
    except OSError as exc:
        raise ConfigError([f"{key}: cannot load the CA file ({_reason(exc)})"]) from None
    context.check_hostname = verify_hostname
    return context


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
