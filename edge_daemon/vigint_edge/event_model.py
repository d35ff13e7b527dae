"""The event message the edge publishes to Pub/Sub topic ``edge-events`` (schema version 1).

The shape is the one in ``docs/contracts.md`` ("Event message"); the cloud validates the same message with
``functions/vigint/schema.py:EdgeEvent``. Unknown fields are rejected (``extra="forbid"``) so a typo never
travels. ``clip`` and ``snapshot`` are optional: ``clip`` is null when the spool had to evict the clip to stay
within its disk budget (see ``vigint_edge.spool``), ``snapshot`` is null for events that have no picture
(``camera_health``).

Event ids are ``evt_`` + a 26-character ULID (https://github.com/ulid/spec): 48-bit Unix time in ms and 80
random bits in Crockford base32, so ids sort by creation time as plain strings.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

__all__ = [
    "CLIP_CONTENT_TYPE",
    "SNAPSHOT_CONTENT_TYPE",
    "ClipRef",
    "DetectionRef",
    "EdgeEvent",
    "SnapshotRef",
    "format_time",
    "new_event_id",
    "object_name",
]

SCHEMA_VERSION = 1
CLIP_NAME = "clip.mp4"
SNAPSHOT_NAME = "snapshot.jpg"
CLIP_CONTENT_TYPE = "video/mp4"
SNAPSHOT_CONTENT_TYPE = "image/jpeg"
MAX_DETECTIONS = 50  # docs/contracts.md: "at most 50 entries (best per second)"

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def format_time(value: datetime) -> str:
    """Formats an aware datetime as RFC 3339 UTC with microseconds and ``Z``.

    Args:
        value: a timezone-aware datetime.

    Returns:
        e.g. ``"2026-11-22T06:00:00.000000Z"``.

    Raises:
        ValueError: ``value`` is naive (its zone would be a guess).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware (UTC); got a naive datetime")
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_time, return_type=str, when_used="always"),
]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Sha256Hex = Annotated[str, Field(pattern=SHA256_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def object_name(tenant_id: str, device_id: str, event_id: str, name: str) -> str:
    """The GCS object name of one event file, as laid out in docs/contracts.md.

    Args:
        tenant_id: tenant slug.
        device_id: device slug.
        event_id: the event id.
        name: ``"clip.mp4"`` or ``"snapshot.jpg"``.

    Returns:
        ``tenants/{tenant_id}/devices/{device_id}/events/{event_id}/{name}``.
    """
    return f"tenants/{tenant_id}/devices/{device_id}/events/{event_id}/{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClipRef(_Strict):
    """Where the event clip lives and what it is (H.264 mp4, faststart).

    Attributes:
        object: GCS object name in the clips bucket.
        content_type: always ``video/mp4``.
        bytes: file size in bytes.
        sha256: lower-case hex SHA-256 of the file.
        duration_s: duration in seconds.
        frames: number of video frames.
        width: frame width in pixels (even).
        height: frame height in pixels (even).
        fps: average frames per second.
    """

    object: str = Field(min_length=1, max_length=1024)
    content_type: Literal["video/mp4"] = CLIP_CONTENT_TYPE
    bytes: int = Field(ge=0)
    sha256: Sha256Hex
    duration_s: float = Field(ge=0.0)
    frames: int = Field(ge=0)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    fps: float = Field(gt=0.0, le=1000.0)

    @classmethod
    def from_info(cls, info, object: str) -> "ClipRef":  # noqa: A002 - contract field name
        """Builds the reference from a finished clip.

        Args:
            info: a ``vigint_edge.clip.ClipInfo`` (anything with its attributes).
            object: GCS object name (see ``object_name``).
        """
        return cls(
            object=object, bytes=info.bytes, sha256=info.sha256, duration_s=info.duration_s,
            frames=info.frames, width=info.width, height=info.height, fps=info.fps,
        )


class SnapshotRef(_Strict):
    """Where the event snapshot lives.

    Attributes:
        object: GCS object name in the clips bucket.
        content_type: always ``image/jpeg``.
        bytes: size in bytes.
        sha256: lower-case hex SHA-256 of the JPEG.
        time: UTC time the frame was captured.
    """

    object: str = Field(min_length=1, max_length=1024)
    content_type: Literal["image/jpeg"] = SNAPSHOT_CONTENT_TYPE
    bytes: int = Field(ge=0)
    sha256: Sha256Hex
    time: UtcDatetime

    @classmethod
    def for_jpeg(cls, jpeg: bytes, object: str, time: datetime) -> "SnapshotRef":  # noqa: A002
        """Builds the reference for JPEG bytes (size and SHA-256 computed here)."""
        import hashlib

        return cls(object=object, bytes=len(jpeg), sha256=hashlib.sha256(jpeg).hexdigest(), time=time)


class DetectionRef(_Strict):
    """One detection kept in the event.

    Attributes:
        label: class label (e.g. ``"person"``).
        score: confidence 0..1.
        box: ``[x1, y1, x2, y2]`` normalised to 0..1 of the frame width/height, x1 <= x2, y1 <= y2.
        time: UTC capture time of the frame.
    """

    label: Label
    score: Score
    box: list[Unit] = Field(min_length=4, max_length=4)
    time: UtcDatetime

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: list[float]) -> list[float]:
        if box[0] > box[2] or box[1] > box[3]:
            raise ValueError("box must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return box


class EdgeEvent(_Strict):
    """The event message (docs/contracts.md, "Event message"), schema version 1.

    The constraints mirror the cloud's ``functions/vigint/schema.py`` so a bad event fails here, at
    creation, instead of being dropped by ``ingest``: label pattern, at most 50 detections, and the clip
    and snapshot objects must be this event's own (``object_name(...)``).

    Raises:
        pydantic.ValidationError: on construction/validation with bad fields (unknown field, bad slug,
            naive datetime, end before start, more than 50 detections, ...).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    tenant_id: Slug
    device_id: Slug
    camera_id: Slug
    kind: Literal["detection", "camera_health", "recording"]
    severity: Literal["alert", "detection"]
    labels: list[Label] = Field(default_factory=list, max_length=100)
    start_time: UtcDatetime
    end_time: UtcDatetime
    top_score: Score = 0.0
    max_count: dict[Label, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, max_length=100)
    detections: list[DetectionRef] = Field(default_factory=list, max_length=MAX_DETECTIONS)
    zones: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=50)
    clip: ClipRef | None = None
    snapshot: SnapshotRef | None = None

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels

    @model_validator(mode="after")
    def _times(self) -> "EdgeEvent":
        if self.end_time < self.start_time:
            raise ValueError("end_time must not be before start_time")
        for ref, name in ((self.clip, CLIP_NAME), (self.snapshot, SNAPSHOT_NAME)):
            expected = object_name(self.tenant_id, self.device_id, self.event_id, name)
            if ref is not None and ref.object != expected:
                raise ValueError(f"{name} object must be {expected} (docs/contracts.md), got {ref.object}")
        return self

    def to_message_bytes(self) -> bytes:
        """The Pub/Sub ``data``: compact UTF-8 JSON, datetimes as RFC 3339 UTC with ``Z``."""
        return self.model_dump_json().encode("utf-8")


_ulid_lock = threading.Lock()
_ulid_last: tuple[int, int] = (-1, 0)


def _crockford(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_CROCKFORD[value & 0x1F])
        value >>= 5
    return "".join(reversed(out))


def new_event_id(now: datetime) -> str:
    """A new time-ordered event id: ``evt_`` + 26-character ULID.

    Within one process, ids made in the same millisecond are strictly increasing (the random part is
    incremented, as the ULID spec's monotonic mode does), so sorting ids sorts events by creation.

    Args:
        now: creation time, timezone-aware (its Unix time in ms is the ULID's 48-bit timestamp).

    Returns:
        e.g. ``"evt_01JDQ7Z3K8M2V4X6Y8Z0A1B2C3"`` (30 characters).

    Raises:
        ValueError: ``now`` is naive or before 1970.
    """
    global _ulid_last
    ms = int(_to_utc(now).timestamp() * 1000)
    if not 0 <= ms < (1 << 48):
        raise ValueError(f"time {now!r} out of the ULID range")
    with _ulid_lock:
        last_ms, last_rand = _ulid_last
        if ms == last_ms and last_rand < (1 << 80) - 1:
            rand = last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _ulid_last = (ms, rand)
    return "evt_" + _crockford((ms << 80) | rand, 26)
