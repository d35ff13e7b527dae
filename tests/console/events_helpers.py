"""Helpers of the events and alerts tests: cameras and sites as the console stores them, event documents in the
shape ingest writes them (for listings that need many events fast), clients signed in as several users."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from tests.console.conftest import csrf_of, sign_in
from tests.functions.conftest import FIXTURE_START

ITEM_ID = re.compile(r'<li class="event-item"[^>]*>\s*(?:<span class="pick">.*?</span>\s*)?<a class="event-thumb" '
                     r'href="/events/([A-Za-z0-9_-]+)"', re.S)
NEXT = re.compile(r'hx-get="(/(?:events|alerts)/page\?[^"]*cursor=[^"]+)" hx-trigger="revealed"')


def camera(tenant_id: str, camera_id: str, *, device_id: str = "nuc-1", name: str | None = None,
           site_id: str | None = None) -> None:
    """``tenants/{t}/cameras/{camera_id}`` as the tenant API stores it (plus ``site_id`` when given)."""
    from vigint.tenant_api.cameras import cameras_col

    doc = {"device_id": device_id, "name": name or camera_id, "enabled": True}
    if site_id:
        doc["site_id"] = site_id
    cameras_col(tenant_id).document(camera_id).set(doc)


def site(tenant_id: str, site_id: str, name: str, time_zone: str | None = None) -> None:
    from vigint.console import sites

    sites.put_site(tenant_id, site_id, name=name, time_zone=time_zone)


def put_event(tenant_id: str, *, camera_id: str = "lobby", minutes_ago: float = 0.0, event_id: str | None = None,
              start: dt.datetime | None = None, labels=("person",), zones=(), severity: str = "alert",
              kind: str = "detection", threat_level: int = 1, alerted: bool | None = None, acked: bool = False,
              device_id: str = "nuc-1", title: str | None = None) -> str:
    """An event document like ingest and analyze leave it (schema version 1, no media), ``minutes_ago``
    before the fixtures' start time; returns its id."""
    from vigint import pipeline

    event_id = event_id or f"evt_{uuid.uuid4().hex[:26].upper()}"
    start = start or FIXTURE_START - dt.timedelta(minutes=minutes_ago)
    doc = {"schema_version": 1, "event_id": event_id, "tenant_id": tenant_id, "device_id": device_id,
           "camera_id": camera_id, "kind": kind, "severity": severity, "labels": list(labels), "zones": list(zones),
           "start_time": start, "end_time": start + dt.timedelta(seconds=5), "top_score": 0.8,
           "max_count": {label: 1 for label in labels}, "detections": [
               {"label": label, "score": 0.8, "box": [0.1, 0.2, 0.3, 0.4],
                "time": (start + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")} for label in labels],
           "clip": None, "snapshot": None, "ingested_at": start + dt.timedelta(seconds=7), "status": "analyzed",
           "analysis": {"status": "detections_only", "source": "detections", "threat_level": threat_level,
                        "title": title or f"{', '.join(labels) or kind} on {camera_id}", "summary": "seen"}}
    if alerted is not None:
        doc["alert"] = {"alerted": alerted, "reason": "test", "decided_at": start + dt.timedelta(seconds=8)}
    if acked:
        doc["ack"] = {"acknowledged": True, "by": "someone@example.com", "at": start + dt.timedelta(minutes=1)}
    pipeline.event_ref(tenant_id, event_id).set(doc)
    return event_id


def alert_it(tenant_id: str, event_id: str) -> None:
    """Marks an ingested event alerted, as the alert function's decision does (``alert.alerted``)."""
    from vigint import pipeline

    pipeline.event_ref(tenant_id, event_id).update({"alert": {"alerted": True, "reason": "threshold",
                                                              "decided_at": FIXTURE_START}})


def client_as(app, tenant_id: str, email: str, role: str = "owner", site_ids=None):
    """A fresh test client signed in as ``email``; returns ``(client, csrf_token)``."""
    c = app.test_client()
    home = sign_in(c, tenant_id, email, role=role, site_ids=site_ids)
    return c, csrf_of(home)


def listed(html: str) -> list[str]:
    """Event ids of a listing's items, in page order."""
    return ITEM_ID.findall(html)


def walk(client, first_path: str) -> list[str]:
    """Every event id of a listing, following each page's infinite-scroll link to the end (at most 100 pages)."""
    import html as html_mod

    resp = client.get(first_path)
    assert resp.status_code == 200, resp.text
    ids, text = listed(resp.text), resp.text
    for _ in range(100):
        m = NEXT.search(text)
        if not m:
            return ids
        page = client.get(html_mod.unescape(m.group(1)), headers={"HX-Request": "true"})
        assert page.status_code == 200, page.text
        ids += listed(page.text)
        text = page.text
    raise AssertionError("more than 100 pages")


def audit_actions(tenant_id: str) -> list[dict]:
    from vigint import audit

    return audit.entries(tenant_id, limit=200)
