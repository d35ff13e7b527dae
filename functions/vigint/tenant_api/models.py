"""Pydantic models of the tenant API: request bodies, query strings and answers.

They validate every request (a failure is a ``400 {"error", "field"}`` naming the field) and, through
``model_json_schema``, are the schemas of ``GET /openapi.json``. Times are RFC 3339 with an offset (UTC in
answers); durations in seconds; points of zones normalised to 0..1 of the frame (x right, y down).
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from vigint.schema import EVENT_ID_PATTERN, SLUG_PATTERN, EventKind

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, description="lower-case slug, 2..63 characters")]
EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _-]*$")]
# Zone names are slugs, as on the edge (edge_daemon/vigint_edge/config.py ZoneConfig), so every zone set here
# reaches the device; the zone filter of the event listing uses the same names.
ZoneName = Slug
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local time HH:MM")]
Text = Annotated[str, Field(max_length=200)]
Role = Literal["admin", "viewer"]
Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2, description="[x, y], 0..1 of the frame")]
Month = Annotated[str, Field(pattern=r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC)")]


def _utc_in_range(v: datetime) -> datetime:
    from datetime import timezone

    try:
        v = v.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None
    if not 1970 <= v.year <= 9998:
        raise ValueError("time must be between 1970 and 9998")
    return v


Instant = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]

MAX_RECIPIENTS = 50
MAX_ZONES = 32
MAX_MASKS = 32
MAX_POLYGON_POINTS = 64


class _In(BaseModel):
    """Request models: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(_Out):
    """Every error answer: ``field`` names the offending body/query field (dotted path) when there is one."""

    error: str
    field: str | None = None


# ------------------------------------------------------------------------------------------ tenant


def _iana(v: str) -> str:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("not a known IANA time zone") from None
    return v


class QuietHours(_In):
    """No alert e-mails between ``start`` and ``end`` local time in ``timezone`` (may span midnight)."""

    start: ClockTime
    end: ClockTime
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Paris")

    @field_validator("timezone")
    @classmethod
    def _iana(cls, v: str) -> str:
        return _iana(v)

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietHours":
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class AlertSettings(_Out):
    """The tenant's alert policy (``tenants/{t}.alert``)."""

    threshold: int = Field(ge=0, le=3, description="lowest threat level (0..3) that alerts")
    recipients: list[str] = Field(description="alert e-mail addresses")
    cooldown_seconds: int = Field(ge=0, description="per camera: seconds after an alert before the next")
    link_ttl_seconds: int = Field(ge=1, description="lifetime of video links in alert e-mails")


class TenantOut(_Out):
    """``GET /v1/tenant``."""

    tenant_id: str
    name: str
    normal_context: str = Field(description="plain-language description of what is normal at this site")
    alert: AlertSettings
    quiet_hours: QuietHours | None = Field(default=None, description="no e-mail below threat level 3 then")
    timezone: str | None = Field(default=None, description="the site's IANA time zone")
    retention_days: int | None = Field(default=None, description="days events and clips are kept "
                                                                 "(null: the deployment's default)")
    created_at: datetime | None = None


class AlertSettingsPatch(_In):
    """Fields of the alert policy to change; absent fields stay as they are."""

    threshold: Annotated[int, Field(ge=0, le=3)] = None
    recipients: Annotated[list[Email], Field(max_length=MAX_RECIPIENTS)] = None
    cooldown_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = None
    link_ttl_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] = None


class TenantPatch(_In):
    """``PATCH /v1/tenant``: only the fields present change."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = None
    normal_context: Annotated[str, Field(max_length=4000)] = None
    alert: AlertSettingsPatch = None
    quiet_hours: QuietHours | None = Field(default=None, description="null removes the quiet hours")
    timezone: Annotated[str | None, Field(min_length=1, max_length=64)] = Field(
        default=None, description="IANA time zone; null removes it")
    retention_days: Annotated[int | None, Field(ge=1, le=3650)] = Field(
        default=None, description="null: the deployment's default (VIGINT_RETENTION_DAYS)")

    @field_validator("timezone")
    @classmethod
    def _iana(cls, v: str | None) -> str | None:
        return None if v is None else _iana(v)


# ----------------------------------------------------------------------------------------- API keys


class ApiKeyIn(_In):
    """``POST /v1/api-keys``."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="the user's name")
    role: Role


class ApiKeyOut(_Out):
    key_id: str
    name: str
    role: str
    created_at: datetime | None = None
    created_by: str | None = None
    revoked: bool = False
    last_used_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    """The new key; ``key`` is shown only in this answer."""

    key: str


class ApiKeyList(_Out):
    api_keys: list[ApiKeyOut]


# ------------------------------------------------------------------------------------------ devices


class DeviceOut(_Out):
    """A device (edge box). ``health``: ``online`` (heartbeat within ``ONLINE_WINDOW_S``), ``stale``,
    ``never_seen`` or ``revoked``; ``cameras`` and ``spool`` are what the device last reported."""

    device_id: str
    name: str = ""
    status: str
    key_version: int
    health: Literal["online", "stale", "never_seen", "revoked"]
    created_at: datetime | None = None
    enrolled_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    version: str | None = None
    cameras: dict[str, Any] = Field(default_factory=dict)
    spool: dict[str, Any] = Field(default_factory=dict)


class DeviceList(_Out):
    devices: list[DeviceOut]


class EnrollmentCodeIn(_In):
    """``POST /v1/devices/enrollment-codes``: a code for the device that will be created on enrollment."""

    device_id: Slug
    name: Text = ""
    ttl_seconds: int = Field(default=900, ge=60, le=24 * 3600, description="lifetime of the code")


class EnrollmentCodeOut(_Out):
    code: str = Field(description="one-use code, shown once; the edge sends it to edge_api POST /v1/enroll")
    device_id: str
    expires_at: datetime


class DeviceCredentials(_Out):
    """A device secret, shown once (store it on the device, mode 0600)."""

    tenant_id: str
    device_id: str
    key_version: int
    secret: str


class CommandIn(_In):
    """``POST /v1/devices/{device_id}/commands``: handed to the device on its next heartbeat.

    ``reload_config``, ``restart`` and ``report_status`` take no parameters. ``request_clip`` needs
    ``camera_id``, ``start`` and ``end``: ``end > start``, at most ``MAX_CLIP_REQUEST_S`` seconds apart,
    ``start`` at most ``MAX_CLIP_REQUEST_AGE_S`` seconds in the past, ``end`` at most
    ``MAX_CLIP_REQUEST_AHEAD_S`` seconds in the future; when the tenant has configured cameras for the device,
    ``camera_id`` must be one of them. The device answers with a ``recording`` event.
    """

    type: Literal["reload_config", "restart", "report_status", "request_clip"]
    camera_id: Slug | None = Field(default=None, description="request_clip: the camera to cut the clip from")
    start: Instant | None = Field(default=None, description="request_clip: start of the clip (RFC 3339)")
    end: Instant | None = Field(default=None, description="request_clip: end of the clip (RFC 3339)")


MAX_CLIP_REQUEST_S = 600
MAX_CLIP_REQUEST_AGE_S = 7 * 24 * 3600
MAX_CLIP_REQUEST_AHEAD_S = 60


class CommandOut(_Out):
    """A command and, once the device reported it, its outcome. ``status``: ``pending`` (queued),
    ``delivered`` (handed over in a heartbeat answer), ``done`` or ``failed`` (the device's result)."""

    command_id: str
    type: str
    status: str
    params: dict[str, Any] = Field(default_factory=dict, description="request_clip: {camera_id, start, end}")
    created_at: datetime | None = None
    created_by: str | None = None
    delivered_at: datetime | None = None
    completed_at: datetime | None = None
    detail: str | None = Field(default=None, description="the device's short report (at most 500 characters)")
    result: dict[str, Any] | None = Field(default=None, description="the device's result object")
    event_id: str | None = Field(default=None, description="the event the command produced (request_clip: "
                                                           "the recording event)")


class CommandPage(_Out):
    commands: list[CommandOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class CommandsQuery(_In):
    """``GET /v1/devices/{device_id}/commands``: newest first."""

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=512, description="next_cursor of the previous page")


# ------------------------------------------------------------------------------------------ cameras


class Zone(_In):
    """A named polygon on a camera's frame. ``enter_s``: seconds an object must be inside before it
    counts as entered; ``exit_s``: seconds outside before it counts as left; ``loiter_s``: seconds inside
    that make a loitering event (0: off); ``labels``: labels the zone cares about (empty: all)."""

    name: ZoneName
    points: list[Point] = Field(min_length=3, max_length=64)
    labels: list[Label] = Field(default_factory=list, max_length=50)
    enter_s: float = Field(default=0.0, ge=0, le=3600)
    exit_s: float = Field(default=0.0, ge=0, le=3600)
    loiter_s: float = Field(default=0.0, ge=0, le=24 * 3600)


def _unique_zones(zones: list[Zone] | None) -> list[Zone] | None:
    if zones is not None:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique per camera")
    return zones


# A mask: a polygon where the device ignores detections (the middle of a box's bottom edge inside it), as the
# edge's ``CameraConfig.masks`` (edge_daemon/vigint_edge/config.py); same point checks as a zone's.
Mask = Annotated[list[Point], Field(min_length=3, max_length=MAX_POLYGON_POINTS,
                                    description="polygon: 3.. points [x, y], 0..1 of the frame")]
MasksField = Annotated[list[Mask] | None, Field(max_length=MAX_MASKS, description=(
    "polygons where detections are ignored; null: the device keeps its own masks"))]
AlertZonesField = Annotated[list[ZoneName] | None, Field(max_length=MAX_ZONES, description=(
    "names of the camera's zones an alert label must be inside for an alert ([]: anywhere); "
    "null: the device keeps its own"))]


def unknown_alert_zones(alert_zones: list[str] | None, zones: list) -> list[str]:
    """Names in ``alert_zones`` that are not among ``zones`` (``Zone`` models or stored dicts), sorted."""
    names = {z.name if isinstance(z, Zone) else (z or {}).get("name") for z in zones or []}
    return sorted(set(alert_zones or []) - names)


def _unique_names(v: list[str] | None) -> list[str] | None:
    if v is not None and len(set(v)) != len(v):
        raise ValueError("alert zone names must be unique")
    return v


class CameraIn(_In):
    """``POST /v1/cameras``. The camera's stream address stays on the device (it holds credentials)."""

    camera_id: Slug
    device_id: Slug
    name: Text = ""
    enabled: bool = True
    labels: list[Label] | None = Field(default=None, max_length=50,
                                       description="labels to detect (null: the device's default)")
    alert_labels: list[Label] | None = Field(default=None, max_length=50)
    min_score: float | None = Field(default=None, gt=0, lt=1)
    zones: list[Zone] = Field(default_factory=list, max_length=MAX_ZONES)
    masks: MasksField = None
    alert_zones: AlertZonesField = None

    @field_validator("zones")
    @classmethod
    def _zones(cls, v):
        return _unique_zones(v)

    @field_validator("alert_zones")
    @classmethod
    def _alert_zones(cls, v, info):
        # ``zones`` is declared first, so it is validated (and in info.data) unless it failed.
        unknown = unknown_alert_zones(v, info.data.get("zones") or [])
        if unknown and "zones" in info.data:
            raise ValueError(f"names zones that are not defined: {', '.join(unknown)}")
        return _unique_names(v)


class CameraPatch(_In):
    """``PATCH /v1/cameras/{camera_id}``: fields present replace the stored ones (``zones`` and ``masks`` as a
    whole). ``alert_zones`` must name zones the camera has after the change (those of this body when it has
    ``zones``, else the stored ones: 400, field ``alert_zones``); new ``zones`` without ``alert_zones`` drop
    the stored alert zones that no longer exist."""

    name: Text = None
    enabled: bool = None
    labels: Annotated[list[Label] | None, Field(max_length=50)] = None
    alert_labels: Annotated[list[Label] | None, Field(max_length=50)] = None
    min_score: Annotated[float | None, Field(gt=0, lt=1)] = None
    zones: Annotated[list[Zone], Field(max_length=MAX_ZONES)] = None
    masks: MasksField = None
    alert_zones: AlertZonesField = None

    @field_validator("zones")
    @classmethod
    def _zones(cls, v):
        return _unique_zones(v)

    @field_validator("alert_zones")
    @classmethod
    def _alert_zones(cls, v, info):
        if "zones" in info.data and info.data["zones"] is not None:
            unknown = unknown_alert_zones(v, info.data["zones"])
            if unknown:
                raise ValueError(f"names zones that are not defined: {', '.join(unknown)}")
        return _unique_names(v)


class CameraOut(_Out):
    camera_id: str
    device_id: str
    name: str = ""
    enabled: bool = True
    labels: list[str] | None = None
    alert_labels: list[str] | None = None
    min_score: float | None = None
    zones: list[dict[str, Any]] = Field(default_factory=list)
    masks: list[list[list[float]]] | None = Field(default=None, description="polygons of [x, y] points where "
                                                  "detections are ignored; null: the device's own")
    alert_zones: list[str] | None = Field(default=None, description="zones an alert label must be inside "
                                          "for an alert; null: the device's own")
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CameraList(_Out):
    cameras: list[CameraOut]


class CamerasQuery(_In):
    device_id: Slug | None = None


# ------------------------------------------------------------------------------------------- events


class _Page(_In):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=512, description="next_cursor of the previous page")


class EventsQuery(_Page):
    """``GET /v1/events`` filters (all optional, combined with AND)."""

    since: Instant | None = Field(default=None, description="start_time >= since")
    until: Instant | None = Field(default=None, description="start_time < until")
    camera_id: Slug | None = None
    label: Label | None = None
    zone: ZoneName | None = None
    severity: Literal["alert", "detection"] | None = None
    kind: EventKind | None = Field(default=None, description="only events of this kind (default: all kinds)")
    min_threat_level: int | None = Field(default=None, ge=0, le=3)


class AlertsQuery(_Page):
    since: Instant | None = None
    until: Instant | None = None
    camera_id: Slug | None = None
    acknowledged: bool | None = None


class Timeline(_Out):
    """When each step of an event happened (UTC; null: not yet, or not known for this event).

    Schema version 2 events fill all of them; version 1 events have ``ingested`` and ``end`` (and
    ``alert_sent`` is not recorded for them).
    """

    first_seen: datetime | None = Field(default=None, description="capture time of the first frame showing the "
                                        "object that made the event an alert (or that confirmed it)")
    confirmed: datetime | None = Field(default=None, description="capture time of the frame at which the event "
                                       "became an alert (or was confirmed)")
    start_published: datetime | None = Field(default=None, description="device clock: the start message handed "
                                             "to Pub/Sub")
    ingested: datetime | None = Field(default=None, description="the event's first message stored")
    first_verdict: datetime | None = Field(default=None, description="the first verdict written")
    alert_sent: datetime | None = Field(default=None, description="the mail server accepted the first alert e-mail")
    end: datetime | None = Field(default=None, description="last frame of the event, once it ended")


class VerdictOut(_Out):
    """One verdict (the shape of ``analysis``); further fields (model, tokens, notes, ...) may follow."""

    model_config = ConfigDict(extra="allow")

    status: str | None = Field(default=None, description="ok | error | detections_only | not_analyzed")
    source: str | None = Field(default=None, description="gemini | detections | none")
    verdict: str | None = Field(default=None, description="detections | first | full (schema version 2)")
    threat_level: int | None = Field(default=None, description="0 none, 1 low, 2 medium, 3 high")
    title: str | None = None
    summary: str | None = None
    analyzed_at: datetime | None = None


class Verdicts(_Out):
    """The verdicts of a schema version 2 event; ``analysis`` is the latest (full > first > detections)."""

    detections: VerdictOut | None = Field(default=None, description="from the edge detections, at once")
    first: VerdictOut | None = Field(default=None, description="Gemini on the snapshot and first seconds")
    full: VerdictOut | None = Field(default=None, description="Gemini on the whole clip, once the event ended")


class IntegrityProblem(_Out):
    object: str = Field(description="the object's name in the bucket")
    problem: Literal["missing", "size", "md5"] = Field(description="what differs from the device's claim")


class Integrity(_Out):
    """Ingest's check of the stored objects against what the event's messages claim (``vigint.ingest``)."""

    status: Literal["ok", "mismatch"] = Field(description="mismatch: at least one object differs (sticky)")
    checked: int = Field(default=0, description="objects compared over the event's messages")
    mismatches: int = Field(default=0, description="objects that differ")
    objects: list[IntegrityProblem] = Field(default_factory=list, description="the first 50 that differ")


class EventSummary(_Out):
    event_id: str
    device_id: str | None = None
    camera_id: str | None = None
    kind: str | None = None
    severity: str | None = None
    labels: list[str] = Field(default_factory=list)
    zones: list[str] = Field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    top_score: float | None = None
    status: str | None = None
    threat_level: int | None = None
    title: str | None = None
    alerted: bool | None = None
    acknowledged: bool = False
    phase: Literal["start", "update", "end"] | None = Field(
        default=None, description="lifecycle phase of the latest message applied (version 1 events: end)")
    ended: bool | None = Field(default=None, description="false while the event is still going")
    segment_count: int | None = Field(default=None, description="HLS segments 0..n-1, once the event ended")
    continues: str | None = Field(default=None, description="the event this one continues (split at max length)")
    continued_by: str | None = Field(default=None, description="the event that continues this one")
    chain_root: str | None = Field(default=None, description="first event of the split chain (itself if none)")
    timeline: Timeline | None = None
    verdicts: Verdicts | None = None
    held: bool = Field(default=False, description="under legal hold: kept by retention, erase, tenant deletion")
    hold_ids: list[str] = Field(default_factory=list, description="the legal holds on the event")
    integrity: Integrity | None = Field(default=None, description="stored evidence against the device's claims")


class EventPage(_Out):
    events: list[EventSummary]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class EventDetail(EventSummary):
    """One event with its analysis and fresh signed URLs (valid ``VIGINT_PLAYBACK_URL_TTL_SECONDS``)."""

    max_count: dict[str, Any] = Field(default_factory=dict)
    detections: list[dict[str, Any]] = Field(default_factory=list)
    zone_events: list[dict[str, Any]] = Field(
        default_factory=list, description='zone entries and exits in time order (at most 100, the first ones): '
        '{"zone", "track_id", "label", "kind": "enter"|"exit", "time": RFC 3339 UTC}')
    analysis: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    ack: dict[str, Any] | None = None
    clip: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    ingested_at: datetime | None = None
    clip_url: str | None = None
    snapshot_url: str | None = None
    urls_expire_at: datetime | None = None


class AckOut(_Out):
    event_id: str
    acknowledged: bool
    acknowledged_by: str
    acknowledged_at: datetime


class UnacknowledgedCount(_Out):
    unacknowledged: int


class ErasedOut(_Out):
    """What ``POST /v1/cameras/{camera_id}/erase`` deleted."""

    camera_id: str
    events: int
    objects: int
    links: int
    documents: int
    held_kept: int = Field(default=0, description="events kept because they are under legal hold")


# -------------------------------------------------------------------------------------------- links

LINK_ID_PATTERN = r"^[0-9a-f]{64}$"


class LinkAccess(_Out):
    """One entry of a link's access log (``links/{id}/access``)."""

    at: datetime | None = None
    outcome: str | None = Field(default=None, description='"ok", "revoked", "expired" or "event_gone"')
    kind: str | None = Field(default=None, description='"page", "state", "playlist" or "download"')
    user_agent: str | None = None
    remote_addr: str | None = Field(default=None, description="as recorded (at most 64 characters)")


class LinkAccesses(_Out):
    count: int = Field(description="entries in the access log (page views, downloads, refused requests)")
    first_at: datetime | None = None
    last_at: datetime | None = None
    recent: list[LinkAccess] = Field(description="the newest entries, newest first (at most 20)")


class Actor(_Out):
    kind: str = Field(description='"api_key", "cli" or "system"')
    id: str = Field(description="API key id (api_key), else empty")
    name: str


class LinkOut(_Out):
    """One recipient's video link of an event (never its token: only the link id, SHA-256 of the token)."""

    link_id: str
    event_id: str
    recipient: str
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked: bool
    revoked_at: datetime | None = None
    revoked_by: Actor | None = None
    state: Literal["active", "expired", "revoked"] = Field(
        description="revoked wins over expired; the link page answers 410 to both alike")
    accesses: LinkAccesses


class LinkList(_Out):
    event_id: str
    links: list[LinkOut] = Field(description="oldest first")


class LinksRevoked(_Out):
    event_id: str
    revoked: int = Field(description="links this call revoked (already revoked ones are left as they were)")
    links: list[LinkOut]


# ---------------------------------------------------------------------------------------- analytics


class CountsQuery(_In):
    """``GET /v1/analytics/counts``. Default range: the last 24 h (hour) or 30 days (day); default kind:
    detections only."""

    bucket: Literal["hour", "day"] = "hour"
    by: Literal["label", "camera", "zone"] = "label"
    since: Instant | None = None
    until: Instant | None = None
    kind: EventKind = Field(default="detection", description="count only events of this kind (default: "
                                                             "detections; requested recordings and camera "
                                                             "health events are not counted)")


class CountBucket(_Out):
    start: datetime
    total: int
    counts: dict[str, int]


class CountsOut(_Out):
    bucket: str
    by: str
    since: datetime
    until: datetime
    total: int
    buckets: list[CountBucket]
    truncated: bool = Field(description="true: more events than the scan limit; counts cover the newest only")


class UsageQuery(_In):
    month: Month | None = Field(default=None, description="default: the current UTC month")


class UsageOut(_Out):
    """Use in one UTC month, from the counters ``tenants/{t}/usage/{YYYY-MM}`` the functions keep
    (``vigint.usage``; the month is that of the moment of use, e.g. of ingestion, not of the event's time)."""

    month: str
    events: int = Field(description="events stored")
    clip_bytes: int = Field(description="bytes of the clips of those events")
    gemini_tokens: int = Field(description="Gemini tokens (total_token_count) spent on analysis")
    emails_sent: int = Field(description="alert e-mails accepted by the mail server")


# ------------------------------------------------------------------------------------------ evidence (legal hold)

HoldReason = Annotated[str, Field(min_length=1, max_length=500, description="why the evidence is held")]


class HoldIn(_In):
    """``POST /v1/events/{event_id}/hold``."""

    reason: HoldReason


class CameraHoldIn(_In):
    """``POST /v1/cameras/{camera_id}/holds``: hold every event of the camera overlapping ``[start, end]``."""

    start: Instant
    end: Instant
    reason: HoldReason

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class HoldActor(_Out):
    kind: str
    id: str = ""
    name: str = ""


class HoldOut(_Out):
    """A legal hold (``vigint.legal_hold``): kind ``event`` (one event) or ``camera`` (a time range)."""

    hold_id: str
    kind: Literal["event", "camera"]
    active: bool
    event_id: str | None = None
    camera_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    reason: str
    created_at: datetime | None = None
    created_by: HoldActor | None = None
    released_at: datetime | None = None
    released_by: HoldActor | None = None
    release_reason: str | None = None
    event_hold_ids: list[str] | None = Field(default=None, description="kind event: the holds now on the event")
    events: int | None = Field(default=None, description="kind camera: events the hold placed or released now")


class HoldList(_Out):
    holds: list[HoldOut]


class ExportOut(_Out):
    """``POST /v1/events/{event_id}/export``: the package in the bucket and a signed URL to fetch it."""

    export_id: str
    event_id: str
    object: str = Field(description="object name of the zip in the clips bucket")
    url: str = Field(description="signed GET URL of the zip (short-lived)")
    expires_at: datetime
    bytes: int
    files: int = Field(description="files listed in manifest.json")
    manifest_sha256: str
    key_id: str = Field(description="id of the signing key (see GET /v1/export-key)")
    mismatches: int = Field(description="media whose bytes differ from what the device declared (or missing)")


class ExportKeyOut(_Out):
    """``GET /v1/export-key``: verifies the signature of every evidence package (ECDSA P-256, SHA-256)."""

    algorithm: str
    key_id: str
    public_key_pem: str
