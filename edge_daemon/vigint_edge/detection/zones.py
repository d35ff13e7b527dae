"""Zones and masks: polygons on a camera's picture, in coordinates normalised to 0..1 of width/height.

An object is *in* a polygon when the middle of its box's bottom edge is (the point Frigate tests: where a
person stands, not where their head is). A track enters a zone after ``inertia`` consecutive detector frames
inside it and after ``loitering_s`` seconds inside it (Frigate's ``inertia`` and ``loitering_time``); it
exits after ``inertia`` consecutive frames outside. Masks drop detections whose point lies in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


def point_in_polygon(point: tuple[float, float], polygon: np.ndarray) -> bool:
    """True when ``point`` (x, y pixels) is inside or on ``polygon`` ([K,2] float32 pixels)."""
    return cv2.pointPolygonTest(polygon, (float(point[0]), float(point[1])), False) >= 0


def to_pixels(points: list[list[float]], width: int, height: int) -> np.ndarray:
    """Normalised [[x, y], ...] → [K,2] float32 pixel polygon."""
    return (np.asarray(points, dtype=np.float32) * np.array([width, height], dtype=np.float32)).astype(np.float32)


@dataclass
class ZoneSpec:
    """A zone as configured: ``points`` normalised, ``labels`` empty for all."""

    name: str
    points: list[list[float]]
    inertia: int = 3
    loitering_s: float = 0.0
    labels: list[str] = field(default_factory=list)


@dataclass
class _Presence:
    inside_frames: int = 0
    outside_frames: int = 0
    since_t: float | None = None
    present: bool = False


@dataclass
class ZoneChange:
    """A track entered or exited a zone at time ``t`` (seconds)."""

    track_id: int
    zone: str
    kind: str  # "enter" | "exit"
    t: float


class ZoneTracker:
    """Zone presence of every track of one camera.

    Args:
        zones: the camera's zones.
        width, height: frame size in pixels the tracks' boxes are in.
    """

    def __init__(self, zones: list[ZoneSpec], width: int, height: int):
        self.zones = zones
        self.polygons = {z.name: to_pixels(z.points, width, height) for z in zones}
        self._state: dict[tuple[int, str], _Presence] = {}

    def update(self, track_id: int, label: str, point: tuple[float, float], t: float) -> list[ZoneChange]:
        """Feeds one observation of a track; returns the enters/exits it caused."""
        changes = []
        for z in self.zones:
            if z.labels and label not in z.labels:
                continue
            st = self._state.setdefault((track_id, z.name), _Presence())
            if point_in_polygon(point, self.polygons[z.name]):
                st.inside_frames += 1
                st.outside_frames = 0
                st.since_t = t if st.since_t is None else st.since_t
                if not st.present and st.inside_frames >= z.inertia and t - st.since_t >= z.loitering_s:
                    st.present = True
                    changes.append(ZoneChange(track_id, z.name, "enter", t))
            else:
                st.outside_frames += 1
                st.inside_frames = 0
                st.since_t = None
                if st.present and st.outside_frames >= z.inertia:
                    st.present = False
                    changes.append(ZoneChange(track_id, z.name, "exit", t))
        return changes

    def zones_of(self, track_id: int) -> list[str]:
        """Zones the track is in now."""
        return [z.name for z in self.zones if self._state.get((track_id, z.name), _Presence()).present]

    def forget(self, live_ids: set[int]) -> None:
        """Drops the state of tracks that no longer exist."""
        for key in [k for k in self._state if k[0] not in live_ids]:
            del self._state[key]


class MaskSet:
    """Object masks: detections whose bottom-centre is in any polygon are ignored."""

    def __init__(self, masks: list[list[list[float]]], width: int, height: int):
        self.polygons = [to_pixels(m, width, height) for m in masks]

    def hides(self, point: tuple[float, float]) -> bool:
        return any(point_in_polygon(point, p) for p in self.polygons)
