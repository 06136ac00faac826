"""Legacy type codes, encoding choice, exact encoding, data_coding values and MO decoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.encoding import (
    Encoding,
    TextType,
    choose_encoding,
    data_coding_for,
    dcs_codec,
    decode_text,
    encode_text,
    resolve_type,
    split_points,
)
from bridge.core.errors import BridgeError, ErrorName

G, L, U = Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2
ALL = (G, L, U)


@pytest.mark.parametrize(
    ("code", "flash", "expected"),
    [
        (None, False, TextType(None, False)),
        (None, True, TextType(None, True)),
        (0, False, TextType(G, False)),
        (0, True, TextType(G, True)),  # the separate flag still asks for flash
        (1, False, TextType(G, True)),
        (2, False, TextType(U, False)),
        (5, False, TextType(L, False)),
        (6, False, TextType(U, True)),
        (7, False, TextType(L, True)),
        (7, True, TextType(L, True)),
    ],
)
def test_type_codes(code: int | None, flash: bool, expected: TextType) -> None:
    assert resolve_type(code, flash) == expected


def test_wap_push_is_8_bit_data() -> None:
    assert resolve_type(4, False) == TextType(Encoding.BINARY, False)


@pytest.mark.parametrize("code", [3, 8, 9, -1, 99, 2**31])
def test_unknown_type_codes(code: int) -> None:
    with pytest.raises(BridgeError) as info:
        resolve_type(code, False)
    assert info.value.name is ErrorName.INVALID_TYPE
    assert f"unknown type {code}" in info.value.detail


@pytest.mark.parametrize(
    ("text", "candidates", "expected"),
    [
        ("hello world", ALL, G),
        ("\u20ac", ALL, G),                        # extension char: 2 septets, still GSM
        ("\u00c7a va", ALL, G),                    # 'Ç' is GSM 0x09 ...
        ("\u00e7a va", ALL, L),                    # ... but 'ç' is not
        ("caf\u00e9 \u00e1", ALL, L),              # é is GSM, á is not
        ("\u041f\u0440\u0438\u0432\u0435\u0442", ALL, U),  # Cyrillic
        ("ok \U0001f600", ALL, U),                  # emoji
        ("{" * 70, ALL, G),                        # 140 septets vs 70 octets: both 1 part, GSM wins
        ("{" * 81, ALL, L),                        # 162 septets = 2 parts; Latin-1 81 = 1 part
        ("{" * 140, ALL, L),
        ("\u20ac" * 81, ALL, G),                   # GSM 2 parts, UCS2 2 parts: tie goes to GSM
        ("hello", (U, L, G), G),                   # candidate order does not matter
        ("hello", (U, L), L),
        ("hello", (U,), U),
        ("\u20ac", (L, U), U),
        ("a" * 141, (L, U), L),                    # 2 parts vs 3
    ],
)
def test_choose_encoding(text: str, candidates: tuple[Encoding, ...], expected: Encoding) -> None:
    assert choose_encoding(text, candidates) is expected


def test_choose_encoding_none_fits() -> None:
    with pytest.raises(BridgeError) as info:
        choose_encoding("\u0416", (G, L))
    assert info.value == BridgeError(ErrorName.INVALID_MESSAGE,
                                     "text cannot be encoded in any of gsm7, latin1")
    with pytest.raises(ValueError):
        choose_encoding("x", ())


@pytest.mark.parametrize(
    ("text", "enc", "data"),
    [
        ("A\u20ac", G, b"A\x1b\x65"),
        ("\u00e7\u00e9", L, b"\xe7\xe9"),
        ("A\u20ac", U, b"\x00A\x20\xac"),
        ("\U0001f600", U, b"\xd8\x3d\xde\x00"),  # astral: a UTF-16 surrogate pair
    ],
)
def test_encode_text(text: str, enc: Encoding, data: bytes) -> None:
    assert encode_text(text, enc) == data


@pytest.mark.parametrize(
    ("text", "enc", "detail"),
    [
        ("ab\u00e7", G, "text cannot be encoded in gsm7: '\u00e7' (U+00E7) at position 2"),
        ("ab\u20ac", L, "text cannot be encoded in latin1: '\u20ac' (U+20AC) at position 2"),
        ("a\ud800", U, "text cannot be encoded in ucs2: '\\ud800' (U+D800) at position 1"),
    ],
)
def test_encode_text_refuses_inexact(text: str, enc: Encoding, detail: str) -> None:
    with pytest.raises(BridgeError) as info:
        encode_text(text, enc)
    assert info.value == BridgeError(ErrorName.INVALID_MESSAGE, detail)


@pytest.mark.parametrize(
    ("enc", "flash", "dcs"),
    [(G, False, 0x00), (G, True, 0x10), (U, False, 0x08), (U, True, 0x18),
     (L, False, 0x03), (L, True, 0x03), (Encoding.BINARY, False, 0x04),
     (Encoding.BINARY, True, 0x14)],
)
def test_data_coding_for(enc: Encoding, flash: bool, dcs: int) -> None:
    assert data_coding_for(enc, flash) == dcs


@pytest.mark.parametrize(("enc", "message_class", "dcs"), [
    (G, 1, 0x11), (G, 2, 0x12), (G, 3, 0x13), (U, 1, 0x19), (U, 3, 0x1B),
    (Encoding.BINARY, 1, 0x15), (Encoding.BINARY, 2, 0x16), (L, 2, 0x03)])
def test_message_classes_are_general_data_coding(enc: Encoding, message_class: int,
                                                 dcs: int) -> None:
    """TS 23.038 §4: 0b0001_AACC, alphabet AA (00 GSM, 01 8-bit, 10 UCS2), class CC."""
    assert data_coding_for(enc, False, message_class) == dcs
    assert decode_text(b"\x00A" if enc is U else b"A", dcs) == "A"
    with pytest.raises(BridgeError):
        data_coding_for(G, False, 4)


@pytest.mark.parametrize(
    ("data", "dcs", "text"),
    [
        (b"A\x1b\x65\x00", 0x00, "A\u20ac@"),      # SMSC default = GSM, unpacked
        (b"abc", 0x01, "abc"),                      # IA5
        (b"\xe7a", 0x03, "\u00e7a"),
        (b"\xe7a", 0x04, "\u00e7a"),                # 8-bit binary read as Latin-1
        (b"\xe7a", 0x02, "\u00e7a"),
        (b"\x04\x16", 0x08, "\u0416"),
        (b"\xd8\x3d\xde\x00", 0x08, "\U0001f600"),  # surrogate pair joined
        (b"\xb6", 0x06, "\u0416"),                  # ISO-8859-5 Cyrillic
        (b"\x5f", 0x10, "\u00a7"),                  # GSM, class 0
        (b"\x5f", 0x11, "\u00a7"),                  # GSM, class 1
        (b"\x00A", 0x18, "A"),                      # UCS2, class 0
        (b"\xe7", 0x14, "\u00e7"),                  # 8-bit, class 0
        (b"\x5f", 0x1C, "\u00a7"),                  # reserved alphabet: read as GSM
        (b"\x5f", 0x40, "\u00a7"),                  # automatic deletion group, GSM
        (b"\x00A", 0x48, "A"),                      # automatic deletion group, UCS2
        (b"\x5f", 0x90, "\u00a7"),                  # reserved group: GSM
        (b"\x5f", 0xC0, "\u00a7"),                  # message waiting, discard
        (b"\x5f", 0xD8, "\u00a7"),                  # message waiting, store
        (b"\x00A", 0xE0, "A"),                      # message waiting, store, UCS2
        (b"\x5f", 0xF0, "\u00a7"),                  # GSM class 0 (flash)
        (b"\xe7", 0xF4, "\u00e7"),                  # 8-bit class 0
        (b"\xe7", 0x0C, "\u00e7"),                  # SMPP reserved: keep the octets as Latin-1
    ],
)
def test_decode_text(data: bytes, dcs: int, text: str) -> None:
    assert decode_text(data, dcs) == text


def test_decode_text_is_tolerant() -> None:
    assert decode_text(b"\x00A\x00", 0x08) == "A\ufffd"  # odd trailing octet
    assert decode_text(b"\xd8\x3d", 0x08) == "\ufffd"     # lone surrogate never leaks out
    assert decode_text(b"a\xff", 0x01) == "a\ufffd"
    assert decode_text(b"a\x1b", 0x00) == "a "


@pytest.mark.parametrize("dcs", [0x20, 0x24, 0x38, 0x60, -1, 0x100])
def test_decode_text_refuses_compressed_and_nonsense(dcs: int) -> None:
    with pytest.raises(ValueError):
        dcs_codec(dcs)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(ALL), st.booleans())
def test_encode_then_decode_with_our_data_coding(text: str, enc: Encoding, flash: bool) -> None:
    try:
        data = encode_text(text, enc)
    except BridgeError as exc:
        assert exc.name is ErrorName.INVALID_MESSAGE and "cannot be encoded" in exc.detail
        return
    assert decode_text(data, data_coding_for(enc, flash)) == text


@pytest.mark.parametrize(
    ("data", "enc", "single", "multi", "ends"),
    [
        (b"a" * 10, G, 10, 5, [10]),
        (b"a" * 11, G, 10, 5, [5, 10, 11]),
        (b"aaaa\x1b\x65a", G, 6, 5, [4, 7]),       # escape would straddle: moved on
        (b"a" * 12, L, 10, 4, [4, 8, 12]),
        (b"\x00a" * 3 + b"\xd8\x3d\xde\x00", U, 4, 4, [6, 10]),
    ],
)
def test_split_points(data: bytes, enc: Encoding, single: int, multi: int, ends: list[int]) -> None:
    assert split_points(data, enc, single, multi) == ends
