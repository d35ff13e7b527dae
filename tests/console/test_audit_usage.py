"""The audit log page (newest first, cursor pages, action prefix and time range filters), its CSV export
(attachment, injection escaping), and usage and cost (the month's counters, the split per camera, prices from
``vigint.prices``), on the real console entry point and the emulators."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from tests.console.conftest import sign_in

BASE = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.timezone.utc)  # a fixed day: entries are written with it


def _record(tenant_id, action, minutes, **kw):
    from vigint import audit

    return audit.record(tenant_id, actor=kw.pop("actor", {"kind": "cli", "id": "", "name": "ops"}), action=action,
                        target_kind=kw.pop("target_kind", "event"), target_id=kw.pop("target_id", "evt-1"),
                        details=kw.pop("details", None), now=BASE + dt.timedelta(minutes=minutes))


def _actions(html):
    return re.findall(r"<td data-label=\"Action\"><code>([a-z._]+)</code></td>", html)


def test_audit_log_newest_first_paginated_and_filtered(client, tenant, monkeypatch):
    from vigint.console.pages import audit_log

    t = tenant.tenant_id
    for i, action in enumerate(["user.invite", "event.hold", "user.update", "link.revoke", "user.disable",
                                "event.release", "user.enable"]):
        _record(t, action, minutes=i * 60 * 24)  # one a day from BASE
    sign_in(client, t, "boss@example.com", role="admin")  # adds its own user.signin entry, now
    monkeypatch.setattr(audit_log, "PAGE_SIZE", 3)
    monkeypatch.setattr(audit_log, "READ_CHUNK", 2)
    page = client.get("/settings/audit")
    assert page.status_code == 200
    assert _actions(page.text) == ["user.signin", "user.enable", "event.release"]
    seen = _actions(page.text)
    while (m := re.search(r'href="(/settings/audit\?[^"]*after=[^"]+)" rel="next"', page.text)):
        page = client.get(m.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
        seen += _actions(page.text)
    assert seen == ["user.signin", "user.enable", "event.release", "user.disable", "link.revoke", "user.update",
                    "event.hold", "user.invite"]
    # action prefix, across chunks and pages
    page = client.get("/settings/audit?action=user.")
    assert _actions(page.text) == ["user.signin", "user.enable", "user.disable"]
    nxt = re.search(r'href="(/settings/audit\?[^"]*after=[^"]+)" rel="next"', page.text).group(1)
    assert _actions(client.get(nxt.replace("&amp;", "&")).text) == ["user.update", "user.invite"]
    # time range: days in UTC (no tenant time zone), both ends inclusive
    day = lambda n: (BASE + dt.timedelta(days=n)).date().isoformat()  # noqa: E731
    page = client.get(f"/settings/audit?since={day(1)}&until={day(3)}")
    assert _actions(page.text) == ["link.revoke", "user.update", "event.hold"]
    page = client.get(f"/settings/audit?action=event.&since={day(1)}")
    assert _actions(page.text) == ["event.release", "event.hold"]
    # bad filters
    assert client.get("/settings/audit?since=yesterday").status_code == 400
    assert client.get(f"/settings/audit?since={day(3)}&until={day(1)}").status_code == 400
    assert client.get("/settings/audit?action=%3Cscript%3E").status_code == 400
    assert client.get("/settings/audit?after=../../x").status_code == 400


def test_audit_times_in_the_tenant_zone(client, tenant):
    from vigint import pipeline

    pipeline.tenant_ref(tenant.tenant_id).update({"timezone": "Asia/Tokyo"})
    _record(tenant.tenant_id, "event.hold", minutes=0)
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    body = client.get("/settings/audit?action=event.").text
    assert "2026-03-10 21:00:00 JST" in body and "(day, Asia/Tokyo)" in body
    # a day in Tokyo: 2026-03-10 21:00 JST is inside 2026-03-10, 2026-03-11 does not hold it
    assert _actions(client.get("/settings/audit?action=event.&since=2026-03-11").text) == []
    assert _actions(client.get("/settings/audit?action=event.&until=2026-03-10").text) == ["event.hold"]


def test_audit_csv_export_and_injection_escaping(client, tenant):
    t = tenant.tenant_id
    _record(t, "event.hold", 0, actor={"kind": "api_key", "id": "k1", "name": "=HYPERLINK(\"http://evil\")"},
            target_id="+cmd|' /C calc'!A0", details={"reason": "@SUM(1+1)", "note": "-2+3"})
    _record(t, "link.revoke", 1, target_kind="link", target_id="plain-id", details={"count": 2})
    sign_in(client, t, "boss@example.com", role="admin")
    resp = client.get("/settings/audit.csv?action=")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    disp = resp.headers["Content-Disposition"]
    assert disp.startswith("attachment;") and f"audit-{t}-" in disp and disp.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert rows[0] == ["at", "action", "actor_kind", "actor_id", "actor_name", "target_kind", "target_id", "details"]
    body = {r[1]: r for r in rows[1:]}
    assert set(body) == {"event.hold", "link.revoke", "user.signin"}
    hold = body["event.hold"]
    assert hold[0] == "2026-03-10T12:00:00Z"
    assert hold[4] == "'=HYPERLINK(\"http://evil\")" and hold[6] == "'+cmd|' /C calc'!A0"
    assert hold[7].startswith("{") and '"@SUM(1+1)"' in hold[7]
    assert body["link.revoke"][6] == "plain-id" and body["link.revoke"][7] == '{"count": 2}'
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), row
    # filtered export; the export itself is audited
    rows = list(csv.reader(io.StringIO(client.get("/settings/audit.csv?action=link.").text)))
    assert [r[1] for r in rows[1:]] == ["link.revoke"]
    page = client.get("/settings/audit?action=audit.")
    assert _actions(page.text) == ["audit.export", "audit.export"]


def test_csv_cell():
    from vigint.console.pages.audit_log import csv_cell

    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "a=b", "", None, 5)] == [
        "'=1+1", "'+1", "'-1", "'@x", "'\tx", "'\rx", "a=b", "", "", "5"]


def test_audit_details_are_escaped(client, tenant):
    _record(tenant.tenant_id, "event.hold", 0, actor={"kind": "cli", "id": "", "name": "<img src=x onerror=1>"},
            details={"reason": "<script>alert(1)</script>"})
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    body = client.get("/settings/audit").text
    assert "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=1&gt;" in body


def test_usage_month_totals_per_camera_and_prices(client, tenant, fenv):
    from vigint import pipeline, prices, usage

    now = dt.datetime.now(dt.timezone.utc)
    month = usage.month_key(now)
    a = fenv.ingested_event(tenant.creds, camera_id="lobby")
    b = fenv.ingested_event(tenant.creds, camera_id="lobby")
    c = fenv.ingested_event(tenant.creds, camera_id="yard")
    for ev, tokens in ((a, 6000), (b, 4000), (c, 1500)):
        pipeline.event_ref(tenant.tenant_id, ev["event_id"]).update({"analysis.total_tokens": tokens})
    usage.add(tenant.tenant_id, now=now, gemini_tokens=11500)
    counted = usage.get(tenant.tenant_id, month)
    assert counted["events"] == 3
    sign_in(client, tenant.tenant_id, "boss@example.com", role="admin")
    page = client.get("/settings/usage")
    assert page.status_code == 200
    body = page.text
    assert f'<option value="{month}" selected>' in body
    assert '<p class="big">3</p>' in body and '<p class="big">11,500</p>' in body
    expected_gemini = prices.gemini_usd(11500)
    assert f"about ${expected_gemini:.4f}" in body or f"about ${expected_gemini:.2f}" in body
    rows = re.findall(r'<tr><td data-label="Camera" class="wrap">([a-z]+)[^<]*</td><td data-label="Events">([\d,]+)</td>'
                      r'<td data-label="Clip storage">[^<]+</td><td data-label="Gemini tokens">([\d,]+)</td>', body)
    assert rows == [("lobby", "2", "10,000"), ("yard", "1", "1,500")]
    total_bytes = sum(tenant_clip_bytes(tenant, ev) for ev in (a, b, c))
    assert total_bytes > 0 and counted["clip_bytes"] == total_bytes
    assert f"{total_bytes:,} bytes" in body
    assert "ai.google.dev/gemini-api/docs/pricing" in body and prices.PRICES_READ_ON in body
    # another month: zeros; a bad month: 400
    year, mon = int(month[:4]), int(month[5:])
    older = f"{year - 1:04d}-{mon:02d}"
    other = client.get(f"/settings/usage?month={older}").text
    assert f'<option value="{older}" selected>' in other and '<p class="big">0</p>' in other
    assert f"No events in {older}." in other
    assert client.get("/settings/usage?month=2026-13").status_code == 400
    assert client.get("/settings/usage?month=%3Cx%3E").status_code == 400


def tenant_clip_bytes(tenant, ev):
    from vigint import pipeline

    doc = pipeline.event_ref(tenant.tenant_id, ev["event_id"]).get().to_dict()
    return (doc.get("clip") or {}).get("bytes") or 0


def test_prices_blended_rate_is_between_input_and_output():
    from vigint import prices

    rate = prices.gemini_usd_per_million_blended()
    assert prices.GEMINI_INPUT_USD_PER_MILLION < rate < prices.GEMINI_OUTPUT_USD_PER_MILLION
    assert abs(prices.gemini_usd(1_000_000) - rate) < 1e-12
    assert abs(prices.storage_usd_per_month(prices.GIB) - prices.STORAGE_USD_PER_GIB_MONTH) < 1e-12
