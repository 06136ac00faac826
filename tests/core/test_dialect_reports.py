"""Each dialect's report (bridge.core.dialect_reports) against what the original sends: the
Kannel dlr-url requests below were recorded from Kannel 1.4.5 (bearerbox + smsbox, msg-id-type
0x01, bound to the bridge's simulator), ids and times as they came."""

from __future__ import annotations

import calendar
import json
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.core.dialect_reports import (
    JASMIN_ACK,
    Dialect,
    ReportFacts,
    bulksms_fields,
    jasmin_fields,
    kannel_encode,
    kannel_url,
    receipt_text,
    report_request,
)
from bridge.core.meta import MetaKey

ALL = "&".join(f"{c}=%{c}" for c in "aAbBcCdDfFiIkmMnoOpPqQrsStTuxyz%") + "&"
AT = calendar.timegm((2026, 12, 7, 18, 13, 40, 0, 0, 0))
SUBMITTED_AT = calendar.timegm((2026, 12, 7, 18, 13, 39, 0, 0, 0))

FACTS = ReportFacts(
    message_id="4afe6fcd-2440-4f55-ab7e-f027ce052336", event="submitted", event_detail=None,
    at=AT, account="demo", recipient="+447400123456", raw_recipient="447400123456",
    source_addr="ACME", text="first msg", created_at=SUBMITTED_AT, submitted_at=SUBMITTED_AT,
    smsc="sim", smsc_id="ad128dac64300d", smsc_system_id="bridge", smsc_id_format="auto",
    receipt_stat=None, receipt_err=None, error=None, error_detail=None, parts=1, mask=31,
    meta={MetaKey.DIALECT: "kannel", MetaKey.SENDER: "ACME", MetaKey.USER: "demo"}, attempt=1)

#: Kannel's DLR type 8 (SMSC accepted) for dlr-url "…?" + ALL, dlr-mask 31.
KANNEL_8 = ("a=ACK%2F&A=ACK%2F&b=ACK%2F&B=&c=-1&C=UTF-8&d=8&D=%3Fsmpp_resp%3F%3Forig_msg%3F"
            "dlr_mask%3D31%26&f=&F=48715570662879245&i=sim&I=4afe6fcd-2440-4f55-ab7e-f027ce05"
            "2336&k=ACK%2F&m=-1&M=-1&n=demo&o=&O=00&p=447400123456&P=ACME&q=447400123456&"
            "Q=ACME&r=&s=&S=&t=2026-12-07+18:13:40&T=1796667220&u=&x=%x&y=%y&z=%z&%=%&")


def test_kannel_type_8_is_kannels_own() -> None:
    assert kannel_url(ALL, FACTS) == KANNEL_8


def test_kannel_type_2_receipt_and_its_meta() -> None:
    failed = replace(FACTS, event="undeliverable", receipt_stat="UNDELIV", receipt_err="001",
                     at=SUBMITTED_AT + 1)
    url = kannel_url("d=%d&A=%A&D=%D&o=%o&F=%F&k=%k&s=%s&S=%S&r=%r", failed)
    receipt = ("id%3A48715570662879245+sub%3A001+dlvrd%3A000+submit+date%3A2612071813+done"
               "+date%3A2612071813+stat%3AUNDELIV+err%3A001+text%3Afirst+msg")
    assert url == (f"d=2&A={receipt}&D=%3Forig_msg%3Fdlr_mask%3D31%26%3Fsmpp%3Fdlr_err%3D"
                   f"%2503%2500%2501%26&o=bridge&F=48715570662879245&k=id%3A48715570662879245"
                   f"&s=sub%3A001&S=dlvrd:000&r=submit+date%3A2612071813"  # %r: after %s, %S
                   f"+done+date%3A2612071813+stat%3AUNDELIV+err%3A001+text%3Afirst+msg")


def test_kannel_type_16_nack() -> None:
    refused = replace(FACTS, event="failed", error="INVALID_SOURCE", source_addr="VERYLONGSE",
                      meta={**FACTS.meta, MetaKey.SENDER: "VERYLONGSENDER1"},
                      error_detail="part 1/1: submit_sm_resp 0x0000000A after 1 attempt(s)")
    assert kannel_url("d=%d&A=%A&p=%p&P=%P&q=%q&D=%D&o=%o&F=%F", refused) == (
        "d=16&A=NACK%2F0x0000000a%2FInvalid+Source+Address&p=447400123456&P=VERYLONGSENDER1"
        "&q=447400123456&D=%3Fsmpp_resp%3F%3Forig_msg%3Fdlr_mask%3D31%26&o=&F=")


def test_kannel_numbers_with_00_and_plus() -> None:
    given = replace(FACTS, raw_recipient="00447400123459",
                    meta={**FACTS.meta, MetaKey.SENDER: "+447400000001"})
    assert kannel_url("p=%p&P=%P&q=%q&Q=%Q", given) == (
        "p=00447400123459&P=%2B447400000001&q=%2B447400123459&Q=%2B447400000001")


def test_kannel_encoding_is_octstr_url_encode() -> None:
    assert kannel_encode("a b-_.!~*'()/:?&=é") == "a+b-_.!~*'()%2F%3A%3F%26%3D%C3%A9"


def test_the_receipt_text_keeps_plain_ascii_only() -> None:
    text = receipt_text(replace(FACTS, event="delivered", text="Grüße ☺ and more text"))
    assert text.endswith("stat:DELIVRD err:000 text:Gr??e ? and more tex")
    assert " dlvrd:001 " in text


def test_jasmin_levels_and_its_acknowledgement() -> None:
    jasmin = replace(FACTS, meta={MetaKey.DIALECT: "jasmin"})
    assert jasmin_fields(jasmin) == {"id": FACTS.message_id, "message_status": "ESME_ROK",
                                     "level": "1", "connector": "sim"}
    refused = replace(jasmin, event="failed", error_detail="submit_sm_resp 0x0000000B after")
    assert jasmin_fields(refused)["message_status"] == "ESME_RINVDSTADR"
    delivered = replace(jasmin, event="delivered", receipt_stat="DELIVRD", receipt_err="000")
    fields = jasmin_fields(delivered)
    assert (fields["level"], fields["message_status"], fields["id_smsc"], fields["dlvrd"],
            fields["subdate"], fields["donedate"], fields["text"]) == (
        "2", "DELIVRD", "ad128dac64300d", "001", "2612071813", "2612071813", "first msg")
    get = report_request(Dialect.JASMIN, "http://r.example/dlr?x=1", delivered)
    assert get.method == "GET" and get.ack == JASMIN_ACK
    assert parse_qs(urlsplit(get.url).query)["message_status"] == ["DELIVRD"]
    post = report_request(Dialect.JASMIN, "http://r.example/dlr",
                          replace(delivered, meta={MetaKey.DLR_METHOD: "POST"}))
    assert post.method == "POST" and parse_qs(post.body.decode())["level"] == ["2"]


@pytest.mark.parametrize(("event", "stat", "status", "code"), [
    ("delivered", "DELIVRD", "DELIVRD", "0"), ("undeliverable", "UNDELIV", "UNDELIV", "1"),
    ("expired", None, "EXPIRED", "0"), ("failed", None, "REJECTD", "1706")])
def test_bulksms_push_fields(event: str, stat: str | None, status: str, code: str) -> None:
    facts = replace(FACTS, event=event, receipt_stat=stat,
                    receipt_err="001" if stat == "UNDELIV" else None,
                    error="INVALID_DESTINATION" if event == "failed" else None)
    fields = bulksms_fields(facts)
    assert (fields["sStatus"], fields["iErrCode"], fields["sMobileNo"], fields["sSender"]) == (
        status, code, "447400123456", "ACME")
    assert fields["dtSubmit"] == "2026-12-07 18:13:39"


def test_the_json_report() -> None:
    request = report_request(Dialect.JSON, "http://r.example/cb",
                             replace(FACTS, event="delivered"))
    assert (request.method, request.ack) == ("POST", None)
    assert json.loads(request.body) == {"submissionId": FACTS.message_id,
                                        "recipient": "+447400123456", "status": "delivered",
                                        "at": "2026-12-07T18:13:40Z", "error": None,
                                        "attempt": 1}
