"""A local stand-in for the Gemini API's REST ``generateContent`` (v1beta and v1), for tests.

It speaks the wire format the real google-genai client sends and expects
(``POST /{version}/models/{model}:generateContent``, JSON ``GenerateContentResponse`` or a Google error
body), records every request, and answers according to ``mode``:

* ``"good"``: a valid JSON verdict (``verdict``) as the candidate's text;
* ``"malformed"``: text that is not JSON;
* ``"429-then-ok"``: one ``429 RESOURCE_EXHAUSTED``, then as ``"good"``;
* ``"500"``: ``500 INTERNAL`` forever.

Both the Gemini API path and the Vertex AI path
(``/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``) are served; a
request's ``backend`` says which it used. ``total_tokens`` sets the answer's ``usageMetadata.totalTokenCount``.
``delay_s`` (seconds, default 0.0, settable between requests) makes every answer wait that long, as a slow
model would; ``hold`` (a ``threading.Event``, default None) makes every answer wait until it is set (at most
``HOLD_MAX_S``), so a test can act while Gemini is still "thinking" without relying on timing.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/(v1|v1beta|v1alpha)/models/([^/:]+):generateContent$")
# Vertex AI: /{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent
VERTEX_PATH = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):generateContent$")

HOLD_MAX_S = 60.0

DEFAULT_VERDICT = {
    "threat_level": 2,
    "title": "Person walking through the lobby",
    "summary": "Two people walk across the lobby towards the exit. Nobody touches the doors or equipment.",
    "confidence": 0.8,
    "notable_objects": ["person", "person"],
}


class FakeGemini:
    """The fake server. Use as a context manager; ``base_url`` goes into ``HttpOptions(base_url=...)``.

    Attributes:
        mode: see the module docstring; may be changed between requests.
        verdict: the verdict dict the ``"good"`` mode answers with.
        requests: every request received: ``{"path", "version", "model", "headers", "json"}``.
        delay_s: seconds every answer waits before it is sent (>= 0).
        hold: when set to a ``threading.Event``, answers wait until it is set.
    """

    def __init__(self, mode: str = "good", verdict: dict | None = None, total_tokens: int = 1050,
                 delay_s: float = 0.0):
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.mode = mode
        self.delay_s = float(delay_s)
        self.hold: threading.Event | None = None
        self.total_tokens = total_tokens
        self.verdict = dict(verdict or DEFAULT_VERDICT)
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._served_429 = False

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeGemini":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):  # noqa: N802 (http.server's hook name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?")[0]
                m, v = PATH.match(path), VERTEX_PATH.match(path)
                if not (m or v):
                    return self._send(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                version, model = (m.group(1), m.group(2)) if m else (v.group(1), v.group(4))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, {"error": {"code": 400, "message": "bad JSON", "status": "INVALID_ARGUMENT"}})
                with fake._lock:
                    fake.requests.append({"path": self.path, "version": version, "model": model,
                                          "backend": "gemini" if m else "vertex",
                                          "project": v.group(2) if v else None,
                                          "location": v.group(3) if v else None,
                                          "headers": dict(self.headers), "json": body})
                    mode = fake.mode
                    if mode == "429-then-ok" and not fake._served_429:
                        fake._served_429 = True
                        mode = "429"
                    delay, hold = fake.delay_s, fake.hold
                if hold is not None:
                    hold.wait(HOLD_MAX_S)
                if delay > 0:
                    time.sleep(delay)
                if mode == "429":
                    return self._send(429, {"error": {"code": 429, "message": "Resource has been exhausted.",
                                                      "status": "RESOURCE_EXHAUSTED"}})
                if mode == "500":
                    return self._send(500, {"error": {"code": 500, "message": "Internal error.", "status": "INTERNAL"}})
                text = "I think this is fine, nothing to worry about!" if mode == "malformed" else json.dumps(fake.verdict)
                return self._send(200, {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": max(0, fake.total_tokens - 50),
                                      "candidatesTokenCount": min(50, fake.total_tokens),
                                      "totalTokenCount": fake.total_tokens},
                    "modelVersion": model,
                })

            def _send(self, status: int, obj: dict):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
