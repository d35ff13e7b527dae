"""Hypothesis strategies of hostile input shared by the fuzz suites (``test_fuzz_*.py``).

Nothing here knows what our functions accept: the strategies produce what a careless client or an attacker
could send (random bytes, random JSON, deep nesting, ids Firestore reserves, values Firestore cannot store,
odd Unicode), and the tests check the answers.
"""

from __future__ import annotations

import json
import re

from hypothesis import strategies as st

# Strings that have broken or could break id handling, paths and storage.
HOSTILE_STRINGS = [
    "", " ", ".", "..", "__abcdef__", "__name__", "__.*__", "____", "__a__b__", "evt_0123456789\n",
    "evt_0123456789\r\n", "\x00", "a\x00b", "../../etc/passwd", "%2e%2e%2f", "/", "a/b", "\\", "💥" * 10,
    "\u202e\u0645", "null", "true", "0", "-1", "1e999", "NaN", "Infinity", "9" * 30, "x" * 2000,
    "<script>alert(1)</script>", "' OR 1=1 --", "${jndi:ldap://x}", "%00", "%ff", "\ufeff", "\uffff",
]
RESERVED_IDS = ["__abcdef__", "__evt_0123456789__", "__" + "a" * 60 + "__", "________", "__.__"]


def _nest(depth: int, leaf, kind: str):
    v = leaf
    for _ in range(depth):
        v = [v] if kind == "list" else {"a": v}
    return v


# Values Firestore cannot store as-is (https://firebase.google.com/docs/firestore/quotas#limits), and
# depth that breaks a recursive parser.
UNSTORABLE_VALUES = [
    [[1]], [1, [2]], {"a": [[]]}, 2 ** 63, -(2 ** 63) - 1, 10 ** 30, {"": 1}, {"__name__": 1}, {"__x__": 1},
    {"a": {"__abc__": {"b": 1}}}, _nest(25, 1, "map"), _nest(21, {}, "map"), _nest(19, [{"a": [1]}], "map"),
]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.from_regex(r"__[A-Za-z0-9_-]{4,60}__", fullmatch=True),
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), hostile_text,
)
# Random JSON-able values (maps keyed by hostile strings).
json_values = st.recursive(
    st.one_of(json_scalars, st.sampled_from(UNSTORABLE_VALUES)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(hostile_text, children, max_size=4)),
    max_leaves=20,
)


def deep_json(depth: int, opener: str) -> bytes:
    """``depth`` nested brackets, closed or not (``opener`` ``[`` / ``{"a":``)."""
    closer = "]" if opener == "[" else "}"
    return (opener * depth + "1" + closer * depth).encode()


deep_bodies = st.builds(
    lambda depth, opener, closed, wrap: (
        (b'{"x":' if wrap else b"") + (deep_json(depth, opener) if closed else (opener * depth).encode())
        + (b"}" if wrap and closed else b"")
    ),
    st.sampled_from([33, 100, 999, 1000, 5000, 20000]),
    st.sampled_from(["[", '{"a":']),
    st.booleans(),
    st.booleans(),
)

# Text that is not what it claims: lone surrogate escapes, NaN literals, bad UTF-8, BOMs, huge numbers.
odd_json_bodies = st.sampled_from([
    b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}',
    b"\xef\xbb\xbf{}", b'{"a": "\xff"}', b"\xff\xfe{\x00}\x00", b'{"a": 1' + b"0" * 5000 + b"}",
    b'{"a": 1e999}', b"{\"a\": \"" + b"\\\"" * 3000 + b"\"}", b'"' + b'\\"' * 5000, b"[]", b"null", b"1",
    b'""', b"{", b"}", b"", b"\x00", b'{"a":1,"a":2}', b'{"a": ' + b'"x",' * 2 + b"}",
])


def body_bytes(structured=None) -> st.SearchStrategy[bytes]:
    """Bodies: random bytes, random JSON, deep nesting, odd JSON text, and ``structured`` (a strategy of
    JSON-able values, e.g. near-valid bodies of one route) encoded as JSON."""
    options = [st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()), deep_bodies,
               odd_json_bodies]
    if structured is not None:
        options += [structured.map(lambda v: json.dumps(v).encode())] * 3
    return st.one_of(*options)


# Header values a real HTTP client can send (latin-1, no CR/LF, no leading white space: requests refuses those).
header_text = st.one_of(
    st.sampled_from([h for h in HOSTILE_STRINGS if h.isascii() and "\r" not in h and "\n" not in h
                     and "\x00" not in h]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
            max_size=100),
).filter(lambda v: not re.match(r"\s", v))


# ------------------------------------------------------------------------------------ Pub/Sub push to ingest


def push_envelope(data: bytes, attributes: dict, message_id: str, project: str) -> dict:
    """The JSON body a Pub/Sub push subscription POSTs to ``ingest`` (what functions-framework turns into
    the ``messagePublished`` CloudEvent)."""
    import base64

    return {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes,
                        "messageId": message_id, "publishTime": "2026-01-01T00:00:00.000Z"},
            "subscription": f"projects/{project}/subscriptions/ingest-push"}


def logged_drops(stack, message_ids) -> dict[str, list[str]]:
    """``message id -> drop reasons`` the stack's ingest process logged for each of ``message_ids``
    (``vigint.pipeline.count_drop`` logs ``ingest: dropping message: <reason> ... message='<id>'``)."""
    import re

    wanted = set(message_ids)
    found: dict[str, list[str]] = {m: [] for m in wanted}
    pattern = re.compile(r"ingest: dropping message: (\w+) ")
    for line in (stack.workdir / "logs" / "ingest.log").read_text(errors="replace").splitlines():
        m = pattern.search(line)
        if m:
            # Ids are random per run (``fuzz-<hex>-<n>``), so hostile text elsewhere in the line cannot fake one.
            for mid in set(re.findall(r"message='([A-Za-z0-9-]+)'", line)) & wanted:
                found[mid].append(m.group(1))
    return found
