"""Bounded parsing of client-supplied JSON and the checks of what Firestore can store.

Every HTTP body our functions read goes through ``parse_json_object``: its size and nesting depth are checked
*before* ``json.loads`` runs (Python's decoder recurses once per nesting level and raises ``RecursionError``,
not ``ValueError``, at about 1000 levels), then it must be UTF-8 JSON text holding an object, without
``NaN``/``Infinity`` and without lone UTF-16 surrogates (which no Firestore string and no UTF-8 answer can
carry). Every client-supplied free-form value that is stored as-is goes through ``check_firestore_value``.
Both raise ``BodyError`` (a ``ValueError``) naming the offending field, which the callers answer with a 400
(413 for ``too_large``).

Firestore's limits used here (https://firebase.google.com/docs/firestore/quotas#limits and
https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields):

* maximum depth of fields in a map or array: 20 (arrays count toward the depth): at most 20 nested
  maps/arrays in one top-level field;
* an array cannot directly contain another array (https://firebase.google.com/docs/firestore/manage-data/data-types#data_types);
* integers are signed 64-bit;
* a string is at most 1,048,487 bytes (1 MiB - 89 bytes) as UTF-8;
* a field name is at most 1,500 bytes, cannot be empty, and names matching ``__.*__`` are reserved;
* document ids matching ``__.*__`` and the ids ``.`` and ``..`` are reserved (``is_reserved_id``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 32
FIRESTORE_MAX_DEPTH = 20
FIRESTORE_MAX_STRING_BYTES = 1_048_487
FIRESTORE_MAX_FIELD_NAME_BYTES = 1_500
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_RESERVED = re.compile(r"__.*__", re.DOTALL)
# Tokens that matter to nesting: an escape (two characters, so an escaped quote never ends a string), a quote,
# a bracket. Everything else is skipped by the regular expression engine; one pass, linear in the body size.
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


class BodyError(ValueError):
    """A body or value that cannot be accepted.

    Attributes:
        reason: ``"too_large"``, ``"not_utf8"``, ``"not_json"``, ``"too_deep"``, ``"not_object"`` (from
            ``parse_json_object``) or ``"not_storable"`` (from ``check_firestore_value``).
        field: the offending field as a dotted path (list indices as numbers, e.g. ``cameras.lobby.0``), or
            ``"body"`` for the body as a whole.
        message: what is wrong, for the error answer (``str(exc)`` is ``"{field}: {message}"``).
    """

    def __init__(self, reason: str, message: str, field: str = "body"):
        super().__init__(f"{field}: {message}")
        self.reason, self.message, self.field = reason, message, field


def is_reserved_id(value: str) -> bool:
    """True for the document ids Firestore reserves: ``.``, ``..`` and anything matching ``__.*__``."""
    return value in (".", "..") or bool(_RESERVED.fullmatch(value))


def nesting_depth(data: bytes, limit: int) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text ``data``, counted outside strings without parsing;
    stops counting as soon as it exceeds ``limit`` (and returns ``limit + 1``).

    On any text that a JSON decoder accepts up to some point, the count agrees with the decoder's nesting up to
    that point, so a decoder never recurses deeper than this says. Runs in time linear in ``len(data)``.
    """
    depth = deepest = 0
    in_string = False
    for match in _TOKENS.finditer(data):
        tok = match.group()
        if tok == b'"':
            in_string = not in_string
        elif in_string or len(tok) == 2:
            continue
        elif tok in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return limit + 1
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_text(value: Any) -> None:
    """Raises UnicodeEncodeError if a string or key anywhere in ``value`` is not encodable as UTF-8 (a lone
    surrogate from a ``\\ud800`` escape). ``value`` is already bounded in depth, so recursing is safe."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            k.encode("utf-8")
            _check_text(v)
    elif isinstance(value, list):
        for v in value:
            _check_text(v)


def parse_json_object(body: bytes, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> dict:
    """Parses a request body that must be one JSON object.

    Args:
        body: the raw body (UTF-8 JSON text).
        max_bytes: the largest body accepted, in bytes.
        max_depth: the deepest nesting of arrays/objects accepted (the object itself is depth 1).

    Returns:
        The object as a ``dict``.

    Raises:
        BodyError: field ``body``; reason ``too_large`` (more than ``max_bytes``), ``not_utf8``, ``too_deep``
            (nested deeper than ``max_depth``; checked before decoding), ``not_json`` (not JSON text, or
            ``NaN``/``Infinity``, a lone surrogate escape or an integer of more than 4300 digits), ``not_object``.
    """
    if len(body) > max_bytes:
        raise BodyError("too_large", f"request body larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("not_utf8", "body is not UTF-8 text") from None
    if nesting_depth(body, max_depth) > max_depth:
        raise BodyError("too_deep", f"body is nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        _check_text(value)
    except (ValueError, UnicodeEncodeError) as exc:  # JSONDecodeError and int-digits limits are ValueErrors
        raise BodyError("not_json", f"body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise BodyError("not_object", "body must be a JSON object")
    return value


def _name(field: str, key: Any) -> str:
    return f"{field}.{str(key)[:64]}"


def check_firestore_value(value: Any, field: str, *, depth: int = 0) -> None:
    """Checks that Firestore can store ``value`` as-is (see the module docstring for the limits).

    Args:
        value: a JSON-like value (``None``, bool, int, float, str, list, dict; also datetimes and bytes).
        field: its name in the request, used in the error (e.g. ``"cameras"``).
        depth: how many maps/arrays enclose ``value`` in its document: 0 for a top-level field, 1 for a field
            of a top-level map, and so on. Firestore takes at most 20 nested maps/arrays in one top-level field
            (checked on the emulator: 20 nested maps holding a number are stored, 21 are refused).

    Raises:
        BodyError: reason ``not_storable``, ``field`` the dotted path of the first offending value: more than
            20 nested maps/arrays, an array directly inside an array, an integer outside signed 64 bits, a
            string over 1,048,487 bytes, an empty map key, a key matching ``__.*__`` or over 1,500 bytes, a
            non-string key, or a value of another type. (Floats, ``NaN`` and infinities included, are stored
            as IEEE 754 doubles.)
    """
    if isinstance(value, (list, tuple, dict)) and depth >= FIRESTORE_MAX_DEPTH:
        raise BodyError("not_storable", f"nested deeper than Firestore's {FIRESTORE_MAX_DEPTH} levels", field)
    if value is None or isinstance(value, (bool, float, dt.datetime, bytes)):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise BodyError("not_storable", "integer outside signed 64 bits", field)
        return
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise BodyError("not_storable", "string is not valid Unicode", field) from None
        if size > FIRESTORE_MAX_STRING_BYTES:
            raise BodyError("not_storable", f"string longer than {FIRESTORE_MAX_STRING_BYTES} bytes", field)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if isinstance(item, (list, tuple)):
                raise BodyError("not_storable", "an array cannot directly contain an array", _name(field, i))
            check_firestore_value(item, _name(field, i), depth=depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise BodyError("not_storable", "map keys must be non-empty strings", field)
            try:
                key_bytes = len(key.encode("utf-8"))
            except UnicodeEncodeError:
                raise BodyError("not_storable", "map key is not valid Unicode", field) from None
            if _RESERVED.fullmatch(key):
                raise BodyError("not_storable", "map keys matching __.*__ are reserved", _name(field, key))
            if key_bytes > FIRESTORE_MAX_FIELD_NAME_BYTES:
                raise BodyError("not_storable", f"map key longer than {FIRESTORE_MAX_FIELD_NAME_BYTES} bytes", field)
            check_firestore_value(item, _name(field, key), depth=depth + 1)
        return
    raise BodyError("not_storable", f"values of type {type(value).__name__} are not stored", field)
