"""The bulk-SMS URL API end to end: a real HTTP client against the real listener, the SMS as
the simulator receives it (encoding, class, sender TON/NPI, parts, WAP Push), the report at
the account's dlr_url; every refusal in this dialect's codes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from bridge.core.wap import service_indication
from tests.conftest import running_bridge
from tests.http_ingress import (NUMBER, PASSWORD, get, http_config, number, post, receiver,
                                stdlib_get)

PATH = "/bulksms/bulksms"
DEST_ADDR_SUBUNIT = 0x0005  # SMPP 3.4 §5.3.2.1


def url(**params: str) -> str:
    return PATH + "?" + urlencode({"username": "acme", "password": PASSWORD, **params})


@pytest.mark.parametrize(("type_code", "text", "dcs", "subunit"), [
    ("0", "plain {text}", 0x00, None), ("1", "flash", 0x10, None), ("2", "uni ☺", 0x08, None),
    ("5", "Latin é", 0x03, None), ("6", "uni flash ☺", 0x18, None),
    ("7", "Latin flash é", 0x03, 1), ("", "auto ☺", 0x08, None)])
async def test_each_type_reaches_the_smsc_in_its_encoding(
        tmp_path: Path, type_code: str, text: str, dcs: int, subunit: int | None) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, headers = await get(bridge.http_port, url(
            destination="447400123456", message=text, type=type_code, source="ACME"))
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        code, destination, message_id = body.split("|")
        assert (code, destination) == ("1701", "447400123456") and message_id
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert (sm.destination, sm.text, sm.data_coding) == ("447400123456", text, dcs)
        assert (sm.source, sm.source_ton, sm.source_npi) == ("ACME", 5, 0)
        assert sm.tlvs.get(DEST_ADDR_SUBUNIT) == (bytes((subunit,)) if subunit else None)


async def test_several_destinations_each_get_their_entry(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await post(bridge.http_port, PATH, data={
            "username": "acme", "password": PASSWORD, "source": "+447400000001",
            "destination": f"{NUMBER},07400123457, 447400 123458,12,abc",
            "message": "x" * 200})
        entries = body.split(",")
        assert status == 200 and [e.split("|")[:2] for e in entries] == [
            ["1701", NUMBER], ["1701", "07400123457"], ["1701", "447400 123458"],
            ["1706", "12"], ["1706", "abc"]]
        await bridge.simulator.wait_for_submits(6)  # three numbers, two parts each
        first = [s for s in bridge.simulator.submits if s.destination == "447400123456"]
        assert [s.concat.seq for s in first if s.concat] == [1, 2]
        assert {(s.source, s.source_ton, s.source_npi) for s in first} == {
            ("447400000001", 1, 1)}


async def test_a_wap_push_is_a_service_indication(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await get(bridge.http_port, url(
            destination=NUMBER, message="Your ticket", type="4",
            url="http://example.com/t/42"))
        assert status == 200 and body.startswith("1701|")
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert (sm.data_coding, sm.esm_class & 0x40) == (0x04, 0x40)
        assert sm.udh == bytes.fromhex("060504 0B84 23F0".replace(" ", ""))
        assert sm.user_data == service_indication("http://example.com/t/42", "Your ticket")
        status, body, _ = await get(bridge.http_port, url(destination=NUMBER, message="x",
                                                          type="4"))
        assert body == "1702"  # a push needs its url


async def test_dlr_1_reports_to_the_accounts_dlr_url(tmp_path: Path) -> None:
    async with receiver() as rec:
        config = http_config(tmp_path, account={"dlr_url": rec.url("/push?key=k1")},
                             simulator={"fail_receipt_every": 2})
        async with running_bridge(config) as bridge:
            ids = []
            for i in range(2):
                _, body, _ = await get(bridge.http_port, url(
                    destination=number(i), message=f"report {i}", dlr="1", source="ACME"))
                ids.append(body.split("|")[2])
            _, body, _ = await get(bridge.http_port, url(destination=number(9), message="no"))
            hits = await rec.wait(2)
            assert all(h.method == "POST" and h.path == "/push" for h in hits)
            by_id = {h.fields["sMessageId"]: h.fields for h in hits}
            assert set(by_id) == set(ids)
            delivered, failed = by_id[ids[0]], by_id[ids[1]]
            assert (delivered["sStatus"], delivered["iErrCode"]) == ("DELIVRD", "0")
            assert (failed["sStatus"], failed["iErrCode"]) == ("UNDELIV", "1")
            assert (delivered["sMobileNo"], delivered["sSender"]) == ("447400100000", "ACME")
            assert delivered["dtDone"] >= delivered["dtSubmit"]
            assert len(rec.hits) == 2  # dlr absent: no report


@pytest.mark.parametrize(("params", "answer"), [
    ({"password": "wrong"}, "1703"),
    ({"username": "nobody"}, "1703"),
    ({"username": ""}, "1702"),
    ({"destination": ""}, "1702"),
    ({"message": None}, "1702"),
    ({"message": ""}, "1705"),
    ({"message": "x" * 2000}, "1705"),
    ({"type": "3"}, "1704"), ({"type": "x"}, "1704"), ({"type": "-1"}, "1704"),
    ({"dlr": "2"}, "1708"), ({"dlr": "yes"}, "1708"),
    ({"source": "TOOLONGSENDER"}, "1707"), ({"source": "1234567890123456789"}, "1707"),
    ({"source": "ACME Ltd"}, "1707"), ({"source": "+ACME"}, "1707"),
    ({"source": "NOTALLOWED"}, "1707"),
])
async def test_refusals_are_this_dialects_codes(tmp_path: Path, params: dict[str, str | None],
                                                answer: str) -> None:
    base = {"username": "acme", "password": PASSWORD, "destination": NUMBER, "message": "hi"}
    query = {k: v for k, v in {**base, **params}.items() if v is not None}
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await get(bridge.http_port, PATH + "?" + urlencode(query))
        assert (status, body) == (200, answer)
        assert bridge.simulator.submits == []


@pytest.mark.parametrize(("raw_query", "answer"), [
    ("username=acme&password={pw}&destination=447400123456&message=%ZZ", "1702"),
    ("username=acme&password={pw}&destination=447400123456&message=%C3%28", "1705"),
    ("username=acme&password={pw}&destination=447400123456&destination=447400123457"
     "&message=x", "1702"),
    ("username=acme&username=acme&password={pw}&destination=447400123456&message=x", "1702"),
    ("username=acme&password={pw}&destination=447400123456&message=x&type=%FF", "1704"),
    ("username=%E0&password={pw}&destination=447400123456&message=x", "1702"),
    ("", "1702"),
])
async def test_hostile_queries_get_a_code_never_a_traceback(tmp_path: Path, raw_query: str,
                                                            answer: str) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        target = f"http://127.0.0.1:{bridge.http_port}{PATH}?{raw_query.format(pw=PASSWORD)}"
        status, body = await stdlib_get(target)
        assert (status, body) == (200, answer.encode())


async def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    config = http_config(tmp_path, http={"max_request_bytes": 2048})
    async with running_bridge(config) as bridge:
        status, body, _ = await post(bridge.http_port, PATH, data={
            "username": "acme", "password": PASSWORD, "destination": NUMBER,
            "message": "x" * 4000})
        assert (status, body) == (413, "1702")
        long_get = url(destination=",".join([NUMBER] * 200), message="hi")
        status, body, _ = await get(bridge.http_port, long_get)
        assert (status, body) == (413, "1702")
        status, body, _ = await get(bridge.http_port, PATH + "?" + "x" * 20_000)
        assert status in (400, 413)  # past even the request line's bound: aiohttp's own 400
        assert "Traceback" not in body
        status, body, _ = await get(bridge.http_port, url(destination=NUMBER,
                                                          message=quote("ok")))
        assert status == 200 and body.startswith("1701|")
