"""The SOAP bench's no-op operation, `Ping`, on two stacks (bridge.bench.soap measures both):

- `bridge_with_ping`: the bridge's own SOAP endpoint (size limit, hardened parse, Basic auth,
  Spyne validation and decoding, the awaited operation, response encoding) serving the
  product's operations and Ping: the product's app, its Spyne applications swapped for ones
  that also declare Ping;
- `stock_ping`: Ping on stock aiohttp-spyne (`AIOSpyne`, Spyne's own protocols, no thread
  pool): the ceiling of Spyne on this server stack.

The product knows nothing of Ping: its WSDL and its endpoint declare only SmsBridgeService.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_spyne.aio_base import AioBase
from spyne import Application, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11

from bridge.config import Config
from bridge.ingress.soap.app import SOAP_ENDPOINT, create_soap_app
from bridge.ingress.soap.faults import TNS, SoapVersion
from bridge.ingress.soap.service import (
    APP_NAME,
    HTTP_TRANSPORT,
    SmsBridgeService,
    build_application,
    quiet_events,
)
from bridge.intake.service import Service
from bridge.metrics import Metrics


class PingService(ServiceBase):  # type: ignore[misc]
    """A no-op operation, to measure the SOAP stack without the work of SendSms."""

    @rpc(_returns=Unicode)  # type: ignore[untyped-decorator]
    async def Ping(ctx: Any) -> str:
        """No-op (benchmark only)."""
        return "pong"


class SyncPingService(ServiceBase):  # type: ignore[misc]
    """The same no-op, synchronous, for stock aiohttp-spyne (which cannot await)."""

    @rpc(_returns=Unicode)  # type: ignore[untyped-decorator]
    def Ping(ctx: Any) -> str:
        """No-op (benchmark only)."""
        return "pong"


def bridge_with_ping(service: Service, config: Config, metrics: Metrics) -> web.Application:
    """The product's SOAP app (`create_soap_app`), whose endpoint also serves Ping."""
    app = create_soap_app(service, config, metrics)
    endpoint = app[SOAP_ENDPOINT]
    endpoint.transports = {
        v: AioBase(build_application(v, (SmsBridgeService, PingService)), threads=None)
        for v in SoapVersion}
    quiet_events(*endpoint.transports.values())
    return app


def stock_ping() -> Any:
    """Stock aiohttp-spyne serving SyncPingService over SOAP 1.1 (its `post` is the route)."""
    from aiohttp_spyne import AIOSpyne  # type: ignore[attr-defined]

    application = Application([SyncPingService], tns=TNS, name=APP_NAME,
                              in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
    application.transport = HTTP_TRANSPORT
    return AIOSpyne(application, threads=None)
