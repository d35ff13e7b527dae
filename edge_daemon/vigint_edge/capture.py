"""Frames from a camera: an RTSP stream (reconnecting with backoff) or a video file (read at its own
frame rate, like a camera, unless ``realtime`` is off).

Each frame carries two clocks: ``t``, seconds since the source opened (monotonic, used for pre/post roll
and clip timestamps), and ``wall``, the UTC time it was captured (used for event times).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import cv2
import numpy as np
from tenacity import Retrying, retry_if_exception_type, wait_exponential_jitter

from vigint_edge.config import CameraConfig

log = logging.getLogger(__name__)


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


def redact(source: str) -> str:
    """The source with any ``user:password@`` removed, for logs."""
    if "://" in source and "@" in source:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return source


class VideoSource:
    """Yields frames from one camera until it ends (files) or ``stop`` is set.

    Args:
        camera: the camera's configuration.
        stop: set to end the iteration.
        max_frames: stop after this many frames (tests, ``process``); None for no limit.
    """

    def __init__(self, camera: CameraConfig, stop: threading.Event | None = None, max_frames: int | None = None):
        self.camera = camera
        self.stop = stop or threading.Event()
        self.max_frames = max_frames
        self.fps: float = 0.0
        self.reconnects = 0

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
    def _open_stream(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.camera.source, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000])
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"camera {self.camera.id}: cannot open {redact(self.camera.source)}")
        return cap

    def _stream_frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not self.stop.is_set():
            retrying = Retrying(
                retry=retry_if_exception_type(SourceUnavailable),
                wait=wait_exponential_jitter(initial=1, max=self.camera.reconnect_max_s),
                sleep=lambda s: self.stop.wait(s),
                before_sleep=lambda rs: log.warning("camera %s: %s; retrying", self.camera.id, rs.outcome.exception()),
            )
            cap = retrying(self._open_stream)
            self.fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            log.info("camera %s: connected to %s", self.camera.id, redact(self.camera.source))
            try:
                while not self.stop.is_set():
                    ok, image = cap.read()
                    if not ok:
                        log.warning("camera %s: stream stalled or ended; reconnecting", self.camera.id)
                        self.reconnects += 1
                        break
                    yield Frame(image=image, t=time.monotonic() - start, wall=datetime.now(timezone.utc), index=index)
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
            finally:
                cap.release()
