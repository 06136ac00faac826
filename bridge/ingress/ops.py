"""Operations endpoints, served beside the SOAP endpoint on its listener (SPEC §8):

    GET /healthz   JSON from the bridge's health callable; 200 when its status is "ok", else 503
    GET /metrics   Prometheus text: this process's metrics, then the outbound side's

They belong to no ingress: whichever aiohttp application the bridge runs on the SOAP listener
gets them with `add_ops_routes`, so a third ingress sharing that listener changes nothing here.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from bridge.metrics import Metrics

log = logging.getLogger("bridge.ops")

Health = Callable[[], Awaitable[Mapping[str, Any]]]
#: The metrics kept outside this process (the outbound side's), as Prometheus text.
MoreMetrics = Callable[[], Awaitable[bytes]]


class OpsEndpoint:
    def __init__(self, metrics: Metrics, health: Health,
                 more_metrics: MoreMetrics | None = None) -> None:
        self.metrics = metrics
        self.health = health
        self.more_metrics = more_metrics

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        try:
            data = dict(await self.health())
        except Exception:
            log.exception("health check failed")
            return web.json_response({"status": "error"}, status=503)
        return web.json_response(data, status=200 if data.get("status") == "ok" else 503)

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        body, content_type = self.metrics.render()
        if self.more_metrics is not None:
            try:
                body += await self.more_metrics()
            except Exception as exc:  # the page still shows this process's metrics
                log.error("metrics of the outbound side unavailable: %s", exc)
        return web.Response(body=body, headers={"Content-Type": content_type})


def add_ops_routes(app: web.Application, metrics: Metrics, health: Health,
                   more_metrics: MoreMetrics | None = None) -> None:
    """GET /healthz and /metrics on `app`."""
    endpoint = OpsEndpoint(metrics, health, more_metrics)
    app.router.add_get("/healthz", endpoint.healthz)
    app.router.add_get("/metrics", endpoint.metrics_page)
