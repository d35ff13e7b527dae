"""The alerts inbox on the real console entry point and the emulators: alerted events only, unacknowledged
first, acknowledging one or many at once (each audited), site limits, the viewer's 403."""

from __future__ import annotations

from tests.console.events_helpers import audit_actions, camera, client_as, listed, put_event, site, walk


def _sections(html: str) -> tuple[list[str], list[str]]:
    """(unacknowledged ids, recently acknowledged ids) of the inbox page."""
    cut = html.index('id="acked-h"')
    return listed(html[:cut]), listed(html[cut:])


def test_inbox_lists_unacknowledged_alerts_first(app, tenant):
    t = tenant.tenant_id
    new_alert = put_event(t, minutes_ago=1, alerted=True)
    not_alerted = put_event(t, minutes_ago=2, alerted=False)
    no_decision = put_event(t, minutes_ago=3)
    acked = put_event(t, minutes_ago=4, alerted=True, acked=True)
    old_alert = put_event(t, minutes_ago=5, alerted=True)
    c, _ = client_as(app, t, "op@example.com", role="operator")
    page = c.get("/alerts")
    assert page.status_code == 200
    unacked, recent = _sections(page.text)
    assert unacked == [new_alert, old_alert] and recent == [acked]
    assert not_alerted not in page.text and no_decision not in page.text
    assert 'name="event_id" value="%s"' % new_alert in page.text


def test_inbox_pages_over_cursors(app, tenant):
    t = tenant.tenant_id
    made = [put_event(t, minutes_ago=i, alerted=True) for i in range(30)]
    for i in range(10):
        put_event(t, minutes_ago=i + 0.5, alerted=True, acked=True)
    c, _ = client_as(app, t, "op@example.com", role="operator")
    got = walk(c, "/alerts")
    # walk() collects both sections of the first page and then the next pages of unacknowledged ones
    assert [e for e in got if e in made] == made and len(got) == len(set(got)) == 30 + 10


def test_acknowledge_many_at_once(app, tenant):
    from vigint import pipeline

    t = tenant.tenant_id
    a, b, keep = (put_event(t, minutes_ago=i, alerted=True) for i in range(3))
    c, csrf = client_as(app, t, "op@example.com", role="operator")
    resp = c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": [a, b], "comment": "Night patrol"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/alerts?notice=acknowledged-2"
    unacked, recent = _sections(c.get("/alerts").text)
    assert unacked == [keep] and recent == [a, b]
    for eid in (a, b):
        ack = pipeline.event_ref(t, eid).get().to_dict()["ack"]
        assert ack["acknowledged"] and ack["comment"] == "Night patrol" and ack["by"] == "op@example.com"
    entries = [e for e in audit_actions(t) if e["action"] == "event.acknowledge"]
    assert sorted(e["target"]["id"] for e in entries) == sorted([a, b])
    assert "2 alert(s) acknowledged" in c.get("/alerts?notice=acknowledged-2").text
    # nothing ticked; not an alert; a malformed id
    assert c.post("/alerts/ack", data={"csrf_token": csrf}).status_code == 400
    plain = put_event(t, minutes_ago=9)
    assert c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": [keep, plain]}).status_code == 404
    assert c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": ["../x"]}).status_code == 404
    assert "ack" not in pipeline.event_ref(t, keep).get().to_dict()  # nothing acknowledged when one is refused
    # without the CSRF token: refused
    assert c.post("/alerts/ack", data={"event_id": [keep]}).status_code == 403


def test_site_limits_in_the_inbox(app, tenant):
    from vigint import pipeline

    t = tenant.tenant_id
    site(t, "a", "Site A")
    site(t, "b", "Site B")
    camera(t, "cam-a", site_id="a")
    camera(t, "cam-b", site_id="b")
    mine = put_event(t, camera_id="cam-a", minutes_ago=1, alerted=True)
    theirs = put_event(t, camera_id="cam-b", minutes_ago=2, alerted=True)
    c, csrf = client_as(app, t, "guard@example.com", role="operator", site_ids=["a"])
    unacked, _ = _sections(c.get("/alerts").text)
    assert unacked == [mine] and theirs not in c.get("/alerts").text
    assert c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": [mine, theirs]}).status_code == 404
    assert "ack" not in pipeline.event_ref(t, mine).get().to_dict()
    assert c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": [mine]}).status_code == 303


def test_viewer_sees_the_inbox_without_buttons(app, tenant):
    t = tenant.tenant_id
    eid = put_event(t, alerted=True)
    c, csrf = client_as(app, t, "v@example.com", role="viewer")
    page = c.get("/alerts").text
    assert eid in page and 'type="checkbox"' not in page and "Acknowledge selected" not in page
    assert c.post("/alerts/ack", data={"csrf_token": csrf, "event_id": [eid]}).status_code == 403
