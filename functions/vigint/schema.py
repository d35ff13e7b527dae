"""The edge event messages: schema version 1 (docs/contracts.md, "Event message") and version 2, the event
lifecycle (docs/contracts.md, "Event lifecycle (schema version 2)": ``LifecycleMessage``).

``EdgeEvent`` is strict: unknown fields are rejected, identifiers must match the contract's patterns,
``end_time >= start_time``, labels are distinct, times carry a UTC offset, clip and snapshot may be
absent (``null``: e.g. ``camera_health`` events, or a clip the edge could not cut), and the clip/snapshot objects must be
exactly the event's own ``tenants/{t}/devices/{d}/events/{e}/clip.mp4`` / ``snapshot.jpg`` (so a device cannot point an
event at another device's or tenant's objects).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Identifiers become Firestore document ids, which must not be "." or ".." nor match "__.*__" (reserved:
# https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields). A slug cannot: it starts
# with a letter or digit and has no "_" or ".".
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
# 8..64 of [A-Za-z0-9_-], except those starting with "__" and ending with "__": one of the first two or of the last
# two characters is not "_". Written without look-ahead so that pydantic's regex engine, Python's re and the
# OpenAPI document's ECMA-262 readers all take it.
_ID_CHAR, _ID_NOT_UNDERSCORE = "[A-Za-z0-9_-]", "[A-Za-z0-9-]"
EVENT_ID_PATTERN = (
    rf"^(?:{_ID_NOT_UNDERSCORE}{_ID_CHAR}{{7,63}}|{_ID_CHAR}{_ID_NOT_UNDERSCORE}{_ID_CHAR}{{6,62}}"
    rf"|{_ID_CHAR}{{6,62}}{_ID_NOT_UNDERSCORE}{_ID_CHAR}|{_ID_CHAR}{{7,63}}{_ID_NOT_UNDERSCORE})$"
)
INT64_MAX = 2 ** 63 - 1  # Firestore integers are signed 64-bit
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Base64 of a 16-byte MD5 digest, as Cloud Storage's ``md5Hash`` and ``Content-MD5`` spell it (RFC 1864).
MD5_BASE64_PATTERN = r"^[A-Za-z0-9+/]{22}==$"
# Allowed files of one event: name -> (content type, size limit in bytes). Limits from docs/contracts.md.
EVENT_FILES: dict[str, tuple[str, int]] = {
    "clip.mp4": ("video/mp4", 512 * 1024 * 1024),
    "snapshot.jpg": ("image/jpeg", 10 * 1024 * 1024),
}

# Schema version 2 (docs/contracts.md, "Event lifecycle"): HLS media segments and one snapshot per message.
SEGMENT_NAME_PATTERN = r"^segments/[0-9]{5}\.ts$"
SNAPSHOT_NAME_PATTERN = r"^snapshots/[0-9]{5}\.jpg$"
SEGMENT_CONTENT_TYPE = "video/mp2t"
MAX_SEGMENT_BYTES = 32 * 1024 * 1024


def matches(pattern: str, value: object) -> bool:
    """True if ``value`` is a string matching ``pattern`` as a whole (``re.fullmatch``: unlike ``re.match``
    with ``$``, a trailing newline does not pass)."""
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


def event_file_rule(name: str) -> tuple[str, int] | None:
    """The content type and size limit (bytes) of an event file name, or None if the name is not allowed.

    Names: ``clip.mp4``, ``snapshot.jpg`` (``EVENT_FILES``), ``segments/NNNNN.ts`` (``video/mp2t``, 32 MiB)
    and ``snapshots/NNNNN.jpg`` (``image/jpeg``, 10 MiB), as in docs/contracts.md.
    """
    if name in EVENT_FILES:
        return EVENT_FILES[name]
    if re.match(SEGMENT_NAME_PATTERN, name):
        return SEGMENT_CONTENT_TYPE, MAX_SEGMENT_BYTES
    if re.match(SNAPSHOT_NAME_PATTERN, name):
        return EVENT_FILES["snapshot.jpg"]
    return None


Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None or v.utcoffset() is None:
        raise ValueError("time must carry a UTC offset (RFC 3339, e.g. 2026-11-22T06:00:00Z)")
    return v


UtcTime = Annotated[datetime, AfterValidator(_aware)]


def event_prefix(tenant_id: str, device_id: str, event_id: str) -> str:
    """``tenants/{tenant_id}/devices/{device_id}/events/{event_id}/``: where an event's objects live."""
    return f"tenants/{tenant_id}/devices/{device_id}/events/{event_id}/"


class _Strict(BaseModel):
    # No NaN or infinities (JSON has none; pydantic's parser would take NaN, Infinity and 1e999).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Detection(_Strict):
    """One detection: ``box`` is ``[x1, y1, x2, y2]`` normalised to 0..1 of the frame."""

    label: Label
    score: Score
    box: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=4, max_length=4)]
    time: UtcTime

    @model_validator(mode="after")
    def _ordered_box(self) -> "Detection":
        x1, y1, x2, y2 = self.box
        if x2 < x1 or y2 < y1:
            raise ValueError("box must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return self


ZoneName = Annotated[str, Field(min_length=1, max_length=64)]
MAX_ZONE_EVENTS = 100  # docs/contracts.md: zone_events "at most 100 entries"; the edge keeps the first 100


class ZoneEvent(_Strict):
    """A tracked object entered or left a zone: ``zone`` (a zone name, checked as ``zones`` are), ``track_id``
    (the device's tracker id, >= 0), ``label`` (the object's class), ``kind`` ``enter``|``exit``, ``time``
    (capture time of the frame at which the change was decided, RFC 3339 with offset)."""

    zone: ZoneName
    track_id: int = Field(ge=0, le=INT64_MAX)
    label: Label
    kind: Literal["enter", "exit"]
    time: UtcTime


class Clip(_Strict):
    """The event clip (H.264 mp4, faststart)."""

    object: str = Field(max_length=1024)
    content_type: Literal["video/mp4"]
    bytes: int = Field(ge=0, le=EVENT_FILES["clip.mp4"][1])
    sha256: str = Field(pattern=SHA256_PATTERN)
    md5: str | None = Field(default=None, pattern=MD5_BASE64_PATTERN)  # base64 MD5; ingest compares md5Hash
    duration_s: float = Field(ge=0.0)
    frames: int = Field(ge=0, le=INT64_MAX)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    fps: float = Field(gt=0.0, le=1000.0)


class Snapshot(_Strict):
    """The event's best still (JPEG)."""

    object: str = Field(max_length=1024)
    content_type: Literal["image/jpeg"]
    bytes: int = Field(ge=0, le=EVENT_FILES["snapshot.jpg"][1])
    sha256: str = Field(pattern=SHA256_PATTERN)
    md5: str | None = Field(default=None, pattern=MD5_BASE64_PATTERN)  # base64 MD5; ingest compares md5Hash
    time: UtcTime


#: ``kind`` of an event: people/vehicles seen, a camera's or device's health, or a clip the tenant asked for
#: (command ``request_clip``: stored, not analysed, never alerted).
EventKind = Literal["detection", "camera_health", "recording"]


class _EventMessage(_Strict):
    """The fields and checks that both schema versions share (``EdgeEvent``: 1, ``LifecycleMessage``: 2).

    Field order is that of version 1; version 2 narrows ``schema_version`` and ``kind`` and adds its own
    fields after these.
    """

    schema_version: Literal[1, 2]
    event_id: EventId
    tenant_id: Slug
    device_id: Slug
    camera_id: Slug
    # "recording": a clip the tenant asked for (command request_clip): severity "detection", labels [].
    kind: EventKind
    severity: Literal["alert", "detection"]
    labels: Annotated[list[Label], Field(max_length=100)]
    start_time: UtcTime
    end_time: UtcTime
    top_score: Score
    max_count: Annotated[dict[Label, Annotated[int, Field(ge=0, le=INT64_MAX)]], Field(max_length=100)]
    detections: Annotated[list[Detection], Field(max_length=50)]
    zones: Annotated[list[ZoneName], Field(max_length=50)]
    # Zone entries and exits in time order; absent in messages of devices that predate it (then []). More than
    # MAX_ZONE_EVENTS is refused, like more than 50 detections: the edge never sends more.
    zone_events: Annotated[list[ZoneEvent], Field(max_length=MAX_ZONE_EVENTS)] = Field(default_factory=list)
    clip: Clip | None = None
    snapshot: Snapshot | None = None

    def _checked_prefix(self) -> str:
        """The event's object prefix (``event_prefix``), once times and labels are checked.

        Raises:
            ValueError: ``end_time`` before ``start_time``, or repeated labels.
        """
        if self.end_time < self.start_time:
            raise ValueError("end_time must not be before start_time")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        return event_prefix(self.tenant_id, self.device_id, self.event_id)

    def _check_clip(self, prefix: str) -> None:
        """Raises ValueError if there is a clip and it is not ``{prefix}clip.mp4``."""
        if self.clip is not None and self.clip.object != prefix + "clip.mp4":
            raise ValueError(f"clip.object must be {prefix}clip.mp4")

    @classmethod
    def parse(cls, data: bytes | str) -> Self:
        """Validates UTF-8 JSON message data as this schema version's message.

        Raises:
            pydantic.ValidationError: not JSON, or not a valid message (event, lifecycle message).
        """
        return cls.model_validate_json(data)


class EdgeEvent(_EventMessage):
    """An event as published by an edge device on ``edge-events`` (schema version 1).

    Raises (on validation):
        pydantic.ValidationError: any field missing, extra, of the wrong type or out of range.
    """

    schema_version: Literal[1]

    @model_validator(mode="after")
    def _consistent(self) -> "EdgeEvent":
        prefix = self._checked_prefix()
        self._check_clip(prefix)
        if self.snapshot is not None and self.snapshot.object != prefix + "snapshot.jpg":
            raise ValueError(f"snapshot.object must be {prefix}snapshot.jpg")
        return self


# ------------------------------------------------------------------------------------------ schema version 2

MAX_SEGMENT_INDEX = 99_999  # segments/{index:05d}.ts: five digits
# New segments one message may bring: ingest writes them in the message's transaction, kept under the
# 500 writes per commit that Firestore long allowed (https://cloud.google.com/firestore/quotas#writes_and_transactions).
# Events split at max_length_s (60 s by default), i.e. about 30 segments of 2-4 s.
MAX_SEGMENTS_PER_MESSAGE = 400
LifecyclePhase = Literal["start", "update", "end"]


class Segment(_Strict):
    """One HLS media segment of an event (MPEG-TS, H.264, 2-4 s, starting at a keyframe).

    Attributes:
        index: 0-based position in the event (``segments/{index:05d}.ts``).
        object: ``tenants/{t}/devices/{d}/events/{e}/segments/{index:05d}.ts``.
        bytes: size in bytes (at most 32 MiB).
        start_s: seconds from the event clip's start (``start_time``) to the segment's first frame.
        duration_s: length in seconds.
    """

    index: int = Field(ge=0, le=MAX_SEGMENT_INDEX)
    object: str = Field(max_length=1024)
    content_type: Literal["video/mp2t"]
    bytes: int = Field(ge=0, le=MAX_SEGMENT_BYTES)
    sha256: str = Field(pattern=SHA256_PATTERN)
    md5: str | None = Field(default=None, pattern=MD5_BASE64_PATTERN)  # base64 MD5; ingest compares md5Hash
    start_s: float = Field(ge=0.0)
    duration_s: float = Field(gt=0.0, le=600.0)


class LifecycleMessage(_EventMessage):
    """One message of a ``detection`` event's lifecycle on ``edge-events`` (schema version 2).

    Every message is a whole snapshot of the event so far (cumulative labels, times, counts, detections,
    zones, zone events, the latest snapshot) plus the segments that are new in it. ``start`` has ``seq`` 0, each later
    message ``seq`` + 1, the ``end`` the highest. ``camera_health`` and ``recording`` events stay version 1.

    Raises (on validation):
        pydantic.ValidationError: any field missing, extra, of the wrong type or out of range; ``seq`` and
            ``phase`` disagreeing (``start`` is exactly seq 0); ``end_time`` before ``start_time``; repeated
            labels; an object outside the event's prefix or misnamed (``segments/{index:05d}.ts``,
            ``snapshots/NNNNN.jpg``, ``clip.mp4``); segments out of index order or not contiguous; a clip,
            ``segment_count`` or ``interrupted: true`` on a message that is not the ``end``; an event that
            continues itself.
    """

    schema_version: Literal[2]
    kind: Literal["detection"]
    phase: LifecyclePhase
    seq: int = Field(ge=0, le=1_000_000)
    first_seen: UtcTime
    alert_first_seen: UtcTime | None = None
    confirmed_at: UtcTime
    alert_confirmed_at: UtcTime | None = None
    sent_at: UtcTime
    segments: Annotated[list[Segment], Field(max_length=MAX_SEGMENTS_PER_MESSAGE)] = Field(default_factory=list)
    segment_count: int | None = Field(default=None, ge=0, le=MAX_SEGMENT_INDEX + 1)
    continues: EventId | None = None
    interrupted: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "LifecycleMessage":
        if (self.phase == "start") != (self.seq == 0):
            raise ValueError("seq must be 0 exactly for the start")
        prefix = self._checked_prefix()
        if self.snapshot is not None and not (self.snapshot.object.startswith(prefix) and re.match(
                SNAPSHOT_NAME_PATTERN, self.snapshot.object[len(prefix):])):
            raise ValueError(f"snapshot.object must be {prefix}snapshots/NNNNN.jpg")
        for i, seg in enumerate(self.segments):
            if seg.object != f"{prefix}segments/{seg.index:05d}.ts":
                raise ValueError(f"segments[{i}].object must be {prefix}segments/{seg.index:05d}.ts")
            if i and seg.index != self.segments[i - 1].index + 1:
                raise ValueError("segments must be in index order and contiguous")
        if self.phase != "end":
            if self.clip is not None or self.segment_count is not None or self.interrupted:
                raise ValueError("clip, segment_count and interrupted belong to the end only")
        elif self.segment_count is not None:
            if self.segments and self.segments[-1].index >= self.segment_count:
                raise ValueError("a segment's index is not below segment_count")
        self._check_clip(prefix)
        if self.continues == self.event_id:
            raise ValueError("an event cannot continue itself")
        return self
