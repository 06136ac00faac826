"""Recipient normalisation and sender ids (SPEC §6): every accepted form, every refusal reason."""

from __future__ import annotations

from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.addresses import (
    _fast_read,
    _parse_sender,
    _read,
    _slow_read,
    normalise_recipient,
    parse_sender,
)
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.model import Address

# Numbers libphonenumber (the installed metadata) calls valid; test_fixture_numbers_are_valid
# pins that, so a metadata update that moves one fails there and not somewhere obscure.
GB_MOBILE = "447400123456"
GB_FIXED = "442079460000"
DE_MOBILE = "4915112345678"
DE_FIXED = "493012345678"
FR_MOBILE = "33612345678"
US_NUMBER = "12025550123"      # NANPA: FIXED_LINE_OR_MOBILE
TOLL_FREE = "80012345678"      # UIFN, non-geographic


@pytest.mark.parametrize(("number", "kind"), [
    (GB_MOBILE, phonenumbers.PhoneNumberType.MOBILE),
    (GB_FIXED, phonenumbers.PhoneNumberType.FIXED_LINE),
    (DE_MOBILE, phonenumbers.PhoneNumberType.MOBILE),
    (DE_FIXED, phonenumbers.PhoneNumberType.FIXED_LINE),
    (FR_MOBILE, phonenumbers.PhoneNumberType.MOBILE),
    (US_NUMBER, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE),
    (TOLL_FREE, phonenumbers.PhoneNumberType.TOLL_FREE),
])
def test_fixture_numbers_are_valid(number: str, kind: int) -> None:
    parsed = phonenumbers.parse("+" + number)
    assert phonenumbers.is_valid_number(parsed)
    assert phonenumbers.number_type(parsed) == kind


def intl(value: str) -> Address:
    return Address(value, 1, 1)


@pytest.mark.parametrize(("raw", "region", "expected"), [
    # E.164 with and without '+', and the 00 international prefix (in any region)
    ("+447400123456", "GB", GB_MOBILE),
    ("+447400123456", "US", GB_MOBILE),
    ("447400123456", "GB", GB_MOBILE),
    ("447400123456", "US", GB_MOBILE),
    ("00447400123456", "GB", GB_MOBILE),
    ("00447400123456", "US", GB_MOBILE),
    ("+4915112345678", "GB", DE_MOBILE),
    ("4915112345678", "GB", DE_MOBILE),
    ("+33612345678", "DE", FR_MOBILE),
    ("0033612345678", "DE", FR_MOBILE),
    ("+1 202 555 0123", "GB", US_NUMBER),
    ("+442079460000", "GB", GB_FIXED),
    # separators
    ("+44-7400-123456", "GB", GB_MOBILE),
    ("+44 7400 123456", "GB", GB_MOBILE),
    ("+44.7400.123456", "GB", GB_MOBILE),
    ("+44 (0)7400 123456", "GB", GB_MOBILE),
    ("(07400) 123/456", "GB", GB_MOBILE),
    ("+44\u00a07400\t123456", "GB", GB_MOBILE),
    ("  +447400123456  ", "GB", GB_MOBILE),
    # national numbers read in default_region
    ("07400123456", "GB", GB_MOBILE),
    ("07400 123456", "gb", GB_MOBILE),
    ("7400123456", "GB", GB_MOBILE),
    ("015112345678", "DE", DE_MOBILE),
    ("0151 12345678", "DE", DE_MOBILE),
    ("030 12345678", "DE", DE_FIXED),
    ("06 12 34 56 78", "FR", FR_MOBILE),
    # US 10-digit with region US, and the region's own international prefix (011)
    ("2025550123", "US", US_NUMBER),
    ("(202) 555-0123", "US", US_NUMBER),
    ("202-555-0123", "US", US_NUMBER),
    ("12025550123", "US", US_NUMBER),
    ("011447400123456", "US", GB_MOBILE),
    # bare digits valid both ways: the own country code, then the reading that takes SMS
    ("4915112345678", "DE", DE_MOBILE),     # not 0491 5112345678 (a DE fixed line)
    ("447400123456", "DE", GB_MOBILE),      # not 0447400123456 (a DE fixed line)
    ("9513500049", "US", "19513500049"),    # not +95 (Myanmar): US numbers stay US
    ("15612718880", "DE", "4915612718880"),  # DE mobile without trunk 0, not +1 561…
    ("15612718880", "GB", "15612718880"),   # not valid in GB: read as +1 561…
])
def test_accepted_forms(raw: str, region: str, expected: str) -> None:
    assert normalise_recipient(raw, default_region=region) == intl(expected)


@pytest.mark.parametrize(("raw", "region", "reason"), [
    ("", "GB", "empty"),
    ("   ", "GB", "empty"),
    ("-()", "GB", "empty"),
    ("abc", "GB", "contains letters"),
    ("+44740012345a", "GB", "contains letters"),
    ("0800-FLOWERS", "US", "contains letters"),
    ("+447400123456 ext 12", "GB", "contains letters"),
    ("#123", "GB", "contains invalid character '#'"),
    ("12+34", "GB", "contains invalid character '+'"),
    ("+447400123456\x00", "GB", "contains invalid character '\\x00'"),
    ("\u0660\u0667\u0664", "GB", "contains invalid character '\u0660'"),
    ("+447400123456@", "GB", "contains invalid character '@'"),
    ("+", "GB", "too short"),
    ("1", "GB", "too short"),
    ("00", "GB", "too short"),
    ("+8612", "GB", "too short"),
    ("+3361234567", "GB", "too short"),
    ("+1202555012", "US", "too short"),
    ("+4474001234567", "GB", "too long"),
    ("+336123456789", "GB", "too long"),
    ("+120255501234", "US", "too long"),
    ("+" + "1" * 25, "GB", "too long"),
    ("0" * 10_000, "GB", "too long"),
    ("+999123456", "GB", "invalid country code"),
    ("+0123456789", "GB", "invalid country code"),
    ("+447700900123", "GB", "not a valid number for region GB"),   # Ofcom fictional range
    ("07700900123", "GB", "not a valid number for region GB"),
    ("+447400123", "GB", "not a valid number for region GB"),
    ("+11234567890", "US", "not a valid number for region US"),
    ("+6166666666666", "GB", "wrong length for region AU"),
    ("5550123", "US", "too short: a local number without area code for region US"),
    ("07400123456", "XX", "unknown region 'XX'"),
    ("+447400123456", "", "unknown region ''"),
    ("+447400123456", "001", "unknown region '001'"),
])
def test_refusals(raw: str, region: str, reason: str) -> None:
    with pytest.raises(BridgeError) as info:
        normalise_recipient(raw, default_region=region)
    assert info.value.name is ErrorName.INVALID_DESTINATION
    assert info.value.detail == reason


@pytest.mark.parametrize(("raw", "ok"), [
    ("+447400123456", True),     # MOBILE
    ("+12025550123", True),      # FIXED_LINE_OR_MOBILE: NANPA cannot tell, so it may go
    ("+33612345678", True),
    ("+442079460000", False),    # FIXED_LINE
    ("+493012345678", False),
    ("+80012345678", False),     # TOLL_FREE
])
def test_mobile_only(raw: str, ok: bool) -> None:
    assert normalise_recipient(raw, default_region="GB").value == raw[1:]  # valid either way
    if ok:
        assert normalise_recipient(raw, default_region="GB", mobile_only=True) == intl(raw[1:])
    else:
        with pytest.raises(BridgeError) as info:
            normalise_recipient(raw, default_region="GB", mobile_only=True)
        assert (info.value.name, info.value.detail) == (
            ErrorName.INVALID_DESTINATION, "not a mobile number")


def test_result_is_smpp_international() -> None:
    address = normalise_recipient("07400123456", default_region="GB")
    assert (address.ton, address.npi, address.e164) == (1, 1, "+447400123456")


REGIONS = st.sampled_from(["GB", "DE", "US", "FR", "IT", "IN", "AU"])


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=30), region=st.one_of(REGIONS, st.text(max_size=3)),
       mobile_only=st.booleans())
def test_arbitrary_text_only_raises_bridge_error(raw: str, region: str, mobile_only: bool) -> None:
    try:
        normalise_recipient(raw, default_region=region, mobile_only=mobile_only)
    except BridgeError as exc:
        assert exc.name is ErrorName.INVALID_DESTINATION and exc.detail


number_like = st.builds(
    lambda prefix, digits, seps: prefix + "".join(d + s for d, s in zip(digits, seps)),
    st.sampled_from(["", "+", "00", "0", "+44", "+49", "+1", "+33", "0044"]),
    st.text(alphabet="0123456789", min_size=1, max_size=15),
    st.lists(st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "/"]), min_size=15, max_size=15),
)


@settings(max_examples=500, deadline=None)
@given(raw=number_like, region=REGIONS)
def test_idempotent(raw: str, region: str) -> None:
    """Whatever a first pass accepts, "+" + its value is accepted as the same number, in any
    region: the stored E.164 form never changes meaning when it is read again."""
    try:
        first = normalise_recipient(raw, default_region=region)
    except BridgeError:
        return
    # Not always <= 15 digits: libphonenumber knows longer valid numbers (German pagers).
    assert first.value.isascii() and first.value.isdigit() and first.value[0] != "0"
    for other in ("GB", "US", region):
        assert normalise_recipient("+" + first.value, default_region=other) == first


@settings(max_examples=300, deadline=None)
@given(raw=number_like)
def test_validity_agrees_with_is_valid_number(raw: str) -> None:
    """The implementation reads validity off number_type() (half the cost); it must agree
    with phonenumbers.is_valid_number for '+' numbers, where there is no reading to choose."""
    if not raw.startswith("+"):
        return
    try:
        parsed = phonenumbers.parse(raw.replace("(", "").replace(")", ""), None)
        expected = phonenumbers.is_valid_number(parsed)
    except phonenumbers.NumberParseException:
        expected = False
    try:
        normalise_recipient(raw, default_region="GB")
        accepted = True
    except BridgeError:
        accepted = False
    assert accepted == expected


# ---------------------------------------------------------------------------------------------
# Senders

@pytest.mark.parametrize(("raw", "expected"), [
    ("ACME", Address("ACME", 5, 0)),
    ("ACMECORPLTD", Address("ACMECORPLTD", 5, 0)),        # 11: the maximum
    ("ACME Ltd 11", Address("ACME Ltd 11", 5, 0)),        # spaces and digits count
    ("  ACME  ", Address("ACME", 5, 0)),
    ("Info-24/7", Address("Info-24/7", 5, 0)),
    ("§hop", Address("§hop", 5, 0)),                      # '§' is 0x5F in GSM 03.38
    ("Café&Co!", Address("Café&Co!", 5, 0)),
    ("ΔELTA", Address("ΔELTA", 5, 0)),                    # Greek capitals are GSM too
    ("+447400123456", Address("447400123456", 1, 1)),
    ("+44 7400 123456", Address("447400123456", 1, 1)),
    ("0044 7400 123456", Address("447400123456", 1, 1)),
    ("447400123456", Address("447400123456", 1, 1)),      # 9..15 bare digits: international
    ("123456789", Address("123456789", 1, 1)),
    ("+1234567", Address("1234567", 1, 1)),               # '+' and 7 digits: the minimum
    ("+123456789012345", Address("123456789012345", 1, 1)),
    ("123", Address("123", 3, 0)),                        # 3..8 bare digits: short code
    ("12345678", Address("12345678", 3, 0)),
    ("12-34", Address("1234", 3, 0)),
])
def test_sender_kinds(raw: str, expected: Address) -> None:
    assert parse_sender(raw) == expected


def test_short_code_ton_npi_configurable() -> None:
    assert parse_sender("54321", short_code_ton=6, short_code_npi=9) == Address("54321", 6, 9)
    assert parse_sender("ACME", short_code_ton=6, short_code_npi=9) == Address("ACME", 5, 0)
    assert parse_sender("+447400123456", short_code_ton=6) == Address("447400123456", 1, 1)


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"),
    ("   ", "empty"),
    ("ACMECORPLTD1", "alphanumeric sender too long (12 characters, max 11)"),
    ("Hi😀", "contains '😀', not in the GSM 03.38 default alphabet"),
    ("€uro", "contains '€', not in the GSM 03.38 default alphabet"),   # extension table
    ("[ACME]", "contains '[', not in the GSM 03.38 default alphabet"),
    ("ACME\nX", "contains control character U+000A"),
    ("AC\x00ME", "contains control character U+0000"),
    ("ǄACME", "contains 'Ǆ', not in the GSM 03.38 default alphabet"),
    ("+ACME", "'+' followed by letters"),
    ("+", "no digits after '+'"),
    ("😀", "contains '😀': without letters a sender must be a number"),
    ("1-2+3", "contains '+': without letters a sender must be a number"),
    ("12#3", "contains '#': without letters a sender must be a number"),
    ("1\x0723", "contains control character U+0007"),
    ("12", "number too short (2 digits, min 3)"),
    ("+123456", "international number too short (6 digits, min 7)"),
    ("+1234567890123456", "international number too long (16 digits, max 15)"),
    ("1234567890123456", "number too long (16 digits, max 15)"),
    ("+0441234567", "invalid country code"),
    ("07400123456", "national number: give it in international form (+ and country code)"),
])
def test_sender_refusals(raw: str, reason: str) -> None:
    with pytest.raises(BridgeError) as info:
        parse_sender(raw)
    assert (info.value.name, info.value.detail) == (ErrorName.INVALID_SOURCE, reason)


ALLOWED = ("ACME", "+447400123456", "12345", "not a sender!!!!")


@pytest.mark.parametrize(("raw", "expected"), [
    ("ACME", Address("ACME", 5, 0)),
    ("acme", Address("ACME", 5, 0)),       # case-insensitive; the registered spelling is sent
    (" Acme ", Address("ACME", 5, 0)),
    ("+447400123456", Address("447400123456", 1, 1)),
    ("00447400123456", Address("447400123456", 1, 1)),
    ("447400123456", Address("447400123456", 1, 1)),
    ("+44 7400-123456", Address("447400123456", 1, 1)),
    ("12345", Address("12345", 3, 0)),
])
def test_allow_list_match(raw: str, expected: Address) -> None:
    assert parse_sender(raw, allowed=ALLOWED) == expected


@pytest.mark.parametrize("raw", ["OTHER", "ACME2", "+447400123457", "123456", "1234567"])
def test_allow_list_refusal(raw: str) -> None:
    with pytest.raises(BridgeError) as info:
        parse_sender(raw, allowed=ALLOWED)
    assert (info.value.name, info.value.detail) == (
        ErrorName.INVALID_SOURCE, f"sender {raw} is not allowed for this account")


def test_allow_list_checks_shape_first() -> None:
    """A malformed sender says what is wrong with it, not merely that it is not listed."""
    with pytest.raises(BridgeError) as info:
        parse_sender("ACMECORPLTD1", allowed=ALLOWED)
    assert info.value.detail.startswith("alphanumeric sender too long")


def test_short_code_vs_international_number_are_different_senders() -> None:
    """7 bare digits are a short code, '+' and 7 digits an international number."""
    assert parse_sender("+1234567", allowed=("+1234567",)) == Address("1234567", 1, 1)
    with pytest.raises(BridgeError):
        parse_sender("1234567", allowed=("+1234567",))


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=20))
def test_sender_arbitrary_text_only_raises_bridge_error(raw: str) -> None:
    try:
        address = parse_sender(raw)
    except BridgeError as exc:
        assert exc.name is ErrorName.INVALID_SOURCE and exc.detail
        return
    assert address.ton in (1, 3, 5)
    assert parse_sender(address.e164) == address  # a parsed sender parses to itself


def _sender_outcome(call: Callable[[], Address]) -> Address | str:
    try:
        return call()
    except BridgeError as exc:
        return f"{exc.name.value}: {exc.detail}"


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=40), st.sampled_from(["ACME", "acme", "+447400000001",
                                                              "12345", " ACME ", "x" * 33])),
       allowed=st.sampled_from([(), ("ACME", "+447400000001"), ("12345",)]),
       ton=st.sampled_from([3, 0]))
def test_sender_cache_changes_nothing(raw: str, allowed: tuple[str, ...], ton: int) -> None:
    """parse_sender keeps short senders in a cache: asked twice, it answers as the uncached
    reading does, refusals included (those are never cached)."""
    expected = _sender_outcome(lambda: _parse_sender(raw, allowed, ton, 0))
    for _ in range(2):
        assert _sender_outcome(
            lambda: parse_sender(raw, allowed=allowed, short_code_ton=ton, short_code_npi=0)
        ) == expected


EXAMPLE_REGIONS = ["GB", "DE", "US", "FR", "IT", "ES", "NL", "IN", "BR", "AU", "JP", "CN", "RU",
                   "ZA", "NG", "AT", "CH", "MX"]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number near the region's example mobile or fixed-line number."""
    region = draw(st.sampled_from(EXAMPLE_REGIONS))
    kind = draw(st.sampled_from([phonenumbers.PhoneNumberType.MOBILE,
                                 phonenumbers.PhoneNumberType.FIXED_LINE]))
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    nsn = str(example.national_number)
    tail = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    number = phonenumbers.parse(f"+{example.country_code}{nsn[:-3]}{tail}")
    if not phonenumbers.is_valid_number(number):
        number = example
    return region, number


@settings(max_examples=300, deadline=None)
@given(case=valid_numbers())
def test_every_printed_form_of_a_valid_number(case: tuple[str, phonenumbers.PhoneNumber]) -> None:
    """E.164, international and national print forms (the latter in its own region) all give
    the same number; so does the E.164 form without '+' for a caller in that region."""
    region, number = case
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    expected = intl(e164[1:])
    assert normalise_recipient(e164, default_region="GB") == expected
    assert normalise_recipient("00" + e164[1:], default_region="GB") == expected
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert normalise_recipient(international, default_region="US") == expected
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    assert normalise_recipient(national, default_region=region) == expected
    assert normalise_recipient(e164[1:], default_region=region) == expected


# ---------------------------------------------------------------------------------------------
# The fast path against the library

ALL_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
ALL_TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
             phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.PREMIUM_RATE,
             phonenumbers.PhoneNumberType.SHARED_COST, phonenumbers.PhoneNumberType.VOIP,
             phonenumbers.PhoneNumberType.PERSONAL_NUMBER, phonenumbers.PhoneNumberType.PAGER,
             phonenumbers.PhoneNumberType.UAN, phonenumbers.PhoneNumberType.VOICEMAIL]


def printed_digits(number: phonenumbers.PhoneNumber) -> tuple[str, str]:
    """(E.164 digits without '+', national print form reduced to its digits)."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return e164, "".join(ch for ch in national if ch.isdigit())


@st.composite
def readings(draw: st.DrawFn) -> tuple[str, str | None]:
    """What `_lookup` hands `_read`: '+' and digits with no region, or digits and a region.
    The digits start from a real number of any type in any region (E.164, national or bare
    national significant number, or random), then maybe get a digit changed, dropped, added,
    a leading 0 or a country code in front: valid, invalid, too short and too long."""
    home = draw(st.sampled_from(ALL_REGIONS))
    example = (phonenumbers.example_number_for_type(home, draw(st.sampled_from(ALL_TYPES)))
               or phonenumbers.example_number(home))
    if example is None:
        digits = draw(st.text(alphabet="0123456789", min_size=1, max_size=18))
    else:
        e164, national = printed_digits(example)
        digits = draw(st.sampled_from([e164, national, national.lstrip("0") or national,
                                       str(example.national_number)]))
    i = draw(st.integers(0, len(digits) - 1))
    d = draw(st.sampled_from("0123456789"))
    digits = draw(st.sampled_from([
        digits, digits, digits[:i] + d + digits[i + 1:], digits[:-1] or digits, digits + d,
        "0" + digits, "00" + digits, d + digits,
        str(phonenumbers.country_code_for_region(home)) + digits,
    ]))[:20]
    if draw(st.booleans()):
        return "+" + digits, None
    return digits, draw(st.sampled_from([home, home, "GB", "US", "DE", "IT", "BR", "AR", "MX"]
                                        + ALL_REGIONS))


@settings(max_examples=1500, deadline=None)
@given(reading=readings())
def test_fast_path_agrees_with_the_library(reading: tuple[str, str | None]) -> None:
    """Where the fast path answers, it answers what plain phonenumbers calls (parse,
    number_type, format_number, in `_slow_read`) answer; elsewhere it defers to them."""
    text, region = reading
    fast = _fast_read(text, region)
    assert fast is None or fast == _slow_read(text, region), (text, region)
    assert _read(text, region) == _slow_read(text, region)


def test_fast_path_agrees_on_every_region_example() -> None:
    """Every example number the metadata has, in the forms clients use, in its own region and
    in GB, read internationally and nationally."""
    for region in ALL_REGIONS:
        for kind in ALL_TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164, national = printed_digits(example)
            for text, where in (("+" + e164, None), (national, region), (e164, region),
                                (national, "GB"), (e164, "GB"), ("+" + e164 + "1", None),
                                ("+" + e164[:-1], None), (national[:-1], region)):
                if not text.lstrip("+"):
                    continue
                fast = _fast_read(text, where)
                assert fast is None or fast == _slow_read(text, where), (text, where)


@pytest.mark.parametrize(("text", "region", "expected"), [
    ("+447400123456", None, (GB_MOBILE, True)),
    ("07400123456", "GB", (GB_MOBILE, True)),
    ("447400123456", "GB", (GB_MOBILE, True)),
    ("7400123456", "GB", (GB_MOBILE, True)),
    ("+442079460000", None, (GB_FIXED, False)),
    ("+4915112345678", None, (DE_MOBILE, True)),
    ("015112345678", "DE", (DE_MOBILE, True)),
    ("+12025550123", None, (US_NUMBER, True)),
    ("2025550123", "US", (US_NUMBER, True)),
    ("+80012345678", None, (TOLL_FREE, False)),
])
def test_fast_path_takes_the_common_shapes(text: str, region: str | None,
                                           expected: tuple[str, bool]) -> None:
    """The shapes real traffic has are answered without phonenumbers.parse (the point of the
    fast path: a change that makes it defer silently would only show as a slower bridge)."""
    assert _fast_read(text, region) == expected
