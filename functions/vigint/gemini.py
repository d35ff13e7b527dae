"""Gemini transport: media + prompt in, one structured ``Verdict`` (and the tokens it cost) out.

Two backends, chosen by ``VIGINT_GEMINI_BACKEND`` (google-genai client either way):

* ``gemini`` (default): the Gemini API with ``GEMINI_API_KEY``; media go inline (``Part.from_bytes``; inline
  requests are limited to about 20 MB in total, hence ``MAX_INLINE_VIDEO_BYTES``);
* ``vertex``: Vertex AI (``genai.Client(vertexai=True, project, location)``, application default
  credentials); a clip is passed by reference as its ``gs://{bucket}/{object}`` URI (``Part.from_uri``),
  so its size does not matter.

The answer is requested as JSON with ``response_schema=Verdict`` and validated again here. Retries: the
client's own retry is switched off and tenacity retries 408/429/5xx and connection errors with exponential
back-off and full jitter (``wait_random_exponential``), ``VIGINT_GEMINI_RETRY_*`` attempts; what still fails
raises.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)

MAX_INLINE_VIDEO_BYTES = 18 * 1024 * 1024  # Gemini's inline request limit is 20 MB (ai.google.dev, video understanding)
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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

    def __init__(self, message: str, total_tokens: int = 0):
        super().__init__(message)
        self.total_tokens = total_tokens


@dataclasses.dataclass(frozen=True)
class Media:
    """One media part: inline ``data`` or a ``uri`` (``gs://bucket/object``, Vertex AI only)."""

    mime_type: str
    data: bytes | None = None
    uri: str | None = None


@dataclasses.dataclass(frozen=True)
class Answer:
    """A verdict and its cost.

    Attributes:
        verdict: the parsed verdict.
        total_tokens: ``usage_metadata.total_token_count`` (0 if the answer carried none).
        attempts: requests sent (1 + retries).
    """

    verdict: Verdict
    total_tokens: int
    attempts: int


def _retryable(exc: BaseException) -> bool:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return int(getattr(exc, "code", 0) or 0) in RETRY_STATUS
    try:
        import httpx
    except ImportError:  # pragma: no cover - google-genai depends on httpx
        return isinstance(exc, (ConnectionError, TimeoutError))
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


class GeminiAnalyzer:
    """Asks one Gemini model for a verdict.

    Args:
        client: a ``google.genai.Client``.
        model: model name, e.g. ``gemini-2.5-flash``.
        backend: ``"gemini"`` (API key) or ``"vertex"``; Vertex accepts ``Media.uri``.
        retry_attempts: requests per analysis at most (tenacity), >= 1.
        retry_initial_s: back-off multiplier in seconds (waits are random in 0..initial*2^n).
        retry_max_s: longest single wait, seconds.
    """

    def __init__(self, client, model: str, backend: str = "gemini", retry_attempts: int = 4,
                 retry_initial_s: float = 1.0, retry_max_s: float = 16.0):
        self._client = client
        self.model = model
        self.backend = backend
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s

    @staticmethod
    def _http_options(base_url: str | None):
        from google.genai import types

        return types.HttpOptions(
            base_url=base_url or None,
            timeout=120_000,  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # tenacity retries (see module docstring)
        )

    @classmethod
    def create(cls, api_key: str, model: str, base_url: str | None = None, retry_attempts: int = 4,
               **retry) -> "GeminiAnalyzer":
        """A Gemini API client (``base_url``: e.g. a local fake; None: Google's endpoint)."""
        from google import genai

        client = genai.Client(api_key=api_key, http_options=cls._http_options(base_url))
        return cls(client, model, "gemini", retry_attempts, **retry)

    @classmethod
    def create_vertex(cls, project: str, location: str, model: str, base_url: str | None = None,
                      credentials=None, retry_attempts: int = 4, **retry) -> "GeminiAnalyzer":
        """A Vertex AI client for ``project``/``location`` (credentials: default ADC)."""
        from google import genai

        client = genai.Client(vertexai=True, project=project, location=location, credentials=credentials,
                              http_options=cls._http_options(base_url))
        return cls(client, model, "vertex", retry_attempts, **retry)

    @classmethod
    def from_settings(cls, s) -> "GeminiAnalyzer | None":
        """The analyzer ``vigint.config.Settings`` describe; None for the Gemini API without a key."""
        retry = {"retry_attempts": s.gemini_retry_attempts, "retry_initial_s": s.gemini_retry_initial_s,
                 "retry_max_s": s.gemini_retry_max_s}
        if s.gemini_backend == "vertex":
            return cls.create_vertex(s.project, s.gemini_location, s.gemini_model, s.gemini_base_url, **retry)
        if s.gemini_api_key is None:
            return None
        return cls.create(s.gemini_api_key.get_secret_value(), s.gemini_model, s.gemini_base_url, **retry)

    def analyze(self, *, prompt: str, system_instruction: str, media: list[Media] | None = None,
                clip: bytes | None = None, snapshot: bytes | None = None) -> Answer:
        """Sends the media and prompt; returns the parsed verdict and its token count.

        Args:
            prompt: the user prompt (``vigint.prompts.event_prompt``).
            system_instruction: the system prompt.
            media: the parts to attach, in order.
            clip: shorthand for an inline ``video/mp4`` part (before ``media``).
            snapshot: shorthand for an inline ``image/jpeg`` part (after ``clip``).

        Raises:
            MalformedVerdict: the answer is not JSON matching ``Verdict`` (or is empty/blocked).
            google.genai.errors.APIError: the API refused the request or kept failing after the retries.
            ValueError: a URI part with the Gemini API backend.
        """
        from google.genai import types

        items = ([Media("video/mp4", data=clip)] if clip is not None else []) + \
                ([Media("image/jpeg", data=snapshot)] if snapshot is not None else []) + list(media or [])
        parts = []
        for m in items:
            if m.uri is not None:
                if self.backend != "vertex":
                    raise ValueError("media by URI needs the Vertex AI backend")
                parts.append(types.Part.from_uri(file_uri=m.uri, mime_type=m.mime_type))
            else:
                parts.append(types.Part.from_bytes(data=m.data, mime_type=m.mime_type))
        parts.append(types.Part.from_text(text=prompt))
        request = dict(
            model=self.model,
            contents=[types.Content(role="user", parts=parts)],
            config=types.GenerateContentConfig(
                system_instruction=system_instruction,
                response_mime_type="application/json",
                response_schema=Verdict,
                temperature=0.2,
            ),
        )
        attempts = 0
        for attempt in Retrying(stop=stop_after_attempt(self.retry_attempts),
                                wait=wait_random_exponential(multiplier=self.retry_initial_s, max=self.retry_max_s),
                                retry=retry_if_exception(_retryable), reraise=True):
            with attempt:
                attempts += 1
                if attempts > 1:
                    log.info("gemini: retry %d of %s", attempts - 1, self.model)
                response = self._client.models.generate_content(**request)
        meta = getattr(response, "usage_metadata", None)
        tokens = int(getattr(meta, "total_token_count", 0) or 0)
        return Answer(_verdict(response, tokens), tokens, attempts)


def _verdict(response, tokens: int) -> Verdict:
    try:
        text = response.text
    except Exception as exc:  # noqa: BLE001 - the SDK raises ValueError on odd candidates
        raise MalformedVerdict(f"answer has no text ({exc})", tokens) from None
    if not text or not text.strip():
        reason = ""
        if response.candidates:
            reason = f" (finish reason {response.candidates[0].finish_reason})"
        raise MalformedVerdict(f"empty answer{reason}", tokens)
    try:
        return Verdict.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(map(str, err["loc"])) or "answer"
        raise MalformedVerdict(f"answer is not a valid verdict: {where}: {err['msg']}", tokens) from None


_cache_lock = threading.Lock()
_cache: tuple[object, object] | None = None


def default_analyzer():
    """The analyzer for the current settings, built once per ``vigint.config.settings()`` object.

    ``vigint.clients.reset()`` clears the settings cache, so a new environment gets a new analyzer.
    Returns None for the Gemini API backend without ``GEMINI_API_KEY``.
    """
    global _cache
    from vigint import config

    s = config.settings()
    with _cache_lock:
        if _cache is None or _cache[0] is not s:
            _cache = (s, GeminiAnalyzer.from_settings(s))
        return _cache[1]
