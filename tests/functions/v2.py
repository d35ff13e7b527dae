"""Schema version 2 (event lifecycle) helpers for the functions' tests: real MPEG-TS segments, the start /
update / end messages of one event, signed the way the edge signs them (``vigint.device_keys.sign`` over
the exact data; attributes as version 1 with ``schema_version`` "2", ``phase`` and ``seq``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field


def ts_segments(count: int = 3, seconds: float = 2.0, fps: int = 10, width: int = 160, height: int = 120) -> list[bytes]:
    """``count`` real MPEG-TS segments (H.264, each starting at a keyframe), made with PyAV."""
    import av
    import numpy as np

    out = []
    per = int(seconds * fps)
    for s in range(count):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(per):
                img = np.full((height, width, 3), 90, dtype=np.uint8)
                x = ((s * per + i) * 3) % (width - 30)
                img[40:80, x:x + 30] = (230, 200, 40)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = s * per + i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out.append(buf.getvalue())
    return out


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Lifecycle:
    """The messages of one version 2 event, built step by step; ``upload()`` puts its objects in the bucket.

    Times: the clip starts at ``start``; the object is first seen 1 s later, confirmed 1.5 s later; each
    message is sent ``send_delay_s`` after the frame it reports (``late_s`` more for the start).
    """

    creds: dict
    media: dict
    segments: list[bytes]
    start: dt.datetime
    camera_id: str = "lobby"
    event_id: str = field(default_factory=lambda: f"evt_{uuid.uuid4().hex[:26].upper()}")
    continues: str | None = None
    late_s: float = 0.0
    send_delay_s: float = 0.2

    @property
    def prefix(self) -> str:
        from vigint.schema import event_prefix

        return event_prefix(self.creds["tenant_id"], self.creds["device_id"], self.event_id)

    def at(self, s: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=s)

    def segment(self, index: int) -> dict:
        data = self.segments[index % len(self.segments)]
        return {"index": index, "object": f"{self.prefix}segments/{index:05d}.ts", "content_type": "video/mp2t",
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "start_s": 2.0 * index,
                "duration_s": 2.0}

    def message(self, seq: int, phase: str, *, labels=("person",), severity: str = "alert", new_segments=(),
                segment_count: int | None = None, clip: bool = False, interrupted: bool = False,
                alert_at: float | None = 1.5) -> dict:
        """The message ``seq``: state up to ``2 * seq + 2`` s into the clip (cumulative)."""
        end_s = 2.0 + 2.0 * seq
        snap = self.media["snapshot"]
        msg = {
            "schema_version": 2, "event_id": self.event_id, "tenant_id": self.creds["tenant_id"],
            "device_id": self.creds["device_id"], "camera_id": self.camera_id, "kind": "detection",
            "phase": phase, "seq": seq, "severity": severity, "labels": list(labels),
            "start_time": _iso(self.at(0)), "end_time": _iso(self.at(end_s)),
            "first_seen": _iso(self.at(1.0)),
            "alert_first_seen": _iso(self.at(1.0)) if severity == "alert" and alert_at is not None else None,
            "confirmed_at": _iso(self.at(1.5)),
            "alert_confirmed_at": _iso(self.at(alert_at)) if severity == "alert" and alert_at is not None else None,
            "sent_at": _iso(self.at((1.5 if seq == 0 else end_s) + self.send_delay_s
                                    + (self.late_s if seq == 0 else 0))),
            "top_score": 0.8 + 0.01 * min(seq, 10), "max_count": {label: 1 + seq for label in labels},
            "detections": [{"label": label, "score": 0.8, "box": [0.1, 0.2, 0.4, 0.9], "time": _iso(self.at(1.0))}
                           for label in labels],
            "zones": [],
            "snapshot": {"object": f"{self.prefix}snapshots/{seq:05d}.jpg", "content_type": "image/jpeg",
                         "bytes": len(snap), "sha256": hashlib.sha256(snap).hexdigest(), "time": _iso(self.at(1.0))},
            "segments": [self.segment(i) for i in new_segments],
            "segment_count": segment_count, "clip": None, "continues": self.continues, "interrupted": interrupted,
        }
        if clip:
            c = self.media["clip"]
            msg["clip"] = {"object": f"{self.prefix}clip.mp4", "content_type": "video/mp4", "bytes": len(c),
                           "sha256": hashlib.sha256(c).hexdigest(), "duration_s": 2.0, "frames": 20,
                           "width": 160, "height": 120, "fps": 10.0}
        return msg

    def standard(self, updates: int = 2, **kw) -> list[dict]:
        """start (seq 0, no segment yet), ``updates`` updates (one new segment each), the end (last segment,
        segment_count, clip)."""
        msgs = [self.message(0, "start", **kw)]
        for seq in range(1, updates + 1):
            msgs.append(self.message(seq, "update", new_segments=[seq - 1], **kw))
        n = updates + 1
        msgs.append(self.message(n, "end", new_segments=[n - 1], segment_count=n, clip=True, **kw))
        return msgs

    def upload(self, messages: list[dict]) -> None:
        """Puts every object the messages name into the bucket (straight into fake-gcs-server)."""
        from vigint import clients, config

        bucket = clients.storage().bucket(config.settings().bucket)
        for msg in messages:
            if msg.get("snapshot"):
                bucket.blob(msg["snapshot"]["object"]).upload_from_string(self.media["snapshot"],
                                                                          content_type="image/jpeg")
            for seg in msg["segments"]:
                bucket.blob(seg["object"]).upload_from_string(self.segments[seg["index"] % len(self.segments)],
                                                              content_type="video/mp2t")
            if msg.get("clip"):
                bucket.blob(msg["clip"]["object"]).upload_from_string(self.media["clip"], content_type="video/mp4")


def signed(creds: dict, msg: dict, **attr_overrides) -> tuple[bytes, dict]:
    """``(data, attributes)`` of a version 2 edge-events message, signed with the device secret."""
    from vigint import device_keys

    data = json.dumps(msg).encode()
    attrs = {"tenant_id": creds["tenant_id"], "device_id": creds["device_id"], "event_id": msg["event_id"],
             "schema_version": "2", "key_version": str(creds["key_version"]), "phase": msg["phase"],
             "seq": str(msg["seq"]), "signature": device_keys.sign(creds["secret"], data)}
    attrs.update(attr_overrides)
    return data, attrs
