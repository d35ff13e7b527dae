"""analyze: token accounting and the monthly cap, sampling, the prompt, Vertex AI, camera health events
(emulators + fake-gcs-server + the fake Gemini server through the real google-genai client)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.fakes.gemini_server import FakeGemini
from tests.functions.conftest import FIXTURE_START


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _doc(ev: dict) -> dict:
    from vigint import pipeline

    return pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()


def _parts(req: dict) -> list[dict]:
    return req["json"]["contents"][0]["parts"]


def _mimes(req: dict) -> list[str]:
    out = []
    for p in _parts(req):
        d = p.get("inlineData") or p.get("inline_data") or p.get("fileData") or p.get("file_data")
        if d:
            out.append(d.get("mimeType") or d.get("mime_type"))
    return out


@pytest.fixture
def gemini(fenv, monkeypatch):
    from vigint import clients

    with FakeGemini(total_tokens=1234) as fake:
        monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-real")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
        monkeypatch.setenv("VIGINT_GEMINI_RETRY_ATTEMPTS", "3")
        monkeypatch.setenv("VIGINT_GEMINI_RETRY_INITIAL_S", "0.05")
        clients.reset()
        yield fake


def test_tokens_are_counted_per_tenant_and_the_cap_skips_gemini(fenv, gemini):
    from vigint import analyze, pipeline, usage

    creds = fenv.provision()
    pipeline.tenant_ref(creds["tenant_id"]).update({"gemini_monthly_token_cap": 2000})
    first = fenv.ingested_event(creds)
    assert analyze.handle_ingested(data=_msg(first)) == "analyzed:ok"
    assert usage.get(creds["tenant_id"])["gemini_tokens"] == 1234
    assert _doc(first)["analysis"]["total_tokens"] == 1234
    second = fenv.ingested_event(creds)
    assert analyze.handle_ingested(data=_msg(second)) == "analyzed:ok"  # 1234 < 2000: still allowed
    assert usage.get(creds["tenant_id"])["gemini_tokens"] == 2468
    third = fenv.ingested_event(creds)
    assert analyze.handle_ingested(data=_msg(third)) == "analyzed:detections_only"
    a = _doc(third)["analysis"]
    assert a["skipped"] == "token_cap" and "2468 of 2000 tokens" in a["summary"]
    assert (a["threat_level"], a["title"]) == (2, "Person detected on lobby")
    assert len(gemini.requests) == 2  # the third was not sent
    assert usage.get(creds["tenant_id"])["gemini_tokens"] == 2468
    # Another tenant has its own budget.
    other = fenv.provision()
    ev = fenv.ingested_event(other)
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:ok"


def test_malformed_answers_still_count_their_tokens(fenv, gemini):
    from vigint import analyze, usage

    gemini.mode = "malformed"
    ev = fenv.ingested_event(fenv.provision())
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:error"
    assert usage.get(ev["tenant_id"])["gemini_tokens"] == 1234


def test_small_budget_sends_at_most_one_frame_per_second(fenv, gemini, monkeypatch):
    """2 s clip, budget for 1 still + snapshot: stills (JPEG), not the video; a big budget sends the video."""
    import base64

    from vigint import analyze, clients

    monkeypatch.setenv("VIGINT_GEMINI_EVENT_TOKEN_BUDGET", str(2 * 258))
    clients.reset()
    ev = fenv.ingested_event(fenv.provision())
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:ok"
    req = gemini.requests[-1]
    assert _mimes(req) == ["image/jpeg", "image/jpeg"]  # one still from the clip, then the snapshot
    still = next(p for p in _parts(req) if "inlineData" in p or "inline_data" in p)
    raw = base64.b64decode((still.get("inlineData") or still["inline_data"])["data"].replace("-", "+").replace("_", "/"))
    assert raw[:2] == b"\xff\xd8" and raw != fenv.media["snapshot"]
    prompt = " ".join(p.get("text", "") for p in _parts(req))
    assert "stills sampled from the event clip" in prompt
    a = _doc(ev)["analysis"]
    assert (a["media"], a["estimated_media_tokens"]) == ("frames", 2 * 258)

    monkeypatch.setenv("VIGINT_GEMINI_EVENT_TOKEN_BUDGET", "8000")
    clients.reset()
    ev2 = fenv.ingested_event(fenv.provision())
    analyze.handle_ingested(data=_msg(ev2))
    assert _mimes(gemini.requests[-1]) == ["video/mp4", "image/jpeg"]
    assert _doc(ev2)["analysis"]["media"] == "video"


def test_prompt_has_zones_local_time_and_normal_context(fenv, gemini):
    from vigint import analyze, pipeline

    creds = fenv.provision(normal_context="Deliveries arrive before 8.")
    pipeline.tenant_ref(creds["tenant_id"]).update(
        {"quiet_hours": {"start": "22:00", "end": "06:00", "timezone": "Europe/Paris"}})
    ev = fenv.ingested_event(creds, zones=["driveway"])
    analyze.handle_ingested(data=_msg(ev))
    prompt = " ".join(p.get("text", "") for p in _parts(gemini.requests[-1]))
    assert "Zones entered: driveway." in prompt
    # The event starts at FIXTURE_START, 06:00 UTC on the day before the run: 07:00 in Paris (CET, UTC+1) or
    # 08:00 in summer (CEST, UTC+2), the weekday of that day there.
    from zoneinfo import ZoneInfo

    local = FIXTURE_START.astimezone(ZoneInfo("Europe/Paris"))
    assert local.hour in (7, 8)
    assert f"Local time at the site: {local:%A} {local:%H}:00 (morning) in Europe/Paris." in prompt
    # A fixed instant, given to the formatter itself (nothing here ages): 2026-11-22 06:00 UTC is a Sunday.
    from vigint import prompts

    sunday = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.timezone.utc)
    assert prompts.local_time_words(sunday, "Europe/Paris") == "Sunday 07:00 (morning) in Europe/Paris"
    assert "Deliveries arrive before 8." in prompt


def test_vertex_backend_passes_the_clip_by_gs_uri(fenv, monkeypatch):
    from google.oauth2.credentials import Credentials

    from vigint import analyze, clients, config
    from vigint.gemini import GeminiAnalyzer

    with FakeGemini() as fake:
        monkeypatch.setenv("VIGINT_GEMINI_BACKEND", "vertex")
        monkeypatch.setenv("VIGINT_GEMINI_LOCATION", "europe-west1")
        clients.reset()
        s = config.settings()
        analyzer = GeminiAnalyzer.create_vertex(s.project, s.gemini_location, "gemini-vertex-model", fake.base_url,
                                                credentials=Credentials(token="test-access-token"))
        ev = fenv.ingested_event(fenv.provision())
        assert analyze.handle_ingested(data=_msg(ev), analyzer=analyzer) == "analyzed:ok"
    (req,) = fake.requests
    assert (req["backend"], req["project"], req["location"], req["model"]) == (
        "vertex", s.project, "europe-west1", "gemini-vertex-model")
    assert req["headers"]["Authorization"] == "Bearer test-access-token"
    file_data = [p.get("fileData") or p.get("file_data") for p in _parts(req) if {"fileData", "file_data"} & set(p)]
    assert len(file_data) == 1
    uri = file_data[0].get("fileUri") or file_data[0].get("file_uri")
    assert uri == f"gs://{s.bucket}/{ev['clip']['object']}"
    assert _mimes(req) == ["video/mp4", "image/jpeg"]
    assert _doc(ev)["analysis"]["backend"] == "vertex"


def test_vertex_is_chosen_by_configuration(fenv, monkeypatch):
    from vigint import clients, gemini

    monkeypatch.setenv("VIGINT_GEMINI_BACKEND", "vertex")
    clients.reset()
    analyzer = gemini.default_analyzer()
    assert analyzer is not None and analyzer.backend == "vertex"
    assert analyzer._client.vertexai is True


def test_camera_health_event_gets_its_own_verdict_without_gemini(fenv, gemini):
    from vigint import analyze

    creds = fenv.provision()
    ev = fenv.ingested_event(creds, labels=("camera_tampered",), kind="camera_health", clip=None, snapshot=None,
                             detections=[], max_count={})
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:detections_only"
    a = _doc(ev)["analysis"]
    assert (a["threat_level"], a["title"]) == (3, "Camera tampered with: lobby")
    assert gemini.requests == []


@pytest.mark.parametrize("label, level, title", [
    ("camera_offline", 2, "Camera offline: lobby"),
    ("camera_black", 2, "Camera view black: lobby"),
    ("camera_online", 0, "Camera back online: lobby"),
])
def test_each_edge_health_condition_has_its_verdict(fenv, gemini, label, level, title):
    """The labels exactly as vigint_edge.events.camera_health sends them (a mismatch once gave every one the generic level 2)."""
    from vigint import analyze
    from vigint_edge.events import camera_health as health

    assert label in {health.OFFLINE, health.BLACK, health.ONLINE}
    creds = fenv.provision()
    ev = fenv.ingested_event(creds, labels=(label,), kind="camera_health", clip=None, snapshot=None,
                             detections=[], max_count={})
    analyze.handle_ingested(data=_msg(ev))
    a = _doc(ev)["analysis"]
    assert (a["threat_level"], a["title"]) == (level, title)
