"""Cloud → edge: the camera settings and commands a heartbeat answer carries.

``edge_api``'s ``POST /v1/heartbeat`` answers ``{"config": {"cameras": [...], "updated_at"}, "commands":
[...]}`` (see ``functions/vigint/tenant_api/edge_sync.py``); nothing listens on the NUC, the device pulls.
A camera in the answer that this device also has in its file gets the cloud's labels, alert labels,
minimum score, enabled flag and zones, and its masks and alert zones when the cloud sets them (the file keeps
its source and filters); cameras unknown here are ignored with a warning. A null ``labels``, ``alert_labels``,
``min_score``, ``masks`` or ``alert_zones`` keeps the file's value. Cloud zones give times in seconds
(``enter_s``, ``exit_s``, ``loiter_s``); the edge counts inertia in detector frames, so
``inertia = ceil(max(enter_s, exit_s) * detect_fps)`` (at least 1). ``masks`` are ``[[[x, y], ...]]``
(0..1 of the frame; a detection whose box's bottom-centre is inside one is ignored). ``alert_zones`` (an
alert also needs an alert label inside one of them; ``[]``: anywhere) are kept only for zones that exist
after the update: names of other zones are dropped with a warning, as are the file's alert zones that the
cloud's zones no longer have when the cloud leaves ``alert_zones`` null.

Commands are ``[{"command_id", "type", "created_at": RFC3339, "params": {...}}]``, oldest first; types
``restart``, ``reload_config``, ``report_status`` (params ``{}``) and ``request_clip`` (params
``{"camera_id", "start", "end"}``, RFC 3339 with a zone). ``parse_commands`` validates them (pydantic) and
sets apart those the device cannot run (unknown type, bad params) with the detail the daemon reports as their
failed result; entries without a usable ``command_id`` cannot be answered and are only logged.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import timezone
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from vigint_edge.cloud.api_client import COMMAND_ID_PATTERN, MAX_RESULT_DETAIL_CHARS
from vigint_edge.config import CameraConfig

log = logging.getLogger(__name__)
COMMANDS = ("reload_config", "restart", "report_status", "request_clip")
UNKNOWN_TYPE = "unknown command type"


class ClipParams(BaseModel):
    """``request_clip`` params: the recording of ``camera_id`` from ``start`` to ``end`` (UTC, end > start).

    Raises:
        pydantic.ValidationError: missing or extra field, a time without a zone, end not after start.
    """

    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1, max_length=64)
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _utc_and_ordered(self) -> "ClipParams":
        self.start, self.end = self.start.astimezone(timezone.utc), self.end.astimezone(timezone.utc)
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class _CommandBase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command_id: str = Field(pattern=COMMAND_ID_PATTERN)
    created_at: AwareDatetime | None = None


class PlainCommand(_CommandBase):
    """``restart``, ``reload_config`` or ``report_status``; ``params`` is any object (unused)."""

    type: Literal["reload_config", "restart", "report_status"]
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v


class ClipCommand(_CommandBase):
    """``request_clip`` with validated ``params``."""

    type: Literal["request_clip"]
    params: ClipParams


#: One command from a heartbeat answer: ``command_id`` (the id in ``POST /v1/commands/{command_id}/result``),
#: ``type``, ``created_at`` (UTC or None) and ``params``, chosen by ``type``.
Command = Annotated[PlainCommand | ClipCommand, Field(discriminator="type")]
_COMMAND = TypeAdapter(Command)


class Rejected(NamedTuple):
    """A command the device cannot run: its id and the detail of its failed result."""

    command_id: str
    detail: str


def camera_updates(answer: dict, cameras: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
    """New configurations for the cameras the answer changes.

    Args:
        answer: the heartbeat answer (JSON object).
        cameras: this device's cameras by id, as now configured.

    Returns:
        camera id → validated new ``CameraConfig`` (only cameras whose settings differ).
    """
    remote = (answer.get("config") or {}).get("cameras") or []
    out: dict[str, CameraConfig] = {}
    for cam in remote:
        cid = cam.get("camera_id")
        current = cameras.get(cid)
        if current is None:
            log.warning("heartbeat: the cloud configures camera %r, which this device does not have", cid)
            continue
        update = {k: cam[k] for k in ("labels", "alert_labels", "min_score", "enabled") if cam.get(k) is not None}
        zones = [
            {"name": z["name"], "points": z["points"], "labels": z.get("labels") or [],
             "loitering_s": float(z.get("loiter_s") or 0),
             "inertia": max(1, math.ceil(max(z.get("enter_s") or 0, z.get("exit_s") or 0) * current.detect_fps))}
            for z in cam.get("zones") or []
        ]
        names = {z["name"] for z in zones}
        update["zones"] = zones
        if cam.get("masks") is not None:
            update["masks"] = cam["masks"]
        wanted = cam.get("alert_zones")
        wanted = current.alert_zones if wanted is None else wanted
        wanted = wanted if isinstance(wanted, list) else []
        dropped = [z for z in wanted if z not in names]
        if dropped:
            log.warning("heartbeat: camera %s: alert zones %s dropped (no such zone)", cid, ", ".join(map(str, dropped)))
        update["alert_zones"] = [z for z in wanted if z in names]
        try:
            new = CameraConfig.model_validate({**current.model_dump(), **update})
        except ValidationError as exc:
            log.warning("heartbeat: ignoring the cloud's settings for camera %s: %s", cid, exc)
            continue
        if new != current:
            out[cid] = new
    return out


def parse_commands(answer: dict) -> tuple[list[PlainCommand | ClipCommand], list[Rejected]]:
    """The answer's commands, validated, in order, and those the device cannot run.

    Args:
        answer: the heartbeat answer (JSON object).

    Returns:
        ``(commands, rejected)``: ``PlainCommand``/``ClipCommand`` objects to run, and ``Rejected(command_id,
        detail)`` for commands of an unknown type (detail ``"unknown command type"``) or with bad params
        (detail names the field and the problem), to be reported failed. Entries without a valid
        ``command_id`` cannot be answered: they are logged and in neither list.
    """
    out: list[PlainCommand | ClipCommand] = []
    rejected: list[Rejected] = []
    raw = answer.get("commands") or []
    for c in raw if isinstance(raw, list) else []:
        c = c if isinstance(c, dict) else {}
        cid, kind = c.get("command_id"), c.get("type")
        if not isinstance(cid, str) or not re.match(COMMAND_ID_PATTERN, cid):
            log.warning("heartbeat: command without a usable command_id ignored (type %r)", kind)
            continue
        if kind not in COMMANDS:
            log.warning("heartbeat: command %s of unknown type %r skipped", cid, kind)
            rejected.append(Rejected(cid, UNKNOWN_TYPE))
            continue
        try:
            out.append(_COMMAND.validate_python(c))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                                 for e in exc.errors(include_url=False, include_input=False))
            detail = f"invalid command: {problems}"[:MAX_RESULT_DETAIL_CHARS]
            log.warning("heartbeat: command %s (%s) skipped: %s", cid, kind, detail)
            rejected.append(Rejected(cid, detail))
    return out, rejected
