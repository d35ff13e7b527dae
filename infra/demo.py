"""``make demo``: the whole system on the local stack, on real video.

1. Assets: the COCO SSDLite-MobileNetV2 detector converted to OpenVINO IR, and the video (``vtest.avi`` from
   Debian's ``opencv-doc`` unless ``--video`` is given).
2. The local stack (reused if ``make up`` already started it), emptied.
3. A demo tenant with one device and one alert recipient, created with ``python -m vigint.admin`` — the
   operator's own path.
4. The edge daemon watches the video as a camera (read at its own frame rate) and delivers its events.
5. Waits for the alert emails, saves them to ``.local/demo/mail/*.eml``, writes ``.local/demo/summary.json``
   and prints a summary with the latency from each event's end to its email's arrival.

The stack keeps running so the link in the email can be opened in a browser; ``make down`` stops it.
Exit status: 0 when at least one alert email arrived, 1 otherwise (with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from infra import assets
from infra.local.smtp_sink import read_messages
from infra.local.stack import REPO, LocalStack, _alive, _passthrough_env, default_ports

DEMO = REPO / ".local" / "demo"
TENANT, DEVICE, CAMERA = "demo", "nuc-1", "entrance"
RECIPIENT = "security@demo.example"


def _admin(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "vigint.admin", *args], env=env, cwd=REPO, text=True,
                         capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"vigint.admin {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def _stack() -> LocalStack:
    workdir = REPO / ".local" / "stack"
    if (workdir / "stack.json").exists():
        stack = LocalStack.load(workdir)
        if all(_alive(pid) for pid in stack.pids.values()):
            print("local stack: already running, reusing it")
            return stack
        stack.stop()
    print("local stack: starting (Firestore and Pub/Sub emulators, fake-gcs-server, 5 functions, SMTP)")
    stack = LocalStack(workdir=workdir, ports=default_ports(), extra_env=_passthrough_env())
    stack.start()
    return stack


def _firestore_events(stack: LocalStack) -> list[dict]:
    os.environ.update(stack.env)
    from google.cloud import firestore

    db = firestore.Client(project=stack.project)
    docs = db.collection("tenants").document(TENANT).collection("events").stream()
    return sorted((d.to_dict() for d in docs), key=lambda e: e["start_time"])


def _parse_time(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--video", type=Path, help="a video file to use instead of vtest.avi")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for alerts after the video ends")
    args = parser.parse_args(argv)

    print("== assets")
    model_xml = assets.ensure_default_model()
    video = args.video.resolve() if args.video else assets.ensure_vtest_video()
    if not video.exists():
        raise SystemExit(f"video {video} does not exist")
    print(f"model: {model_xml}\nvideo: {video}")

    print("== local stack")
    stack = _stack()
    stack.reset()
    for name, url in stack.urls.items():
        print(f"  {name:11s} {url}")

    print("== provisioning (python -m vigint.admin, the operator's path)")
    env = {**os.environ, **stack.env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    _admin(env, "tenant", "create", "--id", TENANT, "--name", "Demo Site", "--recipient", RECIPIENT,
           "--threshold", "1")
    creds = json.loads(_admin(env, "device", "create", "--tenant", TENANT, "--id", DEVICE, "--name", "Demo NUC"))
    print(f"  tenant {TENANT}, device {DEVICE} (key version {creds['key_version']}), recipient {RECIPIENT}")

    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "mail").mkdir(parents=True)
    secret_file = DEMO / "device-secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, creds["secret"].encode())
    os.close(fd)
    config = DEMO / "config.yaml"
    config.write_text(
        f"""# Written by make demo: the edge daemon watching {video.name} as camera '{CAMERA}'.
device:
  tenant_id: {TENANT}
  device_id: {DEVICE}
  api_url: {stack.urls['edge_api']}
  key_version: {creds['key_version']}
  secret_file: {secret_file}
cameras:
  - id: {CAMERA}
    source: {json.dumps(str(video))}
model:
  path: {model_xml}
spool:
  dir: {DEMO / 'spool'}
"""
    )

    print(f"== edge daemon: watching {video.name} in real time (Ctrl-C stops)")
    edge_env = {**os.environ, "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
                "PYTHONPATH": str(REPO / "edge_daemon")}
    started = time.time()
    rc = subprocess.run([sys.executable, "-m", "vigint_edge.cli", "run", "--config", str(config),
                         "--exit-when-done"], env=edge_env, cwd=REPO).returncode
    print(f"edge daemon finished in {time.time() - started:.1f} s (exit {rc})")

    print("== waiting for the cloud: ingest -> analyze -> alert -> email")
    deadline = time.time() + args.timeout
    while True:
        events = _firestore_events(stack)
        decided = [e for e in events if e.get("alert", {}).get("decided_at")]
        expected = sum(len(e["alert"].get("recipients", [RECIPIENT])) for e in decided if e["alert"].get("alerted"))
        mails = read_messages(stack.maildir)
        if events and len(decided) == len(events) and len(mails) >= expected:
            break
        if time.time() > deadline:
            break
        time.sleep(0.5)

    summary = {"video": str(video), "tenant": TENANT, "device": DEVICE, "events": [], "emails": []}
    ends = {}
    for e in events:
        ends[e["event_id"]] = _parse_time(e["end_time"])
        summary["events"].append({
            "event_id": e["event_id"], "camera": e["camera_id"], "labels": e["labels"],
            "start": str(e["start_time"]), "end": str(e["end_time"]), "severity": e.get("severity"),
            "clip": (e.get("clip") or {}).get("object"), "snapshot": (e.get("snapshot") or {}).get("object"),
            "threat_level": (e.get("analysis") or {}).get("threat_level"),
            "verdict": (e.get("analysis") or {}).get("title"),
            "alerted": (e.get("alert") or {}).get("alerted"),
        })
    for i, msg in enumerate(mails):
        (DEMO / "mail" / f"{i + 1:03d}.eml").write_bytes(bytes(msg))
        text = msg.get_body(("plain",)).get_content() if msg.get_body(("plain",)) else ""
        link = re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", text)
        event_id = msg.get("X-Vigint-Event-Id", "")
        received = float(msg.get("X-Vigint-Received-At", 0))
        summary["emails"].append({
            "to": msg["To"], "subject": msg["Subject"], "event_id": event_id,
            "link": link.group(0) if link else None, "received_at": received,
            "latency_s": round(received - ends[event_id], 2) if event_id in ends else None,
        })
    (DEMO / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    print("\n== events")
    for e in summary["events"]:
        print(f"  {e['event_id']} camera={e['camera']} labels={','.join(e['labels'])} "
              f"{e['start']} -> {e['end']} threat={e['threat_level']} alerted={e['alerted']}")
        print(f"      clip={e['clip']}\n      snapshot={e['snapshot']}")
    print("== emails")
    for m in summary["emails"]:
        print(f"  to={m['to']} subject={m['subject']!r}\n      link={m['link']}\n"
              f"      latency from event end to inbox: {m['latency_s']} s")
    print(f"\nsummary: {DEMO / 'summary.json'}  mail: {DEMO / 'mail'}")
    if not summary["emails"]:
        reason = "no events reached Firestore" if not events else "events were stored but no alert email arrived"
        print(f"FAILED: {reason}; see the logs under {stack.workdir / 'logs'}", file=sys.stderr)
        return 1
    print("Open a link above in a browser to play the clip. The stack keeps running; `make down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
