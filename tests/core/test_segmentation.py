"""Segmentation: boundaries, UDH/SAR/payload carriage, limits, and properties on arbitrary text.

The properties compare `plan_message` with a deliberately naive reference (per-character unit
costs and a greedy fill written out longhand) and check what the air interface requires.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bridge.core.encoding import Encoding, encode_best, try_encode
from bridge.core.errors import BridgeError, ErrorName
from bridge.core.gsm import DEFAULT_ALPHABET, EXTENSION, gsm7_decode, gsm7_units
from bridge.core.segmentation import (
    ConcatMode,
    Segment,
    SegmentPlan,
    max_text_chars,
    plan_message,
    truncate_to_fit,
)

G, L, U = Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2
ALL = (G, L, U)
ORDER = [G, L, U]
M = ConcatMode

# Independent copies of the limits (SPEC §6 / REFERENCES): units per part.
SINGLE = {G: 160, L: 140, U: 70}
MULTI = {M.UDH8: {G: 153, L: 134, U: 67}, M.UDH16: {G: 152, L: 133, U: 66},
         M.SAR: {G: 153, L: 134, U: 67}, M.PAYLOAD: {G: 153, L: 134, U: 67}}
UDH_LEN_ON_AIR = {M.UDH8: 6, M.UDH16: 7, M.SAR: 6}  # SAR: the SMSC adds an 8-bit UDH

EURO, EMOJI, ZHE, C_CEDIL = "\u20ac", "\U0001f600", "\u0436", "\u00e7"


# ---------------------------------------------------------------- naive reference


def unit_items(text: str, enc: Encoding) -> list[int] | None:
    """Units each character costs in `enc`, or None when `enc` cannot carry the text."""
    if enc is G:
        units = [gsm7_units(c) for c in text]
        return None if None in units else [u for u in units if u is not None]
    if enc is L:
        return [1] * len(text) if all(ord(c) < 256 for c in text) else None
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def reference_parts(items: list[int], single: int, multi: int) -> int:
    if sum(items) <= single:
        return 1
    parts, fill = 1, 0
    for u in items:
        if fill + u > multi:
            parts, fill = parts + 1, 0
        fill += u
    return parts


def reference_costs(text: str, cands: tuple[Encoding, ...], mode: ConcatMode) -> dict[Encoding, int]:
    out = {}
    for enc in cands:
        items = unit_items(text, enc)
        if items is not None:
            out[enc] = reference_parts(items, SINGLE[enc], MULTI[mode][enc])
    return out


def decode_payload(payload: bytes, enc: Encoding) -> str:
    """Strict per-part decoding: fails if a part ends inside an escape or a surrogate pair."""
    if enc is G:
        return gsm7_decode(payload, strict=True)
    return payload.decode("latin-1" if enc is L else "utf-16-be")


def octets_on_air(seg: Segment, enc: Encoding, udh_len: int) -> int:
    if enc is not G:
        return udh_len + len(seg.payload)
    fill = (7 - udh_len * 8 % 7) % 7 if udh_len else 0
    return math.ceil((udh_len * 8 + fill + len(seg.payload) * 7) / 8)


def check_plan(plan: SegmentPlan, text: str, mode: ConcatMode, reference: int) -> None:
    """Everything a plan must satisfy whatever the text."""
    enc = plan.encoding
    items = unit_items(text, enc)
    assert items is not None
    expected_parts = reference_parts(items, SINGLE[enc], MULTI[mode][enc])
    assert plan.air_parts == expected_parts
    assert plan.concat is mode

    if mode is M.PAYLOAD:
        (seg,) = plan.segments
        assert (seg.seq, seg.total, seg.udh, seg.short_message) == (1, 1, b"", b"")
        assert decode_payload(seg.payload, enc) == seg.text == text
        assert plan.reference is None and plan.esm_class == 0
        assert plan.tlvs(seg)[0] == ("message_payload", seg.payload)
        return

    n = len(plan.segments)
    assert n == plan.parts == expected_parts
    ordered = sorted(reversed(plan.segments), key=lambda s: s.seq)
    assert [s.seq for s in ordered] == list(range(1, n + 1))
    assert {s.total for s in ordered} == {n}
    assert "".join(decode_payload(s.payload, enc) for s in ordered) == text
    assert "".join(s.text for s in ordered) == text

    limit = SINGLE[enc] if n == 1 else MULTI[mode][enc]
    for i, seg in enumerate(ordered):
        assert decode_payload(seg.payload, enc) == seg.text
        assert seg.text, "no empty part"
        if enc is G:
            assert seg.payload[-1] != 0x1B
        if enc is U:
            assert not 0xD8 <= seg.payload[-2] <= 0xDB
        units = sum(unit_items(seg.text, enc) or [])
        assert units <= limit
        if i < n - 1:  # full: the next part's first character would not have fitted
            first_next = (unit_items(ordered[i + 1].text[0], enc) or [0])[0]
            assert units + first_next > limit
        udh_len = UDH_LEN_ON_AIR[mode] if n > 1 else 0
        assert octets_on_air(seg, enc, udh_len) <= 140
        assert seg.short_message == seg.udh + seg.payload

        tlvs = dict(plan.tlvs(seg))
        if n == 1:
            assert seg.udh == b"" and plan.reference is None and plan.esm_class == 0
            assert not {"sar_msg_ref_num", "message_payload"} & tlvs.keys()
        elif mode is M.SAR:
            assert seg.udh == b"" and plan.esm_class == 0
            assert (tlvs["sar_msg_ref_num"], tlvs["sar_total_segments"],
                    tlvs["sar_segment_seqnum"]) == (reference, n, seg.seq)
        elif mode is M.UDH8:
            assert seg.udh == bytes([5, 0, 3, reference, n, seg.seq])
            assert plan.esm_class == 0x40 and not tlvs.keys() - {"dest_addr_subunit"}
        else:
            assert seg.udh == bytes([6, 8, 4, reference >> 8, reference & 0xFF, n, seg.seq])
            assert plan.esm_class == 0x40 and not tlvs.keys() - {"dest_addr_subunit"}


# ---------------------------------------------------------------- boundary tables


@pytest.mark.parametrize(
    ("text", "mode", "enc", "units"),
    [
        ("a" * 160, M.UDH8, G, [160]),
        ("a" * 161, M.UDH8, G, [153, 8]),
        ("a" * 306, M.UDH8, G, [153, 153]),
        ("a" * 307, M.UDH8, G, [153, 153, 1]),
        ("a" * 161, M.UDH16, G, [152, 9]),
        ("a" * 304, M.UDH16, G, [152, 152]),
        ("a" * 305, M.UDH16, G, [152, 152, 1]),
        ("a" * 307, M.SAR, G, [153, 153, 1]),
        (ZHE * 70, M.UDH8, U, [70]),
        (ZHE * 71, M.UDH8, U, [67, 4]),
        (ZHE * 134, M.UDH8, U, [67, 67]),
        (ZHE * 135, M.UDH8, U, [67, 67, 1]),
        (ZHE * 132, M.UDH16, U, [66, 66]),
        (ZHE * 133, M.UDH16, U, [66, 66, 1]),
        (C_CEDIL * 140, M.UDH8, L, [140]),
        (C_CEDIL * 141, M.UDH8, L, [134, 7]),
        (C_CEDIL * 268, M.UDH8, L, [134, 134]),
        (C_CEDIL * 269, M.UDH8, L, [134, 134, 1]),
        (C_CEDIL * 141, M.UDH16, L, [133, 8]),
        (EURO * 80, M.UDH8, G, [160]),                       # 80 escape pairs fill one part
        (EURO * 81, M.UDH8, G, [152, 10]),                   # 153 is odd: a pair moves on
        ("a" * 159 + EURO, M.UDH8, G, [153, 8]),             # 161 septets
        ("a" * 152 + EURO + "b" * 10, M.UDH8, G, [152, 12]), # escape at septet 153 moves on
        ("a" * 151 + EURO + "b" * 10, M.UDH16, G, [151, 12]),
        ("a" * 151 + EURO + "b" * 10, M.UDH8, G, [153, 10]), # pair ends exactly at 153: stays
        (ZHE * 66 + EMOJI + ZHE * 10, M.UDH8, U, [66, 12]),  # emoji straddling 67 moves on
        (ZHE * 65 + EMOJI + ZHE * 10, M.UDH8, U, [67, 10]),
        (ZHE * 65 + EMOJI + ZHE * 10, M.UDH16, U, [65, 12]),
        (ZHE * 68 + EMOJI, M.UDH8, U, [70]),                 # 70 code units: one part
        (ZHE * 69 + EMOJI, M.UDH8, U, [67, 4]),
    ],
)
def test_boundaries(text: str, mode: ConcatMode, enc: Encoding, units: list[int]) -> None:
    plan = plan_message(text, concat=mode, reference=0x2A, max_parts=255)
    assert plan.encoding is enc
    size = 2 if enc is U else 1
    assert [len(s.payload) // size for s in plan.segments] == units
    check_plan(plan, text, mode, 0x2A)


def test_udh8_bytes_exactly() -> None:
    plan = plan_message("x" * 400, reference=0xAB)
    assert [s.udh.hex() for s in plan.segments] == ["050003ab0301", "050003ab0302", "050003ab0303"]
    assert plan.esm_class == 0x40 and plan.reference == 0xAB and plan.data_coding == 0
    first = plan.segments[0]
    assert first.short_message == bytes.fromhex("050003ab0301") + b"x" * 153
    assert plan.tlvs(first) == ()


def test_udh16_bytes_exactly() -> None:
    plan = plan_message(ZHE * 100, concat=M.UDH16, reference=0x1234)
    assert [s.udh.hex() for s in plan.segments] == ["060804123402" "01", "06080412340202"]
    assert plan.segments[0].short_message[:9] == bytes.fromhex("060804123402010436")
    assert plan.esm_class == 0x40 and plan.data_coding == 0x08


def test_single_part_has_no_udh_and_no_reference() -> None:
    for mode in M:
        plan = plan_message("hello", concat=mode, reference=9)
        (seg,) = plan.segments
        assert plan.reference is None and seg.udh == b"" and plan.esm_class == 0
        assert plan.parts == plan.air_parts == 1
        if mode is M.PAYLOAD:
            assert seg.short_message == b"" and plan.tlvs(seg) == (("message_payload", b"hello"),)
        else:
            assert seg.short_message == b"hello" and plan.tlvs(seg) == ()


def test_sar_tlvs() -> None:
    plan = plan_message("y" * 200, concat=M.SAR, reference=77)
    assert plan.esm_class == 0 and all(s.udh == b"" for s in plan.segments)
    assert [plan.tlvs(s) for s in plan.segments] == [
        (("sar_msg_ref_num", 77), ("sar_total_segments", 2), ("sar_segment_seqnum", 1)),
        (("sar_msg_ref_num", 77), ("sar_total_segments", 2), ("sar_segment_seqnum", 2)),
    ]
    assert plan.segments[1].short_message == b"y" * 47


def test_payload_mode() -> None:
    text = "z" * 1000 + EURO
    plan = plan_message(text, concat=M.PAYLOAD, reference=3)
    (seg,) = plan.segments
    assert seg.payload == b"z" * 1000 + b"\x1b\x65" and seg.short_message == b""
    assert plan.tlvs(seg) == (("message_payload", seg.payload),)
    assert plan.parts == 1 and plan.air_parts == 7  # 1002 septets = 6 * 153 + 84
    assert plan.reference is None and plan.esm_class == 0


@pytest.mark.parametrize("mode", list(M))
def test_max_parts(mode: ConcatMode) -> None:
    per_part = MULTI[mode][G]
    assert plan_message("a" * per_part * 10, concat=mode).air_parts == 10
    with pytest.raises(BridgeError) as info:
        plan_message("a" * (per_part * 10 + 1), concat=mode)
    assert info.value == BridgeError(ErrorName.INVALID_MESSAGE, "needs 11 parts, max_parts is 10",
                                     too_big=True)
    with pytest.raises(BridgeError) as info:
        plan_message("a" * 161, concat=mode, max_parts=1)
    assert info.value.detail == "needs 2 parts, max_parts is 1" and info.value.too_big


def test_max_parts_picks_the_encoding_that_fits() -> None:
    # 135 '{': GSM needs 270 septets = 2 parts, Latin-1 135 octets = 1 part.
    plan = plan_message("{" * 135, max_parts=1)
    assert plan.encoding is L and plan.parts == 1


def test_empty_text() -> None:
    with pytest.raises(BridgeError) as info:
        plan_message("")
    assert info.value == BridgeError(ErrorName.INVALID_MESSAGE, "empty message")
    assert not info.value.too_big


def test_type_codes_force_the_encoding() -> None:
    assert plan_message("hello", type_code=2).encoding is U
    assert plan_message("hello", type_code=5).encoding is L
    assert plan_message("{" * 100, type_code=0).encoding is G  # even though Latin-1 is cheaper
    with pytest.raises(BridgeError) as info:
        plan_message("\u00e7a", type_code=0)
    assert info.value.name is ErrorName.INVALID_MESSAGE
    assert info.value.detail.startswith("text cannot be encoded in gsm7")
    with pytest.raises(BridgeError) as info:
        plan_message("hello", type_code=4)
    assert info.value == BridgeError(ErrorName.INVALID_PARAMETER,
                                     "a WAP Push (type 4) needs a url")
    with pytest.raises(BridgeError) as info:
        plan_message("hello", type_code=3)
    assert info.value.name is ErrorName.INVALID_TYPE


@pytest.mark.parametrize(
    ("text", "type_code", "flash", "enc", "dcs", "subunit"),
    [
        ("hi", 1, False, G, 0x10, None),
        ("hi", 6, False, U, 0x18, None),
        ("hi", 7, False, L, 0x03, 1),
        ("hi", None, True, G, 0x10, None),
        ("\u0416", None, True, U, 0x18, None),
        (C_CEDIL, None, True, L, 0x03, 1),
        ("hi", 0, False, G, 0x00, None),
        ("hi", 2, False, U, 0x08, None),
        ("hi", 5, False, L, 0x03, None),
    ],
)
def test_flash(text: str, type_code: int | None, flash: bool, enc: Encoding, dcs: int,
               subunit: int | None) -> None:
    plan = plan_message(text, type_code=type_code, flash=flash)
    assert (plan.encoding, plan.data_coding, plan.dest_addr_subunit) == (enc, dcs, subunit)
    assert plan.flash is (flash or type_code in (1, 6, 7))
    expected = (("dest_addr_subunit", 1),) if subunit else ()
    assert plan.tlvs(plan.segments[0]) == expected


def test_latin1_flash_multipart_keeps_subunit_on_every_part() -> None:
    plan = plan_message(C_CEDIL * 200, type_code=7, concat=M.SAR, reference=5)
    for seg in plan.segments:
        assert plan.tlvs(seg)[-1] == ("dest_addr_subunit", 1)


@pytest.mark.parametrize(
    ("mode", "ok", "bad"),
    [(M.UDH8, 255, 256), (M.SAR, 255, 256), (M.UDH16, 65535, 65536), (M.UDH8, 0, -1)],
)
def test_reference_range(mode: ConcatMode, ok: int, bad: int) -> None:
    assert plan_message("a" * 200, concat=mode, reference=ok).reference == ok
    with pytest.raises(ValueError):
        plan_message("a" * 200, concat=mode, reference=bad)


def test_concat_mode_given_as_string() -> None:
    plan = plan_message("a" * 200, concat="udh16", reference=1)  # type: ignore[arg-type]
    assert plan.concat is M.UDH16 and len(plan.segments[0].udh) == 7


def test_unencodable_everywhere() -> None:
    with pytest.raises(BridgeError) as info:
        plan_message("\u0416", candidates=(G, L))
    assert info.value == BridgeError(ErrorName.INVALID_MESSAGE,
                                     "text cannot be encoded in any of gsm7, latin1")


# ---------------------------------------------------------------- properties

GSM_CHARS = list(DEFAULT_ALPHABET) + list(EXTENSION)
# GSM-biased: mostly GSM, escapes over-represented, a few characters that force another encoding.
BIASED = st.sampled_from(GSM_CHARS + list(EXTENSION) * 8 + ["a"] * 40 + [C_CEDIL, EMOJI, ZHE])
MIXED = st.sampled_from(["a", "{", EURO, C_CEDIL, ZHE, EMOJI, "\U00010348", "\u00e9"])


@st.composite
def runs(draw: st.DrawFn) -> str:
    """Long runs of a few characters: lands escapes and surrogates on part boundaries."""
    chunks = draw(st.lists(st.tuples(MIXED, st.integers(1, 170)), min_size=1, max_size=6))
    return "".join(ch * k for ch, k in chunks)


GSM_ONLY = st.sampled_from(GSM_CHARS + list(EXTENSION) * 8)
LATIN1_ISH = st.sampled_from([chr(c) for c in range(0x20, 0x100)]
                             + [c for c in EXTENSION if c != EURO] * 20)  # € is not Latin-1

TEXTS = st.one_of(
    st.text(max_size=700),                                   # any Unicode, astral included
    st.text(alphabet=st.characters(min_codepoint=0x10000), min_size=1, max_size=200),
    st.text(alphabet=BIASED, min_size=1, max_size=900),
    st.text(alphabet=GSM_ONLY, min_size=140, max_size=700),  # long GSM, escapes on boundaries
    st.text(alphabet=LATIN1_ISH, min_size=120, max_size=600),
    st.text(alphabet=MIXED, min_size=1, max_size=600),
    runs(),
)


@settings(max_examples=600, deadline=None)
@given(text=TEXTS, mode=st.sampled_from(list(M)), forced=st.sampled_from([None, G, L, U]),
       max_parts=st.one_of(st.integers(1, 12), st.just(255)), ref=st.integers(0, 255))
def test_plan_properties(text: str, mode: ConcatMode, forced: Encoding | None, max_parts: int,
                         ref: int) -> None:
    cands = ALL if forced is None else (forced,)
    reference = ref * 257 if mode is M.UDH16 else ref
    try:
        plan = plan_message(text, concat=mode, max_parts=max_parts, reference=reference,
                            candidates=cands)
    except BridgeError as exc:
        event("refused: " + ("too big" if exc.too_big else exc.detail[:20]))
        assert exc.name is ErrorName.INVALID_MESSAGE
        if not text:
            assert exc.detail == "empty message"
            return
        costs = reference_costs(text, cands, mode)
        if not costs:
            assert "cannot be encoded" in exc.detail and not exc.too_big
            return
        best = min(costs.values())
        assert best > max_parts and exc.too_big
        assert exc.detail == f"needs {best} parts, max_parts is {max_parts}"
        return
    event(f"{plan.encoding.value} {'multi' if plan.air_parts > 1 else 'single'}")
    costs = reference_costs(text, cands, mode)
    best = min(costs.values())
    assert best <= max_parts
    assert plan.encoding is min((e for e in costs if costs[e] == best), key=ORDER.index)
    check_plan(plan, text, mode, reference)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=BIASED, min_size=1, max_size=400),
       type_code=st.sampled_from([None, 0, 1, 2, 5, 6, 7]), flash=st.booleans(),
       mode=st.sampled_from(list(M)))
def test_type_code_properties(text: str, type_code: int | None, flash: bool,
                              mode: ConcatMode) -> None:
    forced = {0: G, 1: G, 2: U, 5: L, 6: U, 7: L}.get(type_code) if type_code is not None else None
    try:
        plan = plan_message(text, type_code=type_code, flash=flash, concat=mode, max_parts=255,
                            reference=1)
    except BridgeError as exc:
        assert forced is not None and unit_items(text, forced) is None
        assert exc.detail.startswith(f"text cannot be encoded in {forced.value}")
        return
    if forced is not None:
        assert plan.encoding is forced
    is_flash = flash or type_code in (1, 6, 7)
    assert plan.flash is is_flash
    base = {G: 0x00, L: 0x03, U: 0x08}[plan.encoding]
    assert plan.data_coding == (base | 0x10 if is_flash and plan.encoding is not L else base)
    assert plan.dest_addr_subunit == (1 if is_flash and plan.encoding is L else None)
    check_plan(plan, text, mode, 1)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(alphabet=GSM_ONLY, min_size=150, max_size=800),
                      st.text(alphabet=LATIN1_ISH, min_size=130, max_size=800), runs()),
       mode=st.sampled_from(list(M)), forced=st.sampled_from([None, G, L]),
       ref=st.integers(0, 255))
def test_long_text_properties(text: str, mode: ConcatMode, forced: Encoding | None,
                              ref: int) -> None:
    """Multi-part GSM and Latin-1 plans, which arbitrary Unicode rarely produces."""
    cands = ALL if forced is None else (forced,)
    costs = reference_costs(text, cands, mode)
    if not costs:
        return
    plan = plan_message(text, concat=mode, max_parts=255, reference=ref, candidates=cands)
    event(f"{plan.encoding.value} {'multi' if plan.air_parts > 1 else 'single'}")
    best = min(costs.values())
    assert plan.encoding is min((e for e in costs if costs[e] == best), key=ORDER.index)
    check_plan(plan, text, mode, ref)


# ---------------------------------------------------------------- the cheap length bound


@pytest.mark.parametrize(("max_parts", "concat", "bound"), [
    (1, ConcatMode.UDH8, 160), (1, ConcatMode.UDH16, 160), (2, ConcatMode.UDH8, 306),
    (10, ConcatMode.UDH8, 1530), (10, ConcatMode.SAR, 1530), (10, ConcatMode.PAYLOAD, 1530),
    (10, ConcatMode.UDH16, 1520),
])
def test_max_text_chars_is_tight_for_plain_gsm(max_parts: int, concat: ConcatMode,
                                               bound: int) -> None:
    assert max_text_chars(max_parts, concat) == bound
    assert plan_message("a" * bound, max_parts=max_parts, concat=concat).air_parts == max_parts
    with pytest.raises(BridgeError) as info:
        plan_message("a" * (bound + 1), max_parts=max_parts, concat=concat)
    assert info.value.name is ErrorName.INVALID_MESSAGE and info.value.too_big
    assert info.value.detail == f"needs {max_parts + 1} parts, max_parts is {max_parts}"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(min_size=150, max_size=330), st.text(alphabet="a{€", min_size=150,
                                                                max_size=330)),
       st.integers(1, 2), st.sampled_from(list(ConcatMode)))
def test_the_bound_is_sound(text: str, max_parts: int, concat: ConcatMode) -> None:
    """A text over the bound needs more than max_parts in every encoding, by the full splitter:
    the early refusal never turns away a text that would have fitted."""
    if len(text) <= max_text_chars(max_parts, concat):
        return
    candidates = tuple(e for e in Encoding if try_encode(text, e) is not None)
    _, _, ends = encode_best(text, candidates, udh16=concat is ConcatMode.UDH16)
    assert len(ends) > max_parts


# ---------------------------------------------------------------- truncation (SMTP too_long = "truncate")

CANDIDATES = (Encoding.GSM7, Encoding.LATIN1, Encoding.UCS2)


def fits_in(max_parts: int):  # type: ignore[no-untyped-def]
    def fits(text: str) -> bool:
        try:
            plan_message(text, max_parts=max_parts, candidates=CANDIDATES)
        except BridgeError as exc:
            if exc.too_big:
                return False
            raise
        return True
    return fits


@pytest.mark.parametrize("text, marker, max_parts, result", [
    ("A" * 200, "...", 1, "A" * 157 + "..."),
    ("A" * 160, "...", 1, "A" * 160),  # fits: untouched
    ("€" * 100, "...", 1, "€" * 78 + "..."),  # escape pairs count 2 and are never split
    ("Ж" * 100, "…", 1, "Ж" * 69 + "…"),
    ("\U0001F600" * 50, "…", 1, "\U0001F600" * 34 + "…"),  # surrogate pairs count 2
    ("word " * 100, "...", 2, ("word " * 61)[:303].rstrip() + "..."),
])
def test_truncate_to_fit(text: str, marker: str, max_parts: int, result: str) -> None:
    fits = fits_in(max_parts)
    out = truncate_to_fit(text, fits, marker)
    assert out == result
    assert fits(out)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ 9€{[^é\U0001F600Жλ\n"), min_size=1, max_size=700),
       st.integers(1, 3))
def test_truncate_is_a_maximal_fitting_prefix(text: str, max_parts: int) -> None:
    fits = fits_in(max_parts)
    out = truncate_to_fit(text, fits, "…")
    assert fits(out)
    if out != text:
        body = out[:-1]
        assert text.startswith(body)
        n = len(body)
        # one more code point (and the marker) would not fit, unless only blanks were dropped
        longer = text[:n + 1].rstrip() + "…"
        assert not fits(longer) or text[:n + 1].rstrip() == body
