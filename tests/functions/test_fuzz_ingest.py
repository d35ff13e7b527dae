"""Property-based run against the stack's ``ingest`` process (functions-framework, Pub/Sub push envelopes over
HTTP, Firestore emulator): hostile messages, most of them validly SIGNED with the provisioned device's secret
so that they get past the signature to the parser and the storage code.

Every message is hostile by construction (random data; a valid event with one field of the wrong type, an
integer beyond 64 bits, a reserved or malformed id, deep nesting, NaN, a lone surrogate, an unknown or a
missing field; valid data under hostile attributes; a bad signature), so each must be acknowledged (2xx: Pub/Sub
must not redeliver it into the dead-letter topic) and dropped with a reason: the test finds exactly one drop
line per message id in the ingest process's log, the drop counter grows by at least the message count, and no
event document exists afterwards. Prints the message count and the reasons (for the note).
"""

from __future__ import annotations

import collections
import copy
import json
import time
import uuid

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functions import hostile

MAX_EXAMPLES = 250
ATTRS = ("tenant_id", "device_id", "event_id", "schema_version", "key_version", "signature")


def _kind(v) -> str:
    return "none" if v is None else type(v).__name__


def _other_type(original):
    """A non-null value of another JSON type than ``original`` (an int still counts as a float's type)."""
    def differs(v) -> bool:
        if v is None or _kind(v) == _kind(original):
            return False
        return not (isinstance(original, float) and _kind(v) == "int")
    return hostile.json_values.filter(differs)


def _paths(event: dict) -> list[tuple]:
    """Paths of the fields of an event message (top level and one level into clip, snapshot, detections[0])."""
    out = [(k,) for k in event]
    for k in ("clip", "snapshot"):
        if isinstance(event.get(k), dict):
            out += [(k, f) for f in event[k]]
    if event.get("detections"):
        out += [("detections", 0, f) for f in event["detections"][0]]
    return out


def _set(event: dict, path: tuple, value) -> None:
    cur = event
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


def _get(event: dict, path: tuple):
    cur = event
    for p in path:
        cur = cur[p]
    return cur


def fenv_event_id(object_name: str) -> str:
    """The event id in ``tenants/{t}/devices/{d}/events/{e}/{file}``."""
    return object_name.split("/")[5]


def _v2(ev: dict) -> dict:
    return {**ev, "schema_version": 2, "phase": "start", "seq": 0, "first_seen": ev["start_time"],
            "confirmed_at": ev["start_time"], "sent_at": ev["start_time"], "clip": None,
            "snapshot": None, "segments": []}


def test_hostile_messages_are_acknowledged_and_counted_as_drops(stack, fenv):
    from vigint import clients, device_keys, pipeline
    from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, matches

    creds = fenv.provision()
    tenant_id = creds["tenant_id"]
    run = uuid.uuid4().hex[:10]
    base = stack.urls["ingest"] + "/"
    session = requests.Session()
    sent: dict[str, str] = {}  # message id -> kind
    problems: list[str] = []
    counter = iter(range(10 ** 9))

    def signed(data: bytes, event_id: str, version: str = "1", **extra) -> dict:
        attrs = {"tenant_id": tenant_id, "device_id": creds["device_id"], "event_id": event_id,
                 "schema_version": version, "key_version": str(creds["key_version"]),
                 "signature": device_keys.sign(creds["secret"], data)}
        if version == "2":
            attrs.update({"seq": "0", "phase": "start"})
        attrs.update(extra)
        return attrs

    def fresh_event(data) -> dict:
        ev = fenv.event(creds)
        return _v2(ev) if data.draw(st.booleans(), "v2") else ev

    def mutated(data) -> tuple[bytes, dict]:
        ev = fresh_event(data)
        version = str(ev["schema_version"])
        event_id = ev["event_id"]
        how = data.draw(st.sampled_from(["type", "id", "reserved", "reserved", "int", "int", "deep", "extra", "missing",
                                         "nan", "surrogate"]), "how")
        if how == "type":
            path = data.draw(st.sampled_from(_paths(ev)), "path")
            _set(ev, path, data.draw(_other_type(_get(ev, path)), "value"))
        elif how == "id":
            field = data.draw(st.sampled_from(["event_id", "tenant_id", "device_id", "camera_id"]
                                              + (["continues"] if version == "2" else [])), "field")
            pattern = SLUG_PATTERN if field in ("tenant_id", "device_id", "camera_id") else EVENT_ID_PATTERN
            ev[field] = data.draw(st.one_of(st.sampled_from(hostile.RESERVED_IDS + [".", ".."]), hostile.hostile_text)
                                  .filter(lambda v: not matches(pattern, v)), "id")
        elif how == "reserved":  # in the data and the attributes alike, so that nothing but the id is wrong
            reserved = data.draw(st.sampled_from(hostile.RESERVED_IDS), "reserved")
            if version == "2" and data.draw(st.booleans(), "continues"):
                ev["continues"] = reserved
            else:
                ev["event_id"] = event_id = reserved
                for k in ("clip", "snapshot"):
                    if isinstance(ev.get(k), dict):
                        ev[k]["object"] = ev[k]["object"].replace(fenv_event_id(ev[k]["object"]), reserved)
        elif how == "int":
            path = data.draw(st.sampled_from([("clip", "frames"), ("clip", "width"), ("clip", "bytes"),
                                              ("max_count", "person")] + ([("seq",)] if version == "2" else [])
                                             ).filter(lambda p: isinstance(ev.get(p[0]), dict) or len(p) == 1),
                             "int_path")
            _set(ev, path, data.draw(st.one_of(st.integers(min_value=2 ** 63, max_value=2 ** 200),
                                               st.integers(min_value=-(2 ** 200), max_value=-1)), "int"))
        elif how == "deep":
            path = data.draw(st.sampled_from(_paths(ev)), "path")
            _set(ev, path, "__DEEP__")
            depth = data.draw(st.sampled_from([33, 250, 1000, 3000]), "depth")
            text = json.dumps(ev).replace('"__DEEP__"', "[" * depth + "]" * depth)
            return text.encode(), signed(text.encode(), event_id, version)
        elif how == "extra":
            key = data.draw(hostile.hostile_text.filter(lambda k: k not in ev), "key")
            ev[key] = data.draw(hostile.json_values, "extra_value")
        elif how == "missing":
            ev.pop(data.draw(st.sampled_from([k for k in ev if k not in ("clip", "snapshot", "segments")]), "key"))
        elif how == "nan":
            path = data.draw(st.sampled_from([("top_score",)] + [p for p in [("clip", "duration_s"), ("clip", "fps")]
                                                                  if ev.get("clip")]), "nan_path")
            _set(ev, path, "__NAN__")
            word = data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]), "nan")
            text = json.dumps(ev).replace('"__NAN__"', word)
            return text.encode(), signed(text.encode(), event_id, version)
        elif how == "surrogate":
            text = json.dumps(ev).replace('"person"', '"\\ud800"', 1)
            return text.encode(), signed(text.encode(), event_id, version)
        raw = json.dumps(ev).encode()
        return raw, signed(raw, event_id, version)

    def hostile_attrs(data) -> tuple[bytes, dict]:
        ev = fresh_event(data)
        raw = json.dumps(ev).encode()
        attrs = signed(raw, ev["event_id"], str(ev["schema_version"]))
        keys = data.draw(st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True), "keys")
        for key in keys:
            if data.draw(st.booleans(), f"drop_{key}"):
                attrs.pop(key)
                continue

            def changes(v, key=key) -> bool:
                if key == "key_version":  # int(" 1"), int("01"), int("١") are 1: still the same version
                    try:
                        return int(v) != creds["key_version"]
                    except ValueError:
                        return True
                return v != attrs[key]
            attrs[key] = data.draw(st.one_of(st.sampled_from(hostile.RESERVED_IDS), hostile.hostile_text)
                                   .filter(changes), f"attr_{key}")
        return raw, attrs

    def random_data(data) -> tuple[bytes, dict]:
        raw = data.draw(hostile.body_bytes(), "data")
        return raw, signed(raw, fenv.event(creds)["event_id"])

    def bad_signature(data) -> tuple[bytes, dict]:
        ev = fresh_event(data)
        raw = json.dumps(ev).encode()
        sig = data.draw(st.one_of(hostile.hostile_text, st.just(device_keys.sign("x" * 43, raw))), "sig")
        return raw, signed(raw, ev["event_id"], str(ev["schema_version"]), signature=sig)

    makers = {"mutated": mutated, "hostile_attrs": hostile_attrs, "random_data": random_data,
              "bad_signature": bad_signature}
    kinds = ["mutated"] * 5 + ["hostile_attrs"] * 3 + ["random_data"] * 2 + ["bad_signature"]

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data):
        kind = data.draw(st.sampled_from(kinds), "kind")
        raw, attrs = makers[kind](data)
        mid = f"fuzz-{run}-{next(counter)}"
        sent[mid] = kind
        r = session.post(base, json=hostile.push_envelope(raw, copy.deepcopy(attrs), mid, stack.project), timeout=30)
        if not 200 <= r.status_code < 300:
            problems.append(f"{kind} {attrs} {raw[:300]!r} -> {r.status_code}")

    stats = clients.firestore().collection("stats").document("ingest_drops")
    before = stats.get().to_dict() or {}
    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    after = stats.get().to_dict() or {}
    reasons = collections.Counter({k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in after
                                   if k not in ("total", "last_reason", "last_at")})
    print(f"\ningest fuzz: {len(sent)} messages in {elapsed:.1f} s; kinds {dict(collections.Counter(sent.values()))}; "
          f"drops counted by reason {dict(sorted((k, v) for k, v in reasons.items() if v))}")
    assert not problems, "\n".join(problems[:20])
    logged = hostile.logged_drops(stack, sent)
    not_dropped = {mid: (sent[mid], r) for mid, r in logged.items() if len(r) != 1}
    assert not not_dropped, list(not_dropped.items())[:20]
    assert int(after.get("total", 0)) - int(before.get("total", 0)) >= len(sent)
    assert [d.id for d in pipeline.tenant_ref(tenant_id).collection("events").list_documents()] == []
