"""The event messages the edge publishes to Pub/Sub topic ``edge-events``.

Two schema versions (``docs/contracts.md``): version 1 (``EdgeEvent``, "Event message"), a whole event in one
message, still used for ``camera_health`` and ``recording`` events; and version 2 (``LifecycleMessage``,
"Event lifecycle (schema version 2)"), the ``start`` / ``update`` / ``end`` messages of a ``detection`` event,
each a cumulative snapshot of the event so far plus the HLS segments new in it. The cloud validates the same
messages with ``functions/vigint/schema.py``. Unknown fields are rejected (``extra="forbid"``) so a typo never
travels. ``clip`` and ``snapshot`` are optional: ``clip`` is null when the spool had to evict the clip to stay
within its disk budget (see ``vigint_edge.delivery.spool``), ``snapshot`` is null for events that have no picture
(``camera_health``).

Event ids are ``evt_`` + a 26-character ULID (https://github.com/ulid/spec): 48-bit Unix time in ms and 80
random bits in Crockford base32, so ids sort by creation time as plain strings.
"""

from __future__ import annotations

import json
import os
import re
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
    model_serializer,
    model_validator,
)

__all__ = [
    "CLIP_CONTENT_TYPE",
    "LIFECYCLE_SCHEMA_VERSION",
    "SEGMENT_CONTENT_TYPE",
    "LifecycleMessage",
    "SegmentRef",
    "load_message",
    "segment_name",
    "snapshot_name",
    "SNAPSHOT_CONTENT_TYPE",
    "ClipRef",
    "DetectionRef",
    "EdgeEvent",
    "MAX_ZONE_EVENTS",
    "ZoneEventRef",
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
LIFECYCLE_SCHEMA_VERSION = 2
SEGMENT_CONTENT_TYPE = "video/mp2t"
MAX_SEGMENT_BYTES = 32 * 1024**2  # docs/contracts.md: segments "at most 32 MiB"
SEGMENT_NAME_PATTERN = r"^segments/(\d{5})\.ts$"
SNAPSHOTS_NAME_PATTERN = r"^snapshots/(\d{5})\.jpg$"
MAX_DETECTIONS = 50  # docs/contracts.md: "at most 50 entries (best per second)"
MAX_ZONE_EVENTS = 100  # docs/contracts.md: zone_events "at most 100 entries (the first ones)"

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
# Base64 of the 16-byte MD5, as Cloud Storage's ``md5Hash`` and ``Content-MD5`` spell it (RFC 1864).
Md5Base64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{22}==$")]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")]


def _distinct(labels: list[str]) -> list[str]:
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    return labels


Labels = Annotated[list[Label], Field(max_length=100), AfterValidator(_distinct)]  # distinct, most frequent first
Score = Annotated[float, Field(ge=0.0, le=1.0)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def segment_name(index: int) -> str:
    """The file name (under the event's prefix) of HLS segment ``index``: ``segments/{index:05d}.ts``."""
    if not 0 <= index <= 99999:
        raise ValueError(f"segment index must be 0..99999, got {index}")
    return f"segments/{index:05d}.ts"


def snapshot_name(seq: int) -> str:
    """The file name (under the event's prefix) of the snapshot message ``seq`` brought:
    ``snapshots/{seq:05d}.jpg``."""
    if not 0 <= seq <= 99999:
        raise ValueError(f"message seq must be 0..99999, got {seq}")
    return f"snapshots/{seq:05d}.jpg"


def object_name(tenant_id: str, device_id: str, event_id: str, name: str) -> str:
    """The GCS object name of one event file, as laid out in docs/contracts.md.

    Args:
        tenant_id: tenant slug.
        device_id: device slug.
        event_id: the event id.
        name: ``"clip.mp4"``, ``"snapshot.jpg"``, ``segment_name(i)`` or ``snapshot_name(seq)``.

    Returns:
        ``tenants/{tenant_id}/devices/{device_id}/events/{event_id}/{name}``.
    """
    return f"tenants/{tenant_id}/devices/{device_id}/events/{event_id}/{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ObjectRef(_Strict):
    """A stored file's reference. ``md5`` (base64 MD5, set by the deliverer once it uploaded the file; the cloud
    compares it with the stored object's ``md5Hash``) is left out of the JSON while None, so messages of a file
    uploaded before it existed keep their bytes."""

    md5: Md5Base64 | None = None

    @model_serializer(mode="wrap")
    def _without_unset_md5(self, handler):
        data = handler(self)
        if isinstance(data, dict) and data.get("md5") is None:
            data.pop("md5", None)
        return data


class ClipRef(_ObjectRef):
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
            info: a ``vigint_edge.recording.clip.ClipInfo`` (anything with its attributes).
            object: GCS object name (see ``object_name``).
        """
        return cls(
            object=object, bytes=info.bytes, sha256=info.sha256, duration_s=info.duration_s,
            frames=info.frames, width=info.width, height=info.height, fps=info.fps,
        )


class SnapshotRef(_ObjectRef):
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


ZoneName = Annotated[str, Field(min_length=1, max_length=64)]


class ZoneEventRef(_Strict):
    """A tracked object entered or left a zone of the camera (``vigint_edge.detection.zones.ZoneChange``).

    Attributes:
        zone: the zone's name (as in ``zones``).
        track_id: the tracker's id of the object (>= 0; unique per camera while the daemon runs).
        label: the object's class label (e.g. ``"person"``).
        kind: ``"enter"`` or ``"exit"``.
        time: UTC capture time of the frame at which the change was decided (after the zone's inertia).
    """

    zone: ZoneName
    track_id: int = Field(ge=0)
    label: Label
    kind: Literal["enter", "exit"]
    time: UtcDatetime


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
    labels: Labels = Field(default_factory=list)
    start_time: UtcDatetime
    end_time: UtcDatetime
    top_score: Score = 0.0
    max_count: dict[Label, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, max_length=100)
    detections: list[DetectionRef] = Field(default_factory=list, max_length=MAX_DETECTIONS)
    zones: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=50)
    zone_events: list[ZoneEventRef] = Field(default_factory=list, max_length=MAX_ZONE_EVENTS)
    clip: ClipRef | None = None
    snapshot: SnapshotRef | None = None

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


class SegmentRef(_ObjectRef):
    """One HLS media segment of an event (MPEG-TS, H.264, starting at a keyframe).

    Attributes:
        index: 0, 1, 2, ... over the event, contiguous.
        object: GCS object name, ``.../events/{event_id}/segments/{index:05d}.ts``.
        content_type: always ``video/mp2t``.
        bytes: file size in bytes (at most 32 MiB).
        sha256: lower-case hex SHA-256 of the file.
        start_s: seconds from the start of the event clip (the clip's zero) to the segment's first frame.
        duration_s: seconds until the next segment's first frame (the last one: until the clip's end).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    index: int = Field(ge=0, le=99999)
    object: str = Field(min_length=1, max_length=1024)
    content_type: Literal["video/mp2t"] = SEGMENT_CONTENT_TYPE
    bytes: int = Field(ge=0, le=MAX_SEGMENT_BYTES)
    sha256: Sha256Hex
    start_s: float = Field(ge=0.0)
    duration_s: float = Field(gt=0.0)


class LifecycleMessage(_Strict):
    """One message of a ``detection`` event's lifecycle (docs/contracts.md, "Event lifecycle (schema version
    2)"): ``start`` (seq 0, at confirmation), ``update``s, one ``end`` (the highest seq).

    Every message is the whole event so far (labels, times, counts, detections, zones, zone events, latest
    snapshot) plus
    the segments new in it. Times are UTC.

    Attributes (beyond version 1's, whose meaning is unchanged):
        phase: ``"start"`` | ``"update"`` | ``"end"``.
        seq: 0 for the start, +1 for each later message.
        first_seen: capture time of the first frame showing the track that confirmed the event.
        alert_first_seen: the same for the track that made it an alert (None while it is not one).
        confirmed_at: capture time of the frame at which the event was confirmed.
        alert_confirmed_at: capture time of the frame at which it became an alert (None while not).
        sent_at: device clock when the message was handed to Pub/Sub (set by delivery; None in the spool).
        snapshot: the latest snapshot so far, ``snapshots/{seq:05d}.jpg`` of the message that brought it.
        segments: the segments new in this message, in index order, contiguous.
        segment_count: end only: the event has segments ``0..segment_count-1``.
        clip: end only: the whole clip (``clip.mp4``), None if there is none (evicted, interrupted, failed).
        continues: the event id this one continues (a split at ``max_length_s``).
        interrupted: end only: the device restarted mid-event and closed the event from its spool.

    Raises:
        pydantic.ValidationError: bad fields, or a rule of the contract broken (seq/phase, end-only fields on
            a start or update, objects not this event's, segments not contiguous, severity ``alert`` without
            ``alert_confirmed_at``, times out of order).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[2] = LIFECYCLE_SCHEMA_VERSION
    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    tenant_id: Slug
    device_id: Slug
    camera_id: Slug
    kind: Literal["detection"] = "detection"
    phase: Literal["start", "update", "end"]
    seq: int = Field(ge=0, le=99999)
    severity: Literal["alert", "detection"]
    labels: Labels = Field(default_factory=list)
    start_time: UtcDatetime
    end_time: UtcDatetime
    first_seen: UtcDatetime
    alert_first_seen: UtcDatetime | None = None
    confirmed_at: UtcDatetime
    alert_confirmed_at: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None
    top_score: Score = 0.0
    max_count: dict[Label, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, max_length=100)
    detections: list[DetectionRef] = Field(default_factory=list, max_length=MAX_DETECTIONS)
    zones: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=50)
    zone_events: list[ZoneEventRef] = Field(default_factory=list, max_length=MAX_ZONE_EVENTS)
    snapshot: SnapshotRef | None = None
    segments: list[SegmentRef] = Field(default_factory=list, max_length=1000)
    segment_count: int | None = Field(default=None, ge=0, le=100000)
    clip: ClipRef | None = None
    continues: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    interrupted: bool = False

    @model_validator(mode="after")
    def _rules(self) -> "LifecycleMessage":
        if (self.phase == "start") != (self.seq == 0):
            raise ValueError("seq must be 0 exactly for the start message")
        if self.phase != "end":
            if self.segment_count is not None or self.clip is not None or self.interrupted:
                raise ValueError("segment_count, clip and interrupted belong to the end message only")
        elif self.segment_count is None:
            raise ValueError("the end message must give segment_count")
        if self.end_time < self.start_time:
            raise ValueError("end_time must not be before start_time")
        if self.first_seen > self.confirmed_at:
            raise ValueError("first_seen must not be after confirmed_at")
        if (self.severity == "alert") != (self.alert_confirmed_at is not None) or \
                (self.alert_first_seen is None) != (self.alert_confirmed_at is None):
            raise ValueError("severity alert goes with alert_first_seen and alert_confirmed_at (both set)")
        if self.continues == self.event_id:
            raise ValueError("an event cannot continue itself")
        prefix = object_name(self.tenant_id, self.device_id, self.event_id, "")
        if self.clip is not None and self.clip.object != prefix + CLIP_NAME:
            raise ValueError(f"clip object must be {prefix + CLIP_NAME}, got {self.clip.object}")
        if self.snapshot is not None:
            m = re.match(SNAPSHOTS_NAME_PATTERN, self.snapshot.object.removeprefix(prefix)) \
                if self.snapshot.object.startswith(prefix) else None
            if m is None or int(m.group(1)) > self.seq:
                raise ValueError(f"snapshot object must be {prefix}snapshots/NNNNN.jpg of this or an earlier "
                                 f"message, got {self.snapshot.object}")
        for i, seg in enumerate(self.segments):
            if i and seg.index != self.segments[i - 1].index + 1:
                raise ValueError("segments must be contiguous, in index order")
            if seg.object != prefix + segment_name(seg.index):
                raise ValueError(f"segment {seg.index} object must be {prefix + segment_name(seg.index)}")
        if self.segment_count is not None and self.segments and self.segments[-1].index >= self.segment_count:
            raise ValueError("segment_count must exceed every segment index")
        return self

    def to_message_bytes(self) -> bytes:
        """The Pub/Sub ``data``: compact UTF-8 JSON, datetimes as RFC 3339 UTC with ``Z``."""
        return self.model_dump_json().encode("utf-8")

    @property
    def item_id(self) -> str:
        """The spool item id ``{event_id}.{seq:05d}``: sorts by (event_id, seq)."""
        return f"{self.event_id}.{self.seq:05d}"


def load_message(data: bytes) -> "EdgeEvent | LifecycleMessage":
    """Parses a spooled or published message of either schema version (by its ``schema_version``).

    Raises:
        pydantic.ValidationError, ValueError: not a valid message.
    """
    head = json.loads(data)
    if isinstance(head, dict) and head.get("schema_version") == LIFECYCLE_SCHEMA_VERSION:
        return LifecycleMessage.model_validate_json(data)
    return EdgeEvent.model_validate_json(data)


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
