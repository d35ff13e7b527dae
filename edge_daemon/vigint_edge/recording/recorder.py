"""Continuous recording of an H.264 camera, so the cloud can ask for a clip of any recent time range.

The camera's own packets are remuxed (no re-encoding, almost no CPU) into segments of about ``SEGMENT_S``
seconds, each starting at a keyframe, in one directory per camera. A finished segment is named
``<start>_<duration>.mp4`` (UTC start and duration in milliseconds), so the directory is its own index and
survives restarts; an unfinished one is ``<start>.part`` and is deleted at start-up. Segments older than
``keep_minutes``, and the oldest beyond ``max_bytes``, are deleted as new ones are finished (a rolling
buffer, like an NVR's continuous-recording retention).

``cut(start, end, path)`` concatenates the segments covering a range into one mp4 (again without
re-encoding), starting at the last keyframe at or before ``start``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np

from vigint_edge.capture.source import Frame
from vigint_edge.recording.clip import ClipError, ClipInfo, RemuxWriter

log = logging.getLogger(__name__)
__all__ = ["ClipUnavailable", "Recorder", "Segment", "SEGMENT_S", "MAX_CLIP_S"]

SEGMENT_S = 10.0  # seconds per segment: how far a requested clip may start early, and how long cut() may wait
MAX_CLIP_S = 600.0  # the cloud's limit for a requested clip (docs/contracts.md, request_clip)
_NAME = re.compile(r"^(\d+)_(\d+)\.mp4$")


class ClipUnavailable(RuntimeError):
    """The requested range cannot be cut: not recorded (too old, camera down, in the future) or recording off."""


@dataclass(frozen=True)
class Segment:
    """A finished segment: ``start``/``end`` UTC, ``bytes`` on disk."""

    path: Path
    start: datetime
    end: datetime
    bytes: int


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class Recorder:
    """A rolling buffer of one camera's stream on disk.

    Args:
        directory: this camera's segment directory (created).
        keep_minutes: segments whose end is older than this are deleted.
        max_bytes: the oldest segments are deleted beyond this total.
        segment_s: target segment length in seconds (a segment ends at the first keyframe after it).

    ``add`` is called from the camera thread; ``cut`` and ``segments`` from any thread.
    """

    def __init__(self, directory: Path, keep_minutes: float, max_bytes: int, segment_s: float = SEGMENT_S):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.part"):  # a segment being written when the daemon was killed
            stale.unlink(missing_ok=True)
        for stale in self.dir.parent.glob(f"cut-{self.dir.name}-*"):  # a cut interrupted the same way
            shutil.rmtree(stale, ignore_errors=True)
        self.keep = timedelta(minutes=keep_minutes)
        self.max_bytes = max_bytes
        self.segment_s = segment_s
        self.evicted = 0
        self._cond = threading.Condition()
        self._writer: RemuxWriter | None = None
        self._stream = None
        self._seg_t = 0.0
        self._seg_wall: datetime | None = None
        self._latest_wall: datetime | None = None

    # ----------------------------------------------------------------------------------- camera thread
    def add(self, frame: Frame) -> None:
        """Records the frame's packets. A segment starts at a keyframe; a new connection starts a new one.

        Errors writing a segment are logged and that segment is dropped; recording goes on with the next.
        """
        new_stream = frame.stream is not self._stream
        if self._writer is not None and (new_stream or (frame.key and frame.t - self._seg_t >= self.segment_s)):
            self._finish_segment()
        if self._writer is None:
            if not frame.key:
                return
            self._stream = frame.stream
            self._seg_t, self._seg_wall = frame.t, frame.wall
            try:
                self._writer = RemuxWriter(self.dir / f"{_ms(frame.wall)}.mp4", frame.stream)
            except ClipError as exc:
                log.warning("recording %s: cannot start a segment: %s", self.dir.name, exc)
                return
        try:
            self._writer.write_packets(frame.packets)
        except ClipError as exc:
            log.warning("recording %s: segment dropped: %s", self.dir.name, exc)
            self._writer.abort()
            self._writer = None
        with self._cond:
            self._latest_wall = frame.wall

    def close(self) -> None:
        """Finishes the current segment (the source ended or the daemon is stopping)."""
        if self._writer is not None:
            self._finish_segment()

    def _finish_segment(self) -> None:
        writer, self._writer = self._writer, None
        try:
            info = writer.close()
        except ClipError as exc:
            log.warning("recording %s: segment dropped: %s", self.dir.name, exc)
            return
        final = self.dir / f"{_ms(self._seg_wall)}_{round(info.duration_s * 1000)}.mp4"
        os.replace(info.path, final)
        with self._cond:
            self._evict()
            self._cond.notify_all()

    def _evict(self) -> None:
        segments = self.segments()
        if not segments:
            return
        horizon = segments[-1].end - self.keep
        total = sum(s.bytes for s in segments)
        for s in segments[:-1]:
            if s.end >= horizon and total <= self.max_bytes:
                break
            s.path.unlink(missing_ok=True)
            total -= s.bytes
            self.evicted += 1

    # ------------------------------------------------------------------------------------- any thread
    def segments(self) -> list[Segment]:
        """The finished segments, oldest first."""
        out = []
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m is None:
                continue
            try:
                size = p.stat().st_size
            except FileNotFoundError:  # evicted meanwhile
                continue
            start = _utc(int(m.group(1)))
            out.append(Segment(p, start, start + timedelta(milliseconds=int(m.group(2))), size))
        return sorted(out, key=lambda s: s.start)

    def cut(self, start: datetime, end: datetime, path: Path) -> tuple[ClipInfo, np.ndarray, datetime]:
        """Writes the recording of ``start``..``end`` (UTC) to ``path`` as one mp4, without re-encoding.

        Waits (at most two segment lengths) for the segment holding ``end`` to be finished.

        Returns:
            ``(clip info, first frame as BGR uint8 array (H, W, 3), UTC time of the clip's first frame)``;
            the clip starts at the last keyframe at or before ``start`` (at most one GOP earlier) or at the
            first recorded moment after it, and ends at ``end`` or where the recording stops.

        Raises:
            ClipUnavailable: ``end`` not after ``start``, longer than ``MAX_CLIP_S``, in the future, or
                nothing recorded in the range.
        """
        if end <= start:
            raise ClipUnavailable("end must be after start")
        if (end - start).total_seconds() > MAX_CLIP_S:
            raise ClipUnavailable(f"a requested clip is at most {MAX_CLIP_S:g} s long")
        deadline = time.monotonic() + 2 * self.segment_s + 2
        with self._cond:
            latest = self._latest_wall
            if latest is not None and end > latest + timedelta(seconds=2 * self.segment_s):
                raise ClipUnavailable(f"end {end.isoformat()} is in the future (last frame {latest.isoformat()})")
            while True:
                segments = self.segments()
                recorded_to = segments[-1].end if segments else None
                if (recorded_to is not None and recorded_to >= end) or self._writer is None \
                        or time.monotonic() >= deadline:
                    break
                self._cond.wait(max(0.05, deadline - time.monotonic()))
            chosen = [s for s in segments if s.end > start and s.start < end]
            if not chosen:
                kept = (f"recording kept from {segments[0].start.isoformat()} to {segments[-1].end.isoformat()}"
                        if segments else "nothing recorded yet")
                raise ClipUnavailable(f"nothing recorded between {start.isoformat()} and {end.isoformat()} "
                                      f"({kept})")
            work = Path(tempfile.mkdtemp(prefix=f"cut-{self.dir.name}-", dir=self.dir.parent))
            links = []
            for s in chosen:  # hard links: eviction may delete the originals while we read
                link = work / s.path.name
                os.link(s.path, link)
                links.append(Segment(link, s.start, s.end, s.bytes))
        try:
            return self._concat(links, start, end, Path(path))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _concat(self, segments: list[Segment], start: datetime, end: datetime,
                path: Path) -> tuple[ClipInfo, np.ndarray, datetime]:
        writer: RemuxWriter | None = None
        origin = segments[0].start
        clip_start: datetime | None = None
        done = False
        try:
            for seg in segments:
                if done:
                    break
                pending: list = []  # packets from the last keyframe before ``start``
                with av.open(str(seg.path)) as container:
                    stream = container.streams.video[0]
                    shift = (seg.start - origin).total_seconds()
                    for pkt in container.demux(stream):
                        ts = pkt.pts if pkt.pts is not None else pkt.dts
                        if ts is None:
                            continue
                        at = seg.start + timedelta(seconds=float(ts * pkt.time_base))
                        if writer is not None:
                            if at > end:
                                done = True
                                break
                            writer.write_packets([pkt], shift_s=shift)
                            continue
                        if at < start:
                            if pkt.is_keyframe:
                                pending = [pkt]
                            elif pending:
                                pending.append(pkt)
                            continue
                        batch, pending = pending + [pkt], []
                        if not batch[0].is_keyframe:
                            continue  # a clip starts at a keyframe
                        writer = RemuxWriter(path, stream)
                        ts0 = batch[0].pts if batch[0].pts is not None else batch[0].dts
                        clip_start = seg.start + timedelta(seconds=float(ts0 * batch[0].time_base))
                        writer.write_packets(batch, shift_s=shift)
            if writer is None:
                raise ClipUnavailable(f"nothing recorded between {start.isoformat()} and {end.isoformat()}")
            info = writer.close()
        except (ClipError, av.error.FFmpegError) as exc:
            if writer is not None:
                writer.abort()
            raise ClipUnavailable(f"the recording could not be cut: {exc}") from exc
        with av.open(str(info.path)) as c:
            image = next(c.decode(video=0)).to_ndarray(format="bgr24")
        return info, image, clip_start
