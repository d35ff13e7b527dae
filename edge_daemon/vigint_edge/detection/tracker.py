"""Multi-object tracking: stable track ids across detector frames.

Tracking by detection in the SORT family without the Kalman filter: detections are matched to tracks of
the same label by IoU with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``), unmatched
detections open tracks, tracks unseen for ``max_age_s`` close. On top of that, the false-positive and
stationary logic users know from Frigate (``frigate/track/``):

- a track is *confirmed* once it has ``confirm_frames`` hits and the median of its last 10 scores reaches
  its label's ``threshold`` (Frigate's ``threshold``: "minimum decimal percentage for tracked object's
  computed score to be considered a true positive");
- a track is *stationary* once its box stays put (IoU >= ``stationary_iou`` with where it settled) for
  ``stationary_after_s``; it moves again as soon as that fails.

Why not a library: norfair pins ``numpy<2`` and Roboflow's ``trackers`` requires ``opencv-python``, which
clashes with the ``opencv-python-headless`` the daemon ships; the assignment itself is SciPy's.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from vigint_edge.detection.detector import Detection

SCORE_HISTORY = 10  # Frigate computes the median over the last 10 scores as well


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` [N,4] and ``b`` [M,4] (x1, y1, x2, y2) → [N,M] in 0..1."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Track:
    """One tracked object.

    Attributes:
        id: stable id, unique per tracker (camera), increasing.
        label: class label; a track never changes label.
        box: last box (x1, y1, x2, y2) in pixels.
        score: last detection score.
        first_t, last_t: first and last time seen (seconds, the frames' ``t``).
        first_wall: capture time (UTC) of the first frame it was detected in (None if not given).
        hits: detector frames it was matched in.
        confirmed: passed the confirmation rule (stays confirmed).
        stationary: has not moved for ``stationary_after_s``.
    """

    id: int
    label: str
    box: tuple[float, float, float, float]
    score: float
    first_t: float
    last_t: float
    hits: int = 1
    confirmed: bool = False
    stationary: bool = False
    scores: collections.deque = field(default_factory=lambda: collections.deque(maxlen=SCORE_HISTORY))
    settled_box: tuple[float, float, float, float] | None = None
    settled_t: float = 0.0
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per second, smoothed
    first_wall: object = None  # datetime of the first hit

    def predicted(self, t: float) -> tuple[float, float, float, float]:
        """The box moved by the track's velocity to time ``t`` (constant-velocity model, as SORT)."""
        dt = t - self.last_t
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x1, y1, x2, y2 = self.box
        return x1 + dx, y1 + dy, x2 + dx, y2 + dy

    @property
    def median_score(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0

    @property
    def bottom_center(self) -> tuple[float, float]:
        """The point Frigate tests against zones and masks: middle of the box's bottom edge (pixels)."""
        x1, _, x2, y2 = self.box
        return (x1 + x2) / 2, y2


class Tracker:
    """Tracks detections of one camera.

    Args:
        thresholds: label → median score a track needs to be confirmed (default ``default_threshold``).
        default_threshold: for labels not in ``thresholds``.
        confirm_frames: matched detector frames before a track can be confirmed.
        iou_threshold: minimum IoU for a detection to continue a track.
        max_age_s: a track unseen this long (seconds) is closed.
        stationary_after_s: seconds without moving before a track is stationary.
        stationary_iou: IoU with the settled box under which the track counts as moved.
    """

    def __init__(self, thresholds: dict[str, float] | None = None, default_threshold: float = 0.6,
                 confirm_frames: int = 2, iou_threshold: float = 0.15, max_age_s: float = 3.0,
                 stationary_after_s: float = 10.0, stationary_iou: float = 0.6):
        self.thresholds = thresholds or {}
        self.default_threshold = default_threshold
        self.confirm_frames = confirm_frames
        self.iou_threshold = iou_threshold
        self.max_age_s = max_age_s
        self.stationary_after_s = stationary_after_s
        self.stationary_iou = stationary_iou
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, detections: list[Detection], t: float, wall=None) -> list[Track]:
        """Feeds one detector frame's detections (already filtered) taken at time ``t`` (seconds), captured at
        ``wall`` (aware UTC datetime, kept as a new track's ``first_wall``).

        Returns:
            the tracks matched or opened in this frame.
        """
        seen: list[Track] = []
        for label in {d.label for d in detections} | {tr.label for tr in self.tracks.values()}:
            dets = [d for d in detections if d.label == label]
            tracks = [tr for tr in self.tracks.values() if tr.label == label]
            ious = iou_matrix(np.array([tr.predicted(t) for tr in tracks], dtype=float).reshape(-1, 4),
                              np.array([d.box for d in dets], dtype=float).reshape(-1, 4))
            matched_dets: set[int] = set()
            if ious.size:
                rows, cols = linear_sum_assignment(-ious)
                for r, c in zip(rows, cols):
                    if ious[r, c] >= self.iou_threshold:
                        self._continue(tracks[r], dets[c], t)
                        matched_dets.add(c)
                        seen.append(tracks[r])
            for i, d in enumerate(dets):
                if i not in matched_dets:
                    seen.append(self._open(d, t, wall))
        for tid in [tid for tid, tr in self.tracks.items() if t - tr.last_t > self.max_age_s]:
            del self.tracks[tid]
        return seen

    def _open(self, d: Detection, t: float, wall=None) -> Track:
        tr = Track(id=self._next_id, label=d.label, box=tuple(d.box), score=d.score, first_t=t, last_t=t,
                   settled_box=tuple(d.box), settled_t=t, first_wall=wall)
        tr.scores.append(d.score)
        self._next_id += 1
        self.tracks[tr.id] = tr
        self._confirm(tr)
        return tr

    def _continue(self, tr: Track, d: Detection, t: float) -> None:
        dt = t - tr.last_t
        if dt > 0:
            (ox, oy), (nx, ny) = _center(tr.box), _center(d.box)
            vx, vy = (nx - ox) / dt, (ny - oy) / dt
            tr.velocity = (0.5 * tr.velocity[0] + 0.5 * vx, 0.5 * tr.velocity[1] + 0.5 * vy)
        tr.box, tr.score, tr.last_t = tuple(d.box), d.score, t
        tr.hits += 1
        tr.scores.append(d.score)
        self._confirm(tr)
        moved = iou_matrix(np.array([tr.settled_box]), np.array([tr.box]))[0, 0] < self.stationary_iou
        if moved:
            tr.settled_box, tr.settled_t, tr.stationary = tr.box, t, False
        elif t - tr.settled_t >= self.stationary_after_s:
            tr.stationary = True

    def _confirm(self, tr: Track) -> None:
        if not tr.confirmed and tr.hits >= self.confirm_frames:
            tr.confirmed = tr.median_score >= self.thresholds.get(tr.label, self.default_threshold)


def _center(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
