"""The link in the alert email, opened in a real browser (Debian's Chromium, driven by Playwright), plays
the clip: the page loads, the <video> decodes H.264 and its playback position advances."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.conftest import synthetic_event, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _remuxed_event(spool, tenant_id: str, device_id: str, camera_id: str, tmp_path, vtest_video):
    """An event whose clip is 4 s of a camera-like H.264 stream remuxed by the edge's ``RemuxWriter`` (the clip
    of every H.264 camera), with a snapshot of its first frame."""
    from datetime import datetime, timedelta, timezone

    from vigint_edge.bench import make_h264
    from vigint_edge.capture import VideoSource
    from vigint_edge.clip import RemuxWriter, encode_snapshot
    from vigint_edge.config import CameraConfig
    from vigint_edge.event_model import ClipRef, EdgeEvent, SnapshotRef, new_event_id, object_name

    stream = make_h264(vtest_video, tmp_path / "camera.mp4", seconds=6)
    start = datetime.now(timezone.utc) - timedelta(seconds=4)
    event_id = new_event_id(start)
    writer, snap = None, None
    for frame in VideoSource(CameraConfig(id=camera_id, source=str(stream), realtime=False), max_frames=40).frames():
        if writer is None:
            writer, snap = RemuxWriter(tmp_path / f"{event_id}.mp4", frame.stream), encode_snapshot(frame.image)
        writer.write_packets(frame.packets)
    info = writer.close()
    event = EdgeEvent(
        event_id=event_id, tenant_id=tenant_id, device_id=device_id, camera_id=camera_id, kind="detection",
        severity="alert", labels=["person"], start_time=start, end_time=start + timedelta(seconds=4),
        top_score=0.9, max_count={"person": 1},
        clip=ClipRef.from_info(info, object_name(tenant_id, device_id, event_id, "clip.mp4")),
        snapshot=SnapshotRef.for_jpeg(snap, object_name(tenant_id, device_id, event_id, "snapshot.jpg"), start),
    )
    spool.put(event, info.path, snap)
    return event


@pytest.mark.parametrize("clip", ["encoded", "remuxed"])
def test_the_emailed_link_plays_the_clip_in_chromium(stack, tmp_path, vtest_video, clip):
    """``encoded``: a clip the edge encoded with libx264 (320x240 noise); ``remuxed``: a camera's own H.264
    packets copied into mp4 (768x576 vtest)."""
    from playwright.sync_api import sync_playwright

    from infra.local.smtp_sink import read_messages
    from tests.e2e.test_delivery_guarantees import _deliverer
    from vigint_edge.spool import Spool

    domain = f"browser-{clip}.example"
    creds = stack.provision(f"browser-{clip}", "nuc-5", recipients=[f"viewer@{domain}"])
    spool = Spool(tmp_path / "spool", max_bytes=100 * 1024**2)
    if clip == "encoded":
        synthetic_event(spool, f"browser-{clip}", "nuc-5", "porch", tmp_path, seconds=4)
        width = 320
    else:
        _remuxed_event(spool, f"browser-{clip}", "nuc-5", "porch", tmp_path, vtest_video)
        width = 768
    deliverer, _ = _deliverer(stack, creds, spool)
    assert deliverer.deliver_pending() == 1
    mail = wait_for(lambda: [m for m in read_messages(stack.maildir) if domain in m["To"]],
                    timeout=60, what="the alert email")[0]
    link = re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", mail.get_body(("plain",)).get_content()).group(0)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            # The page's CSP forbids eval; the test's own probes need it, the page's scripts do not.
            page = browser.new_context(bypass_csp=True).new_page()
            assert page.goto(link).status == 200
            page.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=20000)
            page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
            page.wait_for_function("() => document.querySelector('video').currentTime > 0.5", timeout=20000)
            state = page.evaluate("() => { const v = document.querySelector('video');"
                                  " return {w: v.videoWidth, d: v.duration, error: v.error && v.error.code}; }")
        finally:
            browser.close()
    assert state["error"] is None
    assert state["w"] == width and 3.5 <= state["d"] <= 4.5
