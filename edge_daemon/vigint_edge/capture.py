"""Frames from a camera: an RTSP stream (reconnecting with backoff) or a video file (read at its own
frame rate, like a camera, unless ``realtime`` is off).

Each frame carries two clocks: ``t``, seconds since the source opened (monotonic, used for pre/post roll
and clip timestamps), and ``wall``, the UTC time it was captured (used for event times).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import cv2
import numpy as np
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from vigint_edge.config import CameraConfig

log = logging.getLogger(__name__)

_QUEUE_FRAMES = 8  # frames buffered between the stream reader and the consumer


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        image: HxWx3 uint8 BGR (OpenCV order).
        t: seconds since the source opened.
        wall: capture time, UTC.
        index: frame number since the source opened.
    """

    image: np.ndarray
    t: float
    wall: datetime
    index: int


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
        camera: the camera's configuration.
        stop: set to end the iteration.
        max_frames: stop after this many frames (tests, ``process``); None for no limit.
        on_state: streams: called as ``on_state(connected, reason)`` from the iterating thread when a
            connection opens (``True``) or is lost / cannot be opened (``False``; ``reason`` names the camera
            and the problem, with credentials redacted). Used by the camera health monitor.

    Attributes:
        fps: the source's nominal frame rate (0 until known).
        reconnects: streams: connections lost or stalled since the start.
        dropped: streams: frames dropped because the consumer fell more than a few frames behind.
        connected: streams: a connection is open now.
    """

    def __init__(self, camera: CameraConfig, stop: threading.Event | None = None, max_frames: int | None = None,
                 on_state: Callable[[bool, str], None] | None = None):
        self.camera = camera
        self.stop = stop or threading.Event()
        self.max_frames = max_frames
        self.fps: float = 0.0
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

    # ------------------------------------------------------------------------------------------ files
    def _file_frames(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(self.camera.source)
        if not cap.isOpened():
            raise SourceUnavailable(f"camera {self.camera.id}: cannot open {self.camera.source}")
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if count > 0:
            self.total_frames = min(count, self.max_frames) if self.max_frames else count
        if not 0.5 < self.fps < 240:
            self.fps = 10.0
        anchor_wall = datetime.now(timezone.utc)
        anchor_mono = time.monotonic()
        index = 0
        try:
            while not self.stop.is_set() and (self.max_frames is None or index < self.max_frames):
                ok, image = cap.read()
                if not ok:
                    return
                t = index / self.fps
                if self.camera.realtime:
                    delay = anchor_mono + t - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        return
                yield Frame(image=image, t=t, wall=anchor_wall + timedelta(seconds=t), index=index)
                index += 1
        finally:
            cap.release()

    # ---------------------------------------------------------------------------------------- streams
    def _set_state(self, connected: bool, reason: str) -> None:
        self.connected = connected
        if self.on_state is not None:
            try:
                self.on_state(connected, reason)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the camera
                log.exception("camera %s: state listener failed", self.camera.id)

    def _open_stream(self) -> cv2.VideoCapture:
        # OpenCV's FFmpeg backend: open and per-read timeouts (interrupt callback). FFmpeg may retry a
        # timed-out read internally, so the watchdog in ``_stream_frames`` enforces ``stall_timeout_s``.
        timeout_ms = int(self.camera.stall_timeout_s * 1000)
        cap = cv2.VideoCapture(self.camera.source, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(timeout_ms, 5000),
                                cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
        if not cap.isOpened():
            cap.release()
            reason = f"camera {self.camera.id}: cannot open {redact(self.camera.source)}"
            self._set_state(False, reason)
            raise SourceUnavailable(reason)
        return cap

    def _connect(self) -> cv2.VideoCapture:
        """Opens the stream, retrying with exponential backoff and jitter (1 s doubling up to
        ``reconnect_max_s``) until it opens or ``stop`` is set (then returns None)."""
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

        A reader thread per connection decodes into a small queue; if no frame arrives for
        ``stall_timeout_s`` seconds the connection is abandoned (its reader releases it when its blocked
        read times out) and a new one is opened. When the consumer is slower than the camera the oldest
        queued frame is dropped (``dropped``), so processing stays live instead of falling behind.
        """
        start = time.monotonic()
        index = 0
        while not self.stop.is_set():
            cap = self._connect()
            if cap is None:
                return
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            self.fps = fps if 0.5 < fps < 240 else self.fps
            log.info("camera %s: connected to %s", self.camera.id, redact(self.camera.source))
            self._set_state(True, "connected")
            frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
            abandon = threading.Event()
            reader = threading.Thread(target=self._read_loop, args=(cap, frames, abandon),
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
                    image, wall, mono = item
                    yield Frame(image=image, t=mono - start, wall=wall, index=index)
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
            finally:
                abandon.set()  # the reader releases ``cap`` once its current read returns
            if self.stop.is_set():
                return
            self.reconnects += 1
            log.warning("camera %s: %s; reconnecting to %s", self.camera.id, reason, redact(self.camera.source))
            self._set_state(False, f"camera {self.camera.id}: {reason}")

    def _read_loop(self, cap: cv2.VideoCapture, frames: queue.Queue, abandon: threading.Event) -> None:
        try:
            while not abandon.is_set() and not self.stop.is_set():
                ok, image = cap.read()
                if not ok:
                    break
                _put_dropping_oldest(frames, (image, datetime.now(timezone.utc), time.monotonic()),
                                     self._count_drop)
        except Exception:  # noqa: BLE001 - reported to the consumer as the end of this connection
            log.exception("camera %s: reading the stream failed", self.camera.id)
        finally:
            cap.release()
            _put_dropping_oldest(frames, None)

    def _count_drop(self) -> None:
        self.dropped += 1


def _put_dropping_oldest(frames: queue.Queue, item, on_drop: Callable[[], None] | None = None) -> None:
    """Queues ``item``; if the queue is full, drops its oldest entry first (single producer)."""
    while True:
        try:
            frames.put_nowait(item)
            return
        except queue.Full:
            try:
                frames.get_nowait()
                if on_drop is not None:
                    on_drop()
            except queue.Empty:
                pass
