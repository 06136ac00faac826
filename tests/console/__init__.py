"""The operator's console: status page, admin API, admin commands; shared helpers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.core.model import Ingress
from bridge.intake.credentials import hash_password
from bridge.intake.service import Recipient, SubmitRequest
from tests.conftest import DEMO_PASSWORD, make_config

ADMIN, ADMIN_PASSWORD = "ops", "console-pw"
#: A cheap hash: the tests log in often; the form is the real one.
ADMIN_HASH = hash_password(ADMIN_PASSWORD, iterations=1000)
SECRET_TEXT = "the secret text of a message"


def console_config(tmp_path: Path, **sections: Any) -> Config:
    """make_config with an admin user and, beside the demo account, one with a quota."""
    sections.setdefault("admin", {"users": [{"name": ADMIN, "password_hash": ADMIN_HASH}]})
    sections.setdefault("account", [
        {"name": "demo", "password": DEMO_PASSWORD, "senders": ["ACME", "+447400000001"],
         "default_sender": "ACME", "rate_per_s": 10_000, "relay_networks": ["127.0.0.1/32"]},
        {"name": "metered", "password": "metered-pw", "quota": 10, "rate_per_s": 1000}])
    return make_config(tmp_path, **sections)


def request(text: str = SECRET_TEXT, *numbers: str, send_at: float | None = None,
            account: str = "demo") -> SubmitRequest:
    return SubmitRequest(account=account, recipients=tuple(Recipient(n) for n in numbers),
                         text=text, ingress=Ingress.SOAP, send_at=send_at)


def later(seconds: float) -> float:
    return time.time() + seconds
