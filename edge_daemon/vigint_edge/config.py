"""The edge daemon's configuration: one YAML file, validated once at start.

Read from ``/etc/vigint-edge/config.yaml`` by default; ``VIGINT_*`` environment variables override single
fields (listed in ``ENV_OVERRIDES``); the device secret comes from a systemd credential
(``$CREDENTIALS_DIRECTORY/device-secret``), ``VIGINT_DEVICE_SECRET``, or ``device.secret_file`` (which must
not be readable by group or others).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PATH = Path("/etc/vigint-edge/config.yaml")
SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"

# Environment variable -> dotted field it overrides.
ENV_OVERRIDES = {
    "VIGINT_API_URL": "device.api_url",
    "VIGINT_TENANT_ID": "device.tenant_id",
    "VIGINT_DEVICE_ID": "device.device_id",
    "VIGINT_KEY_VERSION": "device.key_version",
    "VIGINT_SECRET_FILE": "device.secret_file",
    "VIGINT_SPOOL_DIR": "spool.dir",
    "VIGINT_SPOOL_MAX_BYTES": "spool.max_bytes",
    "VIGINT_MODEL_PATH": "model.path",
    "VIGINT_MODEL_DEVICE": "model.device",
}


class ConfigError(ValueError):
    """The configuration is unusable; the message names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceConfig(_Strict):
    """Who this box is and where the cloud is."""

    tenant_id: str = Field(pattern=SLUG)
    device_id: str = Field(pattern=SLUG)
    api_url: str = Field(description="Base URL of the edge_api function, e.g. https://REGION-PROJECT.cloudfunctions.net/edge-api (terraform output edge_api_url)")
    key_version: int = Field(default=1, ge=1)
    secret_file: Path | None = None

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")


Point = tuple[float, float]


def _check_polygon(points: list[Point]) -> list[Point]:
    if len(points) < 3:
        raise ValueError("a polygon needs at least 3 points")
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"point [{x}, {y}] is outside 0..1 (coordinates are fractions of width/height)")
    return points


class ObjectFilter(_Strict):
    """False-positive control for one label (Frigate's ``objects.filters``). Areas are fractions of the frame."""

    min_score: float | None = Field(default=None, gt=0, lt=1, description="drop single detections below this")
    threshold: float = Field(default=0.6, gt=0, lt=1, description="median score a track needs to count")
    min_area: float = Field(default=0.0, ge=0, le=1)
    max_area: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _areas(self) -> "ObjectFilter":
        if self.min_area >= self.max_area:
            raise ValueError("min_area must be smaller than max_area")
        return self


class ZoneConfig(_Strict):
    """A named polygon; an object is in it when the middle of its box's bottom edge is."""

    name: str = Field(pattern=SLUG)
    points: list[Point]
    inertia: int = Field(default=3, ge=1, le=50, description="detector frames inside before entering counts")
    loitering_s: float = Field(default=0.0, ge=0, description="seconds inside before entering counts")
    labels: list[str] = Field(default_factory=list, description="labels the zone cares about (empty: all)")

    _poly = field_validator("points")(classmethod(lambda cls, v: _check_polygon(v)))


class CameraConfig(_Strict):
    """One camera: an RTSP URL or a video file."""

    id: str = Field(pattern=SLUG)
    source: str
    detect_fps: float = Field(default=5.0, gt=0, le=30, description="frames per second sent to the detector")
    labels: list[str] = Field(default_factory=lambda: ["person", "car", "truck", "bus", "motorcycle", "bicycle"])
    alert_labels: list[str] = Field(default_factory=lambda: ["person"],
                                    description="labels that make an event an alert (others: detection)")
    min_score: float = Field(default=0.5, gt=0, lt=1)
    realtime: bool = Field(default=True, description="files: read at their own frame rate, like a camera")
    enabled: bool = Field(default=True, description="false: still watched for health, but no detection events")
    filters: dict[str, ObjectFilter] = Field(default_factory=dict, description="per-label false-positive control")
    zones: list[ZoneConfig] = Field(default_factory=list)
    alert_zones: list[str] = Field(default_factory=list,
                                   description="if set, an alert also needs an alert label inside one of these zones")
    masks: list[list[Point]] = Field(default_factory=list,
                                     description="polygons where detections are ignored (bottom-centre inside)")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest wait between reconnect attempts")
    rtsp_transport: Literal["tcp", "udp", "udp_multicast", "http", "https"] = Field(
        default="tcp", description="RTSP: how RTP travels (FFmpeg's rtsp_transport); tcp survives NAT and loss")
    # Camera health (vigint_edge.events.camera_health); times in seconds, grey levels 0..255.
    stall_timeout_s: float = Field(default=10.0, gt=0, le=300,
                                   description="streams: no frame for this long counts as a stall; reconnect")
    offline_alert_after_s: float = Field(default=60.0, gt=0,
                                         description="no frame for this long raises a camera_offline alert")
    black_frame_threshold: int = Field(default=16, ge=0, le=255,
                                       description="a frame whose brightest 2% of pixels are at most this "
                                       "grey level is black")
    tamper_threshold: float = Field(default=0.45, gt=0, le=2,
                                    description="1 - correlation between the view and its slow background "
                                    "above which the view counts as changed (tamper)")
    health_hold_s: float = Field(default=3.0, ge=0, le=600,
                                 description="how long black frames or a changed view must last to alert")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be an rtsp:// URL or a file path")
        return v

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[list[Point]]) -> list[list[Point]]:
        return [_check_polygon(m) for m in v]

    @model_validator(mode="after")
    def _references(self) -> "CameraConfig":
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique per camera")
        unknown = sorted(set(self.alert_zones) - set(names))
        if unknown:
            raise ValueError(f"alert_zones names zones that are not defined: {', '.join(unknown)}")
        return self

    def filter_for(self, label: str) -> ObjectFilter:
        """The label's filter, or the defaults with the camera's ``min_score``."""
        return self.filters.get(label) or ObjectFilter()

    @property
    def lowest_score(self) -> float:
        """The lowest score any label of this camera can pass with (camera or per-label ``min_score``): what
        the shared detector must still return."""
        return min([self.min_score] + [f.min_score for f in self.filters.values() if f.min_score is not None])

    def min_score_for(self, label: str) -> float:
        f = self.filters.get(label)
        return f.min_score if f is not None and f.min_score is not None else self.min_score

    @property
    def is_stream(self) -> bool:
        return "://" in self.source


class ModelConfig(_Strict):
    """The detector. ``path`` None means the bundled COCO SSDLite-MobileNetV2 IR."""

    path: Path | None = None
    device: str = Field(default="CPU", description="OpenVINO device: CPU, GPU, NPU, AUTO")
    labels_path: Path | None = None


class MotionConfig(_Strict):
    """Motion gate: frames without motion skip the detector (while no event is active)."""

    enabled: bool = True
    pixel_threshold: int = Field(default=25, ge=1, le=255, description="grey-level change that counts")
    min_area: float = Field(default=0.001, ge=0, le=1, description="fraction of the frame that must change")


class EventConfig(_Strict):
    """How detections become events (times in seconds)."""

    pre_roll_s: float = Field(default=3.0, ge=0, le=30)
    post_roll_s: float = Field(default=5.0, ge=0, le=60)
    max_length_s: float = Field(default=60.0, ge=5, le=3600)
    min_hits: int = Field(default=2, ge=1, description="detector frames a track needs before it can count")
    segment_s: float = Field(default=2.0, ge=1, le=10,
                             description="live HLS segments: each is cut at the first keyframe at or after this "
                             "many seconds (a camera whose keyframes are further apart gives one-GOP segments); "
                             "an update message goes out with each")
    stationary_after_s: float = Field(default=10.0, gt=0, description="an object still this long stops "
                                      "keeping events open and cannot start new ones")
    record_minutes: float = Field(default=30.0, ge=0, le=24 * 60,
                                  description="H.264 cameras: keep this many minutes of the camera's own stream "
                                  "(remuxed 10-s segments) so the cloud can request a clip of any recent time "
                                  "range; 0: off")
    record_max_bytes: int = Field(default=2 * 1024**3, ge=10 * 1024**2,
                                  description="per camera: the oldest segments go first beyond this size")


class SpoolConfig(_Strict):
    dir: Path = Path("/var/lib/vigint-edge/spool")
    max_bytes: int = Field(default=2 * 1024**3, ge=10 * 1024**2)


class StatusConfig(_Strict):
    """The local status endpoint (``GET /healthz``, ``GET /metrics``); loopback only by design."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="a loopback address (127.0.0.0/8 or ::1)")
    port: int = Field(default=9393, ge=0, le=65535, description="0: any free port")

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        import ipaddress

        try:
            ok = ipaddress.ip_address(v).is_loopback
        except ValueError:
            ok = v == "localhost"
        if not ok:
            raise ValueError("must be a loopback address (the endpoint has no authentication)")
        return v


class EdgeConfig(_Strict):
    """The whole file."""

    device: DeviceConfig
    cameras: list[CameraConfig] = Field(min_length=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    heartbeat_s: float = Field(default=60.0, ge=5)
    status: StatusConfig = Field(default_factory=StatusConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> "EdgeConfig":
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {', '.join(dupes)}")
        return self


def load_config(path: Path = DEFAULT_PATH, environ: dict[str, str] | None = None) -> EdgeConfig:
    """Reads, overrides from the environment, and validates the configuration.

    Raises:
        ConfigError: missing file, bad YAML, or a field that fails validation (named, with the reason).
    """
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping at the top level")
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            _set(raw, dotted, environ[var])
    try:
        return EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def load_secret(config: EdgeConfig, environ: dict[str, str] | None = None) -> str:
    """The device secret, from (in order) a systemd credential, ``VIGINT_DEVICE_SECRET``, ``secret_file``.

    Raises:
        ConfigError: no secret found, or the secret file is readable by group/others.
    """
    environ = os.environ if environ is None else environ
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "device-secret").exists():
        return (Path(cred_dir) / "device-secret").read_text().strip()
    if environ.get("VIGINT_DEVICE_SECRET"):
        return environ["VIGINT_DEVICE_SECRET"].strip()
    f = config.device.secret_file
    if f is None:
        raise ConfigError("device secret: none given (systemd credential device-secret, "
                          "VIGINT_DEVICE_SECRET, or device.secret_file)")
    try:
        mode = f.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"device.secret_file: {f} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"device.secret_file: {f} must not be accessible by group or others (chmod 600)")
    return f.read_text().strip()


def _set(raw: dict[str, Any], dotted: str, value: str) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
