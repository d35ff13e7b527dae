"""Fixtures for the end-to-end tests: the real stack, the real model and video, synthetic events."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest



def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Polls ``predicate`` until it returns something truthy; returns that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def synthetic_event(spool, tenant_id: str, device_id: str, camera_id: str, tmp: Path, seconds: float = 2.0,
                    fps: float = 10.0, size: tuple[int, int] = (320, 240), seed: int = 0):
    """Puts one event with a real H.264 clip of noise frames (incompressible, so uploads take a moment)
    and a real JPEG snapshot into ``spool``; returns the ``EdgeEvent``."""
    from vigint_edge.clip import ClipWriter, encode_snapshot
    from vigint_edge.event_model import ClipRef, DetectionRef, EdgeEvent, SnapshotRef, new_event_id, object_name

    rng = np.random.default_rng(seed)
    w, h = size
    start = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    event_id = new_event_id(start)
    writer = ClipWriter(tmp / f"{event_id}.mp4", width=w, height=h, fps=fps)
    frames = int(seconds * fps)
    for i in range(frames):
        writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), i / fps)
    info = writer.close()
    snap = encode_snapshot(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    event = EdgeEvent(
        event_id=event_id, tenant_id=tenant_id, device_id=device_id, camera_id=camera_id, kind="detection",
        severity="alert", labels=["person"], start_time=start, end_time=start + timedelta(seconds=seconds),
        top_score=0.9, max_count={"person": 1},
        detections=[DetectionRef(label="person", score=0.9, box=[0.1, 0.1, 0.3, 0.8], time=start)],
        clip=ClipRef.from_info(info, object_name(tenant_id, device_id, event_id, "clip.mp4")),
        snapshot=SnapshotRef.for_jpeg(snap, object_name(tenant_id, device_id, event_id, "snapshot.jpg"), start),
    )
    spool.put(event, info.path, snap)
    return event
