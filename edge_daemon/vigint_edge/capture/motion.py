"""Motion gate: a cheap test of whether anything moved, so a static scene costs almost nothing.

Frame differencing against a running average on a small grey image (the approach Frigate's
``ImprovedMotionDetector`` refines): downscale, blur, ``absdiff`` with the background, threshold, and the
changed fraction of the frame is the motion score. The downscale is bilinear (Frigate's uses nearest
neighbour, then blurs as we do): ``INTER_AREA`` at a non-integer factor cost 0.72 ms per 768x576 frame here,
bilinear 0.09 ms, and the gate runs on every detect frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from vigint_edge.config import MotionConfig


class MotionGate:
    """Args:
        config: thresholds.
        width: width in pixels the frame is scaled to before comparing (height keeps the aspect).
        alpha: background update rate per call (0..1).
    """

    def __init__(self, config: MotionConfig, width: int = 160, alpha: float = 0.1):
        self.config = config
        self.width = width
        self.alpha = alpha
        self._background: np.ndarray | None = None
        self.last_fraction = 0.0
        self.last_regions: list[tuple[float, float, float, float]] = []

    def update(self, frame_bgr: np.ndarray) -> bool:
        """Feeds a frame (HxWx3 uint8 BGR, or HxW uint8 grey such as a decoder's luma plane); returns True when
        the changed fraction reaches ``min_area``.

        The first frame after start counts as motion (nothing to compare with yet). ``last_regions`` then
        holds boxes around what moved, in the frame's pixels.
        """
        h, w = frame_bgr.shape[:2]
        if not self.config.enabled:
            self.last_regions = [(0.0, 0.0, float(w), float(h))]
            return True
        small = cv2.resize(frame_bgr, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_LINEAR)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        grey = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        if self._background is None:
            self._background = grey
            self.last_fraction = 1.0
            self.last_regions = [(0.0, 0.0, float(w), float(h))]
            return True
        diff = cv2.absdiff(grey, self._background)
        cv2.accumulateWeighted(grey, self._background, self.alpha)
        mask = (diff >= self.config.pixel_threshold).astype(np.uint8)
        self.last_fraction = float(np.count_nonzero(mask)) / mask.size
        moving = self.last_fraction >= self.config.min_area
        self.last_regions = self._regions(mask, w / self.width) if moving else []
        return moving

    @staticmethod
    def _regions(mask: np.ndarray, scale: float) -> list[tuple[float, float, float, float]]:
        """Boxes (x1, y1, x2, y2, full-frame pixels) around the changed areas, small specks ignored."""
        mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            if bw * bh >= 4:
                boxes.append((x * scale, y * scale, (x + bw) * scale, (y + bh) * scale))
        return boxes
