"""Frames from a camera: an RTSP stream (reconnecting with backoff) or a video file (played by its own
timestamps, like a camera, unless ``realtime`` is off), demuxed and decoded with PyAV (FFmpeg).

Each frame carries two clocks: ``t``, seconds since the source opened (increasing, used for pre/post roll
and clip timestamps; for a file, its presentation timestamp since the first frame), and ``wall``, the UTC time
it was captured (used for event times; for a file, the time it opened plus ``t``). It also carries the
compressed packets demuxed since the previous frame, so H.264 clips can be cut by remuxing the camera's own
stream (no re-encoding; ``clip.RemuxWriter``) and other codecs are re-encoded.
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from vigint_edge.config import CameraConfig

log = logging.getLogger(__name__)

_QUEUE_FRAMES = 8  # frames buffered between the stream reader and the consumer
_reformatters = threading.local()


def reformat(frame, **kw):
    """``frame.reformat(**kw)`` through one ``VideoReformatter`` per thread. A frame's own ``reformat`` makes a
    new swscale context for every frame (filter set-up included), which cost 0.8 ms of a 768x576 frame's
    1.1 ms conversion here; the shared one keeps its context while sizes and formats stay the same. One per
    thread because a swscale context is not thread-safe."""
    r = getattr(_reformatters, "r", None)
    if r is None:
        r = _reformatters.r = VideoReformatter()
    return r.reformat(frame, **kw)


class Frame:
    """One decoded frame.

    Attributes:
        image: HxWx3 uint8 BGR (OpenCV order). Converted from the decoder's picture on first use only, so
            frames nobody looks at (between detector frames, remuxed into clips) cost no colour conversion.
            None for a frame whose pixels were dropped (``without_pixels``).
        av_frame: the decoder's picture (``av.VideoFrame``, usually yuv420p), or None.
        t: seconds since the source opened (streams: on arrival; files: the frame's presentation timestamp
            since the first frame's, see ``_FileClock``).
        wall: capture time, UTC.
        index: frame number since the source opened.
        packets: the compressed packets (``av.Packet``) demuxed since the previous frame, in decode order;
            empty for frames made without a demuxer (tests, synthetic input).
        stream: the ``av`` video stream the packets belong to (a new one after each reconnect); None
            without packets.
        key: one of ``packets`` is a keyframe (a remuxed clip can start here).
    """

    __slots__ = ("_image", "av_frame", "t", "wall", "index", "packets", "stream", "key")

    def __init__(self, image: np.ndarray | None = None, t: float = 0.0, wall: datetime | None = None,
                 index: int = 0, packets: list | None = None, stream=None, av_frame=None):
        self._image = image
        self.av_frame = av_frame
        self.t = t
        self.wall = wall
        self.index = index
        self.packets = packets if packets is not None else []
        self.stream = stream
        self.key = any(p.is_keyframe for p in self.packets)  # a remuxed clip can start here

    @property
    def image(self) -> np.ndarray | None:
        if self._image is None and self.av_frame is not None:
            self._image = reformat(self.av_frame, format="bgr24").to_ndarray()
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, without converting anything."""
        if self._image is None and self.av_frame is not None:
            return self.av_frame.width, self.av_frame.height
        return self.image.shape[1], self.image.shape[0]

    def _i420(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The decoder's Y, U, V planes as arrays (views, no copy) when the picture is 8-bit 4:2:0 planar."""
        f = self.av_frame
        if f is None or self._image is not None or f.format.name not in ("yuv420p", "yuvj420p"):
            return None
        planes = []
        for i, (w, h) in enumerate(((f.width, f.height), ((f.width + 1) // 2, (f.height + 1) // 2),
                                    ((f.width + 1) // 2, (f.height + 1) // 2))):
            plane = f.planes[i]
            planes.append(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w])
        return planes[0], planes[1], planes[2]

    def gray(self) -> np.ndarray:
        """HxW uint8 luminance: the decoder's luma plane itself when it has one (no conversion)."""
        planes = self._i420()
        if planes is not None:
            return planes[0]
        return cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)

    def bgr(self, region: tuple[int, int, int, int] | None = None,
            size: tuple[int, int] | None = None) -> np.ndarray:
        """BGR pixels of ``region`` (``x1, y1, x2, y2``, pixels; None: the whole frame), resized to ``size``
        (``(width, height)``) if given. From a 4:2:0 picture only the region is converted (and a whole frame
        wanted smaller is scaled and converted in one step), so a detector input costs a fraction of a
        full-frame conversion. Odd region edges are widened by a pixel to the chroma grid.
        """
        planes = self._i420()
        if planes is None:
            img = self.image if region is None else self.image[region[1]:region[3], region[0]:region[2]]
            return img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        if region is None:
            if size is None:
                return self.image
            return reformat(self.av_frame, width=size[0], height=size[1], format="bgr24").to_ndarray()
        x1, y1, x2, y2 = region
        x1, y1 = x1 - (x1 & 1), y1 - (y1 & 1)
        x2, y2 = min(self.av_frame.width, x2 + (x2 & 1)), min(self.av_frame.height, y2 + (y2 & 1))
        y, u, v = planes
        h, w = y2 - y1, x2 - x1
        if h & 1 or w & 1:  # an odd-sized frame's last row/column: convert the whole frame instead
            img = self.image[region[1]:region[3], region[0]:region[2]]
            return img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        i420 = np.empty((h * 3 // 2, w), np.uint8)
        i420[:h] = y[y1:y2, x1:x2]
        i420[h:].reshape(-1)[: h * w // 4] = u[y1 // 2:y2 // 2, x1 // 2:x2 // 2].reshape(-1)
        i420[h:].reshape(-1)[h * w // 4:] = v[y1 // 2:y2 // 2, x1 // 2:x2 // 2].reshape(-1)
        img = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
        off_x, off_y = region[0] - x1, region[1] - y1
        img = img[off_y:off_y + region[3] - region[1], off_x:off_x + region[2] - region[0]]
        return img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)

    def without_pixels(self) -> "Frame":
        """The same frame with only its times and packets (what a remuxed clip needs)."""
        return Frame(None, self.t, self.wall, self.index, self.packets, self.stream)


class SourceUnavailable(RuntimeError):
    """The camera could not be opened or stopped delivering frames."""


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")


def redact(source: str) -> str:
    """The text with the ``user:password@`` of every URL in it replaced by ``***@``, for logs.

    Works on a bare source (``rtsp://admin:pw@cam/stream`` -> ``rtsp://***@cam/stream``) and on any
    message that embeds one (FFmpeg/OpenCV errors). A password containing ``@`` or ``/`` must be
    percent-encoded (RFC 3986 userinfo); an unencoded ``@`` in a password is still hidden, because the
    userinfo runs to the last ``@`` before the first ``/`` (as FFmpeg's URL splitting reads it).
    """
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", source)


class VideoSource:
    """Yields frames from one camera until it ends (files) or ``stop`` is set.

    Args:
        camera: the camera's configuration (``source``, ``rtsp_transport``, timeouts, ``realtime``).
        stop: set to end the iteration.
        max_frames: stop after this many frames (tests, ``process``); None for no limit.
        on_state: streams: called as ``on_state(connected, reason)`` from the iterating thread when a
            connection opens (``True``) or is lost / cannot be opened (``False``; ``reason`` names the camera
            and the problem, with credentials redacted). Used by the camera health monitor.

    Attributes:
        fps: the source's nominal frame rate (0 until known).
        codec: the video codec's FFmpeg name (``"h264"``, ``"hevc"``, ``"msmpeg4"``...), once opened.
        reconnects: streams: connections lost or stalled since the start.
        dropped: streams: frames dropped because the consumer fell more than a few frames behind.
        connected: streams: a connection is open now.

    Raises (from ``frames()``):
        SourceUnavailable: a file that cannot be opened or has no video stream.
    """

    def __init__(self, camera: CameraConfig, stop: threading.Event | None = None, max_frames: int | None = None,
                 on_state: Callable[[bool, str], None] | None = None):
        self.camera = camera
        self.stop = stop or threading.Event()
        self.max_frames = max_frames
        self.fps: float = 0.0
        self.codec: str | None = None
        self.reconnects = 0
        self.total_frames: int | None = None  # files: frames in the file (capped by max_frames); streams: None
        self.dropped = 0
        self.connected = False
        self.on_state = on_state

    def frames(self) -> Iterator[Frame]:
        if self.camera.is_stream:
            yield from self._stream_frames()
        else:
            yield from self._file_frames()

    def _note_stream(self, stream) -> None:
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        self.fps = fps if 0.5 < fps < 240 else (self.fps or 10.0)
        self.codec = stream.codec_context.name

    # ------------------------------------------------------------------------------------------ files
    def _file_frames(self) -> Iterator[Frame]:
        """Every frame of the file, in order (none dropped), timed by the file's own presentation timestamps
        (``_FileClock``) and, with ``realtime``, yielded when that time comes. A reader thread demuxes and
        decodes up to ``_QUEUE_FRAMES`` ahead, as for streams, so decoding overlaps the consumer's work
        (measured with the detector on every frame of a 1080p file: 106 -> 118 frames/s on two cores)."""
        try:
            container = av.open(self.camera.source)
            stream = container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            raise SourceUnavailable(f"camera {self.camera.id}: cannot open {self.camera.source}: {exc}") from None
        self._note_stream(stream)
        if stream.frames > 0:
            self.total_frames = min(stream.frames, self.max_frames) if self.max_frames else stream.frames
        frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        gone = threading.Event()  # the consumer stopped: the reader ends
        threading.Thread(target=self._read_file, args=(container, stream, frames, gone),
                         name=f"file-{self.camera.id}", daemon=True).start()
        anchor_wall = datetime.now(timezone.utc)
        anchor_mono = time.monotonic()
        index = 0
        clock = _FileClock(self.fps)
        try:
            while (item := frames.get()) is not None:
                if isinstance(item, BaseException):
                    raise item  # the reader failed unexpectedly: as if decoding had run here
                if self.stop.is_set() or (self.max_frames is not None and index >= self.max_frames):
                    return
                t = clock.t(item[0], stream.time_base)
                if self.camera.realtime:
                    delay = anchor_mono + t - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        return
                yield Frame(av_frame=item[0], t=t, wall=anchor_wall + timedelta(seconds=t), index=index,
                            packets=item[1], stream=stream)
                index += 1
        finally:
            gone.set()
        # No explicit close: frames keep ``stream`` (and through it the container) for remuxing after the source
        # ends; closing here would free the stream under them. The container closes when the last goes.

    def _read_file(self, container, stream, frames: queue.Queue, gone: threading.Event) -> None:
        def put(item) -> bool:
            while not gone.is_set():
                try:
                    frames.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in _decode(container, stream):
                if not put(item):
                    return
        except av.error.FFmpegError as exc:
            log.warning("camera %s: %s: decoding stopped: %s", self.camera.id, self.camera.source, exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)
            return
        put(None)

    # ---------------------------------------------------------------------------------------- streams
    def _set_state(self, connected: bool, reason: str) -> None:
        self.connected = connected
        if self.on_state is not None:
            try:
                self.on_state(connected, reason)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the camera
                log.exception("camera %s: state listener failed", self.camera.id)

    def _open_stream(self):
        # FFmpeg's own open and per-read timeouts (PyAV's interrupt callback). The read timeout is twice the
        # stall timeout so the watchdog in ``_stream_frames`` always notices a stall first (and says so); the
        # abandoned reader thread then ends when its blocked read times out.
        options = {"rtsp_transport": self.camera.rtsp_transport} if self.camera.source.startswith("rtsp") else {}
        try:
            container = av.open(self.camera.source, options=options,
                                timeout=(max(self.camera.stall_timeout_s, 5.0), 2 * self.camera.stall_timeout_s))
            stream = container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            reason = f"camera {self.camera.id}: cannot open {redact(self.camera.source)}: {redact(str(exc))}"
            self._set_state(False, reason)
            raise SourceUnavailable(reason) from None
        return container, stream

    def _connect(self):
        """Opens the stream, retrying with exponential backoff and jitter (1 s doubling up to
        ``reconnect_max_s``) until it opens (returns ``(container, video_stream)``) or ``stop`` is set
        (returns None)."""
        retrying = Retrying(
            retry=retry_if_exception_type(SourceUnavailable),
            wait=wait_exponential_jitter(initial=1, max=self.camera.reconnect_max_s),
            stop=lambda rs: self.stop.is_set(),
            sleep=lambda s: self.stop.wait(s),
            before_sleep=lambda rs: log.warning("%s; retrying in %.1f s", rs.outcome.exception(),
                                                rs.next_action.sleep if rs.next_action else 0.0),
            reraise=True,
        )
        try:
            return retrying(self._open_stream)
        except SourceUnavailable:
            return None  # stopped while retrying

    def _stream_frames(self) -> Iterator[Frame]:
        """Frames of an RTSP (or any FFmpeg URL) stream, forever: a lost or stalled stream is reopened.

        A reader thread per connection demuxes and decodes into a small queue; if no frame arrives for
        ``stall_timeout_s`` seconds the connection is abandoned (its reader closes it when its blocked
        read times out) and a new one is opened. When the consumer is slower than the camera the oldest
        queued frame is dropped (``dropped``) — its packets move on to the next frame, so a remuxed clip
        still has the whole stream — and processing stays live instead of falling behind.
        """
        start = time.monotonic()
        index = 0
        while not self.stop.is_set():
            opened = self._connect()
            if opened is None:
                return
            container, stream = opened
            self._note_stream(stream)
            log.info("camera %s: connected to %s (%s)", self.camera.id, redact(self.camera.source), self.codec)
            self._set_state(True, "connected")
            frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
            abandon = threading.Event()
            reader = threading.Thread(target=self._read_loop, args=(container, stream, frames, abandon),
                                      name=f"rtsp-{self.camera.id}", daemon=True)
            reader.start()
            reason = "stream ended"
            try:
                while not self.stop.is_set():
                    try:
                        item = frames.get(timeout=self.camera.stall_timeout_s)
                    except queue.Empty:
                        reason = f"no frame for {self.camera.stall_timeout_s:g} s (stalled)"
                        break
                    if item is None:
                        break
                    picture, packets, wall, mono = item
                    yield Frame(av_frame=picture, t=mono - start, wall=wall, index=index, packets=packets,
                                stream=stream)
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
            finally:
                abandon.set()  # the reader closes the connection once its current read returns
            if self.stop.is_set():
                return
            self.reconnects += 1
            log.warning("camera %s: %s; reconnecting to %s", self.camera.id, reason, redact(self.camera.source))
            self._set_state(False, f"camera {self.camera.id}: {reason}")

    def _read_loop(self, container, stream, frames: queue.Queue, abandon: threading.Event) -> None:
        try:
            for picture, packets in _decode(container, stream):
                if abandon.is_set() or self.stop.is_set():
                    break
                _put_dropping_oldest(frames, (picture, packets, datetime.now(timezone.utc), time.monotonic()),
                                     self._count_drop)
        except Exception as exc:  # noqa: BLE001 - reported to the consumer as the end of this connection
            log.warning("camera %s: reading the stream failed: %s", self.camera.id, redact(str(exc)))
        finally:
            # Not closed explicitly: queued and buffered frames still use its stream (a clip may start on them);
            # the connection closes when the last frame of it is gone (CPython frees it at once).
            _put_dropping_oldest(frames, None)

    def _count_drop(self) -> None:
        self.dropped += 1


class _FileClock:
    """A file's own clock: seconds of each decoded frame since the file's first frame, from its presentation
    timestamp (``pts x time_base``), so a file with variable frame timing plays, and is timed, as it was
    recorded (a frame count over the average rate would play its gaps many times too fast).

    A frame without a pts is put ``1 / fps`` after the previous one. So that ``t`` always increases (the
    event pipeline skips frames that do not), a pts at or before the previous frame's (a timestamp
    discontinuity, a duplicate) is also put ``1 / fps`` after it, and the later frames keep that offset.

    Args:
        fps: the stream's nominal frame rate (frames per second, > 0), for the fallback step.
    """

    def __init__(self, fps: float):
        self.step = 1.0 / fps
        self._offset: float | None = None  # seconds to subtract from pts x time_base
        self._last: float | None = None

    def t(self, frame, time_base) -> float:
        """Seconds since the first frame for the decoded ``frame`` (``av.VideoFrame``); ``time_base`` is the
        stream's, used when the frame carries none."""
        nxt = 0.0 if self._last is None else self._last + self.step
        tb = frame.time_base or time_base
        if frame.pts is None or not tb:
            t = nxt
        else:
            pts_s = float(frame.pts * tb)
            if self._offset is None:
                self._offset = pts_s - nxt  # the first timed frame: its place on the clock so far
            t = pts_s - self._offset
            if self._last is not None and t <= self._last:
                self._offset, t = pts_s - nxt, nxt
        self._last = t
        return t


def _decode(container, stream) -> Iterator[tuple[object, list]]:
    """``(av.VideoFrame, packets)`` per decoded frame, in presentation order; ``packets`` are the compressed
    packets (decode order) whose decode timestamp is at or before the frame's presentation timestamp and that
    no earlier frame took. Without B-frames that is exactly the frame's own packet, so the frame that carries a
    keyframe packet is the keyframe's picture, whatever the decoder's delay; with B-frames the reference
    packets come with the first frame that needs them.

    Raises:
        av.error.FFmpegError: the stream could not be read (network error, timeout, corrupt data).
    """
    # Slice threads only: a stream cut into slices decodes on several cores at no extra CPU, one without decodes
    # on one core. Frame threads cost 14-17 % more CPU per frame here (768x576 and 1080p H.264: 1.39 vs
    # 1.22 ms, 3.06 vs 2.60 ms), CPU that the detector, sharing the cores, then lacks.
    stream.thread_type = "SLICE"
    pending: collections.deque = collections.deque()
    for packet in container.demux(stream):
        if packet.size:
            pending.append(packet)
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:  # a damaged packet (lost RTP data): skip it, as players do
            continue
        for frame in decoded:
            taken = []
            while pending and (frame.pts is None or pending[0].dts is None or pending[0].dts <= frame.pts):
                taken.append(pending.popleft())
            yield frame, taken


def _put_dropping_oldest(frames: queue.Queue, item, on_drop: Callable[[], None] | None = None) -> None:
    """Queues ``item``; if the queue is full, drops its oldest frame first (single producer). The dropped
    frame's packets are not lost: they move to the front of the next frame's, so the packet sequence the
    consumer sees stays whole and in order (a remuxed clip has every frame even when detection skipped some).
    """
    while True:
        try:
            frames.put_nowait(item)
            return
        except queue.Full:
            try:
                dropped = frames.get_nowait()
            except queue.Empty:
                continue
            if on_drop is not None:
                on_drop()
            if dropped is None:
                continue
            with frames.mutex:
                if frames.queue and frames.queue[0] is not None:
                    nxt = frames.queue[0]
                    frames.queue[0] = (nxt[0], dropped[1] + nxt[1], *nxt[2:])
                    continue
            if item is not None:
                item = (item[0], dropped[1] + item[1], *item[2:])
