"""From detections to events: the per-camera pipeline.

For each frame: keep it in the pre-roll ring buffer; at the detect rate, gate on motion, run the detector on
the region that moved (a square crop, so small distant objects keep their pixels), drop what the per-label
filters and masks reject, and track the rest (``tracker.py``) through the zones (``zones.py``). A confirmed,
moving track starts an event whose clip begins ``pre_roll_s`` earlier; stationary objects neither start nor
extend events; every frame of an active event goes to the clip as it arrives (memory stays bounded): an
H.264 camera's own packets are remuxed from the last keyframe before the pre-roll on (no re-encoding),
other codecs are encoded to H.264 on a background thread (keyframes every ``segment_s``). The same packets
are cut into HLS segments (``segments.py``) while the event runs.

Zone entries and exits (``zones.py``) travel with the event as ``zone_events``: those of the tracks the event
counts, decided at a frame its clip holds (the pre-roll's included), in frame order, the first
``MAX_ZONE_EVENTS``. A track that enters a zone before it is confirmed, or that parks and later leaves, still
has its changes on the event's timeline; a flicker that never becomes a counted track has none.

The event leaves as a lifecycle of schema version 2 messages (docs/contracts.md, "Event lifecycle"), each
the whole event so far, each its own durable spool item:

* ``start`` (seq 0) at once when the event is confirmed (no waiting for a segment): the snapshot of the
  confirming frame (with boxes), nothing else, so it is small and goes first;
* an ``update`` whenever a segment is finished (it brings the new segments; the first one, right after the
  start, brings the pre-roll segments already cut), and at once when the event becomes an alert (with the
  snapshot of that frame);
* ``end`` ``post_roll_s`` after the last detection, or at ``max_length_s``: the last (partial) segment,
  ``segment_count``, the clip and the best snapshot. A split at ``max_length_s`` while activity goes on
  starts the next event, whose messages say ``continues: <previous event_id>``.

Detection is asynchronous (``detect_async``): a frame is at the detector while the next ones are decoded and
written, and results are applied in frame order.

H.264 cameras are also recorded continuously (``recorder.py``, ``EventConfig.record_minutes``) so the cloud
can ask for a clip of any recent time range (``request_clip``).
"""

from __future__ import annotations

import collections
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from vigint_edge.capture.source import Frame
from vigint_edge.recording.clip import REMUX_CODECS, ClipError, ClipWriter, RemuxWriter, encode_snapshot
from vigint_edge.config import CameraConfig, DeviceConfig, EventConfig, MotionConfig
from vigint_edge.detection.detector import Detection, Detector
from vigint_edge.event_model import (CLIP_NAME, MAX_SEGMENT_BYTES, MAX_ZONE_EVENTS, SNAPSHOT_NAME, ClipRef,
                                     DetectionRef, EdgeEvent, LifecycleMessage, SegmentRef, SnapshotRef,
                                     ZoneEventRef, new_event_id, object_name, segment_name, snapshot_name)
from vigint_edge.capture.motion import MotionGate
from vigint_edge.recording.recorder import ClipUnavailable, Recorder
from vigint_edge.recording.segments import SegmentError, SegmentFile, Segmenter
from vigint_edge.delivery.spool import Spool
from vigint_edge.detection.tracker import Track, Tracker
from vigint_edge.detection.zones import MaskSet, ZoneChange, ZoneSpec, ZoneTracker

log = logging.getLogger(__name__)
__all__ = ["CameraPipeline", "CameraStats", "ClipUnavailable"]
MAX_DETECTIONS = 50  # per event message (docs/contracts.md)
# Zone changes an event keeps in memory, of every track of the camera (those of tracks the event never counts
# are dropped when a message is built, so more are kept than the MAX_ZONE_EVENTS a message carries).
MAX_ZONE_CHANGES_KEPT = 10 * MAX_ZONE_EVENTS
STATIONARY_RECHECK_S = 5.0  # seconds between detector looks at a scene where nothing moves


@dataclass
class CameraStats:
    """Counters a heartbeat or the status endpoint reports for one camera."""

    frames: int = 0
    detect_frames: int = 0
    motion_skipped: int = 0
    events: int = 0
    detector_ms_total: float = 0.0
    detector_errors: int = 0
    # per event (the last 100): confirming frame's arrival -> its start in the spool, milliseconds
    start_latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
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

    def add(self, frame: Frame, t: float) -> None:
        self._queue.put((frame.av_frame if frame.av_frame is not None else frame.image, t))

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


class _RemuxClip:
    """An event clip cut from the camera's own H.264 packets (no re-encoding); same calls as the encoder."""

    def __init__(self, writer: RemuxWriter):
        self._writer = writer

    def add(self, frame: Frame, t: float) -> None:
        self._writer.write_packets(frame.packets)

    def abort(self) -> None:
        self._writer.abort()

    def close(self):
        return self._writer.close()


class _LiveSegments:
    """The event's segmenter, fed from the clip writer (possibly on the encoder thread). A segment failure
    never costs the clip: it is logged once and the event goes on without further segments."""

    def __init__(self, segmenter: Segmenter, camera_id: str, event_id: str):
        self.segmenter = segmenter
        self._what = f"camera {camera_id}: event {event_id}"
        self.failed = False

    def add(self, packet) -> None:
        if self.failed:
            return
        try:
            self.segmenter.add(packet)
        except (SegmentError, OSError) as exc:
            self.failed = True
            log.error("%s: live segments stopped: %s", self._what, exc)

    def close(self) -> None:
        if not self.failed:
            try:
                self.segmenter.close()
            except (SegmentError, OSError) as exc:
                self.failed = True
                log.error("%s: last live segment lost: %s", self._what, exc)

    def take_finished(self) -> list[SegmentFile]:
        """The segments finished since the last call. One over the contract's 32 MiB (a camera with a very
        long GOP at a high bit rate) could never be uploaded: it and everything after it are left out (the
        event keeps its contiguous segments 0..n-1 and its clip)."""
        out = []
        for f in self.segmenter.take_finished():
            if self.failed or f.bytes > MAX_SEGMENT_BYTES:
                if not self.failed:
                    log.error("%s: segment %d has %d bytes, more than the %d allowed: live segments stopped",
                              self._what, f.index, f.bytes, MAX_SEGMENT_BYTES)
                self.failed = True
                f.path.unlink(missing_ok=True)
                continue
            out.append(f)
        return out

    def abort(self) -> None:
        self.segmenter.abort()


def _remuxable(frame: Frame) -> bool:
    return frame.stream is not None and frame.stream.codec_context.name in REMUX_CODECS


@dataclass
class _Inflight:
    """A frame at the detector: ``done`` is its ``detect_async`` callback (any thread)."""

    frame: Frame
    region: tuple[int, int, int, int] | None  # where the detector input was cut from (None: whole frame)
    scale: tuple[float, float]  # frame pixels per detector-input pixel
    started: float
    finished: float = 0.0
    found: list[Detection] | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def done(self, found: list[Detection] | None, error: BaseException | None) -> None:
        self.found, self.error, self.finished = found, error, time.perf_counter()
        self.ready.set()


@dataclass
class _ActiveEvent:
    event_id: str
    writer: "_BackgroundClipWriter | _RemuxClip"
    clip_path: Path
    t0: float
    start_wall: object
    last_seen_t: float
    last_frame: Frame | None = None
    labels: collections.Counter = field(default_factory=collections.Counter)
    max_count: dict = field(default_factory=dict)
    top_score: float = 0.0
    best: tuple[float, Frame, list[Detection], object] | None = None  # (rank, frame, dets, wall)
    detections: dict = field(default_factory=dict)  # whole second -> DetectionRef (best in that second)
    zones: set = field(default_factory=set)
    track_ids: set = field(default_factory=set)
    # every zone change of the camera's tracks within the clip (pre-roll included), in frame order, at most
    # MAX_ZONE_CHANGES_KEPT: (change, label, wall time)
    zone_changes: list = field(default_factory=list)
    alert: bool = False
    stream: object = None  # the capture stream the clip's frames come from
    live: _LiveSegments | None = None
    live_dir: Path | None = None
    continues: str | None = None  # the event this one continues (split at max_length_s)
    seq: int = -1  # the last message spooled (-1: none yet; the start is spooled at the first observation)
    segments_spooled: int = 0
    new_segments: list = field(default_factory=list)  # SegmentFile finished, not yet in a message
    first_seen: object = None
    confirmed_at: object = None
    alert_first_seen: object = None
    alert_confirmed_at: object = None
    alert_news: bool = False  # became an alert since the last message
    snapshot: SnapshotRef | None = None  # the latest snapshot sent

    @property
    def started(self) -> bool:
        return self.seq >= 0


class CameraPipeline:
    """Turns one camera's frames into spooled events.

    Args:
        camera: the camera's settings (labels, thresholds, detect rate).
        device: tenant and device ids for event records and object names.
        events: pre/post roll, maximum length, confirmation hits.
        motion: the motion gate's settings.
        detector: any ``Detector``; shared by cameras (its ``detect_async`` queue runs their frames in
            parallel).
        spool: where finished events go.
        work_dir: where clips are written while their event is active.
    """

    def __init__(self, camera: CameraConfig, device: DeviceConfig, events: EventConfig, motion: MotionConfig,
                 detector: Detector, spool: Spool, work_dir: Path):
        self.camera = camera
        self.device = device
        self.cfg = events
        self.detector = detector
        self.spool = spool
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._inflight: collections.deque[_Inflight] = collections.deque()
        self._max_inflight = max(1, int(getattr(detector, "async_jobs", 1)))
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
        # zone changes of the last pre_roll_s (frame time), for the pre-roll of the next event: (change, label, wall)
        self._recent_zone_changes: collections.deque[tuple[ZoneChange, str, datetime]] = collections.deque()
        self._active: _ActiveEvent | None = None
        self._closing: _ActiveEvent | None = None  # the event whose end is being built
        self.recorder: Recorder | None = None  # H.264 cameras with record_minutes > 0, from the first frame on
        self.finished: list[LifecycleMessage] = []  # the end message of each event spooled, in order
        self.messages: list[LifecycleMessage] = []  # every lifecycle message spooled, in order
        self.live_root = self.work_dir / "live" / camera.id
        shutil.rmtree(self.live_root, ignore_errors=True)  # segments of an event a crash left unspooled

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
        remux = _remuxable(frame)
        if self._active is not None and self._active.stream is not frame.stream:
            self._finish()  # the camera reconnected (new stream) or changed codec: this clip ends here
        if self._ring and self._ring[-1].stream is not frame.stream:
            self._ring.clear()  # packets of another connection cannot go into the same clip
        # H.264 clips are cut from packets, so the ring keeps no pixels for them (1080p frames are 6 MB each).
        self._ring.append(frame.without_pixels() if remux else frame)
        self._trim_ring(self._inflight[0].frame.t if self._inflight else frame.t, remux)
        if remux and self.cfg.record_minutes > 0:
            if self.recorder is None:
                self.recorder = Recorder(self.work_dir / "continuous" / self.camera.id, self.cfg.record_minutes,
                                         self.cfg.record_max_bytes)
            self.recorder.add(frame)
        if self._active is not None:
            self._write(frame)
        if frame.t + 1e-9 >= self._next_detect_t:
            self._next_detect_t = max(self._next_detect_t + 1.0 / self.camera.detect_fps, frame.t)
            self._submit(frame)
        self._drain(wait=False)
        if self._active is not None:
            ev = self._active
            if frame.t - ev.last_seen_t > self.cfg.post_roll_s:
                self._finish()
            elif frame.t - ev.t0 >= self.cfg.max_length_s:
                still_active = frame.t - ev.last_seen_t < 1.0
                previous = ev.event_id if ev.started else None
                self._finish()
                if still_active:  # split: the next event starts right here, without re-sending pre-roll
                    self._keep_from_last_keyframe(remux)
                    self._start(frame, continues=previous)
            elif ev.started and ev.live is not None:
                ev.new_segments += ev.live.take_finished()
                if ev.new_segments:
                    self._send("update")

    def _trim_ring(self, now_t: float, remux: bool) -> None:
        """Keeps ``pre_roll_s`` of frames; for a remuxed clip, back to the keyframe that starts that span."""
        ring, pre = self._ring, self.cfg.pre_roll_s
        if not remux:
            while ring and now_t - ring[0].t > pre:
                ring.popleft()
            return
        while True:  # drop whole GOPs while the next one still starts before the pre-roll
            j = next((i for i in range(1, len(ring)) if ring[i].key), None)
            if j is None or now_t - ring[j].t < pre:
                return
            for _ in range(j):
                ring.popleft()

    def _keep_from_last_keyframe(self, remux: bool) -> None:
        """After a split: the next clip starts at the current frame (encoded) or at the last keyframe, which
        the previous clip also holds (remuxed: a clip cannot start between keyframes)."""
        if not remux:
            last = self._ring[-1]
            self._ring.clear()
            self._ring.append(last)
            return
        keys = [i for i, f in enumerate(self._ring) if f.key]
        for _ in range(keys[-1] if keys else 0):
            self._ring.popleft()

    def finish(self) -> None:
        """Ends the active event, if any, and the continuous recording's segment (the source ended or the daemon
        is stopping)."""
        self._drain(wait=True)
        if self._active is not None:
            self._finish()
        if self.recorder is not None:
            self.recorder.close()

    def request_clip(self, start: datetime, end: datetime) -> EdgeEvent:
        """Cuts a clip of ``start``..``end`` (UTC) from the continuous recording and spools it as an event of
        kind ``"recording"`` (severity detection, no labels), like any event. Thread-safe: called from the
        command worker while the camera thread keeps recording. May wait up to two segment lengths (about
        20 s) for the recording of ``end`` to be finished (``Recorder.cut``).

        Returns:
            The spooled ``EdgeEvent``.

        Raises:
            ClipUnavailable: recording is off for this camera (not H.264, or ``record_minutes`` 0), or the
                range was not recorded (too old, in the future, the camera was down).
        """
        recorder = self.recorder
        if recorder is None:
            raise ClipUnavailable(
                f"camera {self.camera.id} is not recorded continuously"
                + (" (record_minutes is 0)" if self.cfg.record_minutes <= 0 else
                   " (its stream is not H.264, or no frame has arrived yet)"))
        event_id = new_event_id(start)
        clip_path = self.work_dir / f"{event_id}.mp4"
        info, first_image, clip_start = recorder.cut(start, end, clip_path)
        snapshot = encode_snapshot(first_image)
        t, d = self.device.tenant_id, self.device.device_id
        end_wall = clip_start + timedelta(seconds=info.duration_s)
        event = EdgeEvent(
            event_id=event_id, tenant_id=t, device_id=d, camera_id=self.camera.id, kind="recording",
            severity="detection", labels=[], start_time=clip_start, end_time=end_wall,
            clip=ClipRef.from_info(info, object_name(t, d, event_id, CLIP_NAME)),
            snapshot=SnapshotRef.for_jpeg(snapshot, object_name(t, d, event_id, SNAPSHOT_NAME), clip_start),
        )
        self.spool.put(event, info.path, snapshot)
        log.info("camera %s: requested clip %s..%s spooled as %s (%.1f s)", self.camera.id,
                 start.isoformat(), end.isoformat(), event_id, info.duration_s)
        return event

    # -------------------------------------------------------------------------------------- detection
    def _submit(self, frame: Frame) -> None:
        """Motion gate, then the detector on the region that moved, asynchronously (``detect_async``): the
        result is applied by ``_drain`` in frame order while the next frames are decoded and written."""
        if not self.camera.enabled:
            return
        moving = self.motion.update(frame.gray())
        tracks = self.tracker.tracks.values()
        settled = all(tr.stationary for tr in tracks)  # also true when there are none
        if not moving and settled and frame.t - self._last_check_t < STATIONARY_RECHECK_S:
            # Nothing moved and every object is parked: look again only now and then (Frigate checks
            # stationary objects at an interval too), so a static scene costs almost nothing.
            self.stats.motion_skipped += 1
            return
        self._last_check_t = frame.t
        w, h = frame.size
        if self.zones is None:
            self.zones = ZoneTracker([ZoneSpec(**z.model_dump()) for z in self.camera.zones], w, h)
            self.masks = MaskSet([list(map(list, m)) for m in self.camera.masks], w, h)
        region = self._region(w, h)
        size = getattr(self.detector, "input_size", None)
        if region is None and size is not None:
            # The whole frame: converted and scaled to the model's input in one step (boxes scaled back).
            image, scale = frame.bgr(None, size), (w / size[0], h / size[1])
        else:
            image, scale = frame.bgr(region), (1.0, 1.0)
        job = _Inflight(frame=frame, region=region, scale=scale, started=time.perf_counter())
        self._inflight.append(job)
        self.detector.detect_async(image, job.done)

    def _drain(self, wait: bool) -> None:
        """Applies finished detections in frame order; with ``wait``, all of them, else only those ready and,
        beyond the detector's parallel requests, the oldest (so at most that many frames are in flight)."""
        limit = 0 if wait else self._max_inflight
        while self._inflight:
            job = self._inflight[0]
            if not job.ready.is_set():
                if len(self._inflight) <= limit:
                    return
                job.ready.wait()
            self._inflight.popleft()
            self.stats.detector_ms_total += (job.finished - job.started) * 1000
            self.stats.detect_frames += 1
            if job.error is not None:
                self.stats.detector_errors += 1
                log.warning("camera %s: detection failed on frame %d: %s", self.camera.id, job.frame.index,
                            job.error)
                continue
            x1, y1 = job.region[:2] if job.region is not None else (0, 0)
            sx, sy = job.scale
            found = [Detection(d.label, d.score, (d.box[0] * sx + x1, d.box[1] * sy + y1,
                                                  d.box[2] * sx + x1, d.box[3] * sy + y1)) for d in job.found]
            self._apply(job.frame, found, job.started)

    def _apply(self, frame: Frame, found: list[Detection], arrived: float | None = None) -> None:
        """Tracking, zones and the event for one detector frame (``arrived``: ``time.perf_counter()`` when the
        frame reached the pipeline, for the start latency)."""
        w, h = frame.size
        seen = self.tracker.update(self._filter(found, w * h), frame.t, wall=frame.wall)
        self.zones.forget(set(self.tracker.tracks))
        counting = []
        changes = []
        for tr in seen:
            for change in self.zones.update(tr.id, tr.label, tr.bottom_center, frame.t):
                log.info("camera %s: %s %d %s zone %s", self.camera.id, tr.label, tr.id,
                         "entered" if change.kind == "enter" else "left", change.zone)
                changes.append((change, tr.label, frame.wall))
            if tr.confirmed and not tr.stationary:
                counting.append(tr)
        self._keep_zone_changes(frame.t, changes)
        if not counting:
            return
        if self._active is None:
            self._start(frame)  # takes this frame's zone changes and the pre-roll's
        self._observe(frame, counting)
        ev = self._active
        boxes = [(tr.label, tr.score, tr.box) for tr in counting]
        if not ev.started:
            ev.confirmed_at = frame.wall
            ev.first_seen = min((tr.first_wall for tr in counting if tr.first_wall is not None),
                                default=frame.wall)
            # The start carries its snapshot alone: the pre-roll segments already cut follow in an update
            # spooled right after it (``process``), so the alert's path uploads one small JPEG, not
            # seconds of video, before it is published.
            applied = time.perf_counter()
            self._send("start", snapshot=(frame, boxes))
            if arrived is not None:
                done = time.perf_counter()
                ms = (done - arrived) * 1000
                self.stats.start_latency_ms.append(round(ms, 2))
                log.info("camera %s: event %s start spooled %.1f ms after its confirming frame arrived (%.1f ms "
                         "detection and waiting for it, %.1f ms snapshot + spool)", self.camera.id, ev.event_id,
                         ms, (applied - arrived) * 1000, (done - applied) * 1000)
        elif ev.alert_news:
            self._send("update", snapshot=(frame, boxes))

    def _keep_zone_changes(self, now_t: float, changes: list[tuple[ZoneChange, str, datetime]]) -> None:
        """Keeps one detector frame's zone changes: for the active event (every track of the camera, while the
        event is open; ``_message`` keeps those of the tracks it counts) and, for ``pre_roll_s``, for the
        pre-roll of an event yet to start."""
        recent = self._recent_zone_changes
        recent.extend(changes)
        oldest = self._ring[0].t if self._ring else now_t - self.cfg.pre_roll_s  # where a clip would start
        while recent and recent[0][0].t < oldest:
            recent.popleft()
        ev = self._active
        if ev is not None and changes:
            ev.zone_changes.extend(changes[:max(0, MAX_ZONE_CHANGES_KEPT - len(ev.zone_changes))])

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

    def _start(self, frame: Frame, continues: str | None = None) -> None:
        first = self._ring[0] if self._ring else frame
        event_id = new_event_id(first.wall)
        w, h = frame.size
        clip_path = self.work_dir / f"{event_id}.mp4"
        live_dir = self.live_root / event_id
        seg_s = self.cfg.segment_s
        if _remuxable(frame):
            live = _LiveSegments(Segmenter(live_dir, frame.stream, seg_s), self.camera.id, event_id)
            writer = _RemuxClip(RemuxWriter(clip_path, frame.stream, on_packet=live.add))
        else:
            encoder = ClipWriter(clip_path, width=w, height=h, fps=self.fps, g=max(1, round(seg_s * self.fps)))
            live = _LiveSegments(Segmenter(live_dir, encoder.stream, seg_s, headers=encoder.headers),
                                 self.camera.id, event_id)
            encoder.on_packet = live.add
            writer = _BackgroundClipWriter(encoder)
        # the zone changes the clip shows: from its first frame (the pre-roll) on, this frame's included
        pre_roll_changes = [c for c in self._recent_zone_changes if c[0].t >= first.t][:MAX_ZONE_CHANGES_KEPT]
        self._active = _ActiveEvent(event_id=event_id, writer=writer, clip_path=clip_path, t0=first.t,
                                    start_wall=first.wall, last_seen_t=frame.t, stream=frame.stream, live=live,
                                    live_dir=live_dir, continues=continues, zone_changes=pre_roll_changes)
        for f in self._ring:  # pre-roll, including this frame
            self._write(f)
        log.info("camera %s: event %s started%s", self.camera.id, event_id,
                 f" (continues {continues})" if continues else "")

    def _write(self, frame: Frame) -> None:
        ev = self._active
        if ev.last_frame is not None and frame.t <= ev.last_frame.t:
            return
        ev.writer.add(frame, frame.t - ev.t0)
        ev.last_frame = frame

    def _observe(self, frame: Frame, tracks: list[Track]) -> None:
        ev = self._active
        ev.last_seen_t = frame.t
        counts = collections.Counter(tr.label for tr in tracks)
        ev.labels.update(counts)
        for label, n in counts.items():
            ev.max_count[label] = max(ev.max_count.get(label, 0), n)
        ev.top_score = max(ev.top_score, max(tr.score for tr in tracks))
        alerting_tracks = []
        for tr in tracks:
            ev.track_ids.add(tr.id)
            in_zones = self.zones.zones_of(tr.id)
            ev.zones.update(in_zones)
            if tr.label in self.camera.alert_labels and (
                not self.camera.alert_zones or set(in_zones) & set(self.camera.alert_zones)
            ):
                alerting_tracks.append(tr)
        if alerting_tracks and not ev.alert:
            ev.alert, ev.alert_news = True, True
            ev.alert_confirmed_at = frame.wall
            ev.alert_first_seen = min((tr.first_wall for tr in alerting_tracks if tr.first_wall is not None),
                                      default=frame.wall)
        dets = [Detection(tr.label, tr.score, tr.box) for tr in tracks]
        alerting = [d for d in dets if d.label in self.camera.alert_labels] or dets
        w, h = frame.size
        rank = sum(d.score for d in alerting) + 0.01 * sum(d.area for d in alerting) / (w * h)
        if ev.best is None or rank > ev.best[0]:
            ev.best = (rank, frame, dets, frame.wall)  # pixels converted once, for the snapshot
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
    def _message(self, phase: str, snapshot: SnapshotRef | None, **extra) -> LifecycleMessage:
        """The event so far as a lifecycle message of ``phase`` (seq: the next one), with the new segments."""
        ev = self._active_or_closing
        t, d = self.device.tenant_id, self.device.device_id
        refs = [ev.detections[k] for k in sorted(ev.detections)]
        if len(refs) > MAX_DETECTIONS:
            refs = sorted(sorted(refs, key=lambda r: -r.score)[:MAX_DETECTIONS], key=lambda r: r.time)
        zone_events = [ZoneEventRef(zone=c.zone, track_id=c.track_id, label=label, kind=c.kind, time=wall)
                       for c, label, wall in ev.zone_changes if c.track_id in ev.track_ids][:MAX_ZONE_EVENTS]
        segments = [SegmentRef(index=f.index, object=object_name(t, d, ev.event_id, segment_name(f.index)),
                               bytes=f.bytes, sha256=f.sha256, start_s=f.start_s, duration_s=f.duration_s)
                    for f in ev.new_segments]
        return LifecycleMessage(
            event_id=ev.event_id, tenant_id=t, device_id=d, camera_id=self.camera.id, phase=phase,
            seq=ev.seq + 1, severity="alert" if ev.alert else "detection",
            labels=[label for label, _ in ev.labels.most_common()], start_time=ev.start_wall,
            end_time=max(ev.last_frame.wall, ev.start_wall), first_seen=ev.first_seen,
            alert_first_seen=ev.alert_first_seen, confirmed_at=ev.confirmed_at,
            alert_confirmed_at=ev.alert_confirmed_at, top_score=round(float(ev.top_score), 4),
            max_count=dict(ev.max_count), detections=refs, zones=sorted(ev.zones), zone_events=zone_events,
            snapshot=snapshot,
            segments=segments, continues=ev.continues, **extra,
        )

    def _send(self, phase: str, snapshot=None, **extra) -> LifecycleMessage:
        """Builds and spools the next message of the event (``snapshot``: ``(frame, boxes)`` to encode as this
        message's snapshot, None to repeat the latest one); ``extra``: end-only fields."""
        ev = self._active_or_closing
        seq = ev.seq + 1
        files: dict = {}
        ref = ev.snapshot
        if snapshot is not None:
            frame, boxes = snapshot
            jpeg = encode_snapshot(frame.image, boxes=boxes)
            name = snapshot_name(seq)
            ref = SnapshotRef.for_jpeg(jpeg, object_name(self.device.tenant_id, self.device.device_id,
                                                         ev.event_id, name), frame.wall)
            files[name] = jpeg
        for f in ev.new_segments:
            files[segment_name(f.index)] = f.path
        if phase == "end":
            extra["segment_count"] = ev.segments_spooled + len(ev.new_segments)
        message = self._message(phase, ref, **extra)
        if message.clip is not None:
            files[CLIP_NAME] = ev.clip_path
        self.spool.put_message(message, files)
        ev.seq, ev.snapshot, ev.alert_news = seq, ref, False
        ev.segments_spooled += len(ev.new_segments)
        ev.new_segments = []
        self.messages.append(message)
        return message

    @property
    def _active_or_closing(self) -> _ActiveEvent:
        return self._active if self._active is not None else self._closing

    def _finish(self) -> None:
        ev, self._active = self._active, None
        if not ev.started:
            # Split at max_length_s and then nothing more was seen before the source ended: no event.
            ev.writer.abort()
            if ev.live is not None:
                ev.live.abort()
            log.info("camera %s: event %s dropped: nothing was detected in it", self.camera.id, ev.event_id)
            return
        try:
            info = ev.writer.close()  # the encoder's last packets reach the segmenter here
        except ClipError as exc:  # the event still goes out, with its snapshot and without a clip
            log.warning("camera %s: event %s has no clip: %s", self.camera.id, ev.event_id, exc)
            info = None
        if ev.live is not None:
            ev.live.close()
            ev.new_segments += ev.live.take_finished()
        _, best_frame, dets, _ = ev.best
        t, d = self.device.tenant_id, self.device.device_id
        clip = ClipRef.from_info(info, object_name(t, d, ev.event_id, CLIP_NAME)) if info else None
        if info is not None:
            ev.clip_path = info.path
        self._closing = ev
        try:
            end = self._send("end", snapshot=(best_frame, [(x.label, x.score, x.box) for x in dets]), clip=clip)
        finally:
            self._closing = None
        if ev.live_dir is not None:
            shutil.rmtree(ev.live_dir, ignore_errors=True)
        self.stats.events += 1
        self.finished.append(end)
        log.info("camera %s: event %s ended (%s, %.1f s, %d frames, %d segments) and was spooled", self.camera.id,
                 ev.event_id, ",".join(end.labels), info.duration_s if info else 0.0, info.frames if info else 0,
                 end.segment_count)


def _clamp(v: float) -> float:
    return round(min(1.0, max(0.0, float(v))), 4)

