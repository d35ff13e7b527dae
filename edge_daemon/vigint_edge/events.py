"""From detections to events: the per-camera pipeline.

For each frame: keep it in the pre-roll ring buffer; at the detect rate, gate on motion, run the detector on
the region that moved (a square crop, so small distant objects keep their pixels), drop what the per-label
filters and masks reject, and track the rest (``tracker.py``) through the zones (``zones.py``). A confirmed,
moving track starts an event whose clip begins ``pre_roll_s`` earlier; stationary objects neither start nor
extend events; every frame of an active event goes to the H.264 clip writer as it arrives (memory
stays bounded); ``post_roll_s`` after the last detection, or at ``max_length_s``, the event ends: clip closed,
best frame encoded as the snapshot, the event record built, and all three put in the durable spool.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vigint_edge.capture import Frame
from vigint_edge.clip import ClipWriter, encode_snapshot
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detector import Detection, Detector
from vigint_edge.event_model import (CLIP_NAME, SNAPSHOT_NAME, ClipRef, DetectionRef, EdgeEvent, SnapshotRef,
                                     new_event_id, object_name)
from vigint_edge.motion import MotionGate
from vigint_edge.spool import Spool
from vigint_edge.tracker import Track, Tracker
from vigint_edge.zones import MaskSet, ZoneSpec, ZoneTracker

log = logging.getLogger(__name__)
MAX_DETECTIONS = 50  # per event message (docs/contracts.md)
STATIONARY_RECHECK_S = 5.0  # seconds between detector looks at a scene where nothing moves


@dataclass
class CameraStats:
    """Counters a heartbeat or the status endpoint reports for one camera."""

    frames: int = 0
    detect_frames: int = 0
    motion_skipped: int = 0
    events: int = 0
    detector_ms_total: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def fps(self) -> float:
        return self.frames / max(1e-6, time.monotonic() - self.started)

    @property
    def detector_ms(self) -> float:
        return self.detector_ms_total / max(1, self.detect_frames)


class _BackgroundClipWriter:
    """Runs a ``ClipWriter`` on its own thread so H.264 encoding overlaps detection (PyAV releases the GIL
    while encoding). The queue is bounded (``depth`` frames) so a slow encoder slows capture instead of
    growing memory."""

    def __init__(self, writer: ClipWriter, depth: int = 32):
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clip-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._writer.write(*item)
                except BaseException as exc:  # reported by close()
                    self._error = exc

    def write(self, frame_bgr: np.ndarray, t: float) -> None:
        self._queue.put((frame_bgr, t))

    def abort(self) -> None:
        """Stops encoding and deletes the partial clip."""
        self._queue.put(None)
        self._thread.join()
        self._writer.abort()

    def close(self):
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._writer.abort()
            raise self._error
        return self._writer.close()


@dataclass
class _ActiveEvent:
    event_id: str
    writer: _BackgroundClipWriter
    clip_path: Path
    t0: float
    start_wall: object
    last_seen_t: float
    last_frame: Frame | None = None
    labels: collections.Counter = field(default_factory=collections.Counter)
    max_count: dict = field(default_factory=dict)
    top_score: float = 0.0
    best: tuple[float, np.ndarray, list[Detection], object] | None = None  # (rank, image, dets, wall)
    detections: dict = field(default_factory=dict)  # whole second -> DetectionRef (best in that second)
    zones: set = field(default_factory=set)
    track_ids: set = field(default_factory=set)
    alert: bool = False


class CameraPipeline:
    """Turns one camera's frames into spooled events.

    Args:
        camera: the camera's settings (labels, thresholds, detect rate).
        device: tenant and device ids for event records and object names.
        events: pre/post roll, maximum length, confirmation hits.
        motion: the motion gate's settings.
        detector: any ``Detector``; calls are serialised with ``detector_lock`` when given.
        spool: where finished events go.
        work_dir: where clips are written while their event is active.
        detector_lock: shared by cameras that share one detector.
    """

    def __init__(self, camera: CameraConfig, device: DeviceConfig, events: EventConfig, motion: MotionConfig,
                 detector: Detector, spool: Spool, work_dir: Path, detector_lock: threading.Lock | None = None):
        self.camera = camera
        self.device = device
        self.cfg = events
        self.detector = detector
        self.spool = spool
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.lock = detector_lock or threading.Lock()
        self.motion = MotionGate(motion)
        self.stats = CameraStats()
        self.fps = 10.0
        self._ring: collections.deque[Frame] = collections.deque()
        self._next_detect_t = 0.0
        self.tracker = Tracker(thresholds={label: f.threshold for label, f in camera.filters.items()},
                               confirm_frames=events.min_hits, stationary_after_s=events.stationary_after_s)
        self.zones: ZoneTracker | None = None
        self.masks: MaskSet | None = None
        self._last_check_t = float("-inf")
        self._active: _ActiveEvent | None = None
        self.finished: list[EdgeEvent] = []  # events spooled by this pipeline, in order

    def reconfigure(self, camera: CameraConfig) -> None:
        """Takes new settings (labels, thresholds, zones) from the next detector frame on; the source, the
        tracks and an active event carry on."""
        self.camera = camera
        self.tracker.thresholds = {label: f.threshold for label, f in camera.filters.items()}
        self.zones = None  # rebuilt with the new polygons on the next detector frame
        self.masks = None

    # ------------------------------------------------------------------------------------------ input
    def process(self, frame: Frame) -> None:
        """Feeds one frame (in capture order)."""
        self.stats.frames += 1
        self._ring.append(frame)
        while self._ring and frame.t - self._ring[0].t > self.cfg.pre_roll_s:
            self._ring.popleft()
        if self._active is not None:
            self._write(frame)
        if frame.t + 1e-9 >= self._next_detect_t:
            self._next_detect_t = max(self._next_detect_t + 1.0 / self.camera.detect_fps, frame.t)
            self._detect(frame)
        if self._active is not None:
            ev = self._active
            if frame.t - ev.last_seen_t > self.cfg.post_roll_s:
                self._finish()
            elif frame.t - ev.t0 >= self.cfg.max_length_s:
                still_active = frame.t - ev.last_seen_t < 1.0
                self._finish()
                if still_active:  # split: the next event starts right here, without re-sending pre-roll
                    self._ring.clear()
                    self._ring.append(frame)
                    self._start(frame)

    def finish(self) -> None:
        """Ends the active event, if any (the source ended or the daemon is stopping)."""
        if self._active is not None:
            self._finish()

    # -------------------------------------------------------------------------------------- detection
    def _detect(self, frame: Frame) -> None:
        if not self.camera.enabled:
            return
        moving = self.motion.update(frame.image)
        tracks = self.tracker.tracks.values()
        settled = all(tr.stationary for tr in tracks)  # also true when there are none
        if not moving and settled and frame.t - self._last_check_t < STATIONARY_RECHECK_S:
            # Nothing moved and every object is parked: look again only now and then (Frigate checks
            # stationary objects at an interval too), so a static scene costs almost nothing.
            self.stats.motion_skipped += 1
            return
        self._last_check_t = frame.t
        h, w = frame.image.shape[:2]
        if self.zones is None:
            self.zones = ZoneTracker([ZoneSpec(**z.model_dump()) for z in self.camera.zones], w, h)
            self.masks = MaskSet([list(map(list, m)) for m in self.camera.masks], w, h)
        region = self._region(w, h)
        started = time.perf_counter()
        with self.lock:
            if region is None:
                found = self.detector.detect(frame.image)
            else:
                x1, y1, x2, y2 = region
                found = [Detection(d.label, d.score, (d.box[0] + x1, d.box[1] + y1, d.box[2] + x1, d.box[3] + y1))
                         for d in self.detector.detect(frame.image[y1:y2, x1:x2])]
        self.stats.detector_ms_total += (time.perf_counter() - started) * 1000
        self.stats.detect_frames += 1
        seen = self.tracker.update(self._filter(found, w * h), frame.t)
        self.zones.forget(set(self.tracker.tracks))
        counting = []
        for tr in seen:
            for change in self.zones.update(tr.id, tr.label, tr.bottom_center, frame.t):
                log.info("camera %s: %s %d %s zone %s", self.camera.id, tr.label, tr.id,
                         "entered" if change.kind == "enter" else "left", change.zone)
            if tr.confirmed and not tr.stationary:
                counting.append(tr)
        if not counting:
            return
        if self._active is None:
            self._start(frame)
        self._observe(frame, counting)

    def _filter(self, found: list[Detection], frame_area: float) -> list[Detection]:
        """Labels wanted, per-label minimum score and box area, masks."""
        kept = []
        for d in found:
            if d.label not in self.camera.labels or d.score < self.camera.min_score_for(d.label):
                continue
            f = self.camera.filter_for(d.label)
            if not f.min_area <= d.area / frame_area <= f.max_area:
                continue
            if self.masks.hides(((d.box[0] + d.box[2]) / 2, d.box[3])):
                continue
            kept.append(d)
        return kept

    def _region(self, w: int, h: int) -> tuple[int, int, int, int] | None:
        """The square crop the detector looks at: what moved plus the live tracks, with a margin, at least the
        model's input size so small, distant objects keep their pixels. None: the whole frame."""
        boxes = list(self.motion.last_regions) + [tr.box for tr in self.tracker.tracks.values()]
        if not boxes:
            return None
        b = np.array(boxes, dtype=float)
        x1, y1, x2, y2 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        side = max(x2 - x1, y2 - y1) * 1.2
        side = max(side, float(getattr(self.detector, "input_size", (300, 300))[0]))
        if side >= 0.8 * min(w, h):
            return None
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left = int(min(max(cx - side / 2, 0), w - side))
        top = int(min(max(cy - side / 2, 0), h - side))
        return left, top, left + int(side), top + int(side)

    def _start(self, frame: Frame) -> None:
        first = self._ring[0] if self._ring else frame
        event_id = new_event_id(first.wall)
        h, w = frame.image.shape[:2]
        clip_path = self.work_dir / f"{event_id}.mp4"
        writer = _BackgroundClipWriter(ClipWriter(clip_path, width=w, height=h, fps=self.fps))
        self._active = _ActiveEvent(event_id=event_id, writer=writer, clip_path=clip_path, t0=first.t,
                                    start_wall=first.wall, last_seen_t=frame.t)
        for f in self._ring:  # pre-roll, including this frame
            self._write(f)
        log.info("camera %s: event %s started", self.camera.id, event_id)

    def _write(self, frame: Frame) -> None:
        ev = self._active
        if ev.last_frame is not None and frame.t <= ev.last_frame.t:
            return
        ev.writer.write(frame.image, frame.t - ev.t0)
        ev.last_frame = frame

    def _observe(self, frame: Frame, tracks: list[Track]) -> None:
        ev = self._active
        ev.last_seen_t = frame.t
        counts = collections.Counter(tr.label for tr in tracks)
        ev.labels.update(counts)
        for label, n in counts.items():
            ev.max_count[label] = max(ev.max_count.get(label, 0), n)
        ev.top_score = max(ev.top_score, max(tr.score for tr in tracks))
        for tr in tracks:
            ev.track_ids.add(tr.id)
            in_zones = self.zones.zones_of(tr.id)
            ev.zones.update(in_zones)
            if tr.label in self.camera.alert_labels and (
                not self.camera.alert_zones or set(in_zones) & set(self.camera.alert_zones)
            ):
                ev.alert = True
        dets = [Detection(tr.label, tr.score, tr.box) for tr in tracks]
        alerting = [d for d in dets if d.label in self.camera.alert_labels] or dets
        rank = sum(d.score for d in alerting) + 0.01 * sum(d.area for d in alerting) / frame.image[..., 0].size
        if ev.best is None or rank > ev.best[0]:
            ev.best = (rank, frame.image.copy(), dets, frame.wall)
        h, w = frame.image.shape[:2]
        second = int(frame.t)
        best_here = max(dets, key=lambda d: d.score)
        prev = ev.detections.get(second)
        if prev is None or best_here.score > prev.score:
            x1, y1, x2, y2 = best_here.box
            ev.detections[second] = DetectionRef(
                label=best_here.label, score=round(float(best_here.score), 4),
                box=[_clamp(x1 / w), _clamp(y1 / h), _clamp(x2 / w), _clamp(y2 / h)], time=frame.wall,
            )

    # ------------------------------------------------------------------------------------------ output
    def _finish(self) -> None:
        ev, self._active = self._active, None
        if ev.best is None:
            # Split at max_length_s and then nothing more was seen before the source ended: no event.
            ev.writer.abort()
            log.info("camera %s: event %s dropped: nothing was detected in it", self.camera.id, ev.event_id)
            return
        info = ev.writer.close()
        _, image, dets, snap_wall = ev.best
        snapshot = encode_snapshot(image, boxes=[(d.label, d.score, d.box) for d in dets])
        t, d = self.device.tenant_id, self.device.device_id
        labels = [label for label, _ in ev.labels.most_common()]
        refs = [ev.detections[k] for k in sorted(ev.detections)]
        if len(refs) > MAX_DETECTIONS:
            refs = sorted(sorted(refs, key=lambda r: -r.score)[:MAX_DETECTIONS], key=lambda r: r.time)
        event = EdgeEvent(
            event_id=ev.event_id,
            tenant_id=self.device.tenant_id,
            device_id=self.device.device_id,
            camera_id=self.camera.id,
            kind="detection",
            severity="alert" if ev.alert else "detection",
            labels=labels,
            start_time=ev.start_wall,
            end_time=ev.last_frame.wall,
            top_score=round(float(ev.top_score), 4),
            max_count=ev.max_count,
            detections=refs,
            zones=sorted(ev.zones),
            clip=ClipRef.from_info(info, object_name(t, d, ev.event_id, CLIP_NAME)),
            snapshot=SnapshotRef.for_jpeg(snapshot, object_name(t, d, ev.event_id, SNAPSHOT_NAME), snap_wall),
        )
        self.spool.put(event, info.path, snapshot)
        self.stats.events += 1
        self.finished.append(event)
        log.info("camera %s: event %s ended (%s, %.1f s, %d frames) and was spooled",
                 self.camera.id, ev.event_id, ",".join(labels), info.duration_s, info.frames)


def _clamp(v: float) -> float:
    return round(min(1.0, max(0.0, float(v))), 4)

