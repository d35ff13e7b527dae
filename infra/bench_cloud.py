"""Cloud half of ``make bench``: cold-start import time of the functions and end-to-end events per second
through the local stack, appended to ``BENCHMARKS.md``.

- Import time: a fresh interpreter imports ``functions/main.py`` (every entry point; Google clients are
  created lazily, on first use, so none is built here). Median of 5 runs; the bare interpreter start is
  measured the same way and reported beside it.
- Events per second: N signed events (real H.264 clip and JPEG snapshot in fake-gcs-server) published to
  ``edge-events`` at once on a fresh local stack; the clock stops when every event's alert decision is
  stored and every email has arrived (ingest → analyze → alert through Pub/Sub push and functions-framework).

Run: ``python -m infra.bench_cloud [--events 100] [--out BENCHMARKS.md]``; prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from infra.local.smtp_sink import read_messages
from infra.local.stack import PARTS, REPO, LocalStack, free_port


def import_seconds(runs: int = 5) -> tuple[float, float]:
    """(median seconds to import functions/main.py, median seconds of a bare interpreter start)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "functions")}
    probe = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"

    def once(stmt: str) -> float:
        out = subprocess.run([sys.executable, "-c", probe.format(stmt=stmt)], env=env, cwd=REPO / "functions",
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip())

    main = statistics.median(once("import main") for _ in range(runs))
    bare = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
    return main, statistics.median(bare)


def _events(stack: LocalStack, creds: dict, n: int, work: Path) -> list[tuple[bytes, dict]]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from vigint_edge.recording.clip import ClipWriter, encode_snapshot
    from vigint_edge.event_model import ClipRef, EdgeEvent, SnapshotRef, new_event_id, object_name
    from vigint_edge.delivery.publisher import sign_message

    rng = np.random.default_rng(1)
    writer = ClipWriter(work / "clip.mp4", width=320, height=240, fps=10)
    for i in range(20):
        writer.write(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), i / 10)
    info = writer.close()
    clip = info.path.read_bytes()
    snap = encode_snapshot(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    bucket = storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(stack.bucket)
    t, d = creds["tenant_id"], creds["device_id"]
    out = []
    for _ in range(n):
        start = datetime.now(timezone.utc) - timedelta(seconds=3)
        eid = new_event_id(start)
        bucket.blob(object_name(t, d, eid, "clip.mp4")).upload_from_string(clip, content_type="video/mp4")
        bucket.blob(object_name(t, d, eid, "snapshot.jpg")).upload_from_string(snap, content_type="image/jpeg")
        ev = EdgeEvent(event_id=eid, tenant_id=t, device_id=d, camera_id="bench", kind="detection",
                       severity="alert", labels=["person"], start_time=start, end_time=start + timedelta(seconds=2),
                       top_score=0.9, max_count={"person": 1},
                       clip=ClipRef.from_info(info, object_name(t, d, eid, "clip.mp4")),
                       snapshot=SnapshotRef.for_jpeg(snap, object_name(t, d, eid, "snapshot.jpg"), start))
        data = ev.to_message_bytes()
        attrs = {"tenant_id": t, "device_id": d, "event_id": eid, "schema_version": "1",
                 "key_version": str(creds["key_version"]), "signature": sign_message(data, creds["secret"])}
        out.append((data, attrs))
    return out


def events_per_second(n: int) -> float:
    """End-to-end events per second through a fresh local stack (see the module docstring)."""
    from google.cloud import firestore, pubsub_v1

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stack = LocalStack(workdir=work / "stack", ports={p: free_port() for p in PARTS})
        stack.start()
        saved = dict(os.environ)
        os.environ.update(stack.env)
        try:
            sys.path[:0] = [str(REPO / "functions"), str(REPO / "edge_daemon")]
            from vigint import provisioning

            provisioning.create_tenant("bench", "Bench", ["ops@bench.example"], threshold=1)
            creds = provisioning.create_device("bench", "nuc-1", "bench")
            messages = _events(stack, creds, n, work)
            publisher = pubsub_v1.PublisherClient()
            topic = publisher.topic_path(stack.project, "edge-events")
            db = firestore.Client(project=stack.project)
            events = db.collection("tenants").document("bench").collection("events")
            started = time.perf_counter()
            futures = [publisher.publish(topic, data, **attrs) for data, attrs in messages]
            for f in futures:
                f.result(timeout=60)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                decided = sum(1 for d in events.stream() if (d.to_dict().get("alert") or {}).get("decided_at"))
                if decided >= n and len(read_messages(stack.maildir)) >= n:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"only {decided} of {n} events were alerted within 600 s")
            return n / (time.perf_counter() - started)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.bench_cloud")
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    p.add_argument("--merge-json", type=Path, help="a JSON file (the edge bench's result) merged into the last line")
    args = p.parse_args(argv)
    main_s, bare_s = import_seconds()
    eps = events_per_second(args.events)
    r = {"functions_import_s": round(main_s, 3), "python_start_s": round(bare_s, 3),
         "events_per_second": round(eps, 2), "events": args.events}
    section = f"""
## Cloud functions (local stack)

Command: `make bench` (`python -m infra.bench_cloud --events {args.events}`), same machine and run.

| measure | value |
|---|---|
| import of `functions/main.py`, all entry points, fresh interpreter (median of 5) | {main_s:.3f} s (bare interpreter start: {bare_s:.3f} s) |
| end to end through the local stack: signed event published → stored → analysed (detections-only) → alert decided → email delivered, {args.events} events published at once | {eps:.1f} events/s |

The functions run as one functions-framework process each (as deployed: one instance per function), on the
same two cores as the Firestore and Pub/Sub emulators and fake-gcs-server.
"""
    if args.out.exists():
        text = args.out.read_text().split("\n## Cloud functions (local stack)")[0]
        args.out.write_text(text.rstrip("\n") + "\n" + section)
    if args.merge_json:
        r = {**json.loads(args.merge_json.read_text()), **r}
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
