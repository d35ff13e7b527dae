"""HLS media segments (MPEG-TS) cut while an event is recorded, for live playback of the event.

A ``Segmenter`` receives the same H.264 packets that go into the event clip (``clip.RemuxWriter``: the
camera's own packets; ``clip.ClipWriter``: the libx264 packets it encodes), with the clip's timestamps (the
same zero), and writes them into MPEG-TS files with PyAV (``format="mpegts"``):

* each segment starts at a keyframe; a new one starts at the first keyframe at or after ``segment_s`` seconds
  into the current one (a camera whose GOP is longer than ``segment_s`` gives segments one GOP long);
* timestamps are continuous over the event, so the segments played in order (hls.js, Safari) are one
  stream. MPEG-TS cannot hold a negative decode timestamp: an encoder with B-frames (libx264) starts with
  ``dts < 0``, so the TS timestamps of such an event are all moved by that first ``-dts`` (a constant over
  the event; ``start_s`` and ``duration_s`` stay on the clip's own clock);
* H.264 in MPEG-TS must be Annex B with SPS/PPS in the stream. FFmpeg's mpegts muxer inserts the
  ``h264_mp4toannexb`` bitstream filter by itself for length-prefixed (mp4-style) packets, which also puts
  the SPS/PPS of the codec's extradata before each keyframe; Annex B packets (RTSP cameras, libx264) pass
  as they are, so for an encoder that keeps SPS/PPS out of band (libx264 opened for mp4, global header) the
  caller gives ``headers`` (that extradata, Annex B) and they are put before each keyframe here.

A segment is written to ``NNNNN.ts.part``, fsynced and renamed to ``NNNNN.ts`` when finished, so a ``.ts``
file is always whole. ``add`` may run on another thread (the clip encoder's) than ``take_finished``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

__all__ = ["SegmentError", "SegmentFile", "Segmenter"]

MIN_SEGMENT_S, MAX_SEGMENT_S = 1.0, 10.0  # EventConfig.segment_s bounds


class SegmentError(RuntimeError):
    """A segment could not be written (muxer failure, writer closed)."""


@dataclass(frozen=True)
class SegmentFile:
    """A finished segment.

    Attributes:
        index: 0, 1, ... over the event.
        path: the ``.ts`` file.
        start_s: seconds from the clip's zero to the segment's first (key)frame.
        duration_s: seconds to the next segment's first frame (the last segment: to the end of its last frame).
        bytes: file size in bytes.
        sha256: lower-case hex SHA-256 of the file.
    """

    index: int
    path: Path
    start_s: float
    duration_s: float
    bytes: int
    sha256: str


class _Open:
    """The segment being written."""

    def __init__(self, index: int, part: Path, start_s: float, container, stream) -> None:
        self.index, self.part, self.start_s = index, part, start_s
        self.container, self.stream = container, stream
        self.end_s = start_s  # largest pts + duration written, seconds
        self.packets = 0


class Segmenter:
    """Cuts one event's H.264 packets into MPEG-TS segments.

    Args:
        directory: where the ``NNNNN.ts`` files go (created; one directory per event).
        template: the ``av`` video stream whose codec parameters the segments copy (the camera's input
            stream, or the clip encoder's output stream).
        segment_s: target segment length in seconds (1..10).
        headers: Annex B SPS/PPS to put before each keyframe (see the module doc), or None.

    Raises:
        ValueError: ``segment_s`` out of range.
    """

    def __init__(self, directory: Path, template, segment_s: float, headers: bytes | None = None) -> None:
        if not MIN_SEGMENT_S <= segment_s <= MAX_SEGMENT_S:
            raise ValueError(f"segment_s must be {MIN_SEGMENT_S}..{MAX_SEGMENT_S} s, got {segment_s}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.template = template
        self.segment_s = float(segment_s)
        self.headers = headers or b""
        self.count = 0  # segments finished so far
        self._open: _Open | None = None
        self._shift: int | None = None  # ticks (90 kHz) added to TS timestamps: -first dts when negative
        self._finished: list[SegmentFile] = []
        self._lock = threading.Lock()
        self._closed = False
        self._last_dts: int | None = None

    # ------------------------------------------------------------------------------------------ input
    def add(self, packet) -> None:
        """Takes one packet of the clip (decode order), timestamps on the clip's clock.

        Args:
            packet: an ``av.Packet`` with ``pts``, ``dts``, ``time_base`` and ``is_keyframe``; not modified
                (its bytes are copied).

        Raises:
            SegmentError: after ``close``/``abort``, or the muxer failed.
        """
        if self._closed:
            raise SegmentError("add() after close()")
        tb = packet.time_base
        if tb is None or packet.dts is None:
            return
        pts = packet.pts if packet.pts is not None else packet.dts
        if self._open is None and not packet.is_keyframe:
            return  # a segment must start at a keyframe (cannot happen for a clip's packets)
        dts90 = round(packet.dts * tb * 90000)
        if self._shift is None:
            self._shift = max(0, -dts90)
        if self._last_dts is not None and dts90 + self._shift <= self._last_dts:
            return  # a muxer refuses a decode time that does not advance
        pts_s = float(pts * tb)
        if packet.is_keyframe and (self._open is None or pts_s - self._open.start_s >= self.segment_s - 1e-6):
            if self._open is not None:
                self._finish(end_s=pts_s)
            self._start(pts_s)
        seg = self._open
        q = av.Packet((self.headers if packet.is_keyframe else b"") + bytes(packet))
        q.time_base = Fraction(1, 90000)
        q.dts = dts90 + self._shift
        q.pts = max(round(pts * tb * 90000), dts90) + self._shift
        dur = packet.duration or 0
        q.duration = round(dur * tb * 90000)
        q.is_keyframe = packet.is_keyframe
        q.stream = seg.stream
        try:
            seg.container.mux(q)
        except av.error.FFmpegError as exc:
            raise SegmentError(f"muxing into segment {seg.index} failed: {exc}") from exc
        self._last_dts = dts90 + self._shift
        seg.packets += 1
        seg.end_s = max(seg.end_s, pts_s + float(dur * tb))

    def close(self) -> None:
        """Finishes the last (partial) segment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._open is not None:
            seg = self._open
            # A last frame without a duration still lasts: at least one frame of the nominal rate.
            rate = float(getattr(self.template, "average_rate", None) or 10)
            self._finish(end_s=max(seg.end_s, seg.start_s + 1.0 / rate))

    def abort(self) -> None:
        """Stops and deletes every segment file of this event (an event dropped before it was spooled)."""
        self._closed = True
        if self._open is not None:
            try:
                self._open.container.close()
            except av.error.FFmpegError:  # pragma: no cover - best effort on files being thrown away
                pass
            self._open = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def take_finished(self) -> list[SegmentFile]:
        """The segments finished since the last call, in index order (thread-safe)."""
        with self._lock:
            out, self._finished = self._finished, []
        return out

    # ------------------------------------------------------------------------------------- internals
    def _start(self, start_s: float) -> None:
        index = self.count
        part = self.directory / f"{index:05d}.ts.part"
        try:
            container = av.open(str(part), mode="w", format="mpegts")
            stream = container.add_stream_from_template(self.template)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SegmentError(f"cannot open segment {part}: {exc}") from exc
        self._open = _Open(index, part, start_s, container, stream)

    def _finish(self, end_s: float) -> None:
        seg, self._open = self._open, None
        try:
            seg.container.close()
        except av.error.FFmpegError as exc:
            raise SegmentError(f"finishing segment {seg.index} failed: {exc}") from exc
        final = seg.part.with_suffix("")  # NNNNN.ts.part -> NNNNN.ts
        h = hashlib.sha256()
        with open(seg.part, "rb+") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            os.fsync(f.fileno())
        os.replace(seg.part, final)
        done = SegmentFile(index=seg.index, path=final, start_s=round(seg.start_s, 6),
                           duration_s=round(max(end_s - seg.start_s, 1e-3), 6), bytes=final.stat().st_size,
                           sha256=h.hexdigest())
        self.count = seg.index + 1
        with self._lock:
            self._finished.append(done)
        log.debug("segment %s: %.2f s from %.2f s, %d packets, %d bytes", final, done.duration_s, done.start_s,
                  seg.packets, done.bytes)
