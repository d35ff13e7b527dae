"""Gemini transport: one clip (+ snapshot) in, one structured ``Verdict`` out (google-genai client).

The clip is sent inline as a ``video/mp4`` part (inline requests are limited to about 20 MB in total, so
clips above ``MAX_INLINE_VIDEO_BYTES`` are replaced by the snapshot alone). The answer is requested as JSON
with ``response_schema=Verdict`` and validated again here. Retries: the client retries 429/5xx itself
(``HttpRetryOptions``); what still fails raises.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

MAX_INLINE_VIDEO_BYTES = 18 * 1024 * 1024  # Gemini's inline request limit is 20 MB (ai.google.dev, video understanding)


class Verdict(BaseModel):
    """Gemini's structured answer.

    Attributes:
        threat_level: 0 none, 1 low, 2 medium, 3 high.
        title: short headline.
        summary: 1-3 factual sentences.
        confidence: 0..1.
        notable_objects: what matters in the clip.
    """

    model_config = ConfigDict(extra="ignore")

    threat_level: int = Field(ge=0, le=3)
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(min_length=1, max_length=4000)
    confidence: float = Field(ge=0.0, le=1.0)
    notable_objects: list[str] = Field(default_factory=list, max_length=50)


class MalformedVerdict(ValueError):
    """Gemini answered, but not with a valid ``Verdict``; the message says what was wrong."""


class GeminiAnalyzer:
    """Asks one Gemini model for a verdict.

    Args:
        client: a ``google.genai.Client``.
        model: model name, e.g. ``gemini-2.5-flash``.
    """

    def __init__(self, client, model: str):
        self._client = client
        self.model = model

    @classmethod
    def create(cls, api_key: str, model: str, base_url: str | None = None, retry_attempts: int = 3) -> "GeminiAnalyzer":
        """Builds the google-genai client (``base_url``: e.g. a local fake; None: Google's endpoint)."""
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=base_url or None,
            timeout=120_000,  # milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=retry_attempts, initial_delay=0.5, max_delay=8.0,
                http_status_codes=[408, 429, 500, 502, 503, 504],
            ),
        )
        return cls(genai.Client(api_key=api_key, http_options=options), model)

    def analyze(self, *, prompt: str, system_instruction: str, clip: bytes | None, snapshot: bytes | None) -> Verdict:
        """Sends the media and prompt; returns the parsed verdict.

        Args:
            prompt: the user prompt (``vigint.prompts.event_prompt``).
            system_instruction: the system prompt.
            clip: H.264 mp4 bytes, or None.
            snapshot: JPEG bytes, or None.

        Raises:
            MalformedVerdict: the answer is not JSON matching ``Verdict`` (or is empty/blocked).
            google.genai.errors.APIError: the API refused the request or kept failing after retries.
        """
        from google.genai import types

        parts = []
        if clip is not None:
            parts.append(types.Part.from_bytes(data=clip, mime_type="video/mp4"))
        if snapshot is not None:
            parts.append(types.Part.from_bytes(data=snapshot, mime_type="image/jpeg"))
        parts.append(types.Part.from_text(text=prompt))
        response = self._client.models.generate_content(
            model=self.model,
            contents=[types.Content(role="user", parts=parts)],
            config=types.GenerateContentConfig(
                system_instruction=system_instruction,
                response_mime_type="application/json",
                response_schema=Verdict,
                temperature=0.2,
            ),
        )
        try:
            text = response.text
        except Exception as exc:  # noqa: BLE001 - the SDK raises ValueError on odd candidates
            raise MalformedVerdict(f"answer has no text ({exc})") from None
        if not text or not text.strip():
            reason = ""
            if response.candidates:
                reason = f" (finish reason {response.candidates[0].finish_reason})"
            raise MalformedVerdict(f"empty answer{reason}")
        try:
            return Verdict.model_validate_json(text)
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(map(str, err["loc"])) or "answer"
            raise MalformedVerdict(f"answer is not a valid verdict: {where}: {err['msg']}") from None
