"""GSM 03.38 tables and septet packing, checked against 3GPP TS 23.038 / 23.040."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.gsm import (
    DEFAULT_ALPHABET,
    EXTENSION,
    gsm7_decode,
    gsm7_encode,
    gsm7_length,
    gsm7_pack,
    gsm7_packed_octets,
    gsm7_representable,
    gsm7_try_encode,
    gsm7_units,
    gsm7_unpack,
)

# Every default-alphabet position that differs from ASCII, hand-copied from TS 23.038 §6.2.1,
# with the Unicode name as a second check against typos in the character itself.
NON_ASCII_ROWS = [
    (0x00, "@", "COMMERCIAL AT"),
    (0x01, "\u00a3", "POUND SIGN"),
    (0x02, "$", "DOLLAR SIGN"),
    (0x03, "\u00a5", "YEN SIGN"),
    (0x04, "\u00e8", "LATIN SMALL LETTER E WITH GRAVE"),
    (0x05, "\u00e9", "LATIN SMALL LETTER E WITH ACUTE"),
    (0x06, "\u00f9", "LATIN SMALL LETTER U WITH GRAVE"),
    (0x07, "\u00ec", "LATIN SMALL LETTER I WITH GRAVE"),
    (0x08, "\u00f2", "LATIN SMALL LETTER O WITH GRAVE"),
    (0x09, "\u00c7", "LATIN CAPITAL LETTER C WITH CEDILLA"),
    (0x0A, "\n", None),
    (0x0B, "\u00d8", "LATIN CAPITAL LETTER O WITH STROKE"),
    (0x0C, "\u00f8", "LATIN SMALL LETTER O WITH STROKE"),
    (0x0D, "\r", None),
    (0x0E, "\u00c5", "LATIN CAPITAL LETTER A WITH RING ABOVE"),
    (0x0F, "\u00e5", "LATIN SMALL LETTER A WITH RING ABOVE"),
    (0x10, "\u0394", "GREEK CAPITAL LETTER DELTA"),
    (0x11, "_", "LOW LINE"),
    (0x12, "\u03a6", "GREEK CAPITAL LETTER PHI"),
    (0x13, "\u0393", "GREEK CAPITAL LETTER GAMMA"),
    (0x14, "\u039b", "GREEK CAPITAL LETTER LAMDA"),
    (0x15, "\u03a9", "GREEK CAPITAL LETTER OMEGA"),
    (0x16, "\u03a0", "GREEK CAPITAL LETTER PI"),
    (0x17, "\u03a8", "GREEK CAPITAL LETTER PSI"),
    (0x18, "\u03a3", "GREEK CAPITAL LETTER SIGMA"),
    (0x19, "\u0398", "GREEK CAPITAL LETTER THETA"),
    (0x1A, "\u039e", "GREEK CAPITAL LETTER XI"),
    # 0x1B is the escape to the extension table, not a character.
    (0x1C, "\u00c6", "LATIN CAPITAL LETTER AE"),
    (0x1D, "\u00e6", "LATIN SMALL LETTER AE"),
    (0x1E, "\u00df", "LATIN SMALL LETTER SHARP S"),
    (0x1F, "\u00c9", "LATIN CAPITAL LETTER E WITH ACUTE"),
    (0x20, " ", "SPACE"),
    (0x24, "\u00a4", "CURRENCY SIGN"),
    (0x40, "\u00a1", "INVERTED EXCLAMATION MARK"),
    (0x5B, "\u00c4", "LATIN CAPITAL LETTER A WITH DIAERESIS"),
    (0x5C, "\u00d6", "LATIN CAPITAL LETTER O WITH DIAERESIS"),
    (0x5D, "\u00d1", "LATIN CAPITAL LETTER N WITH TILDE"),
    (0x5E, "\u00dc", "LATIN CAPITAL LETTER U WITH DIAERESIS"),
    (0x5F, "\u00a7", "SECTION SIGN"),
    (0x60, "\u00bf", "INVERTED QUESTION MARK"),
    (0x7B, "\u00e4", "LATIN SMALL LETTER A WITH DIAERESIS"),
    (0x7C, "\u00f6", "LATIN SMALL LETTER O WITH DIAERESIS"),
    (0x7D, "\u00f1", "LATIN SMALL LETTER N WITH TILDE"),
    (0x7E, "\u00fc", "LATIN SMALL LETTER U WITH DIAERESIS"),
    (0x7F, "\u00e0", "LATIN SMALL LETTER A WITH GRAVE"),
]
# Positions where TS 23.038 agrees with ASCII.
ASCII_SAME = [c for c in range(0x21, 0x80)
              if c not in (0x24, 0x40) and not 0x5B <= c <= 0x60 and c < 0x7B]

# TS 23.038 §6.2.1.1, the octet after 0x1B.
EXTENSION_ROWS = [
    (0x0A, "\x0c"),  # form feed / page break
    (0x14, "^"),
    (0x28, "{"),
    (0x29, "}"),
    (0x2F, "\\"),
    (0x3C, "["),
    (0x3D, "~"),
    (0x3E, "]"),
    (0x40, "|"),
    (0x65, "\u20ac"),  # EURO SIGN
]

NOT_GSM = ["`", "\u00e7", "\t", "\x1b", "\x00", "\u00e1", "\u0411", "\U0001f600", "\u0151",
           "\u00b5", "\u2126", "\u2206", "\u00a0", "\u03b1", "\u0301"]


@pytest.mark.parametrize(("code", "char", "name"), NON_ASCII_ROWS)
def test_default_alphabet_row(code: int, char: str, name: str | None) -> None:
    if name is not None:
        assert unicodedata.name(char) == name
    assert gsm7_encode(char) == bytes([code])
    assert gsm7_decode(bytes([code]), strict=True) == char
    assert gsm7_units(char) == 1


def test_default_alphabet_is_complete_and_nothing_else() -> None:
    expected = {char: code for code, char, _ in NON_ASCII_ROWS}
    expected.update({chr(c): c for c in ASCII_SAME})
    assert len(expected) == 127
    assert dict(DEFAULT_ALPHABET) == expected
    assert sorted(DEFAULT_ALPHABET.values()) == [c for c in range(128) if c != 0x1B]


def test_smpplib_mistakes_are_not_ours() -> None:
    assert gsm7_encode("\u00a7\u00bf") == b"\x5f\x60"
    assert gsm7_units("`") is None


@pytest.mark.parametrize(("code", "char"), EXTENSION_ROWS)
def test_extension_row(code: int, char: str) -> None:
    assert gsm7_encode(char) == bytes([0x1B, code])
    assert gsm7_decode(bytes([0x1B, code]), strict=True) == char
    assert gsm7_units(char) == 2


def test_extension_table_is_complete() -> None:
    assert dict(EXTENSION) == {char: code for code, char in EXTENSION_ROWS}


@pytest.mark.parametrize("char", NOT_GSM)
def test_not_representable(char: str) -> None:
    assert gsm7_units(char) is None
    assert not gsm7_representable("abc" + char)
    assert gsm7_length("abc" + char) is None
    assert gsm7_try_encode("abc" + char) is None
    with pytest.raises(ValueError, match="position 3"):
        gsm7_encode("abc" + char)


def test_mixed_text_encodes_unpacked_with_escape_pairs() -> None:
    assert gsm7_encode("Cost: 5\u20ac [ok]") == (
        b"Cost: 5\x1b\x65 \x1b\x3cok\x1b\x3e")
    assert gsm7_length("Cost: 5\u20ac [ok]") == 16
    assert gsm7_encode("") == b""


@pytest.mark.parametrize(
    ("data", "tolerant"),
    [
        (b"A\x1b\x41B", "AAB"),          # undefined escape: the base character (TS 23.038)
        (b"A\x1b\x0dB", "A\rB"),          # CR2 (page break control) has no character: base CR
        (b"A\x1b\x1bB", "A B"),           # 1B 1B: reserved, shown as a space
        (b"AB\x1b", "AB "),               # lone trailing escape: shown as a space
        (b"A\x80B", "A\ufffdB"),          # not a septet
        (b"A\x1b\x80", "A\ufffd"),
    ],
)
def test_decode_is_tolerant_unless_strict(data: bytes, tolerant: str) -> None:
    assert gsm7_decode(data) == tolerant
    with pytest.raises(ValueError):
        gsm7_decode(data, strict=True)


def test_pack_known_examples() -> None:
    # The classic TS 23.038 illustration: "hellohello" in 9 octets.
    assert gsm7_pack(gsm7_encode("hellohello")) == bytes.fromhex("E8329BFD4697D9EC37")
    assert gsm7_pack(gsm7_encode("hello")) == bytes.fromhex("E8329BFD06")
    # 8 septets fill 7 octets exactly.
    assert gsm7_pack(b"\x7f" * 8) == b"\xff" * 7
    # One fill bit (after a 6-octet UDH): 'a' = 0x61 shifted left once.
    assert gsm7_pack(b"\x61", fill_bits=1) == b"\xc2"
    assert gsm7_pack(b"") == b""


def test_unpack_known_examples() -> None:
    assert gsm7_unpack(bytes.fromhex("E8329BFD4697D9EC37")) == b"hellohello"
    assert gsm7_unpack(gsm7_pack(b"1234567")) == b"1234567\x00"  # ambiguity TS 23.038 notes
    assert gsm7_unpack(gsm7_pack(b"1234567"), 7) == b"1234567"
    with pytest.raises(ValueError):
        gsm7_unpack(b"\x00", 2)
    with pytest.raises(ValueError):
        gsm7_pack(b"\x80")
    with pytest.raises(ValueError):
        gsm7_pack(b"a", fill_bits=7)


@pytest.mark.parametrize(
    ("septets", "udh", "octets"),
    [(160, 0, 140), (161, 0, 141), (153, 6, 140), (154, 6, 141), (152, 7, 140), (153, 7, 141),
     (0, 6, 6), (1, 6, 7)],
)
def test_packed_octets(septets: int, udh: int, octets: int) -> None:
    assert gsm7_packed_octets(septets, udh) == octets
    assert len(bytes(udh)) + len(gsm7_pack(b"\x00" * septets, (7 - udh * 8 % 7) % 7)) == octets


def _pack_reference(septets: bytes, fill: int) -> bytes:
    """Bit by bit, the way TS 23.040 draws it."""
    if not septets:
        return b""
    bits = [0] * fill
    for s in septets:
        bits.extend((s >> i) & 1 for i in range(7))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(sum(bits[o + i] << i for i in range(8)) for o in range(0, len(bits), 8))


GSM_CHARS = "".join(DEFAULT_ALPHABET) + "".join(EXTENSION)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_matches_bitwise_reference_and_unpacks(septets: bytes, fill: int) -> None:
    packed = gsm7_pack(septets, fill)
    assert packed == _pack_reference(septets, fill)
    assert gsm7_unpack(packed, len(septets), fill) == septets


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=GSM_CHARS, max_size=300))
def test_encode_decode_round_trip(text: str) -> None:
    data = gsm7_encode(text)
    assert len(data) == gsm7_length(text) == sum(gsm7_units(c) or 0 for c in text)
    assert max(data, default=0) < 0x80
    assert gsm7_decode(data, strict=True) == text
    assert gsm7_decode(data) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=50))
def test_representable_agrees_with_units(text: str) -> None:
    ok = all(gsm7_units(c) is not None for c in text)
    assert gsm7_representable(text) is ok
    assert (gsm7_try_encode(text) is not None) is ok


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_tolerant_decode_never_fails(data: bytes) -> None:
    assert isinstance(gsm7_decode(data), str)
