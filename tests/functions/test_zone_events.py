"""Zone entries and exits (``zone_events``) from the edge message to the event document and the tenant API:
the schema's bounds (both versions), ingest storing them (version 1 whole, version 2 the newest whole list)
and ``GET /v1/events/{id}`` returning them. Real Firestore/Pub/Sub emulators and entry points."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from tests.functions.conftest import FIXTURE_START
from tests.functions.v2 import Lifecycle, signed, ts_segments


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _zone_events(start: dt.datetime, n: int = 2, zone: str = "driveway", track_id: int = 7) -> list[dict]:
    """``n`` alternating enter/exit entries of one track, 0.5 s apart from ``start`` + 1 s."""
    return [{"zone": zone, "track_id": track_id, "label": "person", "kind": "enter" if i % 2 == 0 else "exit",
             "time": _iso(start + dt.timedelta(seconds=1 + 0.5 * i))} for i in range(n)]


@pytest.fixture(scope="module")
def segments() -> list[bytes]:
    return ts_segments(2)


# ------------------------------------------------------------------------------------------------ schema
def test_schema_takes_zone_events_in_both_versions_and_old_messages_without_them(fenv, segments):
    from vigint.schema import EdgeEvent, LifecycleMessage

    creds = fenv.provision()
    ev = fenv.event(creds)
    assert "zone_events" not in ev and EdgeEvent.parse(json.dumps(ev)).zone_events == [], "old messages stay valid"
    ev["zone_events"] = _zone_events(FIXTURE_START, 100)  # the most there may be
    parsed = EdgeEvent.parse(json.dumps(ev))
    assert len(parsed.zone_events) == 100 and parsed.zone_events[1].kind == "exit"
    assert parsed.zone_events[0].time == FIXTURE_START + dt.timedelta(seconds=1)
    lc = Lifecycle(creds, fenv.media, segments, start=FIXTURE_START)
    msg = lc.message(0, "start")
    assert LifecycleMessage.parse(json.dumps(msg)).zone_events == []
    msg["zone_events"] = _zone_events(FIXTURE_START, 3)
    assert [z.track_id for z in LifecycleMessage.parse(json.dumps(msg)).zone_events] == [7, 7, 7]


@pytest.mark.parametrize("patch", [
    {"kind": "inside"}, {"kind": None}, {"track_id": -1}, {"track_id": "7"}, {"track_id": 1.5},
    {"label": "<script>"}, {"label": ""}, {"zone": ""}, {"zone": "z" * 65}, {"zone": 3},
    {"time": "2026-11-22T06:00:00"}, {"time": "yesterday"}, {"extra": 1},
], ids=lambda p: ",".join(f"{k}={v!r}"[:30] for k, v in p.items()))
def test_schema_refuses_a_bad_zone_event_in_both_versions(fenv, segments, patch):
    from vigint.schema import EdgeEvent, LifecycleMessage

    creds = fenv.provision()
    bad = {**_zone_events(FIXTURE_START, 1)[0], **patch}
    ev = fenv.event(creds, zone_events=[bad])
    msg = Lifecycle(creds, fenv.media, segments, start=FIXTURE_START).message(0, "start")
    msg["zone_events"] = [bad]
    for model, data in ((EdgeEvent, ev), (LifecycleMessage, msg)):
        with pytest.raises(ValidationError, match="zone_events"):
            model.parse(json.dumps(data))


def test_more_than_100_zone_events_is_refused_and_ingest_drops_it(fenv):
    from vigint import ingest
    from vigint.schema import EdgeEvent

    creds = fenv.provision()
    ev = fenv.event(creds, zone_events=_zone_events(FIXTURE_START, 101))
    with pytest.raises(ValidationError, match="zone_events"):
        EdgeEvent.parse(json.dumps(ev))
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    assert ingest.handle_edge_event(data=data, attributes=attrs).startswith("dropped:")
    from vigint import pipeline
    assert not pipeline.event_ref(creds["tenant_id"], ev["event_id"]).get().exists


# ----------------------------------------------------------------------------------- ingest + tenant API
def _api_key(tenant_id: str) -> dict:
    from vigint import provisioning

    return {"Authorization": f"Bearer {provisioning.create_api_key(tenant_id, 'viewer', 'Zed Viewer')['key']}"}


def test_a_version_1_event_stores_its_zone_events_and_the_api_returns_them(fenv, tapi):
    from vigint import pipeline

    creds = fenv.provision()
    zev = _zone_events(FIXTURE_START, 2) + _zone_events(FIXTURE_START + dt.timedelta(seconds=0.2), 1, zone="porch",
                                                        track_id=8)
    ev = fenv.ingested_event(creds, zones=["driveway", "porch"], zone_events=zev)
    stored = pipeline.event_ref(creds["tenant_id"], ev["event_id"]).get().to_dict()
    assert [(z["zone"], z["track_id"], z["kind"]) for z in stored["zone_events"]] == \
        [("driveway", 7, "enter"), ("driveway", 7, "exit"), ("porch", 8, "enter")]
    assert stored["zone_events"][0]["time"] == FIXTURE_START + dt.timedelta(seconds=1), "a Firestore timestamp"
    body = tapi.get(f"/v1/events/{ev['event_id']}", headers=_api_key(creds["tenant_id"])).get_json()
    assert [(z["zone"], z["track_id"], z["label"], z["kind"]) for z in body["zone_events"]] == \
        [(z["zone"], z["track_id"], z["label"], z["kind"]) for z in zev]
    assert [dt.datetime.fromisoformat(z["time"].replace("Z", "+00:00")) for z in body["zone_events"]] == \
        [dt.datetime.fromisoformat(z["time"].replace("Z", "+00:00")) for z in zev]
    old = fenv.ingested_event(creds)  # a message without the field
    body = tapi.get(f"/v1/events/{old['event_id']}", headers=_api_key(creds["tenant_id"])).get_json()
    assert body["zone_events"] == []
    spec = tapi.get("/openapi.json").get_json()
    assert "zone_events" in spec["components"]["schemas"]["EventDetail"]["properties"]


def test_version_2_messages_replace_the_list_with_the_newest_whole_one(fenv, tapi, segments):
    from vigint import ingest, pipeline

    creds = fenv.provision()
    lc = Lifecycle(creds, fenv.media, segments, start=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30))
    msgs = lc.standard(updates=1)
    msgs[0]["zone_events"] = _zone_events(lc.start, 1)
    msgs[1]["zone_events"] = _zone_events(lc.start, 2)
    # the end arrives before the update; the end's list is the whole one
    msgs[2]["zone_events"] = _zone_events(lc.start, 2) + _zone_events(lc.start + dt.timedelta(seconds=2), 1,
                                                                     zone="gate", track_id=9)
    lc.upload(msgs)

    def ingest_one(msg):
        data, attrs = signed(creds, msg)
        return ingest.handle_edge_event(data=data, attributes=attrs, message_id=f"m-{msg['seq']}")

    def stored():
        doc = pipeline.event_ref(creds["tenant_id"], lc.event_id).get().to_dict()
        return [(z["zone"], z["kind"]) for z in doc["zone_events"]]

    ingest_one(msgs[0])
    assert stored() == [("driveway", "enter")]
    ingest_one(msgs[2])
    assert stored() == [("driveway", "enter"), ("driveway", "exit"), ("gate", "enter")]
    ingest_one(msgs[1])  # older than the end: its (shorter) list does not replace the end's
    assert stored() == [("driveway", "enter"), ("driveway", "exit"), ("gate", "enter")]
    body = tapi.get(f"/v1/events/{lc.event_id}", headers=_api_key(creds["tenant_id"])).get_json()
    assert [(z["zone"], z["kind"], z["track_id"]) for z in body["zone_events"]] == \
        [("driveway", "enter", 7), ("driveway", "exit", 7), ("gate", "enter", 9)]
