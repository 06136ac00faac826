"""Jasmin's /send end to end: its answers (`Success "<id>"`, `Error "<reason>"` with its
statuses), its codings at the simulator, and its DLRs at each level, retried until the
receiver answers exactly ACK/Jasmin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import running_bridge, timeline_until
from tests.http_ingress import (NUMBER, PASSWORD, REFUSED_SUFFIX, get, http_config, post, receiver,
                        refusing_simulator, stdlib_get, with_smsc)

PATH = "/send"


def url(**params: Any) -> str:
    return PATH + "?" + urlencode({"username": "acme", "password": PASSWORD, **params})


def success_id(body: str) -> str:
    assert body.startswith('Success "') and body.endswith('"'), body
    return body[len('Success "'):-1]


@pytest.mark.parametrize(("params", "dcs", "text"), [
    ({"content": "hello"}, 0x00, "hello"),
    ({"content": "Grüße ☺"}, 0x08, "Grüße ☺"),  # the encoding that holds it, not "?"
    ({"content": "naïve".encode("latin-1"), "coding": "3"}, 0x03, "naïve"),
    ({"content": "Ω".encode("utf-16-be"), "coding": "8"}, 0x08, "Ω"),
    ({"hex-content": "03a9", "coding": "8"}, 0x08, "Ω"),
    ({"hex-content": "7f7e", "coding": "0"}, 0x00, "àü"),
    ({"hex-content": "0102ff", "coding": "4"}, 0x04, None),
])
async def test_codings_reach_the_smsc(tmp_path: Path, params: dict[str, Any], dcs: int,
                                      text: str | None) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, headers = await get(bridge.http_port, url(to=NUMBER, **{"from": "ACME"},
                                                                **params))
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        message_id = success_id(body)
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert (sm.data_coding, sm.destination, sm.source) == (dcs, "447400123456", "ACME")
        if text is None:
            assert sm.user_data == b"\x01\x02\xff"
        else:
            assert sm.text == text
        assert (await bridge.store.get_messages([message_id]))[0].recipient == NUMBER


async def test_form_and_json_posts(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await post(bridge.http_port, PATH, data={
            "username": "acme", "password": PASSWORD, "to": NUMBER, "content": "form"})
        assert status == 200 and success_id(body)
        status, body, _ = await post(bridge.http_port, PATH, data=json.dumps({
            "username": "acme", "password": PASSWORD, "to": "447400123457",
            "content": "json", "coding": 0}), headers={"Content-Type": "application/json"})
        assert status == 200 and success_id(body)
        await bridge.simulator.wait_for_submits(2)
        assert sorted(s.text for s in bridge.simulator.submits) == ["form", "json"]


@pytest.mark.parametrize(("params", "status", "reason"), [
    ({"to": NUMBER, "content": "x", "password": "wrong"}, 403,
     "Authentication failure for username:acme"),
    ({"content": "x"}, 400, "Mandatory argument [to] is not found."),
    ({"to": NUMBER}, 400, "content or hex-content not present."),
    ({"to": NUMBER, "content": "x", "hex-content": "78"}, 400,
     "content and hex-content cannot be used both in same request."),
    ({"to": NUMBER, "content": "x", "colour": "red"}, 400, "Argument [colour] is unknown."),
    ({"to": "not-a-number", "content": "x"}, 400,
     "Argument [to] has an invalid value: [not-a-number]."),
    ({"to": NUMBER, "content": "x", "coding": "11"}, 400,
     "Argument [coding] has an invalid value: [11]."),
    ({"to": NUMBER, "content": "x", "coding": "6"}, 400,
     "Argument [coding] has an invalid value: [6]."),
    ({"to": NUMBER, "content": "x", "dlr": "maybe"}, 400,
     "Argument [dlr] has an invalid value: [maybe]."),
    ({"to": NUMBER, "content": "x", "dlr-level": "4"}, 400,
     "Argument [dlr-level] has an invalid value: [4]."),
    ({"to": NUMBER, "content": "x", "dlr-url": "ftp://x"}, 400,
     "Argument [dlr-url] has an invalid value: [ftp://x]."),
    ({"to": NUMBER, "content": "x", "priority": "5"}, 400,
     "Argument [priority] has an invalid value: [5]."),
    ({"to": NUMBER, "content": "x", "validity-period": "-1"}, 400,
     "Argument [validity-period] has an invalid value: [-1]."),
    ({"to": NUMBER, "hex-content": "zz"}, 400, "Invalid hex-content data: 'zz'"),
    ({"to": NUMBER, "content": "x", "from": "NOTOURS"}, 400,
     "Value filter failed for user [acme] (source_address filter mismatch)."),
    ({"to": "12", "content": "x"}, 400, "Argument [to] has an invalid value: [12]."),
    ({"to": NUMBER, "content": ""}, 400, "Argument [content] has an invalid value: "
                                         "[empty message]."),
])
async def test_errors_are_jasmins(tmp_path: Path, params: dict[str, str], status: int,
                                  reason: str) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        got, body, _ = await get(bridge.http_port, url(**params))
        assert (got, body) == (status, f'Error "{reason}"')
        assert bridge.simulator.submits == []


@pytest.mark.parametrize(("raw_query", "status", "reason"), [
    ("", 400, "Mandatory argument [to] is not found."),  # Jasmin's defaults come first
    ("username=acme&password={pw}&to=447400123456&content=%ZZ", 400,
     "Argument [content] has an invalid value: [a % not followed by two hex digits]."),
    ("username=acme&password={pw}&to=447400123456&content=%C3%28", 400,
     "Argument [content] has an invalid value: [\ufffd(]."),
    ("username=acme&password={pw}&to=447400123456&to=447400123457&content=x", 400,
     "Argument [to] has an invalid value: [given more than once]."),
    ("username=acme&password={pw}&to=447400123456&content=x&dlr=%FF", 400,
     "Argument [dlr] has an invalid value: [not UTF-8]."),
    ("username=aaaaaaaaaaaaaaaaa&password={pw}&to=447400123456&content=x", 400,
     "Argument [username] has an invalid value: [aaaaaaaaaaaaaaaaa]."),
])
async def test_hostile_queries(tmp_path: Path, raw_query: str, status: int, reason: str) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        target = f"http://127.0.0.1:{bridge.http_port}{PATH}?{raw_query.format(pw=PASSWORD)}"
        got, body = await stdlib_get(target)
        assert (got, body.decode()) == (status, f'Error "{reason}"')


async def test_an_unroutable_number_is_412_and_a_refused_one_a_level_1_error(
        tmp_path: Path) -> None:
    sim = refusing_simulator()
    port = await sim.start()
    try:
        async with receiver(default_body="ACK/Jasmin") as rec:
            config = http_config(tmp_path, **with_smsc(port, prefixes=["+44"]))
            async with running_bridge(config) as bridge:
                assert (await get(bridge.http_port, url(to="33612345678", content="x")))[:2] \
                    == (412, 'Error "No route found"')
                status, body, _ = await get(bridge.http_port, url(
                    to=f"4474001234{REFUSED_SUFFIX}", content="x", **{
                        "dlr-url": rec.url(), "dlr-level": "3", "dlr-method": "GET"}))
                message_id = success_id(body)
                [hit] = await rec.wait(1)
                assert hit.method == "GET" and hit.fields == {
                    "id": message_id, "message_status": "ESME_RINVDSTADR", "level": "1",
                    "connector": "sim"}
    finally:
        await sim.stop()


async def test_dlr_levels_and_acknowledgement(tmp_path: Path) -> None:
    async with receiver([(200, "NOK"), (200, "ACK/Jasmin ")], default_body="ACK/Jasmin") as rec:
        async with running_bridge(http_config(tmp_path)) as bridge:
            status, body, _ = await get(bridge.http_port, url(
                to=NUMBER, content="levels", **{"dlr-url": rec.url("/j?k=1"),
                                               "dlr-level": "3"}))
            message_id = success_id(body)
            events = await timeline_until(bridge, message_id, "callback")
            hits = rec.hits
            assert all(h.method == "POST" and h.path == "/j" for h in hits)
            levels = [(h.fields["level"], h.fields["message_status"]) for h in hits]
            # two answers that are not exactly ACK/Jasmin, then each level's report once
            assert len(levels) == 4 and set(levels) == {("1", "ESME_ROK"), ("2", "DELIVRD")}
            tried = [e for e, _ in events if e.startswith("callback")]
            assert tried.count("callback_retry") == 2 and tried.count("callback") == 2
            delivered = next(h.fields for h in hits if h.fields["level"] == "2")
            assert {k: delivered[k] for k in ("id", "connector", "sub", "dlvrd", "err",
                                              "text")} == {
                "id": message_id, "connector": "simulator", "sub": "001", "dlvrd": "001",
                "err": "000", "text": "levels"}
            assert delivered["id_smsc"] == bridge.simulator.submits[0].message_id
            assert len(delivered["subdate"]) == len(delivered["donedate"]) == 10


async def test_dlr_level_2_only_and_no_dlr(tmp_path: Path) -> None:
    async with receiver(default_body="ACK/Jasmin") as rec:
        async with running_bridge(http_config(tmp_path)) as bridge:
            await get(bridge.http_port, url(to=NUMBER, content="two", **{
                "dlr": "yes", "dlr-url": rec.url(), "dlr-level": "2", "dlr-method": "get"}))
            await get(bridge.http_port, url(to="447400123457", content="none"))
            [hit] = await rec.wait(1)
            assert (hit.method, hit.fields["level"]) == ("GET", "2")
            await bridge.simulator.wait_until(lambda: bridge.simulator.receipts_sent >= 1)
            assert len(rec.hits) == 1
            assert [s.registered_delivery & 1 for s in sorted(
                bridge.simulator.submits, key=lambda s: s.destination)] == [1, 0]


async def test_sdt_and_validity(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await get(bridge.http_port, url(
            to=NUMBER, content="later", sdt="000001000000000R", **{"validity-period": "90"}))
        view = (await bridge.store.get_messages([success_id(body)]))[0]
        assert view.state.value == "scheduled"
        assert (await get(bridge.http_port, url(to=NUMBER, content="x",
                                                sdt="bad")))[0] == 400
