"""Recipient numbers and sender ids, turned into SMPP addresses (SPEC §6).

Pure functions: a string and the account's settings in, an `Address` out, or a `BridgeError`
whose detail says precisely why not (it ends up in the per-recipient SMTP reply and SOAP result).
Validity follows libphonenumber's metadata, so numbers it calls invalid (reserved fictional
ranges such as UK 07700 900xxx) are refused like any other.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from bridge.core.errors import BridgeError, ErrorName
from bridge.core.gsm import DEFAULT_ALPHABET
from bridge.core.model import Address

__all__ = ["normalise_recipient", "parse_sender"]

# ---------------------------------------------------------------------------------------------
# Recipients

#: Visual separators people put in numbers; removed before anything else looks at the text.
_SEPARATORS = str.maketrans("", "", "-.()/")
#: What is left after separators must be this: ASCII digits, optionally after one '+'.
_DIALABLE = re.compile(r"\+?[0-9]+")
#: Longer than any E.164 number (15) plus an IDD or trunk prefix: refused before parsing.
_MAX_DIGITS = 20
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)

_POSSIBLE_REASON = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_COUNTRY_CODE: "invalid country code",
}
_PARSE_REASON = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid country code",
    NumberParseException.NOT_A_NUMBER: "too short",  # only digits reach parse(): too few of them
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

# What the cached lookup returns: (digits without '+', can receive SMS) or a refusal reason.
_Parsed = tuple[str, bool] | str


def is_known_region(region: str) -> bool:
    """A region libphonenumber has metadata for (config checks `default_region` with this)."""
    return region.upper() in _REGIONS


def normalise_recipient(raw: str, *, default_region: str, mobile_only: bool = False) -> Address:
    """Turn any accepted spelling of a number into Address(digits, ton=1, npi=1).

    Accepted: `+447400123456`, `00447400123456`, `447400123456`, `+44 (0)7400-123 456`-style
    separators (space, '-', '.', '(', ')', '/'), and national numbers (`07400123456`) read in
    `default_region`. Refusals raise INVALID_DESTINATION with the reason as detail.
    """
    region = default_region.upper()
    if region not in _REGIONS:
        raise BridgeError(ErrorName.INVALID_DESTINATION, f"unknown region {default_region!r}")
    plain = _DIALABLE.fullmatch(raw) is not None  # the usual case: nothing to clean
    cleaned = raw if plain else "".join(raw.split()).translate(_SEPARATORS)
    if not cleaned:
        raise BridgeError(ErrorName.INVALID_DESTINATION, "empty")
    if cleaned == "+":
        raise BridgeError(ErrorName.INVALID_DESTINATION, "too short")
    if not plain and _DIALABLE.fullmatch(cleaned) is None:
        if any(ch.isalpha() for ch in cleaned):
            raise BridgeError(ErrorName.INVALID_DESTINATION, "contains letters")
        bad = next(ch for i, ch in enumerate(cleaned)
                   if not ("0" <= ch <= "9" or (ch == "+" and i == 0)))
        raise BridgeError(ErrorName.INVALID_DESTINATION, f"contains invalid character {bad!r}")
    parsed = _lookup(cleaned, region)
    if isinstance(parsed, str):
        raise BridgeError(ErrorName.INVALID_DESTINATION, parsed)
    value, mobile = parsed
    if mobile_only and not mobile:
        raise BridgeError(ErrorName.INVALID_DESTINATION, "not a mobile number")
    return Address(value, 1, 1)


@lru_cache(maxsize=8192)
def _lookup(cleaned: str, region: str) -> _Parsed:
    """The phonenumbers work, cached: a bulk send or a relay retry repeats the same numbers, and
    parsing costs ~50 µs where a cache hit costs well under 1 µs."""
    digits = cleaned.lstrip("+")
    if len(digits) > _MAX_DIGITS:
        return "too long"
    if cleaned[0] == "+":
        return _read(cleaned, None)
    if digits.startswith("00"):
        return _read("+" + digits[2:], None)
    if digits[0] == "0":
        return _read(digits, region)  # trunk prefix (or the region's own IDD, e.g. US 011)
    # Bare digits without a prefix are ambiguous: "2025550123" is a US number in region US but
    # also valid as +20…, and "447400123456" is GB but also a valid German fixed line in region
    # DE. Read both ways; when both are valid, prefer the reading that can receive an SMS,
    # and the account's own region when that does not decide.
    national = _read(digits, region)
    international = _read("+" + digits, None)
    if isinstance(international, str):
        return national
    if isinstance(national, str):
        return international
    if national[1] or not international[1]:
        return national
    return international


def _read(text: str, region: str | None) -> _Parsed:
    """Parse one reading of the number; a valid one, or the most precise reason it is not.

    The fast path answers the common case (a valid number in a plain shape) at a fraction of
    the library's cost; everything else, including every refusal, goes to `_slow_read`."""
    fast = _fast_read(text, region) if _FAST_READ_VERIFIED else None
    return fast if fast is not None else _slow_read(text, region)


def _slow_read(text: str, region: str | None) -> _Parsed:
    """The reference reading, by the library's public calls (the fast path must agree)."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return _PARSE_REASON.get(exc.error_type, "not a number")
    # number_type() is UNKNOWN exactly when is_valid_number() is False (both run the same
    # region lookup and pattern match); calling it alone halves the cost of a valid number.
    kind = phonenumbers.number_type(number)
    if kind != PhoneNumberType.UNKNOWN:
        e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return e164[1:], kind in _MOBILE_TYPES
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _POSSIBLE_REASON:
        return _POSSIBLE_REASON[reason]
    where = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if where == phonenumbers.UNKNOWN_REGION:
        return "invalid country code"
    if reason == ValidationResult.INVALID_LENGTH:
        return f"wrong length for region {where}"
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return f"too short: a local number without area code for region {where}"
    return f"not a valid number for region {where}"


# ---------------------------------------------------------------------------------------------
# Fast path: the same answers as `_slow_read` for valid numbers in plain shapes
#
# phonenumbers.parse + number_type cost ~80 µs for a valid mobile: parse runs a dozen general
# regular expressions meant for free text, number_type resolves the region by classifying the
# number once (for a shared country code such as +44 or +1) and then classifies it again, and
# every match re-fetches its pattern through re.compile's cache. The inputs here are already
# reduced to an optional '+' and ASCII digits, so the steps of `parse` that can matter are few:
# the country code, the national prefix and the possible-length test. This path does only
# those, with the library's own metadata and patterns compiled once, and gives up (returns
# None, so the library decides) wherever a step is anything but the plain case. A property
# test in tests/core/test_addresses.py checks it against `_slow_read`.

#: The fast path repeats private steps of the library's parse: it runs only on the release
#: line its property tests were run against (pyproject pins it); any other release gets the
#: library alone until they are run again.
_FAST_READ_VERIFIED = phonenumbers.__version__.startswith("9.0.")
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumberutil's _MIN_LENGTH_FOR_NSN / _MAX_LENGTH_FOR_NSN
_CC_REGIONS: dict[int, tuple[str, ...]] = phonenumbers.COUNTRY_CODE_TO_REGION_CODE

#: One PhoneNumberDesc: its possible lengths (None = any) and its pattern's fullmatch.
_Desc = tuple[frozenset[int] | None, Callable[[str], object]]


class _Types:
    """A region's number-type descriptions, in `_number_type_helper`'s order, compiled once."""

    __slots__ = ("general", "typed", "fixed", "mobile", "same_fixed_mobile")

    def __init__(self, metadata: Any) -> None:
        self.general = _desc(metadata.general_desc)
        typed = ((PhoneNumberType.PREMIUM_RATE, metadata.premium_rate),
                 (PhoneNumberType.TOLL_FREE, metadata.toll_free),
                 (PhoneNumberType.SHARED_COST, metadata.shared_cost),
                 (PhoneNumberType.VOIP, metadata.voip),
                 (PhoneNumberType.PERSONAL_NUMBER, metadata.personal_number),
                 (PhoneNumberType.PAGER, metadata.pager),
                 (PhoneNumberType.UAN, metadata.uan),
                 (PhoneNumberType.VOICEMAIL, metadata.voicemail))
        self.typed = tuple((kind, d) for kind, desc in typed if (d := _desc(desc)) is not None)
        self.fixed = _desc(metadata.fixed_line)
        self.mobile = _desc(metadata.mobile)
        self.same_fixed_mobile = bool(metadata.same_mobile_and_fixed_line_pattern)

    def kind(self, nsn: str) -> int:
        """`phonenumberutil._number_type_helper(nsn, metadata)`."""
        if not _matches(self.general, nsn):
            return PhoneNumberType.UNKNOWN
        for kind, desc in self.typed:
            if _matches(desc, nsn):
                return kind
        if _matches(self.fixed, nsn):
            if self.same_fixed_mobile or _matches(self.mobile, nsn):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same_fixed_mobile and _matches(self.mobile, nsn):
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN


def _desc(desc: Any) -> _Desc | None:
    """None for a description that matches nothing (absent, or without a pattern)."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length) if desc.possible_length else None
    return lengths, re.compile(desc.national_number_pattern).fullmatch


def _matches(desc: _Desc | None, nsn: str) -> bool:
    """`_is_number_matching_desc`: its match-then-fullmatch is fullmatch."""
    if desc is None:
        return False
    lengths, fullmatch = desc
    return (lengths is None or len(nsn) in lengths) and fullmatch(nsn) is not None


class _Country:
    """What reading a number of one country calling code needs, compiled once."""

    __slots__ = ("code", "readable", "national_prefix", "regions")

    def __init__(self, code: int) -> None:
        self.code = str(code)
        main = _metadata(code, _CC_REGIONS[code][0])
        #: parse() strips a national prefix matching this (after the country code too).
        pattern = main.national_prefix_for_parsing if main is not None else None
        self.national_prefix = re.compile(pattern).match if pattern else None
        #: parse() needs metadata for the main region; without it, leave it to the library.
        self.readable = main is not None
        #: `_region_code_for_number_from_list`: (leading digits, types) per region, in order.
        regions: list[tuple[Callable[[str], object] | None, _Types]] = []
        for region in _CC_REGIONS[code]:
            metadata = _metadata(code, region)
            if metadata is None:
                continue
            leading = (re.compile(metadata.leading_digits).match
                       if metadata.leading_digits is not None and len(_CC_REGIONS[code]) > 1
                       else None)
            regions.append((leading, _Types(metadata)))
        self.regions = tuple(regions)

    def kind(self, nsn: str) -> int:
        """`number_type` of a number with this country code and national number `nsn`: the
        first region that claims it (by leading digits, else by being valid there) decides.
        Unlike `number_type`, the region's classification is not computed twice."""
        for leading, types in self.regions:
            if leading is not None:
                if leading(nsn):
                    return types.kind(nsn)
                continue
            kind = types.kind(nsn)
            if kind != PhoneNumberType.UNKNOWN:
                return kind
        return PhoneNumberType.UNKNOWN


class _Region:
    """What reading a national number in one default region needs, compiled once."""

    __slots__ = ("country", "idd", "national_prefix", "transform", "general", "lengths",
                 "local_lengths")

    def __init__(self, metadata: Any) -> None:
        self.country = _country(metadata.country_code)
        idd = metadata.international_prefix
        self.idd = re.compile("NonMatch" if idd is None else idd).match
        pattern = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(pattern).match if pattern else None
        self.transform = bool(metadata.national_prefix_transform_rule)
        general = metadata.general_desc.national_number_pattern
        #: `_match_national_number(…, general_desc, False)`: the pattern only, no lengths.
        self.general = re.compile(general).fullmatch if general else None
        self.lengths = tuple(metadata.general_desc.possible_length)
        self.local_lengths = frozenset(metadata.general_desc.possible_length_local_only)

    def strip_prefix(self, digits: str) -> str | None:
        """`_maybe_strip_national_prefix_carrier_code(digits, metadata)`'s number (None: a case
        this path leaves to the library, a carrier code or a transform rule)."""
        if not digits or self.national_prefix is None:
            return digits
        match = self.national_prefix(digits)
        if match is None:
            return digits
        if match.lastindex is not None or self.transform:
            return None
        rest = digits[match.end():]
        if self.has_general(digits) and not self.has_general(rest):
            return digits
        return rest

    def national(self, digits: str) -> str | None:
        """The national significant number parse() keeps: the stripped number when its length
        is possible in the region, else the number as given."""
        if not self.lengths:
            return None
        stripped = self.strip_prefix(digits)
        if stripped is None:
            return None
        return stripped if self.possible(stripped) else digits

    def has_general(self, digits: str) -> bool:
        """`_match_national_number(digits, general_desc, False)`: the pattern, no lengths."""
        return self.general is not None and self.general(digits) is not None

    def own_code(self, digits: str) -> str | None | Literal[False]:
        """`_maybe_extract_country_code` for digits that start with the region's own country
        code: the number after it (and its national prefix), False when parse() reads the
        digits as national after all, None when this path leaves it to the library."""
        potential = self.strip_prefix(digits[len(self.country.code):])
        if potential is None or not self.lengths:
            return None
        n = len(digits)
        too_long = (n not in self.local_lengths and n > self.lengths[0]
                    and n > self.lengths[-1])
        if (not self.has_general(digits) and self.has_general(potential)) or too_long:
            return potential
        return False

    def possible(self, nsn: str) -> bool:
        """`_test_number_length(nsn, metadata)` is not TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY or
        INVALID_LENGTH (what parse() asks before keeping a stripped national prefix)."""
        n = len(nsn)
        if n in self.local_lengths:
            return False
        if n == self.lengths[0]:
            return True
        if n < self.lengths[0]:
            return False
        return n > self.lengths[-1] or n in self.lengths[1:]


def _metadata(code: int, region: str) -> Any:
    return phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)


_COUNTRIES: dict[int, _Country] = {}
_REGION_READERS: dict[str, _Region] = {}


def _country(code: int) -> _Country:
    country = _COUNTRIES.get(code)
    if country is None:
        country = _COUNTRIES[code] = _Country(code)
    return country


def _region_reader(region: str) -> _Region | None:
    reader = _REGION_READERS.get(region)
    if reader is None:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            return None
        reader = _REGION_READERS[region] = _Region(metadata)
    return reader


def _fast_read(text: str, region: str | None) -> tuple[str, bool] | None:
    """`_slow_read(text, region)` for a valid number in a plain shape, else None.

    `text` is '+' and ASCII digits (read internationally, `region` None) or ASCII digits
    (read in `region`), as `_lookup` passes them."""
    if text[0] == "+":
        digits = text[1:]
        if len(digits) <= _MIN_NSN or digits[0] == "0":
            return None  # too short after the '+', or no country code: the library says why
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in _CC_REGIONS:
                break
        else:
            return None
        country = _country(code)
        if not country.readable:
            return None
        nsn = digits[size:]
        if country.national_prefix is not None and country.national_prefix(nsn):
            return None  # "+44 0…": parse() may strip it; let it decide
    elif region is not None and len(text) > _MIN_NSN:
        reader = _region_reader(region)
        if reader is None or reader.idd(text):
            return None  # the region's IDD: the library decides whether it is one
        country = reader.country
        own = reader.own_code(text) if text.startswith(country.code) else False
        if own is None:
            return None
        if own is False:
            read = reader.national(text)
        else:  # its own country code without '+': the rest is read in the code's main region
            main = _region_reader(_CC_REGIONS[int(country.code)][0])
            read = main.national(own) if main is not None else None
        if read is None:
            return None
        nsn = read
    else:
        return None
    if not _MIN_NSN <= len(nsn) <= _MAX_NSN or nsn[0] == "0":
        return None  # too short or long, or an Italian-style leading zero: the library's job
    kind = country.kind(nsn)
    if kind == PhoneNumberType.UNKNOWN:
        return None  # invalid: the library finds the precise reason
    return country.code + nsn, kind in _MOBILE_TYPES


# ---------------------------------------------------------------------------------------------
# Senders

_ALNUM_MAX = 11  # GSM TS 23.040 TP-OA: 10 octets of packed septets
_INTL_MIN, _INTL_MAX = 7, 15
_SHORT_MIN, _SHORT_MAX = 3, 8
#: Printable default-alphabet characters. LF/CR are in the alphabet but are control characters;
#: extension characters (€, {, …) cost two septets and SMSCs mangle them in source_addr.
_SENDER_CHARS = frozenset(ch for ch in DEFAULT_ALPHABET if ch not in "\n\r")
_SENDER_SEPARATORS = str.maketrans("", "", " -.()/")


def parse_sender(
    raw: str,
    *,
    allowed: tuple[str, ...] = (),
    short_code_ton: int = 3,
    short_code_npi: int = 0,
) -> Address:
    """Classify a sender id into the SMPP source address SMSCs accept (REFERENCES: TON/NPI).

    Alphanumeric (has a letter, ≤ 11 GSM default-alphabet characters) → TON 5 / NPI 0;
    '+' or '00' and 7..15 digits, or 9..15 bare digits → international TON 1 / NPI 1;
    3..8 bare digits → short code with the configured TON/NPI. With a non-empty `allowed`, the
    sender must equal one of its entries after the same parsing (alphanumeric ignoring case),
    and the entry's spelling is returned: it is the one registered with the operators.
    """
    if len(raw) <= _CACHED_SENDER_MAX:  # every request names one; most name the same few
        return _parse_sender_cached(raw, allowed, short_code_ton, short_code_npi)
    return _parse_sender(raw, allowed, short_code_ton, short_code_npi)


#: Longer texts (refused, unless padded) are not kept: the cache holds on to its keys.
_CACHED_SENDER_MAX = 32


def _parse_sender(raw: str, allowed: tuple[str, ...], short_code_ton: int,
                  short_code_npi: int) -> Address:
    address = _classify(raw)
    if allowed:
        match = _allowed_index(allowed).get(_key(address))
        if match is None:
            raise BridgeError(ErrorName.INVALID_SOURCE,
                              f"sender {raw.strip()} is not allowed for this account")
        address = match
    if address.ton == 3:
        return Address(address.value, short_code_ton, short_code_npi)
    return address


_parse_sender_cached = lru_cache(maxsize=1024)(_parse_sender)


def _key(address: Address) -> tuple[int, str]:
    return (address.ton, address.value.casefold() if address.ton == 5 else address.value)


@lru_cache(maxsize=1024)
def _allowed_index(allowed: tuple[str, ...]) -> dict[tuple[int, str], Address]:
    """Parsed allow-list, once per distinct list. Malformed entries match nothing (config
    checking reports them); the first of equal entries wins."""
    index: dict[tuple[int, str], Address] = {}
    for entry in allowed:
        try:
            address = _classify(entry)
        except BridgeError:
            continue
        index.setdefault(_key(address), address)
    return index


def _classify(raw: str) -> Address:
    """Sender kind by shape; short codes come back as TON 3 / NPI 0 and are re-labelled later."""
    text = raw.strip()
    if not text:
        raise _bad_sender("empty")
    if any(ch.isalpha() for ch in text):
        return _alphanumeric(text)
    compact = text.translate(_SENDER_SEPARATORS)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if not digits:
        raise _bad_sender("no digits after '+'")
    if not (digits.isascii() and digits.isdigit()):
        bad = next(ch for ch in digits if not ("0" <= ch <= "9"))
        if bad == "+" or bad.isprintable():
            raise _bad_sender(f"contains {bad!r}: without letters a sender must be a number")
        raise _bad_sender(f"contains control character U+{ord(bad):04X}")
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if plus:
        if digits.startswith("0"):
            raise _bad_sender("invalid country code")
        if len(digits) < _INTL_MIN:
            raise _bad_sender(f"international number too short ({len(digits)} digits, min {_INTL_MIN})")
        if len(digits) > _INTL_MAX:
            raise _bad_sender(f"international number too long ({len(digits)} digits, max {_INTL_MAX})")
        return Address(digits, 1, 1)
    if len(digits) < _SHORT_MIN:
        raise _bad_sender(f"number too short ({len(digits)} digits, min {_SHORT_MIN})")
    if len(digits) <= _SHORT_MAX:
        return Address(digits, 3, 0)
    if len(digits) > _INTL_MAX:
        raise _bad_sender(f"number too long ({len(digits)} digits, max {_INTL_MAX})")
    if digits.startswith("0"):
        raise _bad_sender("national number: give it in international form (+ and country code)")
    return Address(digits, 1, 1)


def _alphanumeric(text: str) -> Address:
    if text.startswith("+"):
        raise _bad_sender("'+' followed by letters")
    for ch in text:
        if ch not in _SENDER_CHARS:
            if not ch.isprintable():
                raise _bad_sender(f"contains control character U+{ord(ch):04X}")
            raise _bad_sender(f"contains {ch!r}, not in the GSM 03.38 default alphabet")
    if len(text) > _ALNUM_MAX:
        raise _bad_sender(f"alphanumeric sender too long ({len(text)} characters, max {_ALNUM_MAX})")
    return Address(text, 5, 0)


def _bad_sender(detail: str) -> BridgeError:
    return BridgeError(ErrorName.INVALID_SOURCE, detail)
