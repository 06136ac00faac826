"""parse_receipt over the receipt texts SMSCs actually send, and smsc_id_keys properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.receipts import STAT_NAMES, Receipt, parse_receipt, smsc_id_keys

STANDARD = (b"id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
            b"stat:DELIVRD err:000 text:Hello world")


@pytest.mark.parametrize(("short_message", "kwargs", "expected"), [
    pytest.param(STANDARD, {}, Receipt("0123456789", "DELIVRD", 2, "000", "2401011200",
                                       "2401011201", "Hello world"), id="appendix-b"),
    pytest.param("id:abc123 sub:001 dlvrd:000 submit date:240101120000 "
                 "done date:240101120130 stat:UNDELIV err:001 Text:Hi",
                 {}, Receipt("abc123", "UNDELIV", 5, "001", "240101120000", "240101120130",
                             "Hi"), id="12-digit-dates-capital-Text"),
    pytest.param("ID:77 Stat:delivrd Err:0", {},
                 Receipt("77", "DELIVRD", 2, "0", None, None, None), id="case-and-missing"),
    pytest.param("stat:EXPIRED err:000 text:late id:4F2A", {},
                 Receipt("4F2A", "EXPIRED", 3, "000", None, None, "late"), id="id-last"),
    pytest.param("id:12 sub:001 dlvrd:001 imsi:234150000000000 mcc:234 submit date:2401011200 "
                 "done date:2401011201 stat:DELIVRD err:000 text:x",
                 {}, Receipt("12", "DELIVRD", 2, "000", "2401011200", "2401011201", "x"),
                 id="extra-fields"),
    pytest.param("id:12 stat:DELIVRD err:000 text:my id:99 stat:UNDELIV", {},
                 Receipt("12", "DELIVRD", 2, "000", None, None, "my id:99 stat:UNDELIV"),
                 id="text-containing-field-names"),
    pytest.param("id:12 submit_date:2401011200 done_date:2401011201 stat:DELIVERED", {},
                 Receipt("12", "DELIVRD", 2, None, "2401011200", "2401011201", None),
                 id="underscore-dates-long-stat"),
    pytest.param("id:12,stat:REJECTD;err:011", {},
                 Receipt("12", "REJECTD", 8, "011", None, None, None), id="punctuation"),
    pytest.param(b"", {"receipted_message_id": "7B", "message_state": 2},
                 Receipt("7B", "DELIVRD", 2, None, None, None, None), id="tlv-only"),
    pytest.param(STANDARD, {"receipted_message_id": "75BCD15\x00"},
                 Receipt("75BCD15", "DELIVRD", 2, "000", "2401011200", "2401011201",
                         "Hello world"), id="tlv-id-preferred"),
    pytest.param(b"id:1 stat:DELIVRD", {"message_state": 5},
                 Receipt("1", "DELIVRD", 5, None, None, None, None), id="tlv-state-kept"),
    pytest.param(b"id:1 stat:ENROUTE", {},
                 Receipt("1", "ENROUTE", 1, None, None, None, None), id="interim"),
    pytest.param(b"id:1 stat:ACCEPTD submit date:24-01-01", {},
                 Receipt("1", "ACCEPTD", 6, None, None, None, None), id="bad-date-dropped"),
    pytest.param(b"id:1 text:caf\xe9", {},
                 Receipt("1", None, None, None, None, None, "caf\xe9"), id="latin1-text"),
])
def test_parse_receipt_variants(short_message: bytes | str, kwargs: dict[str, object],
                                expected: Receipt) -> None:
    assert parse_receipt(short_message, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [b"", b"hello there", b"sub:001 stat:DELIVRD", "identity:5"])
def test_no_id_is_not_a_receipt(text: bytes | str) -> None:
    assert parse_receipt(text) is None


def test_stat_names_are_appendix_b() -> None:
    assert set(STAT_NAMES) == {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD",
                               "UNKNOWN", "REJECTD"}
    for stat in STAT_NAMES:
        receipt = parse_receipt(f"id:1 stat:{stat.lower()}")
        assert receipt is not None and receipt.stat == stat and receipt.message_state


# ------------------------------------------------------------------ smsc_id_keys


def test_keys_examples() -> None:
    assert smsc_id_keys("1A2B", "hex") == ("int:6699",)
    assert smsc_id_keys("00001a2b", "hex") == ("int:6699",)
    assert smsc_id_keys("6699", "dec") == ("int:6699",)
    assert smsc_id_keys("0006699", "dec") == ("int:6699",)
    assert smsc_id_keys("1A2B", "auto") == ("raw:1a2b", "int:6699")
    assert smsc_id_keys("0006699", "auto") == ("raw:6699", "int:6699", "int:26265")
    assert smsc_id_keys("f0e1-uuid", "auto") == ("raw:f0e1-uuid",)
    assert smsc_id_keys("f0e1-uuid", "hex") == ("raw:f0e1-uuid",)
    assert smsc_id_keys("xyz", "dec") == ("raw:xyz",)
    assert smsc_id_keys("0", "auto") == ("raw:0", "int:0")


def _share(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return bool(set(a) & set(b))


ids = st.integers(min_value=0, max_value=2**64)
pads = st.integers(min_value=0, max_value=12)


@given(ids, pads, pads, st.booleans())
def test_auto_hex_resp_matches_decimal_or_padded_receipt(value: int, pad_a: int, pad_b: int,
                                                          upper: bool) -> None:
    hex_form = "0" * pad_a + (f"{value:X}" if upper else f"{value:x}")
    dec_form = "0" * pad_b + str(value)
    assert _share(smsc_id_keys(hex_form, "auto"), smsc_id_keys(dec_form, "auto"))
    assert _share(smsc_id_keys(hex_form, "auto"), smsc_id_keys(f"{value:x}".zfill(16), "auto"))
    assert _share(smsc_id_keys(dec_form, "auto"), smsc_id_keys(str(value), "auto"))


@given(ids, pads, pads)
def test_fixed_formats_ignore_case_and_padding(value: int, pad_a: int, pad_b: int) -> None:
    assert smsc_id_keys("0" * pad_a + f"{value:x}", "hex") == \
        smsc_id_keys("0" * pad_b + f"{value:X}", "hex") == (f"int:{value}",)
    assert smsc_id_keys("0" * pad_a + str(value), "dec") == \
        smsc_id_keys(str(value), "dec") == (f"int:{value}",)


@given(ids, ids)
def test_different_values_never_match_in_fixed_formats(a: int, b: int) -> None:
    if a != b:
        assert not _share(smsc_id_keys(f"{a:x}", "hex"), smsc_id_keys(f"{b:x}", "hex"))
        assert not _share(smsc_id_keys(str(a), "dec"), smsc_id_keys(str(b), "dec"))


@given(st.text(min_size=1, max_size=20))
def test_keys_are_prefixed_and_never_empty(raw: str) -> None:
    for fmt in ("auto", "hex", "dec"):
        keys = smsc_id_keys(raw, fmt)
        assert keys and all(k.startswith(("int:", "raw:")) for k in keys)
        assert len(set(keys)) == len(keys)
        assert set(keys) & set(smsc_id_keys(raw, fmt))


def test_auto_false_match_is_the_documented_one() -> None:
    # Decimal receipt "22" (= 0x16) also reads as 0x22: it touches both hex ids "16" and "22".
    receipt = smsc_id_keys("22", "auto")
    assert _share(receipt, smsc_id_keys("16", "auto"))
    assert _share(receipt, smsc_id_keys("22", "auto"))
    assert smsc_id_keys("22", "auto")[0] == "raw:22"  # the raw key ranks first


# ------------------------------------------------------------------ parse_receipt fast path

_token = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=12)
_stats = st.sampled_from(STAT_NAMES) | st.sampled_from(
    ["delivrd", "Delivered", "UNDELIVERABLE", "enroute", "", "xyz", "ß"]) | _token


@settings(max_examples=500, deadline=None)
@given(mid=st.text("0123456789abcdefABCDEF-_.", min_size=1, max_size=20) | _token,
       sub=_token, dlvrd=_token,
       submit_date=st.text("0123456789", max_size=12) | _token,
       done_date=st.text("0123456789", max_size=12) | _token,
       stat=_stats, err=st.text("0123456789", max_size=3) | _token,
       text=st.none() | st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=25),
       tail=st.sampled_from(["", " ", "\n", "  \t"]),
       tlv_id=st.none() | st.sampled_from(["", " ", "\x00", "7B\x00", " 12 "]) | _token,
       state=st.none() | st.integers(0, 9), as_bytes=st.booleans())
def test_parse_receipt_fast_path_agrees_with_reference(
        mid: str, sub: str, dlvrd: str, submit_date: str, done_date: str, stat: str, err: str,
        text: str | None, tail: str, tlv_id: str | None, state: int | None,
        as_bytes: bool) -> None:
    """Standard-layout bodies (and near misses built from arbitrary tokens) give the same
    Receipt from the regex groups as from the any-order field reader."""
    body = (f"id:{mid} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} "
            f"done date:{done_date} stat:{stat} err:{err}"
            + (f" text:{text}" if text is not None else "") + tail)
    message: bytes | str = body.encode("latin-1") if as_bytes else body
    assert parse_receipt(message, receipted_message_id=tlv_id, message_state=state) == \
        _any_order(message, tlv_id, state)


@settings(max_examples=300, deadline=None)
@given(body=st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80),
       tlv_id=st.none() | _token, state=st.none() | st.integers(0, 9))
def test_parse_receipt_agrees_with_reference_on_any_text(body: str, tlv_id: str | None,
                                                        state: int | None) -> None:
    assert parse_receipt(body, receipted_message_id=tlv_id, message_state=state) == \
        _any_order(body, tlv_id, state)


def _any_order(message: bytes | str, tlv_id: str | None, state: int | None) -> Receipt | None:
    """The receipt as the any-order field reader alone makes it (the reference)."""
    from bridge.core import receipts
    return receipts._receipt_any(receipts._body(message), tlv_id, state)


def _keys_reference(raw: str, id_format: str) -> tuple[str, ...]:
    """smsc_id_keys as first written (per-character hex test), for the property below."""
    text = raw.replace("\x00", "").strip().lower()
    if not text:
        return ("raw:",)
    is_dec = text.isascii() and text.isdigit()
    is_hex = all(ch in "0123456789abcdef" for ch in text)
    if id_format == "hex":
        return (f"int:{int(text, 16)}",) if is_hex else (f"raw:{text}",)
    if id_format == "dec":
        return (f"int:{int(text, 10)}",) if is_dec else (f"raw:{text}",)
    keys = [f"raw:{text.lstrip('0') or '0'}"]
    if is_dec:
        keys.append(f"int:{int(text, 10)}")
    if is_hex and f"int:{int(text, 16)}" not in keys:
        keys.append(f"int:{int(text, 16)}")
    return tuple(keys)


@given(st.text("0123456789abcdefABCDEFxX \x00-", max_size=20) | st.text(max_size=20),
       st.sampled_from(["auto", "hex", "dec"]))
def test_keys_agree_with_reference(raw: str, id_format: str) -> None:
    assert smsc_id_keys(raw, id_format) == _keys_reference(raw, id_format)
