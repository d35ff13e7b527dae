"""Camera health: a camera that is down, shows black frames, or whose view changed abruptly (tamper).

Each problem becomes one ``camera_health`` event (``severity="alert"``, ``labels`` ``["camera_offline"]``,
``["camera_black"]`` or ``["camera_tampered"]``, a JPEG snapshot when a frame exists, no clip) put into the
spool like any other event, so it reaches the cloud through the same delivery path. A problem alerts once;
it is re-armed when the camera is healthy again.

When a camera that was reported offline delivers a frame again, one more ``camera_health`` event says so:
``labels`` ``["camera_online"]``, ``start_time`` when it went down (its last frame before the outage, as the
offline event's ``start_time``), ``end_time`` the first frame back, so ``end_time - start_time`` is how long
it was down in seconds; the snapshot is that first frame. It is news, not a problem, so its severity is
``"detection"`` (the problems' is ``"alert"``): a tenant listing events with ``severity=alert`` sees only
problems. An outage shorter than ``offline_alert_after_s`` raised no offline event and raises no online
event either.

How each problem is recognised (thresholds from the camera's ``CameraConfig``):

* offline: no frame for ``offline_alert_after_s`` seconds, counted from the last frame (or from the start
  when none came yet). Checked by ``check()``, which the daemon calls about once a second, because a camera
  that is down delivers nothing that could trigger it.
* black: the 98th percentile of a small grey thumbnail is at most ``black_frame_threshold`` (0..255), i.e.
  nearly every pixel is dark, for ``health_hold_s`` seconds. A dark night scene with a few lights is not black.
* tamper: as in Frigate's motion detector, the frame is reduced to a small grey thumbnail and compared with a
  slowly updated background (exponential average with a time constant of ``BACKGROUND_TAU_S`` seconds).
  The score is ``1 - r``, r the Pearson correlation of the two thumbnails: 0 for the same view, about 1 for an
  unrelated one, and insensitive to a global change of brightness or contrast (lights, day/night gain).
  People walking through change a small part of the view and score far below the threshold. A score above
  ``tamper_threshold`` for ``health_hold_s`` seconds alerts, and the new view becomes the background.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import cv2
import numpy as np

from vigint_edge.recording.clip import encode_snapshot
from vigint_edge.config import CameraConfig, DeviceConfig
from vigint_edge.event_model import SNAPSHOT_NAME, EdgeEvent, SnapshotRef, new_event_id, object_name

log = logging.getLogger(__name__)

__all__ = ["HealthMonitor", "OFFLINE", "ONLINE", "BLACK", "TAMPERED", "black_level", "tamper_score", "thumbnail"]

OFFLINE = "camera_offline"
ONLINE = "camera_online"
BLACK = "camera_black"
TAMPERED = "camera_tampered"

THUMB_SIZE = (64, 48)  # (width, height) in pixels of the grey thumbnail compared
BACKGROUND_TAU_S = 30.0  # time constant of the background's exponential average, seconds
ANALYSE_EVERY_S = 0.25  # frames are analysed at most this often (4 per second)


def _pixels(image) -> np.ndarray:
    """The BGR array of ``image``: itself, or a capture ``Frame``'s (converted on first use)."""
    return image if isinstance(image, np.ndarray) else image.image


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """A ``THUMB_SIZE`` grey thumbnail as float32 (0..255), area-averaged (which also removes noise).

    Raises:
        ValueError: not an HxWx3 or HxW uint8 image.
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3):
        raise ValueError("image must be a uint8 array of shape (height, width[, 3])")
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def black_level(thumb: np.ndarray) -> float:
    """The 98th-percentile grey level (0..255) of a thumbnail: at most a few dozen for a black frame."""
    return float(np.percentile(thumb, 98))


def tamper_score(thumb: np.ndarray, background: np.ndarray) -> float:
    """``1 - r`` (0..2), r the Pearson correlation of the two thumbnails; 1.0 when either is uniform."""
    a = thumb - thumb.mean()
    b = background - background.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denom < 1e-6:
        return 1.0
    return 1.0 - float((a * b).sum()) / denom


@dataclass
class _Problem:
    since_mono: float | None = None  # when the condition started (monotonic seconds)
    since_wall: datetime | None = None
    alerted: bool = False
    alerts: int = 0


@dataclass
class HealthMonitor:
    """Watches one camera; see the module doc.

    Thread-safe: ``observe`` and ``source_state`` run on the camera thread, ``check`` on the daemon's
    health thread.

    Args:
        camera: the camera (thresholds: ``offline_alert_after_s``, ``black_frame_threshold``,
            ``tamper_threshold``, ``health_hold_s``).
        device: tenant and device the events belong to.
        spool: where events go (anything with ``put(event, clip_path, snapshot_jpeg)``).
        on_event: called with each event after it was spooled (the daemon wakes the deliverer).
        clock: monotonic seconds (tests inject a fake).
        wall: current UTC time (tests inject a fake).
    """

    camera: CameraConfig
    device: DeviceConfig
    spool: object
    on_event: Callable[[EdgeEvent], None] | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self.clock()
        self._started_wall = self.wall()
        self._last_frame_mono: float | None = None
        self._last_frame_wall: datetime | None = None
        self._last_image: np.ndarray | None = None
        self._last_analysed: float | None = None
        self._background: np.ndarray | None = None
        self._connected: bool | None = None
        self._reason: str | None = None
        self._problems = {OFFLINE: _Problem(), BLACK: _Problem(), TAMPERED: _Problem()}
        self.last_black_level: float | None = None
        self.last_tamper_score: float | None = None
        self.recoveries = 0  # camera_online events raised
        self.closed = False

    # ------------------------------------------------------------------------------------ inputs
    def observe(self, image, wall: datetime | None = None) -> None:
        """Feeds one frame: BGR uint8 array, or a capture ``Frame`` (its pixels are then converted only when
        analysed or put in a snapshot, not for every frame). Clears an offline problem; analyses black/tamper
        at most every ``ANALYSE_EVERY_S`` seconds."""
        now = self.clock()
        wall = wall or self.wall()
        emit: list = []  # (label, since, image, image time, why, until or None), spooled outside the lock
        with self._lock:
            self._observe_locked(image, now, wall, emit)
        self._emit(emit)

    def _observe_locked(self, image: np.ndarray, now: float, wall: datetime, emit: list) -> None:
        self._last_frame_mono, self._last_frame_wall, self._last_image = now, wall, image
        off = self._problems[OFFLINE]
        if off.alerted:
            since = off.since_wall or wall
            down_s = max(0.0, (wall - since).total_seconds())
            log.info("camera %s: frames again; camera_offline cleared", self.camera.id)
            emit.append((ONLINE, since, image, wall, f"back online after {down_s:.0f} s down", wall))
            self.recoveries += 1
        off.since_mono, off.since_wall, off.alerted = None, None, False
        if self._last_analysed is not None and now - self._last_analysed < ANALYSE_EVERY_S:
            return
        dt = 0.0 if self._last_analysed is None else now - self._last_analysed
        self._last_analysed = now
        thumb = thumbnail(_pixels(image))
        level = black_level(thumb)
        self.last_black_level = level
        is_black = level <= self.camera.black_frame_threshold
        self._hold(BLACK, is_black, now, wall, image, emit,
                   f"frames are black (98th-percentile grey level {level:.0f} <= "
                   f"{self.camera.black_frame_threshold})")
        if is_black:
            return  # a black frame says nothing about the view; keep the background as it was
        if self._background is None:
            self._background = thumb
            return
        score = tamper_score(thumb, self._background)
        self.last_tamper_score = score
        changed = score > self.camera.tamper_threshold
        self._hold(TAMPERED, changed, now, wall, image, emit,
                   f"the view changed abruptly (score {score:.2f} > {self.camera.tamper_threshold:g})")
        if self._problems[TAMPERED].alerted:
            self._background = thumb  # the new view is the normal one from now on
            self._problems[TAMPERED] = _Problem(alerts=self._problems[TAMPERED].alerts)
        elif not changed:
            alpha = min(1.0, dt / BACKGROUND_TAU_S)
            self._background = (1 - alpha) * self._background + alpha * thumb

    def source_state(self, connected: bool, reason: str) -> None:
        """Notification from the ``VideoSource`` (its ``on_state``): a connection opened or was lost."""
        with self._lock:
            if connected != self._connected:
                log.info("camera %s: %s", self.camera.id, "connected" if connected else reason)
            self._connected = connected
            self._reason = None if connected else reason
            if not connected:
                off = self._problems[OFFLINE]
                if off.since_mono is None:
                    off.since_mono = self._last_frame_mono if self._last_frame_mono is not None else self._started
                    off.since_wall = self._last_frame_wall or self._started_wall

    def check(self) -> None:
        """Raises ``camera_offline`` when no frame came for ``offline_alert_after_s`` seconds."""
        now = self.clock()
        emit = []
        with self._lock:
            if self.closed:
                return
            last = self._last_frame_mono if self._last_frame_mono is not None else self._started
            off = self._problems[OFFLINE]
            if now - last >= self.camera.offline_alert_after_s and not off.alerted:
                off.alerted = True
                off.alerts += 1
                since = off.since_wall or self._last_frame_wall or self._started_wall
                off.since_wall = since  # the online event's start_time when frames come back
                why = f"no frame for {now - last:.0f} s"
                if self._reason:
                    why += f" ({self._reason})"
                emit.append((OFFLINE, since, self._last_image, self._last_frame_wall, why, None))
        self._emit(emit)

    def close(self) -> None:
        """The camera's source ended on purpose (file sources, shutdown): no more offline alerts."""
        with self._lock:
            self.closed = True

    # ------------------------------------------------------------------------------------ state
    def state(self) -> dict:
        """For heartbeats and ``/healthz``: ``{"state": "ok"|"starting"|"offline"|"black",
        "connected": bool|None, "last_frame_age_s": float|None, "alerts": {label: count}}``."""
        now = self.clock()
        with self._lock:
            probs = self._problems
            if probs[OFFLINE].alerted:
                state = "offline"
            elif probs[BLACK].alerted:
                state = "black"
            elif self._last_frame_mono is None:
                state = "starting"
            else:
                state = "ok"
            return {
                "state": state,
                "connected": self._connected,
                "last_frame_age_s": None if self._last_frame_mono is None else round(now - self._last_frame_mono, 3),
                "alerts": {label: p.alerts for label, p in probs.items()},
            }

    # ---------------------------------------------------------------------------------- internals
    def _hold(self, label: str, condition: bool, now: float, wall: datetime, image: np.ndarray,
              emit: list, why: str) -> None:
        p = self._problems[label]
        if not condition:
            if p.alerted:
                log.info("camera %s: %s cleared", self.camera.id, label)
            p.since_mono, p.since_wall, p.alerted = None, None, False
            return
        if p.since_mono is None:
            p.since_mono, p.since_wall = now, wall
        if not p.alerted and now - p.since_mono >= self.camera.health_hold_s:
            p.alerted = True
            p.alerts += 1
            emit.append((label, p.since_wall, image, wall, why, None))

    def _emit(self, emit: list) -> None:
        for label, since, image, snap_time, why, until in emit:
            log.log(logging.INFO if label == ONLINE else logging.WARNING, "camera %s: %s: %s", self.camera.id,
                    label, why)
            try:
                event, jpeg = self._event(label, since, image, snap_time, until)
                self.spool.put(event, None, jpeg)
            except Exception:  # noqa: BLE001 - a health alert must never stop the camera thread
                log.exception("camera %s: could not spool the %s event", self.camera.id, label)
                continue
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:  # noqa: BLE001
                    log.exception("camera %s: on_event failed", self.camera.id)

    def _event(self, label: str, since: datetime | None, image: np.ndarray | None,
               snap_time: datetime | None, until: datetime | None = None) -> tuple[EdgeEvent, bytes | None]:
        """The health event (``start_time`` ``since``, ``end_time`` ``until`` or now) and its snapshot JPEG
        (None without a frame)."""
        now = until or self.wall()
        since = min(since or now, now)
        eid = new_event_id(now)
        t, d = self.device.tenant_id, self.device.device_id
        jpeg = snapshot = None
        if image is not None:
            jpeg = encode_snapshot(_pixels(image))
            snapshot = SnapshotRef.for_jpeg(jpeg, object_name(t, d, eid, SNAPSHOT_NAME), snap_time or since)
        event = EdgeEvent(event_id=eid, tenant_id=t, device_id=d, camera_id=self.camera.id, kind="camera_health",
                          severity="detection" if label == ONLINE else "alert", labels=[label], start_time=since,
                          end_time=now, snapshot=snapshot)
        return event, jpeg
