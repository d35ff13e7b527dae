"""analyze against the emulators, fake-gcs-server and (for Gemini) the local fake Gemini server driven
through the real google-genai client."""

from __future__ import annotations

import base64
import json

import pytest

from tests.fakes.gemini_server import DEFAULT_VERDICT


def _b64(text: str) -> bytes:
    """Proto JSON bytes: standard or URL-safe base64 (google-genai sends the URL-safe form)."""
    return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _analysis(ev: dict) -> dict:
    from vigint import pipeline

    return pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()


@pytest.mark.parametrize(
    "labels, level, title",
    [(("person", "car"), 2, "Person detected on lobby"), (("truck",), 1, "Truck detected on lobby"),
     (("dog",), 0, "Dog detected on lobby")],
)
def test_without_key_detections_only(fenv, labels, level, title):
    from vigint import analyze

    creds = fenv.provision()
    ev = fenv.ingested_event(creds, labels=labels)
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:detections_only"
    doc = _analysis(ev)
    a = doc["analysis"]
    assert (a["status"], a["source"], a["threat_level"], a["title"]) == ("detections_only", "detections", level, title)
    assert "No AI analysis" in a["summary"]
    assert doc["status"] == "analyzed"
    msgs = fenv.pull("analyzed")
    assert [json.loads(m.data) for m in msgs] == [{"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}]


def test_gemini_gets_the_clip_inline_and_a_schema(fenv, gemini, media):
    from vigint import analyze

    creds = fenv.provision(normal_context="Cleaners come at 6 am.")
    ev = fenv.ingested_event(creds)
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:ok"

    assert len(gemini.requests) == 1
    req = gemini.requests[0]
    assert req["model"] == "gemini-test-model"
    assert req["headers"].get("x-goog-api-key") == "test-key-not-real"
    parts = req["json"]["contents"][0]["parts"]
    inline = [p.get("inlineData") or p.get("inline_data") for p in parts if {"inlineData", "inline_data"} & set(p)]
    mime = [d.get("mimeType") or d.get("mime_type") for d in inline]  # proto JSON accepts either spelling
    assert mime == ["video/mp4", "image/jpeg"]
    assert _b64(inline[0]["data"]) == media["clip"]
    assert _b64(inline[1]["data"]) == media["snapshot"]
    prompt = " ".join(p.get("text", "") for p in parts)
    assert "lobby" in prompt and "Cleaners come at 6 am." in prompt
    gen = req["json"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    schema = gen.get("responseSchema") or gen.get("responseJsonSchema")
    assert set(schema["properties"]) >= {"threat_level", "title", "summary", "confidence", "notable_objects"}

    a = _analysis(ev)["analysis"]
    assert (a["status"], a["source"], a["model"]) == ("ok", "gemini", "gemini-test-model")
    assert {k: a[k] for k in DEFAULT_VERDICT} == DEFAULT_VERDICT
    assert len(fenv.pull("analyzed")) == 1


def test_redelivery_does_not_ask_gemini_again(fenv, gemini):
    from vigint import analyze

    ev = fenv.ingested_event(fenv.provision())
    outcomes = [analyze.handle_ingested(data=_msg(ev)) for _ in range(3)]
    assert outcomes == ["analyzed:ok", "already_analyzed", "already_analyzed"]
    assert len(gemini.requests) == 1
    assert len(fenv.pull("analyzed")) == 1


def test_malformed_answer_is_a_clear_error_with_fallback(fenv, gemini):
    from vigint import analyze

    gemini.mode = "malformed"
    ev = fenv.ingested_event(fenv.provision())
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:error"  # no exception
    a = _analysis(ev)["analysis"]
    assert a["status"] == "error"
    assert "malformed verdict" in a["error"] and "not a valid verdict" in a["error"]
    assert (a["threat_level"], a["title"]) == (2, "Person detected on lobby")  # from the detections
    assert a["summary"].startswith("AI analysis unavailable.")
    assert len(fenv.pull("analyzed")) == 1  # the alert still goes out


def test_429_then_ok_is_retried(fenv, gemini):
    from vigint import analyze

    gemini.mode = "429-then-ok"
    ev = fenv.ingested_event(fenv.provision())
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:ok"
    assert len(gemini.requests) == 2


def test_gemini_down_falls_back_without_raising(fenv, gemini):
    from vigint import analyze

    gemini.mode = "500"
    ev = fenv.ingested_event(fenv.provision(), labels=("car",))
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:error"
    assert len(gemini.requests) == 3  # VIGINT_GEMINI_RETRY_ATTEMPTS (tenacity; the client's own retry is off)
    a = _analysis(ev)["analysis"]
    assert a["status"] == "error" and "Gemini request failed" in a["error"] and "500" in a["error"]
    assert "test-key-not-real" not in json.dumps(a, default=str)
    assert a["threat_level"] == 1


def test_unknown_event_and_garbage_are_dropped(fenv):
    from vigint import analyze

    assert analyze.handle_ingested(data=b'{"tenant_id": "nobody", "event_id": "evt_0000000000"}') == "dropped:unknown_event"
    assert analyze.handle_ingested(data=b"not json") == "dropped:invalid_message"
    assert fenv.pull("analyzed", wait_s=0.3) == []
