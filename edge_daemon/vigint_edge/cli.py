"""``vigint-edge``: the daemon's command line.

    vigint-edge run [--config PATH] [--exit-when-done]
    vigint-edge check-config [--config PATH]
    vigint-edge process --video FILE [--config PATH] [--camera ID] [--fast]
    vigint-edge enroll --code CODE --api-url URL [--config PATH] [--secret-file PATH]
    vigint-edge bench --video vtest.avi --model model.xml [--out BENCHMARKS.md]

Exit codes: 0 ok, 1 events left undelivered, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from vigint_edge.config import DEFAULT_PATH, CameraConfig, ConfigError, load_config, load_secret


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigint-edge", description="Vigint edge daemon")
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="watch the configured cameras and deliver events")
    run.add_argument("--config", type=Path, default=DEFAULT_PATH)
    run.add_argument("--exit-when-done", action="store_true",
                     help="when every source has ended (files), deliver the spool and exit")
    check = sub.add_parser("check-config", help="validate the configuration file and exit")
    check.add_argument("--config", type=Path, default=DEFAULT_PATH)
    proc = sub.add_parser("process", help="run one video file through the pipeline and deliver its events")
    proc.add_argument("--video", type=Path, required=True)
    proc.add_argument("--config", type=Path, default=DEFAULT_PATH)
    proc.add_argument("--camera", default="file", help="camera id the events are filed under")
    proc.add_argument("--fast", action="store_true", help="do not pace the file at its frame rate")
    enroll = sub.add_parser("enroll", help="exchange a one-time enrollment code for device credentials")
    enroll.add_argument("--code", required=True, help="the code from the tenant's admin (shown once)")
    enroll.add_argument("--api-url", required=True, help="the edge_api URL")
    enroll.add_argument("--config", type=Path, default=DEFAULT_PATH)
    enroll.add_argument("--secret-file", type=Path, default=DEFAULT_PATH.parent / "device-secret")
    sub.add_parser("bench", help="measure decode, model and pipeline speed (see vigint_edge.bench)", add_help=False)
    return p


class ProgressLine:
    """``process``'s progress bar on a terminal (one line redrawn; plain lines every 10 % otherwise)."""

    def __init__(self, stream, width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last = -1

    def __call__(self, camera: str, done: int, total: int | None) -> None:
        if not total:
            return
        pct = min(100, done * 100 // total)
        step = pct if self.tty else pct - pct % 10
        if step == self.last:
            return
        self.last = step
        bar = "#" * (pct * self.width // 100)
        line = f"{camera}: [{bar:<{self.width}}] {done}/{total} frames ({pct} %)"
        self.stream.write(("\r" + line + ("\n" if pct == 100 else "")) if self.tty else line + "\n")
        self.stream.flush()


SWITCH_INTERVAL_S = 0.001  # see main(): the GIL switch interval of a running daemon


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from vigint_edge.bench import main as bench_main

        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "enroll":
        from vigint_edge.cloud.enroll import EnrollError, enroll

        try:
            creds = enroll(args.code, args.api_url, args.config, args.secret_file)
        except EnrollError as exc:
            print(f"enrollment failed: {exc}", file=sys.stderr)
            return 2
        print(f"enrolled as device {creds['device_id']} of tenant {creds['tenant_id']}; "
              f"secret in {args.secret_file}, settings in {args.config}")
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        if args.command == "process":
            if not args.video.exists():
                raise ConfigError(f"--video: {args.video} does not exist")
            config.cameras = [CameraConfig(id=args.camera, source=str(args.video), realtime=not args.fast)]
        secret = load_secret(config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: OK ({len(config.cameras)} camera(s))")
        return 0

    from vigint_edge.daemon import build_daemon  # heavy imports (OpenVINO, PyAV) only when running

    daemon = build_daemon(config, secret, exit_when_done=args.command == "process" or args.exit_when_done)
    if args.command == "process":
        daemon.progress = ProgressLine(sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop.set())
    # The camera threads keep the GIL busy (frames, tracking); the delivery threads mostly wait on sockets and
    # fsync and must win the GIL back after each wait. At CPython's default 5 ms switch interval a start's few
    # dozen such waits cost a large share of its path to the cloud on a loaded box; 1 ms hands the GIL over
    # sooner (sys.setswitchinterval; measured with make bench-alerts, BENCHMARKS.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
