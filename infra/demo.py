"""``make demo``: the whole system on the local stack, on real video.

1. Assets: the COCO SSDLite-MobileNetV2 detector converted to OpenVINO IR, and the video (``vtest.avi`` from
   Debian's ``opencv-doc`` unless ``--video`` is given).
2. The local stack (reused if ``make up`` already started it), emptied. Before anything starts, every port it
   needs is checked: one in use stops the demo at once, naming the port, its holder and the variable that
   moves it.
3. A demo tenant with one device and one alert recipient, created with ``python -m vigint.admin`` — the
   operator's own path.
4. The edge daemon watches the video as a camera (read at its own frame rate) and delivers its events.
5. Waits for the alert emails, saves them to ``.local/demo/mail/*.eml``, writes ``.local/demo/summary.json``
   and prints, for every e-mail, the time from the first sight of the object that made it an alert (the event's
   ``timeline.first_seen``: capture time of that frame) to the SMTP server accepting the message
   (``first_seen_to_inbox_s`` in the summary; ``first_seen`` on each event, RFC 3339). Alerts leave while the
   event is still going, so the time from the event's end to the inbox is usually negative.
6. The operator console: the demo's device is put in a named site (``tenants/demo/sites/demo-street``, its own
   time zone), its camera is registered (after the edge has finished, so the run itself is unchanged), the alert
   recipient becomes the tenant's ``owner`` in the console (``vigint.admin user add``) and gets a one-time
   sign-in link (``vigint.admin user signin-link``, valid 15 minutes): both are printed and written to
   ``summary.json`` as ``"console": {"url", "signin_link", "email", "site"}``. Open the link, press "Sign in".

The stack keeps running so the link in the email and the console can be opened in a browser; ``make down`` stops
it.

Ports: the stack's as ``make up`` (``VIGINT_PORT_<PART>``, e.g. ``VIGINT_PORT_FIRESTORE=9510``), and the edge
daemon's status endpoint (``/healthz``, ``/metrics``) on 9393 unless ``VIGINT_PORT_EDGE_STATUS`` says otherwise.

Exit status: 0 when the run worked: the alert emails arrived, or there was nothing to alert about (a quiet
video: "no one in view: no events, no alerts"). 1 when something broke (a port taken, a process of the stack or
the edge daemon failed, the edge could not deliver, ingest dropped a message) or an expected alert went missing
(the edge published an alert-severity event and, within ``--timeout``, neither its email arrived nor did the
cloud decide not to alert), with the reason.
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
from datetime import datetime, timezone
from pathlib import Path

from infra import assets
from infra.local.smtp_sink import read_messages
from infra.local.ports import PortsTaken, check_free, port_variable
from infra.local.stack import REPO, LocalStack, _alive, _passthrough_env, default_ports

LOCAL = REPO / ".local"
TENANT, DEVICE, CAMERA = "demo", "nuc-1", "entrance"
RECIPIENT = "security@demo.example"
EDGE_STATUS_PORT = 9393  # the edge daemon's default (vigint_edge.config.StatusConfig)
TAP = "demo-edge-events-tap"  # a pull subscription on edge-events: what the edge published, as the cloud got it
# The console's view of the demo: the device's site (a street in vtest.avi; any IANA zone does) and its owner.
SITE = {"site_id": "demo-street", "name": "Demo street", "time_zone": "Europe/London"}
CAMERA_NAME = "Entrance"
OWNER = RECIPIENT  # the address the alerts go to is the tenant's owner in the console


def _admin(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "vigint.admin", *args], env=env, cwd=REPO, text=True,
                         capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"vigint.admin {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


# Run by ``_console`` in a process with the stack's environment (the demo's own process keeps its environment
# clean for the edge daemon): the site, the device in it, the camera as POST /v1/cameras stores it.
_CONSOLE_SETUP = """
import datetime as dt, json, sys
from vigint import pipeline
from vigint.console import sites
from vigint.tenant_api import cameras, models
tenant, device, camera, name, site = json.loads(sys.argv[1])
now = dt.datetime.now(dt.timezone.utc)
sites.put_site(tenant, site["site_id"], name=site["name"], time_zone=site["time_zone"], now=now)
pipeline.tenant_ref(tenant).collection("devices").document(device).update({"site_id": site["site_id"]})
ref = cameras.cameras_col(tenant).document(camera)
if not ref.get().exists:
    doc = models.CameraIn(camera_id=camera, device_id=device, name=name).model_dump(mode="json", exclude={"camera_id"})
    doc["zones"] = cameras.zones_to_store(doc["zones"])
    doc.update({"created_at": now, "updated_at": now})
    ref.create(doc)
"""


def _console(env: dict, stack: LocalStack) -> dict:
    """The demo tenant in the console: its site, camera and owner, and a fresh one-time sign-in link.

    Returns:
        ``{"url": console origin, "signin_link": URL (one use, 15 minutes), "email": the owner's address,
        "site": SITE}``.
    """
    url = stack.urls["console"]
    env = {**env, "VIGINT_CONSOLE_BASE_URL": url}  # the links name the console the stack runs
    setup = json.dumps([TENANT, DEVICE, CAMERA, CAMERA_NAME, SITE])
    out = subprocess.run([sys.executable, "-c", _CONSOLE_SETUP, setup], env=env, cwd=REPO, text=True,
                         capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"console set-up failed:\n{out.stderr}")
    _admin(env, "user", "add", "--tenant", TENANT, "--email", OWNER, "--role", "owner", "--name", "Demo owner")
    link = json.loads(_admin(env, "user", "signin-link", "--tenant", TENANT, "--email", OWNER))
    return {"url": url, "signin_link": link["signin_link"], "email": OWNER, "site": SITE}


def _edge_status_port() -> int:
    """``VIGINT_PORT_EDGE_STATUS`` or 9393.

    Raises:
        SystemExit: not a port number.
    """
    value = os.environ.get(port_variable("edge_status"), str(EDGE_STATUS_PORT))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"{port_variable('edge_status')}={value!r} is not a TCP port (1-65535)")
    return int(value)


def _running_stack(workdir: Path) -> LocalStack | None:
    """The stack ``make up`` (or an earlier demo) left running in ``workdir``, or None (a half-dead one is
    stopped)."""
    if (workdir / "stack.json").exists():
        stack = LocalStack.load(workdir)
        if all(_alive(pid) for pid in stack.pids.values()):
            return stack
        stack.stop()
    return None


def _stack(workdir: Path, running: LocalStack | None) -> LocalStack:
    if running is not None:
        print("local stack: already running, reusing it")
        return running
    print("local stack: starting (Firestore and Pub/Sub emulators, fake-gcs-server, 5 functions, SMTP)")
    stack = LocalStack(workdir=workdir, ports=default_ports(), extra_env=_passthrough_env())
    stack.start()
    return stack


def _tap(stack: LocalStack) -> str:
    """A fresh pull subscription on ``edge-events``; returns its path."""
    os.environ.update(stack.env)
    from google.api_core.exceptions import NotFound
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(stack.project, TAP)
    try:
        subscriber.delete_subscription(request={"subscription": path})
    except NotFound:
        pass
    subscriber.create_subscription(request={"name": path, "topic": f"projects/{stack.project}/topics/edge-events"})
    subscriber.close()
    return path


def _published(stack: LocalStack, tap: str) -> list[dict]:
    """Every message the edge published since ``_tap`` (acknowledged): ``[{"event_id", "kind", "severity"}]``."""
    import warnings

    os.environ.update(stack.env)
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    out, empty = [], 0
    while empty < 3:
        with warnings.catch_warnings():  # return_immediately is deprecated but the emulator honours it
            warnings.simplefilter("ignore", DeprecationWarning)
            resp = subscriber.pull(request={"subscription": tap, "max_messages": 1000, "return_immediately": True},
                                   timeout=10)
        if not resp.received_messages:
            empty += 1
            time.sleep(0.2)
            continue
        empty = 0
        subscriber.acknowledge(request={"subscription": tap, "ack_ids": [m.ack_id for m in resp.received_messages]})
        for m in resp.received_messages:
            try:
                body = json.loads(m.message.data)
            except ValueError:
                body = {}
            out.append({"event_id": body.get("event_id") or m.message.attributes.get("event_id"),
                        "kind": body.get("kind"), "severity": body.get("severity")})
    subscriber.delete_subscription(request={"subscription": tap})
    subscriber.close()
    return out


def _ingest_drops(stack: LocalStack) -> dict:
    """``stats/ingest_drops`` (``{reason: n, "total": n, ...}``; empty when ingest dropped nothing)."""
    os.environ.update(stack.env)
    from google.cloud import firestore

    snap = firestore.Client(project=stack.project).collection("stats").document("ingest_drops").get()
    return snap.to_dict() if snap.exists else {}


def _firestore_events(stack: LocalStack) -> list[dict]:
    os.environ.update(stack.env)
    from google.cloud import firestore

    db = firestore.Client(project=stack.project)
    docs = db.collection("tenants").document(TENANT).collection("events").stream()
    # A continuation stored before the event it continues leaves a placeholder ({continued_by}): not an event yet.
    events = [d.to_dict() for d in docs]
    return sorted((e for e in events if e.get("event_id")), key=lambda e: e["start_time"])


def _parse_time(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _first_seen(event: dict) -> float | None:
    """Capture time (Unix seconds) of the first frame showing the object that made the event an alert (or
    started it): ``timeline.first_seen`` (docs/contracts.md, "Event lifecycle"); None for an event without it."""
    value = (event.get("timeline") or {}).get("first_seen")
    return _parse_time(value) if value else None


def _rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description="The whole system on the local stack, on real video.",
        epilog="Ports: the stack's move with VIGINT_PORT_<PART> (e.g. VIGINT_PORT_FIRESTORE=9510, as for make up), "
               f"the edge daemon's status endpoint ({EDGE_STATUS_PORT}) with VIGINT_PORT_EDGE_STATUS.")
    parser.add_argument("--video", type=Path, help="a video file to use instead of vtest.avi")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for alerts after the video ends")
    parser.add_argument("--local-dir", type=Path, default=LOCAL,
                        help="where the stack (stack/) and the demo's files (demo/) live (default .local)")
    args = parser.parse_args(argv)
    local = args.local_dir.resolve()
    demo = local / "demo"

    running = _running_stack(local / "stack")
    status_port = _edge_status_port()
    needed = {"edge_status": status_port}
    if running is None:
        needed.update(LocalStack(workdir=local / "stack", ports=default_ports()).used_ports)
    try:
        check_free(needed)
    except PortsTaken as exc:
        print(f"FAILED: nothing started, a port the demo needs is not free:\n{exc}", file=sys.stderr)
        return 1

    print("== assets")
    model_xml = assets.ensure_default_model()
    video = args.video.resolve() if args.video else assets.ensure_vtest_video()
    if not video.exists():
        raise SystemExit(f"video {video} does not exist")
    print(f"model: {model_xml}\nvideo: {video}")

    print("== local stack")
    stack = _stack(local / "stack", running)
    stack.reset()
    for name, url in stack.urls.items():
        print(f"  {name:11s} {url}")

    print("== provisioning (python -m vigint.admin, the operator's path)")
    env = {**os.environ, **stack.env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    _admin(env, "tenant", "create", "--id", TENANT, "--name", "Demo Site", "--recipient", RECIPIENT,
           "--threshold", "1")
    creds = json.loads(_admin(env, "device", "create", "--tenant", TENANT, "--id", DEVICE, "--name", "Demo NUC"))
    print(f"  tenant {TENANT}, device {DEVICE} (key version {creds['key_version']}), recipient {RECIPIENT}")

    shutil.rmtree(demo, ignore_errors=True)
    (demo / "mail").mkdir(parents=True)
    secret_file = demo / "device-secret"
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, creds["secret"].encode())
    os.close(fd)
    config = demo / "config.yaml"
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
  dir: {demo / 'spool'}
status:
  host: 127.0.0.1
  port: {status_port}
"""
    )
    tap = _tap(stack)

    print(f"== edge daemon: watching {video.name} in real time (Ctrl-C stops)")
    edge_env = {**os.environ, "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
                "PYTHONPATH": str(REPO / "edge_daemon")}
    started = time.time()
    rc = subprocess.run([sys.executable, "-m", "vigint_edge.cli", "run", "--config", str(config),
                         "--exit-when-done"], env=edge_env, cwd=REPO).returncode
    print(f"edge daemon finished in {time.time() - started:.1f} s (exit {rc})")
    published = _published(stack, tap)
    published_ids = {m["event_id"] for m in published}

    print("== waiting for the cloud: ingest -> analyze -> alert -> email")
    deadline = time.time() + args.timeout
    while True:
        events = _firestore_events(stack)
        decided = [e for e in events if e.get("alert", {}).get("decided_at")]
        expected = sum(len(e["alert"].get("recipients", [RECIPIENT])) for e in decided if e["alert"].get("alerted"))
        mails = read_messages(stack.maildir)
        if published_ids <= {e["event_id"] for e in events} and len(decided) == len(events) \
                and len(mails) >= expected:
            break  # also at once when the edge published nothing: nothing to wait for
        if time.time() > deadline:
            break
        time.sleep(0.5)

    summary = {"video": str(video), "tenant": TENANT, "device": DEVICE, "events": [], "emails": []}
    ends, seen = {}, {}
    for e in events:
        ends[e["event_id"]] = _parse_time(e["end_time"])
        seen[e["event_id"]] = _first_seen(e)
        summary["events"].append({
            "event_id": e["event_id"], "camera": e["camera_id"], "labels": e["labels"],
            "first_seen": _rfc3339(seen[e["event_id"]]),
            "start": str(e["start_time"]), "end": str(e["end_time"]), "severity": e.get("severity"),
            "ended": e.get("ended"), "continues": e.get("continues"), "interrupted": e.get("interrupted", False),
            "clip": (e.get("clip") or {}).get("object"), "snapshot": (e.get("snapshot") or {}).get("object"),
            "threat_level": (e.get("analysis") or {}).get("threat_level"),
            "verdict": (e.get("analysis") or {}).get("title"),
            "alerted": (e.get("alert") or {}).get("alerted"),
        })
    for i, msg in enumerate(mails):
        (demo / "mail" / f"{i + 1:03d}.eml").write_bytes(bytes(msg))
        text = msg.get_body(("plain",)).get_content() if msg.get_body(("plain",)) else ""
        link = re.search(r"https?://\S+/v/[A-Za-z0-9_\-]+", text)
        event_id = msg.get("X-Vigint-Event-Id", "")
        received = float(msg.get("X-Vigint-Received-At", 0))
        summary["emails"].append({
            "to": msg["To"], "subject": msg["Subject"], "event_id": event_id,
            "kind": "escalation" if "escalat" in str(msg["Subject"]).lower() else "alert",
            "link": link.group(0) if link else None, "received_at": received,
            # The figure a user feels: first sight of the object -> the SMTP server has accepted the message.
            "first_seen_to_inbox_s": round(received - seen[event_id], 2) if seen.get(event_id) else None,
            # Negative when the e-mail arrived while the event was still going (it no longer waits for the end).
            "event_end_to_inbox_s": round(received - ends[event_id], 2) if event_id in ends else None,
        })
    summary["console"] = _console(env, stack)
    (demo / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    print("\n== events")
    for e in summary["events"]:
        print(f"  {e['event_id']} camera={e['camera']} labels={','.join(e['labels'])} first seen {e['first_seen']} "
              f"{e['start']} -> {e['end']} threat={e['threat_level']} alerted={e['alerted']}"
              + (f" (continues {e['continues']})" if e["continues"] else ""))
        print(f"      clip={e['clip']}\n      snapshot={e['snapshot']}")
    print("== emails")
    for m in summary["emails"]:
        print(f"  to={m['to']} subject={m['subject']!r}\n      link={m['link']}\n"
              f"      {m['kind']}: first sight -> inbox {m['first_seen_to_inbox_s']} s "
              f"(event end -> inbox {m['event_end_to_inbox_s']} s)")
    console = summary["console"]
    print("== operator console")
    print(f"  {console['url']}  (site {console['site']['name']!r}, owner {console['email']})\n"
          f"  sign in: open {console['signin_link']}\n"
          "  and press Sign in (the link works once, within 15 minutes). A new link:\n"
          f"  . {stack.workdir / 'env.sh'} && VIGINT_CONSOLE_BASE_URL={console['url']} PYTHONPATH=functions "
          f"{sys.executable} -m vigint.admin user signin-link --tenant {TENANT} --email {console['email']}")
    print(f"\nsummary: {demo / 'summary.json'}  mail: {demo / 'mail'}")
    problems = _problems(stack, rc, demo, published, events, mails, args.timeout)
    if problems:
        print(f"FAILED: {'; '.join(problems)}; see the logs under {stack.workdir / 'logs'}", file=sys.stderr)
        return 1
    if not published and not events:
        print("no one in view: no events, no alerts. The stack keeps running; `make down` stops it.")
        return 0
    if not summary["emails"]:
        print(f"{len(events)} event(s), none to alert about: no alert emails. The stack keeps running; "
              "`make down` stops it.")
        return 0
    print("Open a link above in a browser to play the clip, or the console's sign-in link to see the event there. "
          "The stack keeps running; `make down` stops it.")
    return 0


def _problems(stack: LocalStack, rc: int, demo: Path, published: list[dict], events: list[dict], mails: list,
              timeout: float) -> list[str]:
    """What broke in the run, or the alerts that went missing; empty when it worked (a quiet video included)."""
    problems = []
    if rc != 0:
        problems.append(f"the edge daemon exited with status {rc}"
                        + (" (events left undelivered in its spool)" if rc == 1 else ""))
    failed = sorted(p.name for p in (demo / "spool" / "failed").glob("*"))
    if failed:
        problems.append(f"the cloud refused {len(failed)} spooled item(s) for good ({', '.join(failed)})")
    dead = [name for name, pid in stack.pids.items() if not _alive(pid)]
    if dead:
        problems.append(f"stack part(s) no longer running: {', '.join(dead)}")
    drops = _ingest_drops(stack)
    if drops.get("total"):
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(drops.items()) if isinstance(v, int) and k != "total")
        problems.append(f"ingest dropped {drops['total']} message(s) ({reasons})")
    stored = {e["event_id"]: e for e in events}
    lost = sorted({m["event_id"] for m in published} - set(stored))
    if lost:
        problems.append(f"{len(lost)} published event(s) never reached Firestore ({', '.join(lost)})")
    mailed = {m.get("X-Vigint-Event-Id", "") for m in mails}
    missing = sorted(
        eid for eid in {m["event_id"] for m in published if m["severity"] == "alert"} & set(stored)
        if eid not in mailed and (stored[eid].get("alert") or {}).get("alerted") is not False
    )
    if missing:
        problems.append(f"no alert email within {timeout:g} s for alert event(s) {', '.join(missing)}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
