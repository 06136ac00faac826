"""A SOAP request leaves no cyclic garbage: Spyne's contexts and its event managers would leave
some with every request, which only the cyclic GC reclaims (about 12 % of the bridge process's
CPU under load, measured with `python -m bridge.bench.soap`). bridge.ingress.soap.app breaks the
contexts' cycles when a request ends; bridge.ingress.soap.service quiets the event managers."""

from __future__ import annotations

import asyncio
import collections
import gc
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import make_config, running_bridge
from tests.soap import CT11, CT12, VERSIONS, basic, envelope, number

CALLS = 40


def _send(version: str, i: int) -> bytes:
    return envelope(f"<t:SendSms><t:recipients>{number(500 + i)}</t:recipients>"
                    f"<t:text>garbage check {i}</t:text></t:SendSms>", version)


def _invalid(version: str, i: int) -> bytes:
    """Fails Spyne's schema validation: a fault from inside Spyne."""
    return envelope(f"<t:SendSms><t:nonsense>{i}</t:nonsense></t:SendSms>", version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("request_body", [_send, _invalid], ids=["accepted", "spyne_fault"])
async def test_requests_leave_no_cyclic_garbage(tmp_path: Path, version: str,
                                                request_body: object) -> None:
    assert callable(request_body)
    path = "/soap" if version == "1.1" else "/soap12"
    headers = {"Content-Type": CT11 if version == "1.1" else CT12, "Authorization": basic()}
    async with running_bridge(make_config(tmp_path)) as bridge:
        url = f"http://127.0.0.1:{bridge.soap_port}{path}"
        async with aiohttp.ClientSession() as session:
            async def post(i: int) -> int:
                async with session.post(url, data=request_body(version, i),
                                        headers=headers) as response:
                    await response.read()
                    return response.status

            first = await post(-1)  # warm: lazily built Spyne and lxml state is not garbage
            await asyncio.sleep(0.2)
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                statuses = [await post(i) for i in range(CALLS)]
                await asyncio.sleep(0.2)  # the dispatcher's and the receipts' work too
                gc.collect()
                kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
    fault_status = 500 if version == "1.1" else 400  # SOAP 1.2: a Sender fault is 400
    assert {first, *statuses} == ({200} if request_body is _send else {fault_status})
    # Every request used to leave about 58 objects (5 of them per event fired); allow a few
    # from elsewhere in the process, far fewer than one per request.
    assert sum(kinds.values()) < CALLS // 4, kinds.most_common(10)
