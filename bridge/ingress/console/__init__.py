"""The operator's console: the status page and the admin API (bridge.ingress.console.app)."""

from bridge.ingress.console.app import Check, Console, add_console_routes

__all__ = ["Check", "Console", "add_console_routes"]
