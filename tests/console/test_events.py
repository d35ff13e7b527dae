"""The events timeline, the event page and its actions, and the sites overview, on the real console entry point
and the emulators: filters, paging over cursors (also for a user limited to sites whose cameras take several
``in`` queries), the newer-than fragment, the player's state.json and playlist, acknowledgement with a comment,
share links that the link page serves until revoked, clip requests queued for the device, the viewer's 403s,
cross-tenant and cross-site 404s on every route, stored XSS."""

from __future__ import annotations

import datetime as dt
import html as html_mod
import re

import pytest

from tests.console.events_helpers import (alert_it, audit_actions, camera, client_as, listed, put_event, site,
                                          walk)
from tests.functions.conftest import FIXTURE_START


def _ids_in_order(tenant_id, ids):
    """``ids`` in the listing's order (start_time DESC, then id DESC), from their documents."""
    from vigint import pipeline

    docs = {i: pipeline.event_ref(tenant_id, i).get().to_dict() for i in ids}
    return sorted(ids, key=lambda i: (docs[i]["start_time"], i), reverse=True)


# ------------------------------------------------------------------------------------------ listing


def test_filters(app, tenant):
    t = tenant.tenant_id
    site(t, "north", "North", "America/New_York")
    camera(t, "lobby", site_id="north")
    camera(t, "yard")
    person = put_event(t, camera_id="lobby", minutes_ago=1, labels=["person"], zones=["door"], threat_level=2,
                       alerted=True)
    car = put_event(t, camera_id="yard", minutes_ago=2, labels=["car"], severity="detection", threat_level=0)
    both = put_event(t, camera_id="lobby", minutes_ago=3, labels=["person", "car"], zones=["door", "drive"],
                     threat_level=3, alerted=True, acked=True)
    health = put_event(t, camera_id="yard", minutes_ago=4, labels=["camera_offline"], kind="camera_health",
                       threat_level=2)
    c, _ = client_as(app, t, "owner@example.com")

    def ids(qs=""):
        resp = c.get("/events" + qs)
        assert resp.status_code == 200, resp.text
        return listed(resp.text)

    assert ids() == [person, car, both, health]
    assert ids("?camera_id=yard") == [car, health]
    assert ids("?site=north") == [person, both]
    assert ids("?label=car") == [car, both]
    assert ids("?zone=door") == [person, both]
    assert ids("?zone=drive&label=car") == [both]  # zone in memory with a label
    assert ids("?severity=detection") == [car]
    assert ids("?min_threat_level=2") == [person, both, health]
    assert ids("?acknowledged=yes") == [both]
    assert ids("?acknowledged=no") == [person, car, health]
    # Time range in the site's zone (New York): the person event starts at FIXTURE_START - 1 min (UTC).
    ny = (FIXTURE_START - dt.timedelta(minutes=1)).astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    since = ny.strftime("%Y-%m-%dT%H:%M")
    until = (ny + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"?site=north&since={since}&until={until}") == [person]
    page = c.get(f"/events?site=north&since={since}").text
    assert "America/New_York" in page and f'value="{since}"' in page
    assert c.get("/events?since=yesterday").status_code == 400
    assert c.get("/events?min_threat_level=9").status_code == 400
    assert c.get("/events?cursor=not-a-cursor").status_code == 400


def test_paging_follows_cursors_and_matches_the_tenant_api(app, tenant):
    from vigint.console import access
    from vigint.console.pages import events
    from vigint.tenant_api import events as events_api
    from vigint.tenant_api import models as m

    t = tenant.tenant_id
    made = [put_event(t, camera_id="lobby" if i % 2 else "yard", minutes_ago=i // 3) for i in range(60)]
    c, _ = client_as(app, t, "owner@example.com")
    got = walk(c, "/events")
    assert len(got) == 60 and len(set(got)) == 60 and got == _ids_in_order(t, made)
    assert len(listed(c.get("/events").text)) == events.PAGE_SIZE
    # the same order as the tenant API's own listing
    from vigint.console import users

    user = users.get_user(t, users.user_id_of("owner@example.com"))

    class Req:  # what access.api needs of a console request
        pass

    req = Req()
    req.user, req.now = user, dt.datetime.now(dt.timezone.utc)
    api_ids, cursor = [], None
    while True:
        page = access.api(req, events_api.list_events, query=m.EventsQuery(limit=100, cursor=cursor))
        api_ids += [e.event_id for e in page.events]
        cursor = page.next_cursor
        if not cursor:
            break
    assert got == api_ids


def test_site_limited_user_pages_over_many_cameras(app, tenant, monkeypatch):
    """35 cameras in the user's site (two ``in`` queries of at most 30) and 3 in another: every page holds only
    the site's events, none is skipped or repeated, also when an in-memory filter stops scans early."""
    from vigint.tenant_api import events as events_api

    t = tenant.tenant_id
    site(t, "a", "Site A")
    site(t, "b", "Site B")
    mine, theirs = [], []
    for n in range(35):
        camera(t, f"a-cam-{n:02d}", site_id="a")
    for n in range(3):
        camera(t, f"b-cam-{n}", site_id="b")
    for i in range(45):
        cam = f"a-cam-{(i * 7) % 35:02d}"
        mine.append(put_event(t, camera_id=cam, minutes_ago=i * 0.5, threat_level=i % 4))
    for i in range(12):
        theirs.append(put_event(t, camera_id=f"b-cam-{i % 3}", minutes_ago=i * 0.7, threat_level=3))
    c, _ = client_as(app, t, "guard@example.com", role="operator", site_ids=["a"])
    got = walk(c, "/events")
    assert got == _ids_in_order(t, mine)
    # in-memory filter with a tiny scan limit: pages may be short, never wrong, never the end too early
    monkeypatch.setattr(events_api, "MAX_SCAN", 7)
    high = [e for i, e in enumerate(mine) if i % 4 >= 2]
    assert walk(c, "/events?min_threat_level=2") == _ids_in_order(t, high)
    # an owner filtering on site A sees the same, and site B's cameras never show for the guard
    owner, _ = client_as(app, t, "owner@example.com")
    monkeypatch.setattr(events_api, "MAX_SCAN", 500)
    assert walk(owner, "/events?site=a") == _ids_in_order(t, mine)
    assert walk(owner, "/events?site=b") == _ids_in_order(t, theirs)
    assert c.get("/events?site=b").status_code == 404
    assert c.get("/events?camera_id=b-cam-0").status_code == 404
    assert c.get("/events?camera_id=no-such-cam").status_code == 404


def test_newer_fragment_prepends_new_events(app, tenant):
    t = tenant.tenant_id
    first = put_event(t, minutes_ago=5)
    c, _ = client_as(app, t, "owner@example.com")
    page = c.get("/events?label=person").text
    poll = html_mod.unescape(re.search(r'id="events-poll"[^>]*hx-get="([^"]+)"', page).group(1))
    assert "label=person" in poll and 'hx-trigger="every 5s"' in page
    assert c.get(poll, headers={"HX-Request": "true"}).status_code == 204
    newer = put_event(t, minutes_ago=1)
    put_event(t, minutes_ago=0.5, labels=["car"])  # does not match the filter
    resp = c.get(poll, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and listed(resp.text) == [newer] and first not in resp.text
    assert 'hx-swap-oob="true"' in resp.text
    poll2 = html_mod.unescape(re.search(r'id="events-poll"[^>]*hx-get="([^"]+)"', resp.text).group(1))
    assert poll2 != poll and c.get(poll2, headers={"HX-Request": "true"}).status_code == 204
    # an empty listing polls from a little before now
    empty = c.get("/events?label=dog").text
    poll3 = html_mod.unescape(re.search(r'id="events-poll"[^>]*hx-get="([^"]+)"', empty).group(1))
    dog = put_event(t, start=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20), labels=["dog"])
    assert listed(c.get(poll3, headers={"HX-Request": "true"}).text) == [dog]


# ------------------------------------------------------------------------------------------ event page


def test_event_page_player_state_and_view_audit(app, tenant, fenv):
    t = tenant.tenant_id
    camera(t, "lobby", name="Front lobby")
    ev = fenv.ingested_event(tenant.creds)
    c, _ = client_as(app, t, "viewer@example.com", role="viewer")
    page = c.get(f"/events/{ev['event_id']}")
    assert page.status_code == 200, page.text
    assert 'data-mode="mp4"' in page.text and 'data-credentials="same-origin"' in page.text
    assert f'data-state="/events/{ev["event_id"]}/state.json"' in page.text and "Front lobby" in page.text
    assert "/assets/player.js" in page.text and 'id="clip"' in page.text
    views = [a for a in audit_actions(t) if a["action"] == "event.view"]
    assert views and views[0]["target"]["id"] == ev["event_id"] and views[0]["actor"]["kind"] == "user"
    st = c.get(f"/events/{ev['event_id']}/state.json")
    assert st.status_code == 200 and st.headers["Content-Type"].startswith("application/json")
    data = st.get_json()
    assert data["mode"] == "mp4" and data["clip_url"] and data["camera_id"] == "lobby"
    assert c.get(f"/events/{ev['event_id']}/playlist.m3u8").status_code == 404  # no segments (version 1)
    dl = c.get(f"/events/{ev['event_id']}/download/0")
    assert dl.status_code == 302 and "clip.mp4" in dl.headers["Location"]
    assert c.get(f"/events/{ev['event_id']}/download/1").status_code == 404
    # the steps: first seen, ingested; detections listed
    assert "First seen" in page.text and "Ingested" in page.text and "person" in page.text
    # a viewer sees no action forms
    for action in ("/ack", "/share", "/request-clip", "/links/revoke"):
        assert f'action="/events/{ev["event_id"]}{action}"' not in page.text


def test_event_page_shows_detections_and_zone_entries_on_one_timeline(app, tenant, fenv):
    """An event ingested with zone entries/exits (one zone name hostile): one timeline, in time order (the
    detection at +1 s between the entry at +0.5 s and the exit at +1.5 s), in the site's time zone, escaped."""
    import zoneinfo

    t = tenant.tenant_id
    site(t, "hq", "Headquarters", time_zone="America/New_York")
    camera(t, "lobby", name="Front lobby", site_id="hq")
    evil = '<img src=x onerror=alert(1)>'
    at = lambda s: (FIXTURE_START + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    zone_events = [{"zone": "driveway", "track_id": 3, "label": "person", "kind": "enter", "time": at(0.5)},
                   {"zone": evil, "track_id": 3, "label": "person", "kind": "enter", "time": at(1)},
                   {"zone": "driveway", "track_id": 3, "label": "person", "kind": "exit", "time": at(1.5)},
                   {"zone": evil, "track_id": 3, "label": "person", "kind": "exit", "time": at(4)}]
    ev = fenv.ingested_event(tenant.creds, zones=["driveway", evil], zone_events=zone_events)  # the real ingest
    c, _ = client_as(app, t, "viewer@example.com", role="viewer")
    page = c.get(f"/events/{ev['event_id']}")
    assert page.status_code == 200, page.text
    body = page.text[page.text.index('id="timeline"'):]
    body = body[:body.index("</table>")]
    rows = re.findall(r'<tr class="tl-(detection|enter|exit)">(.*?)</tr>', body, re.S)
    kinds = [k for k, _ in rows]
    assert kinds == ["enter", "detection", "enter", "exit", "exit"], kinds
    cells = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for _, r in rows]
    ny = zoneinfo.ZoneInfo("America/New_York")
    for (time_text, offset, what, detail), secs in zip(cells, [0.5, 1, 1, 1.5, 4]):
        local = (FIXTURE_START + dt.timedelta(seconds=secs)).astimezone(ny)
        assert time_text == f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}", time_text
        assert offset == f"+{secs:.1f} s"
    assert cells[0][2:] == ["Entered zone driveway", "person #3"]
    assert cells[1][2] == "person detected" and cells[1][3].startswith("score 0.87")
    assert cells[2][2] == f"Entered zone {html_mod.escape(evil, quote=True)}"
    assert cells[3][2] == "Left zone driveway" and cells[4][2].startswith("Left zone")
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "not the times they entered" not in page.text and "does not report when" not in page.text
    # an event of a device that does not send zone_events: its zones, and a note saying why there are no times
    old = fenv.ingested_event(tenant.creds, zones=["driveway"])
    page = c.get(f"/events/{old['event_id']}").text
    assert 'class="tl-enter"' not in page and 'class="tl-detection"' in page
    assert "Zones: driveway. This device does not report when objects entered or left them." in page


def test_playlist_of_a_running_event(app, tenant):
    """A schema version 2 event still recording: the playlist has its stored segments, signed, and no end."""
    from vigint import pipeline
    from vigint.schema import event_prefix

    t = tenant.tenant_id
    eid = put_event(t)
    prefix = event_prefix(t, "nuc-1", eid)
    ref = pipeline.event_ref(t, eid)
    ref.update({"schema_version": 2, "ended": False, "phase": "update", "seq": 2})
    for i in range(2):
        ref.collection("segments").document(f"{i:05d}").set(
            {"index": i, "object": f"{prefix}segments/{i:05d}.ts", "duration_s": 2.0, "bytes": 10})
    c, _ = client_as(app, t, "owner@example.com")
    resp = c.get(f"/events/{eid}/playlist.m3u8")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    body = resp.text
    assert body.count("#EXTINF:2.000,") == 2 and "segments/00001.ts" in body and "X-Goog-Signature" in body
    assert "#EXT-X-ENDLIST" not in body
    page = c.get(f"/events/{eid}").text
    assert 'data-mode="hls"' in page and "/assets/hls.light.min.js" in page and 'id="video"' in page
    ref.update({"ended": True, "phase": "end", "segment_count": 2})
    assert "#EXT-X-ENDLIST" in c.get(f"/events/{eid}/playlist.m3u8").text


def test_acknowledge_with_a_comment(app, tenant, fenv):
    t = tenant.tenant_id
    ev = fenv.ingested_event(tenant.creds)
    eid = ev["event_id"]
    c, csrf = client_as(app, t, "op@example.com", role="operator")
    assert c.post(f"/events/{eid}/ack", data={"csrf_token": csrf, "comment": "x"}).status_code == 404  # no alert
    alert_it(t, eid)
    page = c.get(f"/events/{eid}").text
    assert f'action="/events/{eid}/ack"' in page
    resp = c.post(f"/events/{eid}/ack", data={"csrf_token": csrf, "comment": "  Delivery driver, known.  "})
    assert resp.status_code == 303 and resp.headers["Location"] == f"/events/{eid}?notice=acknowledged"
    from vigint import pipeline

    ack = pipeline.event_ref(t, eid).get().to_dict()["ack"]
    assert ack["acknowledged"] and ack["by"] == "op@example.com" and ack["comment"] == "Delivery driver, known."
    page = c.get(f"/events/{eid}?notice=acknowledged").text
    assert "Delivery driver, known." in page and "Acknowledged by op@example.com" in page
    # a second acknowledgement keeps the first
    again = c.post(f"/events/{eid}/ack", data={"csrf_token": csrf, "comment": "other"})
    assert again.headers["Location"].endswith("notice=already")
    assert pipeline.event_ref(t, eid).get().to_dict()["ack"]["comment"] == "Delivery driver, known."
    acks = [a for a in audit_actions(t) if a["action"] == "event.acknowledge"]
    assert len(acks) == 1 and acks[0]["details"]["comment"] == "Delivery driver, known."
    assert acks[0]["actor"] == {"kind": "user", "id": acks[0]["actor"]["id"], "name": "op@example.com"}


def test_share_link_is_served_until_revoked(app, tenant, fenv):
    from vigint import video_link

    t = tenant.tenant_id
    ev = fenv.ingested_event(tenant.creds)
    eid = ev["event_id"]
    c, csrf = client_as(app, t, "op@example.com", role="operator")
    resp = c.post(f"/events/{eid}/share", data={"csrf_token": csrf, "recipient": "Police desk", "ttl_seconds": "3600"})
    assert resp.status_code == 201, resp.text
    url = re.search(r'id="shared-url" readonly value="([^"]+)"', resp.text).group(1)
    path = url[url.index("/v/"):]
    assert video_link.handle(method="GET", path=path)[1] == 200
    page = c.get(f"/events/{eid}").text
    assert "Police desk" in page and url not in page  # shown once: the token is not on later pages
    assert "1×" in page  # the link page's view is counted
    lid = re.search(rf'action="/events/{eid}/links/([0-9a-f]{{64}})/revoke"', page).group(1)
    assert c.post(f"/events/{eid}/links/{lid}/revoke", data={"csrf_token": csrf}).status_code == 303
    assert video_link.handle(method="GET", path=path)[1] == 410
    assert video_link.handle(method="GET", path=path + "/state.json")[1] == 410
    # revoke all: a second link
    resp = c.post(f"/events/{eid}/share", data={"csrf_token": csrf, "recipient": "Insurer", "ttl_seconds": "86400"})
    url2 = re.search(r'id="shared-url" readonly value="([^"]+)"', resp.text).group(1)
    assert c.post(f"/events/{eid}/links/revoke", data={"csrf_token": csrf}).status_code == 303
    assert video_link.handle(method="GET", path=url2[url2.index("/v/"):])[1] == 410
    actions = [a["action"] for a in audit_actions(t)]
    assert actions.count("event.share") == 2 and actions.count("link.revoke") == 2
    share = [a for a in audit_actions(t) if a["action"] == "event.share"][-1]
    assert share["details"]["recipient"] == "Police desk" and share["actor"]["kind"] == "user"
    assert url.split("/v/")[1] not in str(audit_actions(t))  # never the token
    bad = c.post(f"/events/{eid}/share", data={"csrf_token": csrf, "recipient": "", "ttl_seconds": "3600"})
    assert bad.status_code == 400
    assert c.post(f"/events/{eid}/share", data={"csrf_token": csrf, "recipient": "x",
                                                "ttl_seconds": "99999999"}).status_code == 400
    assert c.post(f"/events/{eid}/links/{'0' * 64}/revoke", data={"csrf_token": csrf}).status_code == 404


def test_request_clip_queues_a_command(app, tenant, fenv):
    from vigint import pipeline

    t = tenant.tenant_id
    ev = fenv.ingested_event(tenant.creds)
    c, csrf = client_as(app, t, "op@example.com", role="operator")
    resp = c.post(f"/events/{ev['event_id']}/request-clip", data={"csrf_token": csrf, "before_s": "15",
                                                                 "after_s": "20"})
    assert resp.status_code == 303, resp.text
    cmds = [s.to_dict() for s in pipeline.tenant_ref(t).collection("devices").document("nuc-1")
            .collection("commands").stream()]
    assert len(cmds) == 1 and cmds[0]["type"] == "request_clip" and cmds[0]["status"] == "pending"
    p = cmds[0]["params"]
    start = FIXTURE_START - dt.timedelta(seconds=15)
    end = FIXTURE_START + dt.timedelta(seconds=2 + 20)
    assert p == {"camera_id": "lobby", "start": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "end": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    entry = [a for a in audit_actions(t) if a["action"] == "event.request_clip"][0]
    assert entry["details"]["camera_id"] == "lobby" and entry["target"]["id"] == ev["event_id"]
    # the tenant API's limits hold: at most 600 s
    too_long = c.post(f"/events/{ev['event_id']}/request-clip", data={"csrf_token": csrf, "before_s": "600",
                                                                     "after_s": "600"})
    assert too_long.status_code == 400 and "600" in too_long.text


def test_viewer_posts_are_403(app, tenant, fenv):
    t = tenant.tenant_id
    ev = fenv.ingested_event(tenant.creds)
    alert_it(t, ev["event_id"])
    c, csrf = client_as(app, t, "v@example.com", role="viewer")
    eid = ev["event_id"]
    for path in (f"/events/{eid}/ack", f"/events/{eid}/share", f"/events/{eid}/links/revoke",
                 f"/events/{eid}/links/{'a' * 64}/revoke", f"/events/{eid}/request-clip", "/alerts/ack"):
        resp = c.post(path, data={"csrf_token": csrf, "event_id": eid, "recipient": "x", "ttl_seconds": "3600"})
        assert resp.status_code == 403, path
    from vigint import pipeline

    assert "ack" not in pipeline.event_ref(t, eid).get().to_dict()
    assert not any(a["action"] in ("event.acknowledge", "event.share") for a in audit_actions(t))


def _routes(eid):
    gets = [f"/events/{eid}", f"/events/{eid}/state.json", f"/events/{eid}/playlist.m3u8",
            f"/events/{eid}/download/0"]
    posts = [f"/events/{eid}/ack", f"/events/{eid}/share", f"/events/{eid}/links/revoke",
             f"/events/{eid}/links/{'b' * 64}/revoke", f"/events/{eid}/request-clip"]
    return gets, posts


def test_other_tenant_and_other_site_are_404_everywhere(app, tenant, fenv):
    t = tenant.tenant_id
    site(t, "a", "Site A")
    site(t, "b", "Site B")
    camera(t, "lobby", site_id="b")  # the ingested event's camera is of site B
    ev = fenv.ingested_event(tenant.creds)
    alert_it(t, ev["event_id"])
    v2 = put_event(t, camera_id="lobby")
    from vigint import pipeline

    pipeline.event_ref(t, v2).update({"schema_version": 2, "ended": False})
    other = fenv.provision(recipients=["x@example.com"])
    stranger, s_csrf = client_as(app, other["tenant_id"], "owner@example.com", role="owner")
    guard, g_csrf = client_as(app, t, "guard@example.com", role="operator", site_ids=["a"])
    missing_body = None
    for c, csrf in ((stranger, s_csrf), (guard, g_csrf)):
        for eid in (ev["event_id"], v2, "evt_DOESNOTEXIST0000"):
            gets, posts = _routes(eid)
            for path in gets:
                resp = c.get(path)
                assert resp.status_code == 404, (path, resp.status_code)
                if path.endswith("DOESNOTEXIST0000"):
                    missing_body = resp.text
            for path in posts:
                resp = c.post(path, data={"csrf_token": csrf, "comment": "x", "recipient": "x",
                                          "ttl_seconds": "3600", "before_s": "1", "after_s": "1"})
                assert resp.status_code == 404, (path, resp.status_code)
        resp = c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": ev["event_id"]})
        assert resp.status_code == 404
    # the same page for a hidden event as for a missing one
    assert guard.get(f"/events/{ev['event_id']}").text == missing_body
    assert "ack" not in pipeline.event_ref(t, ev["event_id"]).get().to_dict()
    assert not [s for s in pipeline.tenant_ref(t).collection("devices").document("nuc-1")
                .collection("commands").stream()]
    # and the guard's listings do not show it
    assert ev["event_id"] not in guard.get("/events").text and ev["event_id"] not in guard.get("/alerts").text


def test_stored_text_is_escaped(app, tenant, fenv):
    t = tenant.tenant_id
    evil = '<script>alert(1)</script>'
    camera(t, "lobby", name=evil)
    ev = fenv.ingested_event(tenant.creds)
    alert_it(t, ev["event_id"])
    put_event(t, camera_id="lobby", labels=[evil], title=evil, zones=[evil], alerted=True)
    c, csrf = client_as(app, t, "op@example.com", role="operator")
    c.post(f"/events/{ev['event_id']}/share", data={"csrf_token": csrf, "recipient": evil, "ttl_seconds": "3600"})
    c.post(f"/events/{ev['event_id']}/ack", data={"csrf_token": csrf, "comment": evil})
    bad = c.get("/events?label=" + evil)  # not a label: the field is named, the value is not echoed raw
    assert bad.status_code == 400 and "<script>alert" not in bad.text and "label" in bad.text
    for path in ("/", "/events", "/alerts", f"/events/{ev['event_id']}"):
        resp = c.get(path)
        assert resp.status_code == 200, path
        assert "<script>alert" not in resp.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in resp.text, path
        assert " style=" not in resp.text and "<script>" not in resp.text


# ------------------------------------------------------------------------------------------ overview


def test_overview_tiles(app, tenant, fenv):
    from vigint import pipeline

    t = tenant.tenant_id
    site(t, "zulu", "Zulu depot", "Europe/Paris")
    site(t, "alpha", "Alpha office")
    camera(t, "lobby", site_id="zulu", name="Lobby")
    camera(t, "gate", site_id="alpha", name="Gate", device_id="nuc-2")
    camera(t, "shed", name="Shed")
    fenv.provision(t, device_id="nuc-2")
    now = dt.datetime.now(dt.timezone.utc)
    pipeline.tenant_ref(t).collection("devices").document("nuc-1").update({
        "last_heartbeat_at": now - dt.timedelta(seconds=30),
        "last_heartbeat": {"version": "1", "spool": {"items": 4},
                           "cameras": {"lobby": {"health": {"state": "ok", "alerts": {"camera_tampered": 1}}}}}})
    pipeline.tenant_ref(t).collection("devices").document("nuc-2").update(
        {"last_heartbeat_at": now - dt.timedelta(hours=1)})
    ev = fenv.ingested_event(tenant.creds)
    alert_it(t, ev["event_id"])
    put_event(t, camera_id="lobby", minutes_ago=10, alerted=True, acked=True)
    put_event(t, camera_id="lobby", minutes_ago=20, alerted=True)
    c, _ = client_as(app, t, "owner@example.com")
    page = c.get("/").text
    heads = re.findall(r'<h2 id="site-\d+">([^<]+)', page)
    assert [h.strip() for h in heads] == ["Alpha office", "Zulu depot", "No site"]
    lobby = page[page.index("Zulu depot"):page.index("No site")]
    assert 'href="/events?camera_id=lobby"' in lobby and "Online" in lobby and "2 unacknowledged" in lobby
    assert "Tampered" in lobby and "4 item(s) waiting" in lobby and "snapshot.jpg" in lobby
    assert "Europe/Paris" in lobby
    gate = page[page.index("Alpha office"):page.index("Zulu depot")]
    assert "Offline" in gate and "No events yet" in gate
    # a user of site alpha sees only its tile
    g, _ = client_as(app, t, "g@example.com", role="viewer", site_ids=["alpha"])
    limited = g.get("/").text
    assert "Gate" in limited and "Lobby" not in limited and "No site" not in limited


@pytest.mark.parametrize("path", ["/events/page", "/events/newer"])
def test_fragments_need_a_session(client, path):
    resp = client.get(path, headers={"HX-Request": "true"})
    assert resp.status_code == 401 and resp.headers["HX-Redirect"] == "/signin"
