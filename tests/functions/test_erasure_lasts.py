"""Erasure and deletion that last (issue 14): after a camera erase or a tenant deletion, a replayed message, a
late redelivery or an edge that was offline meanwhile stores nothing and sends nothing; later events are
stored as usual. Against the emulators, fake-gcs-server and the SMTP sink."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from tests.functions.conftest import FIXTURE_START, all_docs

T = dt.timedelta


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _msg(tenant_id: str, event_id: str) -> bytes:
    return json.dumps({"tenant_id": tenant_id, "event_id": event_id}).encode()


def _drops() -> dict:
    from vigint import clients

    snap = clients.firestore().collection("stats").document("ingest_drops").get()
    return snap.to_dict() or {} if snap.exists else {}


def _mails(smtp_sink, recipient: str) -> list:
    return [m for m in smtp_sink.messages() if m["To"] == recipient]


def _v1_event(fenv, creds, t0: dt.datetime, camera_id: str = "garage") -> tuple[dict, bytes, dict]:
    ev = fenv.event(creds, camera_id=camera_id, start_time=_iso(t0), end_time=_iso(t0 + T(seconds=2)))
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    return ev, data, attrs


def _alerted_v1(fenv, creds, t0: dt.datetime, camera_id: str = "garage") -> tuple[dict, bytes, dict]:
    from vigint import alert, analyze, ingest

    ev, data, attrs = _v1_event(fenv, creds, t0, camera_id)
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-first", now=t0 + T(seconds=5)) == "created"
    analyze.handle_ingested(data=_msg(creds["tenant_id"], ev["event_id"]))
    assert alert.handle_analyzed(data=_msg(creds["tenant_id"], ev["event_id"]), now=t0 + T(seconds=10)) == "sent:1"
    return ev, data, attrs


def test_v1_replay_after_erase_stores_and_sends_nothing_and_a_new_event_is_stored(fenv, smtp_sink):
    from vigint import alert, analyze, ingest, pipeline, retention

    recipient = f"er-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id = creds["tenant_id"]
    ev, data, attrs = _alerted_v1(fenv, creds, FIXTURE_START)
    # Sent while the edge was offline: spooled before the erase, delivered after it.
    late, late_data, late_attrs = _v1_event(fenv, creds, FIXTURE_START + T(minutes=1))
    assert len(_mails(smtp_sink, recipient)) == 1
    erase_at = FIXTURE_START + T(minutes=10)
    counts = retention.delete_camera(tenant_id, "garage", now=erase_at)
    assert counts["events"] == 1
    before = dict(_drops())
    fenv.pull("ingested"), fenv.pull("analyzed")

    # The replay (the same signed message, published again), a late redelivery (same message id), the offline
    # edge's message: all dropped as erased, counted, acknowledged (no exception).
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-replay",
                                    now=erase_at + T(minutes=1)) == "dropped:erased"
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-first",
                                    now=erase_at + T(hours=3)) == "dropped:erased"
    assert ingest.handle_edge_event(data=late_data, attributes=late_attrs, message_id="m-late",
                                    now=erase_at + T(days=2)) == "dropped:erased"
    assert not pipeline.event_ref(tenant_id, ev["event_id"]).get().exists
    assert not pipeline.event_ref(tenant_id, late["event_id"]).get().exists
    assert _drops().get("erased", 0) - before.get("erased", 0) == 3
    assert fenv.pull("ingested") == [] and fenv.pull("analyzed") == []
    # Even a follow-on still in flight for the erased event sends nothing.
    assert alert.handle_analyzed(data=_msg(tenant_id, ev["event_id"]), now=erase_at + T(minutes=2)) \
        == "dropped:unknown_event"
    assert len(_mails(smtp_sink, recipient)) == 1

    # A new event of the camera after the erase is stored and alerted as usual; so is another camera's.
    new, new_data, new_attrs = _v1_event(fenv, creds, erase_at + T(minutes=5))
    assert ingest.handle_edge_event(data=new_data, attributes=new_attrs, message_id="m-new",
                                    now=erase_at + T(minutes=6)) == "created"
    analyze.handle_ingested(data=_msg(tenant_id, new["event_id"]))
    assert alert.handle_analyzed(data=_msg(tenant_id, new["event_id"]), now=erase_at + T(minutes=7)) == "sent:1"
    other, o_data, o_attrs = _v1_event(fenv, creds, FIXTURE_START + T(minutes=2), camera_id="lobby")
    assert ingest.handle_edge_event(data=o_data, attributes=o_attrs, now=erase_at + T(minutes=8)) == "created"
    assert len(_mails(smtp_sink, recipient)) == 2


def test_tombstone_is_kept_longer_than_ingest_accepts_the_erased_events(fenv):
    from vigint import config, ingest, retention

    creds = fenv.provision()
    _, data, attrs = _v1_event(fenv, creds, FIXTURE_START)
    erase_at = FIXTURE_START + T(minutes=10)
    retention.delete_camera(creds["tenant_id"], "garage", now=erase_at)
    tomb = retention.erasure_ref(creds["tenant_id"], "garage").get().to_dict()
    max_age = T(seconds=config.settings().event_max_age_seconds)
    assert tomb["erased_before"] == erase_at and tomb["expire_at"] == erase_at + max_age + retention.TOMBSTONE_MARGIN
    # Once the tombstone may go, the erased event's messages are refused by their age alone.
    assert ingest.handle_edge_event(data=data, attributes=attrs, now=tomb["expire_at"]) == "dropped:stale_event"


def test_v2_replay_and_late_messages_after_erase_store_and_send_nothing(fenv, smtp_sink):
    from tests.functions.v2 import Lifecycle, signed, ts_segments
    from vigint import alert, ingest, pipeline, retention

    recipient = f"er2-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id = creds["tenant_id"]
    segments = ts_segments(2)
    lc = Lifecycle(creds, fenv.media, segments, start=FIXTURE_START, camera_id="garage")
    msgs = lc.standard(updates=1)
    lc.upload(msgs)
    start_data, start_attrs = signed(creds, msgs[0])
    assert ingest.handle_edge_event(data=start_data, attributes=start_attrs, message_id="s-1",
                                    now=lc.at(3)) == "created"
    assert alert.handle_analyzed(data=_msg(tenant_id, lc.event_id), now=lc.at(4)) == "sent:1"
    erase_at = lc.at(60)
    assert retention.delete_camera(tenant_id, "garage", now=erase_at)["events"] == 1
    fenv.pull("ingested"), fenv.pull("analyzed")

    # The start replayed, and the update and end the edge had not delivered yet (it was offline).
    assert ingest.handle_edge_event(data=start_data, attributes=start_attrs, message_id="s-2",
                                    now=erase_at + T(seconds=5)) == "dropped:erased"
    for msg in msgs[1:]:
        data, attrs = signed(creds, msg)
        assert ingest.handle_edge_event(data=data, attributes=attrs, now=erase_at + T(minutes=30)) == "dropped:erased"
    assert all_docs(pipeline.event_ref(tenant_id, lc.event_id)) == []
    assert fenv.pull("ingested") == [] and fenv.pull("analyzed") == []
    assert len(_mails(smtp_sink, recipient)) == 1

    # A new event of the camera after the erase is stored (and alerted).
    new = Lifecycle(creds, fenv.media, segments, start=erase_at + T(minutes=1), camera_id="garage")
    nm = new.standard(updates=0)
    new.upload(nm)
    for msg in nm:
        data, attrs = signed(creds, msg)
        assert ingest.handle_edge_event(data=data, attributes=attrs, now=new.at(10)) in ("created", "applied")
    assert alert.handle_analyzed(data=_msg(tenant_id, new.event_id), now=new.at(11)) == "sent:1"
    assert len(_mails(smtp_sink, recipient)) == 2


def test_tenant_deletion_lasts_for_ingest_and_edge_api(fenv, smtp_sink):
    from vigint import edge_api, ingest, pipeline, provisioning, retention

    recipient = f"td-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id, device_id = creds["tenant_id"], creds["device_id"]
    ev, data, attrs = _alerted_v1(fenv, creds, FIXTURE_START)
    auth = lambda c: {"Authorization": f"Bearer {c['secret']}", "X-Vigint-Tenant": c["tenant_id"],  # noqa: E731
                      "X-Vigint-Device": c["device_id"]}
    assert edge_api.authenticate(auth(creds)) is not None

    # While the deletion runs (the tombstone is written first) the device, still listed, is refused.
    deleted_at = FIXTURE_START + T(minutes=10)
    retention.deleted_tenant_ref(tenant_id).set({"deleted_at": dt.datetime.now(dt.timezone.utc),
                                                  "key_versions": {device_id: 1}})
    assert edge_api.authenticate(auth(creds)) is None
    counts = retention.delete_tenant(tenant_id, now=deleted_at)
    assert counts["held_kept"] == 0 and counts["objects"] == 2
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-replay",
                                    now=deleted_at + T(minutes=1)) == "dropped:unknown_device"
    tomb = retention.deleted_tenant_ref(tenant_id).get().to_dict()
    assert tomb["key_versions"] == {device_id: 1} and tomb["pending_held"] == 0

    # The tenant and a device of the same id are created again: the device starts at key version 2, so the
    # old box's secret is refused by edge_api and its messages by ingest.
    provisioning.create_tenant(tenant_id, "Again", [recipient])
    again = provisioning.create_device(tenant_id, device_id)
    assert again["key_version"] == 2 and again["secret"] != creds["secret"]
    assert edge_api.authenticate(auth(creds)) is None
    assert edge_api.authenticate(auth(again)) is not None
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-replay2",
                                    now=deleted_at + T(minutes=2)) == "dropped:stale_key_version"
    # An event from before the deletion, even signed with the new secret (a spool sent after re-enrolment),
    # is not stored; a new one is.
    old_ev = fenv.event(again, camera_id="garage", start_time=_iso(FIXTURE_START + T(minutes=1)),
                        end_time=_iso(FIXTURE_START + T(minutes=1, seconds=2)))
    d2, a2 = fenv.message(again, old_ev)
    assert ingest.handle_edge_event(data=d2, attributes=a2, now=deleted_at + T(minutes=3)) == "dropped:tenant_deleted"
    assert not pipeline.event_ref(tenant_id, old_ev["event_id"]).get().exists
    new_ev = fenv.event(again, camera_id="garage", start_time=_iso(deleted_at + T(minutes=4)),
                        end_time=_iso(deleted_at + T(minutes=4, seconds=2)))
    d3, a3 = fenv.message(again, new_ev)
    assert ingest.handle_edge_event(data=d3, attributes=a3, now=deleted_at + T(minutes=5)) == "created"
    assert len(_mails(smtp_sink, recipient)) == 1
