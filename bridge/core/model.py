"""Frozen value types shared by the core, the store, the service and the adapters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bridge.core.meta import read_meta


class Ingress(str, Enum):
    """How a message came in. Its value is what the store keeps, the `ingress` label of the
    metrics and the logger's last name (`bridge.smtp`); nothing outside the adapters spells it
    as a string."""

    SMTP = "smtp"
    SOAP = "soap"
    HTTP = "http"


@dataclass(frozen=True)
class Address:
    """An SMPP address: digits without '+' for TON 1, or the alphanumeric text for TON 5."""

    value: str
    ton: int
    npi: int

    @property
    def e164(self) -> str:
        """'+' and digits for an international number; the raw value otherwise."""
        return f"+{self.value}" if self.ton == 1 else self.value


def meta_strings(meta_json: str) -> dict[str, str]:
    """A message's ingress details by plain name, for a reader that has no use for the typed
    keys (`bridge.core.meta.read_meta` is the one parser)."""
    return {key.value: value for key, value in read_meta(meta_json).items()}
