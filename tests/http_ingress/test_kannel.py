"""Kannel's sendsms end to end: the answers, the SMS at the simulator (coding, charset, mclass,
UTF-8 without coding), and the dlr-url as Kannel fetches it for each dlr-mask bit, for a
delivered, a failed, a buffered and an SMSC-refused message. (Side by side with Kannel itself:
tests/http_ingress/test_kannel_compare.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from bridge.core.states import MessageState
from tests.conftest import running_bridge, timeline_until
from tests.http_ingress import (NUMBER, PASSWORD, REFUSED_SUFFIX, get, http_config, number, post,
                        receiver, refusing_simulator, stdlib_get, with_smsc)

PATH = "/cgi-bin/sendsms"
ESCAPES = "d=%d&A=%A&p=%p&P=%P&n=%n&i=%i&F=%F&o=%o&I=%I&t=%t&T=%T"


def url(**params: Any) -> str:
    return PATH + "?" + urlencode({"username": "acme", "password": PASSWORD, **params})


async def test_accepted_is_kannels_202(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, headers = await get(bridge.http_port, url(
            to="447400123456", text="hello", **{"from": "ACME"}))
        assert (status, body) == (202, "0: Accepted for delivery")
        assert headers["Content-Type"].startswith("text/html")
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert (sm.destination, sm.text, sm.source, sm.source_ton) == (
            "447400123456", "hello", "ACME", 5)


@pytest.mark.parametrize(("params", "dcs", "text"), [
    ({"text": "Grüße ☺"}, 0x08, "Grüße ☺"),  # UTF-8 without coding: the encoding that holds it
    ({"text": "café"}, 0x00, "café"),  # é is in GSM 03.38
    ({"text": "naïve"}, 0x03, "naïve"),
    ({"text": "plain", "coding": "0"}, 0x00, "plain"),
    ({"text": "plain", "mclass": "1"}, 0x11, "plain"),
    ({"text": "flash", "mclass": "0"}, 0x10, "flash"),
    ({"text": "Ω".encode("utf-16-be"), "coding": "2"}, 0x08, "Ω"),
    ({"text": "Ω", "coding": "2", "charset": "UTF-8"}, 0x08, "Ω"),
    ({"text": "Ω", "coding": "2", "charset": "utf-8", "mclass": "2"}, 0x1A, "Ω"),
    ({"text": "na\xefve".encode("latin-1"), "charset": "ISO-8859-1"}, 0x03, "naïve"),
    ({"text": b"\x01\x02\xff", "coding": "1"}, 0x04, None),
])
async def test_coding_charset_and_class_reach_the_smsc(tmp_path: Path, params: dict[str, Any],
                                                       dcs: int, text: str | None) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await get(bridge.http_port, url(to="447400123456", **params))
        assert (status, body) == (202, "0: Accepted for delivery")
        await bridge.simulator.wait_for_submits(1)
        [sm] = bridge.simulator.submits
        assert sm.data_coding == dcs
        if text is not None:
            assert sm.text == text
        else:
            assert sm.user_data == b"\x01\x02\xff"


@pytest.mark.parametrize(("params", "status", "body"), [
    ({"password": "wrong", "to": "447400123456", "text": "x"}, 403,
     "Authorization failed for sendsms"),
    ({"text": "x"}, 400, "Missing receiver number, rejected"),
    ({"to": "", "text": "x"}, 400, "Empty receiver number not allowed, rejected"),
    ({"to": "abc", "text": "x"}, 400,
     "Number(s) has/have been denied by white- and/or black-lists."),
    ({"to": "447400123456", "text": "x", "mclass": "7"}, 400, "MClass field misformed, rejected"),
    ({"to": "447400123456", "text": "x", "coding": "9"}, 400, "Coding field misformed, rejected"),
    ({"to": "447400123456", "text": "x", "validity": "-5"}, 400,
     "Validity field misformed, rejected"),
    ({"to": "447400123456", "text": "x", "priority": "9"}, 400,
     "Priority field misformed, rejected"),
    ({"to": "447400123456", "text": "x", "charset": "xyz"}, 400,
     "Charset or body misformed, rejected"),
    ({"to": "447400123456", "text": "x", "dlr-mask": "1", "dlr-url": "ftp://x/"}, 400,
     "DLR-URL field misformed, rejected"),
    # Kannel would take these; the bridge refuses them in Kannel's form (SPEC §5)
    ({"to": "447400123456"}, 400, "Missing text, rejected"),
    ({"to": "123", "text": "x"}, 400,
     "Number(s) has/have been denied by white- and/or black-lists."),
    ({"to": "447400123456", "text": "x" * 2000}, 400, "Text too long, rejected"),
    ({"to": "447400123456", "text": "x", "from": "NOTOURS"}, 400,
     "Sender not allowed, rejected"),
    ({"to": "447400123456", "text": "x", "udh": "\x05\x00\x03\x01\x02\x01"}, 400,
     "UDH field misformed, rejected"),
])
async def test_refusals_are_kannels(tmp_path: Path, params: dict[str, str], status: int,
                                    body: str) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        got = await get(bridge.http_port, url(**params))
        assert got[:2] == (status, body)
        assert bridge.simulator.submits == []


async def test_no_sender_and_no_default_is_kannels_refusal(tmp_path: Path) -> None:
    config = http_config(tmp_path, account={"default_sender": None, "senders": []})
    async with running_bridge(config) as bridge:
        assert (await get(bridge.http_port, url(to="447400123456", text="x")))[:2] == (
            400, "Sender missing and no global set, rejected")


async def test_an_unroutable_number_is_kannels_403(tmp_path: Path) -> None:
    sim = refusing_simulator()
    port = await sim.start()
    try:
        config = http_config(tmp_path, **with_smsc(port, prefixes=["+44"]))
        async with running_bridge(config) as bridge:
            assert (await get(bridge.http_port, url(to="33612345678", text="x")))[:2] == (
                403, "Not routable. Do not try again.")
            # Kannel answers for its first receiver
            assert (await get(bridge.http_port, url(to="447400123456 33612345678",
                                                    text="y")))[:2] == (
                202, "0: Accepted for delivery")
    finally:
        await sim.stop()


async def test_receivers_repeats_and_bad_escapes_as_kannel_reads_them(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        target = (f"http://127.0.0.1:{bridge.http_port}{PATH}?username=acme&password="
                  f"{PASSWORD}&to=447400123456+abc+447400123457&to=447400123458"
                  f"&text=50%ZZ+off&text=second")
        status, body = await stdlib_get(target)
        assert (status, body) == (202, b"0: Accepted for delivery")
        await bridge.simulator.wait_for_submits(2)
        assert sorted((s.destination, s.text) for s in bridge.simulator.submits) == [
            ("447400123456", "50%ZZ off"), ("447400123457", "50%ZZ off")]
        bad_utf8 = url(to="447400123456") + "&text=%C3%28"
        assert (await get(bridge.http_port, bad_utf8))[:2] == (
            400, "Charset or body misformed, rejected")


async def test_post_takes_the_body_as_text_and_x_kannel_headers(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        status, body, _ = await post(
            bridge.http_port, PATH, data="posted ☺".encode("utf-16-be"),
            headers={"Content-Type": "text/plain; charset=UTF-16BE",
                     "X-Kannel-Username": "acme", "X-Kannel-Password": PASSWORD,
                     "X-Kannel-To": "447400123456", "X-Kannel-From": "ACME",
                     "X-Kannel-Coding": "2"})
        assert (status, body) == (202, "0: Accepted for delivery")
        await bridge.simulator.wait_for_submits(1)
        assert bridge.simulator.submits[0].text == "posted ☺"
        status, body, _ = await post(bridge.http_port, PATH, data={"to": "447400123456"})
        assert (status, body) == (400, "Invalid content-type")


async def test_over_the_limit_is_413_in_kannels_form(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path, http={"max_request_bytes": 1024})
                              ) as bridge:
        status, body, _ = await get(bridge.http_port, url(to="447400123456", text="x" * 3000))
        assert (status, body) == (413, "Request too large, rejected")
        status, body, _ = await post(bridge.http_port, PATH, data=b"x" * 3000,
                                     headers={"Content-Type": "text/plain"})
        assert (status, body) == (413, "Request too large, rejected")


def dlr_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/dlr?{ESCAPES}"


async def test_dlr_url_for_a_delivered_and_a_failed_message(tmp_path: Path) -> None:
    async with receiver() as rec:
        config = http_config(tmp_path, simulator={"fail_receipt_every": 2})
        async with running_bridge(config) as bridge:
            for i, to in enumerate(("447400123456", "+447400123457")):
                status, _, _ = await get(bridge.http_port, url(
                    to=to, text=f"dlr {i}", **{"from": "ACME", "dlr-mask": "31",
                                               "dlr-url": dlr_url(rec.port)}))
                assert status == 202
            hits = await rec.wait(4)
            reports = sorted(((h.fields["p"], h.fields["d"]) for h in hits))
            assert reports == [("+447400123457", "2"), ("+447400123457", "8"),
                               ("447400123456", "1"), ("447400123456", "8")]
            for hit in hits:
                f = hit.fields
                assert (f["P"], f["n"], f["i"]) == ("ACME", "acme", "simulator")
                if f["d"] == "8":
                    assert (f["A"], f["o"]) == ("ACK/", "")
                else:
                    stat = "DELIVRD" if f["d"] == "1" else "UNDELIV"
                    assert f["A"].startswith(f"id:{f['F']} sub:001 ")
                    assert f"stat:{stat} err:" in f["A"] and f["A"].endswith(" text:dlr " +
                                                                         f["A"][-1])
                    assert f["o"] == "bridge"
                assert len(f["t"]) == 19 and f["T"].isdigit()
            # each report also left its timeline event
            message_id = hits[0].fields["I"]
            events = await timeline_until(bridge, message_id, "callback")
            assert [e for e, _ in events].count("callback") >= 1


async def test_dlr_mask_bits_choose_the_reports(tmp_path: Path) -> None:
    async with receiver() as rec:
        async with running_bridge(http_config(tmp_path)) as bridge:
            for mask, to in (("1", number(1)), ("8", number(2)), ("2", number(3)),
                             ("0", number(4))):
                await get(bridge.http_port, url(to=to, text="m", **{
                    "dlr-mask": mask, "dlr-url": dlr_url(rec.port)}))
            hits = await rec.wait(2)
            await bridge.simulator.wait_until(lambda: bridge.simulator.receipts_sent >= 2)
            await timeline_until(bridge, hits[-1].fields["I"], "callback")
            assert sorted((h.fields["p"], h.fields["d"]) for h in rec.hits) == [
                ("+447400100001", "1"), ("+447400100002", "8")]
            assert [s.registered_delivery & 1 for s in sorted(
                bridge.simulator.submits, key=lambda s: s.destination)] == [1, 0, 1, 0]


async def test_a_buffered_receipt_is_type_4(tmp_path: Path) -> None:
    async with receiver() as rec:
        config = http_config(tmp_path, simulator={"receipts": False})
        async with running_bridge(config) as bridge:
            await get(bridge.http_port, url(to="447400123456", text="held", **{
                "dlr-mask": "5", "dlr-url": dlr_url(rec.port)}))
            await bridge.simulator.wait_for_submits(1)
            smsc_id = bridge.simulator.submits[0].message_id
            await bridge.simulator.send_receipt(smsc_id, "ENROUTE")
            [buffered] = await rec.wait(1)
            assert buffered.fields["d"] == "4" and "stat:ENROUTE" in buffered.fields["A"]
            await bridge.simulator.send_receipt(smsc_id, "DELIVRD")
            hits = await rec.wait(2)
            assert hits[1].fields["d"] == "1"


async def test_an_smsc_refusal_is_type_16(tmp_path: Path) -> None:
    sim = refusing_simulator()
    port = await sim.start()
    try:
        async with receiver() as rec:
            config = http_config(tmp_path, **with_smsc(port))
            async with running_bridge(config) as bridge:
                refused_to = f"4474001234{REFUSED_SUFFIX}"
                status, _, _ = await get(bridge.http_port, url(to=refused_to, text="no", **{
                    "dlr-mask": "24", "dlr-url": dlr_url(rec.port)}))
                assert status == 202
                [hit] = await rec.wait(1)
                assert (hit.fields["d"], hit.fields["F"], hit.fields["o"]) == ("16", "", "")
                assert hit.fields["A"] == "NACK/0x0000000b/Invalid Destination Address"
                view = (await bridge.store.get_messages([hit.fields["I"]]))[0]
                assert view.state is MessageState.FAILED
    finally:
        await sim.stop()


async def test_deferred_schedules_the_message(tmp_path: Path) -> None:
    async with running_bridge(http_config(tmp_path)) as bridge:
        assert (await get(bridge.http_port, url(to=NUMBER.lstrip("+"), text="later",
                                                deferred="30")))[0] == 202
        total, [view] = await bridge.store.list_messages("acme", offset=0, limit=5)
        assert view.state is MessageState.SCHEDULED


def test_quote_is_not_used_for_escapes() -> None:
    """The dlr-url is given %-encoded once, as clients do; its own %-escapes survive."""
    assert quote("http://h/dlr?d=%d", safe="") == "http%3A%2F%2Fh%2Fdlr%3Fd%3D%25d"
