"""``vigint.bodies`` (bounded JSON parse, Firestore value check) and the id patterns of ``vigint.schema``.

Pure checks (no stack); ``test_hostile_inputs.py`` checks the same values against the Firestore emulator and
the functions.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.functions import hostile
from vigint import bodies
from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, matches


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=hostile.json_values)
def test_nesting_depth_is_the_decoders_depth(value):
    text = json.dumps(value).encode()
    assert bodies.nesting_depth(text, 64) == min(_depth(value), 65)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(body=hostile.body_bytes())
def test_parse_json_object_raises_only_body_error(body):
    try:
        out = bodies.parse_json_object(body, max_bytes=64 * 1024)
    except bodies.BodyError as exc:
        assert exc.reason in ("too_large", "not_utf8", "not_json", "too_deep", "not_object")
        assert exc.field == "body"
    else:
        assert isinstance(out, dict) and _depth(out) <= bodies.DEFAULT_MAX_DEPTH


@pytest.mark.parametrize("body, reason", [
    (b"[" * 60_000, "too_deep"),
    (b'{"a":' * 6_000 + b"1" + b"}" * 6_000, "too_deep"),
    (b'{"x": "' + b"[" * 10_000 + b'"}', None),  # brackets inside a string do not nest
    (b'{"x": "\\"' + b"[" * 40 + b'"}', None),  # nor after an escaped quote
    (b"[" * 32 + b"]" * 32, "not_object"),
    (b'{"a":' * 32 + b"1" + b"}" * 32, None),  # exactly 32 levels
    (b'{"a":' * 33 + b"1" + b"}" * 33, "too_deep"),
    (b'{"a": NaN}', "not_json"),
    (b'{"a": -Infinity}', "not_json"),
    (b'{"a": "\\ud800"}', "not_json"),
    (b'{"\\udc00": 1}', "not_json"),
    (b'{"a": "\\ud83d\\udca5"}', None),  # a proper surrogate pair
    (b'{"a": "\xff"}', "not_utf8"),
    (b'\xff\xfe{\x00}\x00', "not_utf8"),
    (b'{"a": 1' + b"0" * 5000 + b"}", "not_json"),
    (b"{" * 10 + b"x" * (64 * 1024), "too_large"),
    (b"null", "not_object"),
    (b"", "not_json"),
])
def test_parse_json_object_cases(body, reason):
    if reason is None:
        assert isinstance(bodies.parse_json_object(body, max_bytes=64 * 1024), dict)
    else:
        with pytest.raises(bodies.BodyError) as exc:
            bodies.parse_json_object(body, max_bytes=64 * 1024)
        assert (exc.value.reason, exc.value.field) == (reason, "body")


def test_depth_scan_is_linear_on_escaped_quotes():
    # A body of escaped quotes: a scan that retried every quote as the start of a string would be quadratic.
    body = b'"' + b'\\"' * 40_000
    started = time.monotonic()
    with pytest.raises(bodies.BodyError):
        bodies.parse_json_object(body, max_bytes=100_000)
    assert time.monotonic() - started < 1.0


def _nest(depth: int, leaf):
    v = leaf
    for _ in range(depth):
        v = {"a": v}
    return v


@pytest.mark.parametrize("value, field", [
    ({"x": [[1]]}, "cameras.x.0"),
    ({"x": [1, {"y": [2, []]}]}, "cameras.x.1.y.1"),
    ({"x": 2 ** 63}, "cameras.x"),
    ({"x": -(2 ** 63) - 1}, "cameras.x"),
    ({"": 1}, "cameras"),
    ({"x": {"__name__": 1}}, "cameras.x.__name__"),
    ({"__abcdef__": 1}, "cameras.__abcdef__"),
    ({"k" * 1501: 1}, "cameras"),
    ({"x": "a" * (bodies.FIRESTORE_MAX_STRING_BYTES + 1)}, "cameras.x"),
    (_nest(20, {}), "cameras" + ".a" * 19),  # with last_heartbeat around it: 22 nested maps, the 21st named
])
def test_check_firestore_value_names_the_field(value, field):
    with pytest.raises(bodies.BodyError) as exc:
        bodies.check_firestore_value(value, "cameras", depth=1)
    assert (exc.value.reason, exc.value.field) == ("not_storable", field)
    assert str(exc.value).startswith(f"{field}: ")


@pytest.mark.parametrize("value", [
    {"x": [1, {"y": [2]}], "a.b": None, "n": 2 ** 63 - 1, "m": -(2 ** 63), "f": 1.5, "t": True, "s": "é"},
    _nest(19, 1),  # with last_heartbeat around it: 20 nested maps
    {"x": "a" * bodies.FIRESTORE_MAX_STRING_BYTES, "_x_": 1, "__x": 1, "x__": 1},
])
def test_check_firestore_value_accepts_what_firestore_stores(value):
    bodies.check_firestore_value(value, "cameras", depth=1)


OLD_EVENT_ID = r"^[A-Za-z0-9_-]{8,64}$"


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(value=st.one_of(st.from_regex(OLD_EVENT_ID, fullmatch=True), st.from_regex(r"__[A-Za-z0-9_-]{4,60}__"),
                       st.text(alphabet="_a-", min_size=6, max_size=66), hostile.hostile_text))
def test_event_id_pattern_is_the_old_one_without_reserved_ids(value):
    expected = re.fullmatch(OLD_EVENT_ID, value) is not None and not bodies.is_reserved_id(value)
    assert matches(EVENT_ID_PATTERN, value) == expected


@pytest.mark.parametrize("value", hostile.RESERVED_IDS + [".", "..", "evt_0123456789\n"])
def test_patterns_refuse_reserved_ids(value):
    assert not matches(EVENT_ID_PATTERN, value)
    assert not matches(SLUG_PATTERN, value)


def test_pydantic_and_openapi_take_the_event_id_pattern():
    from pydantic import BaseModel, Field, ValidationError

    class M(BaseModel):
        event_id: str = Field(pattern=EVENT_ID_PATTERN)

    assert M(event_id="evt_0123456789").event_id == "evt_0123456789"
    with pytest.raises(ValidationError):
        M(event_id="__abcdef__")
    assert "(?" in EVENT_ID_PATTERN and "(?=" not in EVENT_ID_PATTERN and "(?!" not in EVENT_ID_PATTERN
