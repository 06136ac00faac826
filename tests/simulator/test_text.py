"""The simulator's own GSM 03.38 / Latin-1 / UCS2 / UDH handling, hand-checked against
3GPP TS 23.038 (§6.2.1 default alphabet, §6.2.1.1 extension table, §4 coding groups) and
TS 23.040 §9.2.3.24 (UDH IE 0x00 and 0x08)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.simulator import text as T
from bridge.simulator.text import ConcatInfo


@pytest.mark.parametrize(("septet", "char"), [
    (0x00, "@"), (0x01, "£"), (0x02, "$"), (0x03, "¥"), (0x04, "è"), (0x05, "é"), (0x06, "ù"),
    (0x07, "ì"), (0x08, "ò"), (0x09, "Ç"), (0x0A, "\n"), (0x0B, "Ø"), (0x0C, "ø"),
    (0x0D, "\r"), (0x0E, "Å"), (0x0F, "å"), (0x10, "Δ"), (0x11, "_"), (0x12, "Φ"),
    (0x13, "Γ"), (0x14, "Λ"), (0x15, "Ω"), (0x16, "Π"), (0x17, "Ψ"), (0x18, "Σ"),
    (0x19, "Θ"), (0x1A, "Ξ"), (0x1C, "Æ"), (0x1D, "æ"), (0x1E, "ß"), (0x1F, "É"),
    (0x20, " "), (0x24, "¤"), (0x40, "¡"), (0x41, "A"), (0x5A, "Z"), (0x5B, "Ä"),
    (0x5C, "Ö"), (0x5D, "Ñ"), (0x5E, "Ü"), (0x5F, "§"), (0x60, "¿"), (0x61, "a"),
    (0x7A, "z"), (0x7B, "ä"), (0x7C, "ö"), (0x7D, "ñ"), (0x7E, "ü"), (0x7F, "à"),
])
def test_gsm_default_alphabet(septet: int, char: str) -> None:
    assert T.decode_gsm7(bytes((septet,))) == char
    assert T.encode_gsm7(char) == bytes((septet,))


@pytest.mark.parametrize(("code", "char"), [
    (0x0A, "\x0c"), (0x14, "^"), (0x28, "{"), (0x29, "}"), (0x2F, "\\"), (0x3C, "["),
    (0x3D, "~"), (0x3E, "]"), (0x40, "|"), (0x65, "€"),
])
def test_gsm_extension_table(code: int, char: str) -> None:
    assert T.decode_gsm7(bytes((0x1B, code))) == char
    assert T.encode_gsm7(char) == bytes((0x1B, code))


def test_gsm_mixed_hand_written_septets() -> None:
    septets = bytes.fromhex("48656c6c6f20" "1b65" "3130" "00" "02" "11" "5f" "60" "1b14" "1b28")
    assert T.decode_gsm7(septets) == "Hello €10@$_§¿^{"
    assert T.encode_gsm7("Hello €10@$_§¿^{") == septets
    assert T.gsm7_length("Hello €10@$_§¿^{") == len(septets)


def test_gsm_escape_edge_cases() -> None:
    # ESC + a code the extension table lacks: the default-table character (TS 23.038 note)
    assert T.decode_gsm7(bytes((0x1B, 0x41))) == "A"
    # a trailing ESC (an escape pair split across parts) shows as a space
    assert T.decode_gsm7(b"ab\x1b") == "ab "
    # octets above 0x7F are no septets
    assert T.decode_gsm7(b"a\xe9") == "a\ufffd"


def test_characters_outside_gsm() -> None:
    for ch in ("`", "ê", "😀", "ł"):
        with pytest.raises(T.GsmEncodeError):
            T.encode_gsm7(ch)
    assert not T.is_gsm7("naïve")  # ï is not in GSM 03.38
    assert T.is_gsm7("Ça coute 5€? {ok}")


@given(st.text(alphabet=T.GSM_DEFAULT.replace("\x1b", "") + "".join(T.GSM_EXTENSION.values())))
def test_gsm_round_trip(text: str) -> None:
    assert T.decode_gsm7(T.encode_gsm7(text)) == text


def test_latin1() -> None:
    assert T.decode_latin1(bytes.fromhex("e9e8ff41")) == "éèÿA"
    assert T.encode_latin1("é") == b"\xe9"


def test_ucs2_with_a_surrogate_pair() -> None:
    # U+1F600 GRINNING FACE = D83D DE00 in UTF-16
    data = bytes.fromhex("0048" "00e9" "d83dde00" "20ac")
    assert T.decode_ucs2(data) == "Hé😀€"
    assert T.encode_ucs2("Hé😀€") == data
    # a pair split across two parts keeps its halves visible instead of raising
    first, second = data[:6], data[6:]
    assert T.decode_ucs2(first) == "Hé\ud83d"
    assert T.decode_ucs2(first) + T.decode_ucs2(second) != "Hé😀€"
    assert T.decode_ucs2(b"\x00A\x00") == "A\ufffd"


@pytest.mark.parametrize(("dc", "alphabet"), [
    (0x00, "gsm7"), (0x01, "ascii"), (0x02, "binary"), (0x03, "latin1"), (0x04, "binary"),
    (0x08, "ucs2"), (0x10, "gsm7"), (0x14, "binary"), (0x18, "ucs2"), (0x30, "binary"),
    (0xF0, "gsm7"), (0xF1, "gsm7"), (0xF4, "binary"), (0xC8, "gsm7"), (0xE0, "ucs2"),
])
def test_data_coding_alphabets(dc: int, alphabet: str) -> None:
    assert T.alphabet_of(dc) == alphabet


def test_decode_text_by_data_coding() -> None:
    assert T.decode_text(b"\x00\x1b\x65", 0x00) == "@€"
    assert T.decode_text(b"\x00\x1b\x65", 0x10) == "@€"  # flash GSM
    assert T.decode_text(b"\xe9", 0x03) == "é"
    assert T.decode_text(b"\x00\xe9", 0x08) == "é"
    assert T.decode_text(b"\x00\xe9", 0x18) == "é"      # flash UCS2


def test_udh_ie_00_eight_bit_reference() -> None:
    udh, rest = T.parse_udh(bytes.fromhex("050003" "2a" "03" "02") + b"rest")
    assert udh.raw == bytes.fromhex("0500032a0302")
    assert udh.elements == ((0x00, bytes.fromhex("2a0302")),)
    assert udh.concat == ConcatInfo(ref=0x2A, total=3, seq=2, ref_bits=8)
    assert rest == b"rest"


def test_udh_ie_08_sixteen_bit_reference() -> None:
    udh, rest = T.parse_udh(bytes.fromhex("060804" "1234" "02" "01") + b"x")
    assert udh.concat == ConcatInfo(ref=0x1234, total=2, seq=1, ref_bits=16)
    assert rest == b"x"


def test_udh_with_other_elements_around_concatenation() -> None:
    # application port addressing 16-bit (IE 05, WAP push 2948) then IE 00
    data = bytes.fromhex("0b" "0504" "0b84" "23f0" "0003" "07" "02" "02") + b"body"
    udh, rest = T.parse_udh(data)
    assert [iei for iei, _ in udh.elements] == [0x05, 0x00]
    assert udh.concat == ConcatInfo(7, 2, 2, 8)
    assert rest == b"body"


@pytest.mark.parametrize("bad", [
    b"",                                       # UDHI but no user data
    bytes.fromhex("0900030a0201"),             # UDHL 9 beyond the data
    bytes.fromhex("05000401020301"),           # IE 00 with length 4
    bytes.fromhex("050003010203"),             # part 3 of 2
    bytes.fromhex("050003010200"),             # part 0
    bytes.fromhex("0300050102"),               # IE overruns the header
])
def test_malformed_udh(bad: bytes) -> None:
    with pytest.raises(ValueError):
        T.parse_udh(bad)


def test_udh_builders() -> None:
    assert T.concat_udh8(0x1AB, 3, 1) == bytes.fromhex("050003ab0301")
    assert T.concat_udh16(0x1AB, 3, 1) == bytes.fromhex("06080401ab0301")


def test_split_gsm7_never_splits_an_escape_pair() -> None:
    parts = T.split_gsm7("a" * 152 + "€" + "b", 153)
    assert [len(p) for p in parts] == [152, 3]
    assert parts[1] == b"\x1b\x65b"
    assert "".join(T.decode_gsm7(p) for p in parts) == "a" * 152 + "€b"


def test_split_ucs2_never_splits_a_surrogate_pair() -> None:
    parts = T.split_ucs2("a" * 66 + "😀", 134)
    assert [len(p) for p in parts] == [132, 4]
    assert parts[1] == bytes.fromhex("d83dde00")


def test_split_octets() -> None:
    assert T.split_octets(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert T.split_octets(b"", 3) == [b""]
