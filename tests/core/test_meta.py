"""Typed meta keys (bridge.core.meta): what a writer stores is what a reader finds."""

from __future__ import annotations

import json

from bridge.core.meta import MetaKey, meta_json, read_meta
from bridge.core.model import meta_strings


def test_written_and_read_by_the_same_keys() -> None:
    stored = meta_json(((MetaKey.MAIL_FROM, "a@b"), (MetaKey.REFERENCE, "r1")),
                       ((MetaKey.REFERENCE, "r2"),))
    assert json.loads(stored) == {"mail_from": "a@b", "reference": "r2"}  # later parts win
    assert read_meta(stored) == {MetaKey.MAIL_FROM: "a@b", MetaKey.REFERENCE: "r2"}
    assert meta_strings(stored) == {"mail_from": "a@b", "reference": "r2"}
    assert meta_json() == "{}"


def test_unreadable_or_foreign_details_are_left_out() -> None:
    assert read_meta("not json") == {} and read_meta("[1]") == {}
    assert read_meta('{"mail_from": 5, "colour": "red", "dialect": "kannel"}') == {
        MetaKey.DIALECT: "kannel"}
