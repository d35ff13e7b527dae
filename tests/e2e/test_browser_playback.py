"""The link in the alert email, opened in a real browser (Debian's Chromium, driven by Playwright), plays
the clip: the page loads, the <video> decodes H.264 and its playback position advances."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.e2e.conftest import synthetic_event, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@contextlib.contextmanager
def _chromium_page(**context_options) -> Iterator:
    """A page of a new headless Chromium (Debian's, driven by Playwright) in a new browser context made with
    ``context_options`` (``browser.new_context``); the browser is closed on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            yield browser.new_context(**context_options).new_page()
        finally:
            browser.close()


def _remuxed_event(spool, tenant_id: str, device_id: str, camera_id: str, tmp_path, vtest_video):
    """An event whose clip is 4 s of a camera-like H.264 stream remuxed by the edge's ``RemuxWriter`` (the clip
    of every H.264 camera), with a snapshot of its first frame."""
    from vigint_edge.bench import make_h264
    from vigint_edge.capture.source import VideoSource
    from vigint_edge.recording.clip import RemuxWriter, encode_snapshot
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
    from infra.local.smtp_sink import read_messages
    from tests.e2e.test_delivery_guarantees import _deliverer
    from vigint_edge.delivery.spool import Spool

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

    # The page's CSP forbids eval; the test's own probes need it, the page's scripts do not.
    with _chromium_page(bypass_csp=True) as page:
        assert page.goto(link).status == 200
        page.wait_for_function("() => document.querySelector('video').readyState >= 2", timeout=20000)
        page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
        page.wait_for_function("() => document.querySelector('video').currentTime > 0.5", timeout=20000)
        state = page.evaluate("() => { const v = document.querySelector('video');"
                              " return {w: v.videoWidth, d: v.duration, error: v.error && v.error.code}; }")
    assert state["error"] is None
    assert state["w"] == width and 3.5 <= state["d"] <= 4.5


# ---------------------------------------------------------------- live HLS (schema version 2)

SEGMENT_S, SEGMENTS, LIVE_SEGMENTS = 2.0, 5, 3  # 10 s of video; 3 segments stored while the event is going


def _hls_segments(vtest_video, out_dir):
    """HLS media segments cut from the real video as the contract wants them: H.264 in MPEG-TS, a keyframe
    every 2 s (each segment starts at one), timestamps continuous over the event. Returns ``[(path,
    start_s, duration_s)]`` (from the segment muxer's own list) and the clip.mp4 remuxed from them."""
    import av

    fps, size = 10, (384, 288)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "list.csv"
    out = av.open(str(out_dir / "%05d.ts"), "w", format="segment", options={
        "segment_time": str(SEGMENT_S), "segment_format": "mpegts", "reset_timestamps": "0",
        "segment_list": str(listing), "segment_list_type": "csv"})
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
    stream.options = {"preset": "veryfast", "bf": "0",
                      "x264-params": f"keyint={int(fps * SEGMENT_S)}:min-keyint={int(fps * SEGMENT_S)}:scenecut=0"}
    with av.open(str(vtest_video)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i >= fps * SEGMENT_S * SEGMENTS:
                break
            for packet in stream.encode(frame.reformat(width=size[0], height=size[1], format="yuv420p")):
                out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    segments = []
    for line in listing.read_text().splitlines():
        name, start, end = line.split(",")
        segments.append((out_dir / name, float(start), round(float(end) - float(start), 3)))
    # The final clip: the segments (one continuous transport stream) remuxed into mp4.
    joined = out_dir / "all.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p, _, _ in segments))
    clip = out_dir / "clip.mp4"
    with av.open(str(joined)) as inp, av.open(str(clip), "w", format="mp4", options={"movflags": "faststart"}) as mp4:
        ost = mp4.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = ost
            mp4.mux(packet)
    return segments, clip


class _LiveEvent:
    """A schema v2 event written straight into the emulators as ingest would (contract layout)."""

    def __init__(self, tenant_id, device_id, camera_id, start):
        from vigint import clients, config, pipeline
        from vigint.schema import event_prefix

        self.event_id = f"evt_{uuid.uuid4().hex[:26].upper()}"
        self.tenant_id, self.prefix = tenant_id, event_prefix(tenant_id, device_id, self.event_id)
        self.bucket = clients.storage().bucket(config.settings().bucket)
        self.ref = pipeline.event_ref(tenant_id, self.event_id)
        self.start = start
        self.device_id, self.camera_id = device_id, camera_id

    def begin(self, snapshot: bytes) -> None:
        obj = self.prefix + "snapshots/00000.jpg"
        self.bucket.blob(obj).upload_from_string(snapshot, content_type="image/jpeg")
        self.ref.set({
            "schema_version": 2, "event_id": self.event_id, "tenant_id": self.tenant_id,
            "device_id": self.device_id, "camera_id": self.camera_id, "kind": "detection", "severity": "alert",
            "phase": "start", "seq": 0, "labels": ["person"], "start_time": self.start, "end_time": self.start,
            "first_seen": self.start + timedelta(seconds=1), "confirmed_at": self.start + timedelta(seconds=2),
            "ended": False, "segment_count": None, "clip": None, "continues": None,
            "snapshot": {"object": obj, "content_type": "image/jpeg", "bytes": len(snapshot),
                         "sha256": hashlib.sha256(snapshot).hexdigest(), "time": self.start},
            "analysis": {"status": "detections_only", "source": "detections", "threat_level": 2,
                         "title": "Person detected on porch", "summary": "One person seen by the camera."},
            "verdicts": {"detections": {"threat_level": 2}},
        })

    def add_segment(self, index: int, path, start_s: float, duration_s: float) -> None:
        obj = self.prefix + f"segments/{index:05d}.ts"
        data = path.read_bytes()
        self.bucket.blob(obj).upload_from_string(data, content_type="video/mp2t")
        self.ref.collection("segments").document(f"{index:05d}").set({
            "index": index, "object": obj, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "start_s": start_s, "duration_s": duration_s, "received_at": datetime.now(timezone.utc)})
        self.ref.update({"seq": index + 1, "phase": "update",
                         "end_time": self.start + timedelta(seconds=start_s + duration_s)})

    def finish(self, segment_count: int, clip) -> None:
        obj = self.prefix + "clip.mp4"
        data = clip.read_bytes()
        self.bucket.blob(obj).upload_from_string(data, content_type="video/mp4")
        self.ref.update({"ended": True, "phase": "end", "segment_count": segment_count,
                         "clip": {"object": obj, "content_type": "video/mp4", "bytes": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest()}})


def _video(page) -> dict:
    """The player's state, read by CDP evaluation (not subject to the page's CSP, which stays on)."""
    return page.evaluate("""() => { const v = document.getElementById('video');
        return {t: v.currentTime, d: v.duration, ended: v.ended, paused: v.paused, error: v.error && v.error.code,
                w: v.videoWidth, engine: document.getElementById('app').dataset.engine || null,
                title: document.getElementById('title').textContent,
                threat: document.getElementById('threat').textContent,
                status: document.getElementById('status').textContent,
                downloads: [...document.querySelectorAll('#downloads a')].map(a => a.href),
                expired: !document.getElementById('expired').hidden,
                marker: window.__vigintNoReload || null}; }""")


def _poll(page, predicate, timeout: float, what: str) -> dict:
    return wait_for(lambda: (lambda s: s if predicate(s) else None)(_video(page)), timeout=timeout, interval=0.2,
                    what=what)


def test_the_link_plays_the_event_live_then_to_its_end_without_a_reload(functions_env, stack, tmp_path, vtest_video):
    """The page of a link opened while the event is still recorded: it plays the HLS segments there are
    (currentTime advances before the end), then, once the remaining segments and the end are stored, plays on
    to the end in the same page; its verdict follows Firestore; a revoked link shows "link expired"."""
    from vigint import links
    from vigint_edge.recording.clip import encode_snapshot

    segments, clip = _hls_segments(vtest_video, tmp_path / "segments")
    assert len(segments) == SEGMENTS and all(d == SEGMENT_S for _, _, d in segments)
    total = sum(d for _, _, d in segments)
    tenant_id = f"live-{uuid.uuid4().hex[:8]}"
    event = _LiveEvent(tenant_id, "nuc-7", "porch", datetime.now(timezone.utc) - timedelta(seconds=8))
    import av

    with av.open(str(segments[0][0])) as first:
        snapshot = encode_snapshot(next(first.decode(video=0)).to_ndarray(format="bgr24"))
    event.begin(snapshot)
    for i, (path, start_s, duration_s) in enumerate(segments[:LIVE_SEGMENTS]):
        event.add_segment(i, path, start_s, duration_s)
    token, link_id, _ = links.create_link(tenant_id=tenant_id, event_id=event.event_id, recipient="v@example.com",
                                          ttl_seconds=3600)
    url = f"{stack.function_env['VIGINT_PUBLIC_BASE_URL']}/v/{token}"

    with _chromium_page(viewport={"width": 1280, "height": 900}) as page:  # the page's CSP on
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        assert page.goto(url).status == 200
        page.evaluate("() => { window.__vigintNoReload = 'same page'; }")

        # Live: it plays while the event is still being recorded, a few seconds behind the live edge.
        first = _poll(page, lambda s: s["t"] > 0 and not s["paused"], 30, "live playback to start")
        assert first["engine"] == "hls.js" and first["status"] == "Recording" and first["w"] == 384
        later = _poll(page, lambda s: s["t"] > first["t"] + 0.5, 20, "live playback to advance")
        assert later["t"] <= LIVE_SEGMENTS * SEGMENT_S + 0.1 and later["error"] is None
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

        # The verdict changes in Firestore: the page shows it without a reload.
        event.ref.update({"analysis": {"status": "ok", "source": "gemini", "threat_level": 3,
                                       "title": "Intruder at the porch door", "summary": "Trying the lock."},
                          "verdicts.first": {"threat_level": 3}})
        _poll(page, lambda s: s["title"] == "Intruder at the porch door" and s["threat"] == "High threat", 20,
              "the new verdict on the page")

        # The rest of the event arrives and it ends: the same page plays on to the very end.
        for i, (path, start_s, duration_s) in enumerate(segments[LIVE_SEGMENTS:], start=LIVE_SEGMENTS):
            event.add_segment(i, path, start_s, duration_s)
        event.finish(SEGMENTS, clip)
        done = _poll(page, lambda s: s["ended"], 60, "playback to reach the end")
        assert done["marker"] == "same page" and done["error"] is None
        assert abs(done["d"] - total) <= 0.5 and abs(done["t"] - total) <= 0.5, done
        done = _poll(page, lambda s: s["status"] == "Ended" and s["downloads"], 20, "the ended state")
        # The button is the page's own download route: a freshly signed URL whenever it is clicked.
        assert [u.endswith(f"/v/{token}/download/0") for u in done["downloads"]] == [True]
        got = requests.get(done["downloads"][0], timeout=10)
        assert got.status_code == 200 and got.content == clip.read_bytes()
        page.screenshot(path=str(tmp_path / "ended.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        assert not [m for m in problems if "Content Security Policy" in m or "Refused" in m], problems

        # Withdrawn: the page's next poll gets 410 and says so.
        links.revoke(link_id)
        _poll(page, lambda s: s["expired"], 30, '"link expired" on the page')


def _ended_event(stack, tenant_prefix: str, tmp_path, vtest_video, segments_n: int = 3):
    """An ended v2 event of ``segments_n`` real 2-s segments, and a valid link to it; returns the page URL."""
    from vigint import links

    segments, clip = _hls_segments(vtest_video, tmp_path / "segments")
    segments = segments[:segments_n]
    event = _LiveEvent(f"{tenant_prefix}-{uuid.uuid4().hex[:8]}", "nuc-7", "porch",
                       datetime.now(timezone.utc) - timedelta(seconds=60))
    event.begin(b"\xff\xd8\xff\xe0 not shown")
    for i, (path, start_s, duration_s) in enumerate(segments):
        event.add_segment(i, path, start_s, duration_s)
    event.finish(len(segments), clip)
    token, _, _ = links.create_link(tenant_id=event.tenant_id, event_id=event.event_id,
                                    recipient="v@example.com", ttl_seconds=3600)
    return f"{stack.function_env['VIGINT_PUBLIC_BASE_URL']}/v/{token}"


def _note_or_hold(order: list[str], held: list, name: str, release: Callable[[], bool]) -> Callable:
    """A Playwright route handler: appends ``name`` to ``order``, then lets the request go on if ``release()``
    (asked after that) is true, else keeps its route in ``held`` for the test to continue later."""

    def handler(route) -> None:
        order.append(name)
        if release():
            route.continue_()
        else:
            held.append(route)

    return handler


def test_a_failing_segment_url_reloads_the_playlist_once_and_playback_resumes(functions_env, stack, tmp_path,
                                                                              vtest_video):
    """An ended event whose second segment URL answers 403 (as an expired signed URL does) until the page
    has checked the link and fetched the playlist again: hls.js gives up on it after its retries, the page
    checks the link (still valid), reloads the playlist once for fresh URLs and plays on to the end.

    Every decision of the routes below is keyed on what the page asked for before, never on time: segment 1
    is refused until a playlist fetch that follows a state.json check made after the last refusal (the
    page's reload). The page's first state.json answer is held until hls.js has asked for segment 0, i.e.
    until it has parsed the playlist: otherwise that answer can start a second hls.js instance (player.js
    calls start() again while ``started`` is still false; see
    ``test_state_json_before_the_manifest_starts_one_player``), which fetches the playlist and the segments
    a second time."""
    url = _ended_event(stack, "heal", tmp_path, vtest_video)
    order: list[str] = []  # what the page asked for, in the order the routes saw it
    held = []

    def reloaded_after_failure() -> bool:
        if "refused" not in order:
            return False
        after = order[len(order) - order[::-1].index("refused"):]
        return "state" in after and "playlist" in after[after.index("state"):]

    def on_playlist(route):
        order.append("playlist")
        route.continue_()

    on_state = _note_or_hold(order, held, "state", lambda: "segment0" in order)

    def on_segment0(route):
        order.append("segment0")
        route.continue_()
        while held:
            held.pop(0).continue_()

    def on_segment1(route):
        if reloaded_after_failure():
            order.append("segment1")
            route.continue_()
        else:  # the URLs of the first playlist "expired"
            order.append("refused")
            route.fulfill(status=403, body="expired", headers={"Access-Control-Allow-Origin": "*"})

    with _chromium_page() as page:
        page.route("**/playlist.m3u8", on_playlist)
        page.route("**/state.json", on_state)
        page.route("**/segments/00000.ts?*", on_segment0)
        page.route("**/segments/00001.ts?*", on_segment1)
        assert page.goto(url).status == 200
        done = _poll(page, lambda s: s["ended"], 60, "playback to reach the end")
        error_hidden = page.evaluate("() => document.getElementById('player-error').hidden")
    assert order.count("refused") == 4, order  # the first try and 3 retries: then hls.js gives up
    assert order.count("playlist") == 2, order  # the first load and one reload
    reload_at = len(order) - 1 - order[::-1].index("playlist")
    last_refusal = len(order) - 1 - order[::-1].index("refused")
    assert order.index("playlist") < order.index("segment0") < order.index("refused") < reload_at, order
    assert "state" in order[last_refusal:reload_at], "the page checked the link before reloading"
    assert "segment1" in order[reload_at:], "segment 1 came with a fresh URL after the reload"
    assert error_hidden, "the page shows no playback error"
    assert done["error"] is None and abs(done["d"] - 6.0) <= 0.5 and abs(done["t"] - 6.0) <= 0.5, done


def test_state_json_before_the_manifest_starts_one_player(functions_env, stack, tmp_path, vtest_video):
    """The page's first state.json answer arrives while the playlist is still loading (held here until that
    answer has been delivered and the page had 3 s to act on it): the page must still start one player,
    i.e. fetch the playlist once."""
    url = _ended_event(stack, "once", tmp_path, vtest_video, segments_n=2)
    order: list[str] = []
    held = []

    on_playlist = _note_or_hold(order, held, "playlist", lambda: "state answered" in order)

    def on_state(route):
        order.append("state")
        route.fulfill(response=route.fetch())
        order.append("state answered")

    with _chromium_page() as page:
        page.route("**/playlist.m3u8", on_playlist)
        page.route("**/state.json", on_state)
        assert page.goto(url).status == 200
        wait_for(lambda: page.evaluate("() => true") and "state answered" in order, timeout=30,
                 what="the first state.json answer")
        page.wait_for_timeout(3000)
        while held:
            held.pop(0).continue_()
        done = _poll(page, lambda s: s["ended"], 60, "playback to reach the end")
    assert done["error"] is None
    assert order.count("playlist") == 1, order


@contextlib.contextmanager
def _video_link_server(env: dict) -> Iterator[str]:
    """A ``video_link`` functions-framework server of its own (the stack's command line) with ``env`` on top
    of the stack's function environment; yields its base URL and stops it (by its pid) on leaving."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from infra.local.stack import free_port

    repo = Path(__file__).resolve().parents[2]
    port = free_port()
    ff = Path(sys.executable).with_name("functions-framework")
    proc = subprocess.Popen(
        [str(ff), "--source", str(repo / "functions" / "main.py"), "--target", "video_link", "--signature-type",
         "http", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env, "K_SERVICE": "video_link"}, cwd=repo, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/v/static/player.js", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "video_link did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _url_expired(url: str) -> bool:
    """Whether a V4 signed URL is past ``X-Goog-Date + X-Goog-Expires`` (what Cloud Storage checks and
    fake-gcs-server does not)."""
    from urllib.parse import parse_qs, urlsplit

    q = parse_qs(urlsplit(url).query)
    signed = datetime.strptime(q["X-Goog-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) >= signed + timedelta(seconds=int(q["X-Goog-Expires"][0]))


def test_the_page_renews_segment_urls_before_they_expire(functions_env, stack, tmp_path, vtest_video):
    """With 10-s signed URLs (``VIGINT_SEGMENT_URL_TTL_SECONDS=10``), the page's first playlist is handed to
    it 11 s after it was signed, so every segment URL in it has run out. The page must notice before hls.js
    asks for a segment, fetch the playlist again and play every segment with a fresh URL: no segment request
    with an expired URL (refused here with 403, as Cloud Storage would) and one renewal."""
    ttl = {"VIGINT_SEGMENT_URL_TTL_SECONDS": "10", "VIGINT_PLAYBACK_URL_TTL_SECONDS": "10"}
    url = _ended_event(stack, "renew", tmp_path, vtest_video)
    order: list[str] = []
    held: list = []
    segment_urls: list[str] = []

    def on_playlist(route):
        if "playlist" in order:
            order.append("playlist again")
            route.continue_()
            return
        order.append("playlist")
        held.append((route, route.fetch()))  # signed now, handed to the page later

    def on_segment(route):
        segment_urls.append(route.request.url)
        if _url_expired(route.request.url):
            order.append("refused")
            route.fulfill(status=403, body="expired", headers={"Access-Control-Allow-Origin": "*"})
        else:
            order.append("segment")
            route.continue_()

    with _video_link_server({**stack.function_env, **ttl}) as base, _chromium_page() as page:
        page.route("**/playlist.m3u8", on_playlist)
        page.route("**/segments/*.ts?*", on_segment)
        assert page.goto(base + url[url.index("/v/"):]).status == 200
        wait_for(lambda: page.evaluate("() => true") and held, timeout=30, what="the first playlist request")
        page.wait_for_timeout(11000)
        route, response = held.pop()
        route.fulfill(response=response)
        done = _poll(page, lambda s: s["ended"], 60, "playback to reach the end")
        renewals = page.evaluate("() => document.getElementById('app').dataset.urlRefreshes")
    assert done["error"] is None and abs(done["t"] - 6.0) <= 0.5, done
    assert "refused" not in order, order
    assert order[:2] == ["playlist", "playlist again"] and order.count("segment") >= 3, order
    assert renewals == "1"
    from urllib.parse import parse_qs, urlsplit

    assert all(parse_qs(urlsplit(u).query)["X-Goog-Expires"] == ["10"] for u in segment_urls)


def test_an_old_events_mp4_gets_a_fresh_url_when_its_own_has_run_out(functions_env, stack, tmp_path, vtest_video):
    """An old (schema version 1) event plays its clip.mp4 straight from a signed URL. With 10-s URLs and the
    page handed to the browser 11 s after it was made, the <video>'s URL has run out (refused with 403 here,
    as Cloud Storage would): the page asks state.json for a fresh one and the clip plays."""
    import time

    from vigint import links
    from vigint_edge.bench import make_h264

    clip = make_h264(vtest_video, tmp_path / "clip.mp4", size=(320, 240), seconds=4)
    event = _LiveEvent(f"mp4-{uuid.uuid4().hex[:8]}", "nuc-7", "porch", datetime.now(timezone.utc) - timedelta(seconds=60))
    event.begin(b"\xff\xd8\xff\xe0 not shown")
    event.finish(0, clip)
    event.ref.update({"schema_version": 1, "segment_count": None})
    token, _, _ = links.create_link(tenant_id=event.tenant_id, event_id=event.event_id, recipient="v@example.com",
                                    ttl_seconds=3600)
    order: list[str] = []

    def on_page(route):
        response = route.fetch()   # the page, with its clip URL signed now...
        time.sleep(11)             # ...reaches the browser once that URL has run out
        route.fulfill(response=response)

    def on_clip(route):
        if _url_expired(route.request.url):
            order.append("refused")
            route.fulfill(status=403, body="expired", headers={"Access-Control-Allow-Origin": "*"})
        else:
            order.append("clip")
            route.fulfill(response=route.fetch())

    ttl = {"VIGINT_SEGMENT_URL_TTL_SECONDS": "10", "VIGINT_PLAYBACK_URL_TTL_SECONDS": "10"}
    with _video_link_server({**stack.function_env, **ttl}) as base, _chromium_page() as page:
        page.route(f"{base}/v/{token}", on_page)
        page.route("**/clip.mp4?*", on_clip)
        assert page.goto(f"{base}/v/{token}", timeout=60000).status == 200
        wait_for(lambda: page.evaluate("() => true") and "clip" in order, timeout=30,
                 what="a clip request with a fresh URL")
        clip_state = "() => { const v = document.getElementById('clip'); return {ready: v.readyState, t: v.currentTime, error: v.error && v.error.code}; }"  # noqa: E501
        wait_for(lambda: page.evaluate(clip_state)["ready"] >= 1, timeout=20, what="the clip's metadata")
        page.evaluate("() => { const v = document.getElementById('clip'); v.muted = true; return v.play(); }")
        wait_for(lambda: page.evaluate(clip_state)["t"] > 0.5, timeout=20, what="the clip to play")
        error = page.evaluate(clip_state)["error"]
    assert order[0] == "refused" and "clip" in order, order
    assert error is None
