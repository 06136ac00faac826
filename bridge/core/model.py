"""Frozen value types shared by the core, the store, the service and the adapters."""

from __future__ import annotations

from dataclasses import dataclass


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
