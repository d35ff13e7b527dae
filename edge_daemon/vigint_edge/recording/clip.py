"""Event clips (H.264 mp4) and snapshots (JPEG).

When the camera already sends H.264, ``RemuxWriter`` copies its packets into the mp4 without re-encoding
(starting at a keyframe; the camera's quality, almost no CPU). Otherwise ``ClipWriter`` encodes: clips are
encoded with libx264 through PyAV: yuv420p, High profile, ``movflags=+faststart`` (the ``moov`` atom
is moved in front of ``mdat`` so a browser can start playing before the whole file has arrived). Frame
timestamps come from the capture clock, not from a nominal frame rate, so a camera that drops frames still
gives a clip whose playback speed is right. H.264 in yuv420p needs even dimensions: an odd width or height is
padded by one pixel (edge replicated).

A clip is written to ``<path>.part`` and only renamed to ``path`` after it has been completed and fsynced,
so a file at ``path`` is always a whole clip.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vigint_edge.capture.source import reformat

log = logging.getLogger(__name__)

__all__ = ["ClipError", "ClipInfo", "ClipWriter", "RemuxWriter", "encode_snapshot", "fsync_dir",
           "REMUX_CODECS"]

TIME_BASE = Fraction(1, 90000)  # the MPEG 90 kHz clock, the usual mp4 video timescale
# Codecs copied into mp4 as they are: what every browser plays in mp4. HEVC is re-encoded (Chrome and Firefox
# play it only with platform decoders; Frigate documents the same limitation).
REMUX_CODECS = frozenset({"h264"})


class ClipError(RuntimeError):
    """The clip could not be written (encoder failure, nothing written, writer already closed)."""


@dataclass(frozen=True)
class ClipInfo:
    """A finished clip.

    Attributes:
        path: final file path.
        bytes: file size in bytes.
        sha256: lower-case hex SHA-256 of the file.
        frames: number of frames encoded.
        duration_s: seconds from the first frame's start to the last frame's end (the last frame lasts
            ``1/fps`` of the nominal rate).
        width: encoded width in pixels (even; one more than the input if the input was odd).
        height: encoded height in pixels (even).
        fps: average frame rate, ``frames / duration_s``.
    """

    path: Path
    bytes: int
    sha256: str
    frames: int
    duration_s: float
    width: int
    height: int
    fps: float


def fsync_dir(path: Path) -> None:
    """fsyncs a directory so a rename or unlink inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Mp4Writer:
    """What both clip writers share: the ``.part`` file, finishing it (faststart, fsync, rename) or throwing it
    away, and use as a context manager (an exception escaping the block discards the partial file)."""

    path: Path
    part_path: Path
    frames: int
    info: ClipInfo | None
    _closed: bool
    _container: object

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    def _flush(self) -> None:
        """Writes what the writer still holds (an encoder's delayed frames)."""

    def _finished(self) -> tuple[float, int, int]:  # pragma: no cover - each writer has its own
        """``(duration_s, width, height)`` of the finished clip."""
        raise NotImplementedError

    def close(self) -> ClipInfo:
        """Finishes the mp4 (faststart), fsyncs it and renames it to ``path``.

        Returns:
            The finished clip's ``ClipInfo`` (also kept as ``self.info``).

        Raises:
            ClipError: no frame was written (a remuxed clip: no keyframe came; the partial file is removed), or
                finishing the file failed.
        """
        if self._closed:
            if self.info is None:
                raise ClipError("close() after abort()")
            return self.info
        self._closed = True
        if self.frames == 0:
            self._container.close()
            self.part_path.unlink(missing_ok=True)
            raise ClipError(f"no frames (no keyframe) written to {self.path}")
        try:
            self._flush()
            self._container.close()
        except av.error.FFmpegError as exc:
            self.part_path.unlink(missing_ok=True)
            raise ClipError(f"finishing {self.path} failed: {exc}") from exc
        duration, width, height = self._finished()
        self.info = _finish_file(self.part_path, self.path, self.frames, duration, width, height)
        return self.info

    def abort(self) -> None:
        """Stops writing and deletes the partial file (nothing is left at ``path`` or ``.part``)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except av.error.FFmpegError:  # pragma: no cover - best effort on a clip being thrown away
            pass
        self.part_path.unlink(missing_ok=True)


class ClipWriter(_Mp4Writer):
    """Encodes BGR frames into an H.264 mp4 file.

    Args:
        path: final clip path (``.mp4``); the file is written as ``path.with_suffix(".part")`` first.
        width: input frame width in pixels.
        height: input frame height in pixels.
        fps: nominal frame rate (frames per second); used for the encoder's rate control and the last
            frame's duration. Actual timestamps come from ``write(..., t)``.
        crf: x264 constant rate factor (0..51, lower is better quality; 23 is x264's default).
        preset: x264 preset (``ultrafast`` .. ``placebo``).
        g: longest keyframe interval in frames (x264 ``keyint``; None: x264's default of 250), so the live
            HLS segments (``segments.Segmenter``) can be cut every ``g`` frames.
        on_packet: called with each encoded packet (timestamps in 1/90000 s from the clip's zero) before it
            is muxed into the mp4, on the thread that calls ``write``/``close`` (the live segmenter).

    Raises:
        ValueError: bad dimensions, fps, crf, preset or ``g``.
        ClipError: the encoder or output file could not be opened.

    Use as a context manager to discard the partial file if an exception escapes::

        with ClipWriter(path, 768, 576, 10.0) as w:
            w.write(frame, t)
        info = w.info   # set by close()
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 23,
                 preset: str = "veryfast", g: int | None = None, on_packet=None) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be 0..51, got {crf}")
        if g is not None and not 1 <= g <= 1000:
            raise ValueError(f"g (keyframe interval) must be 1..1000 frames, got {g}")
        self.on_packet = on_packet
        self.path = Path(path)
        self.part_path = self.path.with_suffix(".part")
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.out_width = width + (width & 1)
        self.out_height = height + (height & 1)
        self.frames = 0
        self.info: ClipInfo | None = None
        self._first_t: float | None = None
        self._last_pts = -1
        self._frame_ticks = max(1, round(1 / (self.fps * TIME_BASE)))
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.part_path), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
        except (av.error.FFmpegError, OSError) as exc:
            raise ClipError(f"cannot open {self.part_path} for writing: {exc}") from exc
        try:
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width = self.out_width
            stream.height = self.out_height
            stream.pix_fmt = "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.options = {"crf": str(crf), "preset": preset, "profile": "high",
                              **({"g": str(g)} if g is not None else {})}
            stream.codec_context.open()
        except (av.error.FFmpegError, ValueError) as exc:
            self._container.close()
            self.part_path.unlink(missing_ok=True)
            raise ValueError(f"cannot configure libx264 (crf={crf}, preset={preset!r}): {exc}") from exc
        self._stream = stream

    @property
    def stream(self):
        """The encoder's output stream (a template for the live segments)."""
        return self._stream

    @property
    def headers(self) -> bytes:
        """The encoder's SPS/PPS (Annex B, libx264's extradata with the mp4 global header)."""
        return bytes(self._stream.codec_context.extradata or b"")

    def write(self, frame_bgr, t: float) -> None:
        """Encodes one frame.

        Args:
            frame_bgr: ``uint8`` array of shape ``(height, width, 3)`` in BGR order (OpenCV's layout), or a
                decoder's ``av.VideoFrame`` of ``width`` x ``height`` (encoded as it is when yuv420p, which
                skips two colour conversions; other formats are converted).
            t: capture time in seconds since the clip start, from a monotonic clock. Timestamps are made
                relative to the first frame's ``t`` (the clip starts at 0). A ``t`` equal to the previous
                one after rounding to the 90 kHz clock is nudged forward one tick (no duplicate pts).

        Raises:
            ValueError: wrong shape/dtype/size, or ``t`` earlier than the previous frame's.
            ClipError: the writer is closed or the encoder failed.
        """
        if self._closed:
            raise ClipError("write() after close()")
        if isinstance(frame_bgr, av.VideoFrame):
            if (frame_bgr.width, frame_bgr.height) != (self.width, self.height):
                raise ValueError(f"frame must be {self.width}x{self.height}, got "
                                 f"{frame_bgr.width}x{frame_bgr.height}")
            frame = frame_bgr
            if frame.format.name != "yuv420p" or (self.out_width, self.out_height) != (self.width, self.height):
                frame = reformat(frame, width=self.out_width, height=self.out_height, format="yuv420p")
        elif not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8 \
                or frame_bgr.shape != (self.height, self.width, 3):
            raise ValueError(
                f"frame must be uint8 of shape ({self.height}, {self.width}, 3); got "
                f"{getattr(frame_bgr, 'dtype', type(frame_bgr).__name__)} {getattr(frame_bgr, 'shape', '')}"
            )
        else:
            if frame_bgr.shape[:2] != (self.out_height, self.out_width):
                frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, self.out_height - self.height, 0,
                                               self.out_width - self.width, cv2.BORDER_REPLICATE)
            frame = av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")
        if self._first_t is None:
            self._first_t = float(t)
        pts = round((float(t) - self._first_t) / TIME_BASE)
        if pts < self._last_pts:
            raise ValueError(f"timestamps must not go backwards: t={t} after a later frame")
        if pts == self._last_pts:
            pts += 1
        frame.pts = pts
        frame.time_base = TIME_BASE
        try:
            self._mux(self._stream.encode(frame))
        except av.error.FFmpegError as exc:
            raise ClipError(f"encoding frame {self.frames} failed: {exc}") from exc
        self._last_pts = pts
        self.frames += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            # The last sample's duration in mp4 comes from its packet; VFR input has no better value.
            packet.duration = self._frame_ticks
            if self.on_packet is not None:
                self.on_packet(packet)
            self._container.mux(packet)

    def _flush(self) -> None:
        self._mux(self._stream.encode(None))

    def _finished(self) -> tuple[float, int, int]:
        return float((self._last_pts + self._frame_ticks) * TIME_BASE), self.out_width, self.out_height


class RemuxWriter(_Mp4Writer):
    """Copies a camera's compressed H.264 packets into an mp4 file, without re-encoding.

    Packets before the first keyframe are skipped (a decoder cannot start there). Timestamps are moved so the
    first written packet starts at 0; packets whose decode timestamp does not advance are dropped (a muxer
    refuses them). The packets given are not modified (copies are muxed), so one packet can go into several
    clips. The file is written as ``path.with_suffix(".part")``, finished with ``movflags=+faststart``,
    fsynced and renamed, like ``ClipWriter``.

    Args:
        path: final clip path (``.mp4``).
        template: the input ``av`` video stream the packets come from (codec parameters are copied from it).
        on_packet: called with each packet as it is muxed (a copy with the clip's timestamps, in the
            template's time base), before the mp4 muxer takes it (the live segmenter).

    Raises:
        ClipError: the output file could not be opened or the stream's codec cannot go into mp4.
    """

    def __init__(self, path: Path, template, on_packet=None) -> None:
        self.on_packet = on_packet
        self.path = Path(path)
        self.part_path = self.path.with_suffix(".part")
        self.template = template
        self.frames = 0
        self.info: ClipInfo | None = None
        self._offset: int | None = None
        self._waiting: list = []  # leading packets without timestamps, from a keyframe on
        self._last_dts: int | None = None
        self._first_pts: int | None = None
        self._end = 0  # largest pts + duration written, in the template's time base
        self._time_base = template.time_base
        rate = template.average_rate or template.guessed_rate or 10
        self._default_duration = max(1, round(1 / (float(rate) * self._time_base)))
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.part_path), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
            self._stream = self._container.add_stream_from_template(template)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.part_path.unlink(missing_ok=True)
            raise ClipError(f"cannot remux {template.codec_context.name} into {self.part_path}: {exc}") from exc
        self.width = template.codec_context.width
        self.height = template.codec_context.height

    def write_packets(self, packets, shift_s: float = 0.0) -> None:
        """Muxes ``packets`` (``av.Packet``, in decode order, of ``template`` or of a stream with the same codec
        parameters, e.g. an earlier clip of the same camera).

        Args:
            packets: the packets; their own ``time_base`` is honoured.
            shift_s: seconds added to these packets' timestamps after the first packet's were moved to 0
                (concatenating clips: each one's start relative to the first's).

        Raises:
            ClipError: the writer is closed or the muxer failed.
        """
        if self._closed:
            raise ClipError("write_packets() after close()")
        tb = self._time_base
        shift = round(shift_s / tb)
        for src in packets:
            dts, pts = self._times(src)
            if self._offset is None:
                if dts is None:
                    # RTSP's first packets after connecting carry no decode timestamp (the stream clock is not
                    # known yet): keep them from the keyframe on and place them once a timestamp arrives.
                    if src.is_keyframe:
                        self._waiting = [src]
                    elif self._waiting:
                        self._waiting.append(src)
                    continue
                if self._waiting:
                    base = dts - len(self._waiting) * self._default_duration
                    self._offset = base
                    for i, held in enumerate(self._waiting):
                        held_dts = base + i * self._default_duration
                        held_pts = self._times(held)[1]
                        self._mux_one(held, held_dts + shift - base,
                                      max(held_dts, held_pts if held_pts is not None else held_dts) + shift - base)
                    self._waiting = []
                elif not src.is_keyframe:
                    continue
                else:
                    self._offset = dts
            elif dts is None:
                continue  # mid-stream packet without timestamps: a muxer cannot place it
            self._mux_one(src, dts + shift - self._offset, (pts if pts is not None else dts) + shift - self._offset)

    def _times(self, src) -> tuple[int | None, int | None]:
        """``(dts, pts)`` of a packet in the writer's time base (None where the packet has none)."""
        tb = self._time_base
        dts, pts = src.dts, src.pts
        if src.time_base is not None and src.time_base != tb:
            dts = None if dts is None else round(dts * src.time_base / tb)
            pts = None if pts is None else round(pts * src.time_base / tb)
        return dts, pts

    def _mux_one(self, src, dts: int, pts: int) -> None:
        if self._last_dts is not None and dts <= self._last_dts:
            return
        tb = self._time_base
        pkt = av.Packet(bytes(src))
        pkt.dts, pkt.pts = dts, max(pts, dts)
        pkt.duration = (round(src.duration * src.time_base / tb) if src.duration and src.time_base
                        else self._default_duration)
        pkt.is_keyframe = src.is_keyframe
        pkt.time_base = tb
        pkt.stream = self._stream
        if self.on_packet is not None:
            self.on_packet(pkt)
        try:
            self._container.mux(pkt)
        except av.error.FFmpegError as exc:
            raise ClipError(f"remuxing packet {self.frames} failed: {exc}") from exc
        self._last_dts = dts
        self._first_pts = pkt.pts if self._first_pts is None else min(self._first_pts, pkt.pts)
        self._end = max(self._end, pkt.pts + pkt.duration)
        self.frames += 1

    def _finished(self) -> tuple[float, int, int]:
        return float((self._end - self._first_pts) * self._time_base), self.width, self.height


def _finish_file(part_path: Path, path: Path, frames: int, duration: float, width: int, height: int) -> ClipInfo:
    """fsyncs ``part_path``, hashes it and renames it to ``path`` (directory fsynced too)."""
    with open(part_path, "rb+") as f:
        os.fsync(f.fileno())
    size = part_path.stat().st_size
    digest = _sha256_file(part_path)
    os.replace(part_path, path)
    fsync_dir(path.parent)
    log.debug("clip %s: %d frames, %.2f s, %d bytes", path.name, frames, duration, size)
    return ClipInfo(path=path, bytes=size, sha256=digest, frames=frames, duration_s=duration,
                    width=width, height=height, fps=frames / duration if duration > 0 else 0.0)


def _draw_boxes(img: np.ndarray, boxes, normalized: bool) -> None:
    h, w = img.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    scale = max(0.4, min(h, w) / 900)
    for label, score, box in boxes:
        if len(box) != 4:
            raise ValueError(f"box must be (x1, y1, x2, y2), got {box!r}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if normalized:
            if any(not -0.5 <= v <= 1.5 for v in (x1, y1, x2, y2)):
                raise ValueError(f"normalized box must be within 0..1 of the frame, got {box!r}")
            x1, x2 = x1 * (w - 1), x2 * (w - 1)
            y1, y2 = y1 * (h - 1), y2 * (h - 1)
        p1 = (round(min(w - 1, max(0.0, x1))), round(min(h - 1, max(0.0, y1))))
        p2 = (round(min(w - 1, max(0.0, x2))), round(min(h - 1, max(0.0, y2))))
        color = (0, 0, 255) if label == "person" else (0, 200, 255)
        cv2.rectangle(img, p1, p2, color, thick)
        text = f"{label} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = p1[1] - 2 if p1[1] - th - base - 2 >= 0 else p1[1] + th + base + 2
        cv2.rectangle(img, (p1[0], ty - th - base), (p1[0] + tw, ty + base // 2), color, cv2.FILLED)
        cv2.putText(img, text, (p1[0], ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick,
                    cv2.LINE_AA)


def encode_snapshot(frame_bgr: np.ndarray, quality: int = 90,
                    boxes: list[tuple[str, float, tuple[float, float, float, float]]] | None = None,
                    normalized: bool = False) -> bytes:
    """Encodes a frame as JPEG, optionally with detection boxes and labels drawn on it.

    Args:
        frame_bgr: ``uint8`` array ``(height, width, 3)``, BGR. Not modified.
        quality: JPEG quality 1..100.
        boxes: ``(label, score, (x1, y1, x2, y2))``, corners in pixels of this frame (the detector's
            output); parts outside the frame are clamped to it.
        normalized: the box corners are fractions 0..1 of the frame width/height instead (the
            convention of ``DetectionRef.box``); values far outside 0..1 are refused.

    Returns:
        JPEG bytes.

    Raises:
        ValueError: bad frame, quality or box.
    """
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 \
            or frame_bgr.shape[2] != 3:
        raise ValueError("frame must be a uint8 array of shape (height, width, 3)")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    img = frame_bgr
    if boxes:
        img = frame_bgr.copy()
        _draw_boxes(img, boxes, normalized)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
