"""SmscPool: prefix routing (pure) and fail-over between real binds to simulators."""

from __future__ import annotations

import asyncio
import ssl

from bridge.config import SimulatorConfig, SmscConfig
from bridge.core.model import Address
from bridge.core.receipts import Receipt
from bridge.simulator import SmscSimulator
from bridge.outbound.smpp.client import MoMessage, SmppBind, SubmitSm
from bridge.outbound.smpp.pool import SmscPool


async def _no_receipt(smsc: str, receipt: Receipt) -> None:
    return None


async def _no_mo(mo: MoMessage) -> None:
    return None


def cfg(name: str, *prefixes: str, port: int = 1, **kw: object) -> SmscConfig:
    return SmscConfig(name=name, host="127.0.0.1", port=port, system_id="bridge",
                      password="secret", prefixes=tuple(prefixes), reconnect_min_s=0.02,
                      reconnect_max_s=0.1, response_timeout_s=2.0, **kw)  # type: ignore[arg-type]


def names(binds: list[SmppBind]) -> list[str]:
    return [b.name for b in binds]


def test_candidates_longest_prefix_first_then_catch_all() -> None:
    pool = SmscPool([cfg("uk", "+44"), cfg("catch1"), cfg("uk-mobile", "+447", "+3519"),
                     cfg("also-uk", "+44"), cfg("catch2")],
                    on_receipt=_no_receipt, on_mo=_no_mo)
    assert names(pool.candidates("+447400123456")) == \
        ["uk-mobile", "uk", "also-uk", "catch1", "catch2"]
    assert names(pool.candidates("447400123456")) == \
        ["uk-mobile", "uk", "also-uk", "catch1", "catch2"]  # '+' optional
    assert names(pool.candidates("+441234")) == ["uk", "also-uk", "catch1", "catch2"]
    assert names(pool.candidates("+35191")) == ["uk-mobile", "catch1", "catch2"]
    assert names(pool.candidates("+1555")) == ["catch1", "catch2"]


def test_not_routable_is_distinguishable_from_not_bound() -> None:
    pool = SmscPool([cfg("uk", "+44")], on_receipt=_no_receipt, on_mo=_no_mo)
    assert pool.candidates("+33612345678") == [] and not pool.routes.routable("+33612345678")
    assert pool.route("+33612345678") is None
    assert pool.routes.routable("+447400123456")
    assert pool.route("+447400123456") is None  # routable, nothing bound yet


def test_ssl_context_factory_is_used_per_config() -> None:
    seen: list[str] = []

    def factory(config: SmscConfig) -> ssl.SSLContext | None:
        seen.append(config.name)
        return None

    SmscPool([cfg("a"), cfg("b")], on_receipt=_no_receipt, on_mo=_no_mo,
             ssl_context_factory=factory)
    assert seen == ["a", "b"]


async def test_fail_over_to_shorter_prefix_and_back() -> None:
    sim_general = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipts=False))
    sim_specific = SmscSimulator(SimulatorConfig(enabled=True, port=0, receipts=False))
    port_general = await sim_general.start()
    port_specific = await sim_specific.start()
    pool = SmscPool([cfg("general", "+44", port=port_general),
                     cfg("specific", "+447", port=port_specific)],
                    on_receipt=_no_receipt, on_mo=_no_mo)
    try:
        await pool.start()
        assert await pool.wait_bound(10.0)
        sm = SubmitSm(source=Address("ACME", 5, 0), destination=Address("447400123456", 1, 1),
                      short_message=b"hi", data_coding=0, esm_class=0)
        first = pool.route("+447400123456")
        assert first is not None and first.name == "specific"
        assert (await first.submit(sm)).command_status == 0
        assert len(sim_specific.submits) == 1

        await sim_specific.stop()  # the specific SMSC goes away: fail over
        for _ in range(2000):
            if not pool.binds["specific"].bound:
                break
            await asyncio.sleep(0.01)
        fallback = pool.route("+447400123456")
        assert fallback is not None and fallback.name == "general"
        assert (await fallback.submit(sm)).command_status == 0
        assert len(sim_general.submits) == 1
        assert pool.route("+33612345678") is None and not pool.routes.routable("+33612345678")
    finally:
        await pool.stop()
        await sim_general.stop()
        await sim_specific.stop()
