"""Operator CLI: provision tenants and devices, printing JSON.

Usage::

    python -m vigint.admin tenant create --id demo --name "Demo" --recipient a@b.c [--recipient ...]
        [--threshold 1] [--link-ttl-seconds 604800] [--cooldown-seconds 0] [--normal-context TEXT]
    python -m vigint.admin device create --tenant demo --id nuc-1 [--name "Lobby NUC"]
    python -m vigint.admin device rotate --tenant demo --id nuc-1
    python -m vigint.admin device revoke --tenant demo --id nuc-1
    python -m vigint.admin device enroll-code --tenant demo --id nuc-2 [--name NAME] [--ttl-seconds 900]
    python -m vigint.admin apikey create --tenant demo --role admin --name "Alice"
    python -m vigint.admin hold event --tenant demo --event EVENT_ID --reason "case 42" [--by NAME]
    python -m vigint.admin hold release --tenant demo --event EVENT_ID [--by NAME]
    python -m vigint.admin hold release --tenant demo --camera CAMERA_ID --hold HOLD_ID [--by NAME]
    python -m vigint.admin verify-export FILE [--public-key PEM_FILE]

Reads the same environment as the functions (``GOOGLE_CLOUD_PROJECT``, ``VIGINT_DEVICE_KEY_SECRET``,
``FIRESTORE_EMULATOR_HOST`` locally). ``device create``/``rotate`` print the device secret once: store it
on the device (file mode 0600 or a systemd credential). ``apikey create`` prints the tenant API key once
(``{"key": "vgk_...", "key_id", ...}``): hand it to its user. ``hold`` places and releases legal holds
(``vigint.legal_hold``), also for a deleted tenant whose held evidence was kept (its API keys are gone); each
is an audit entry with actor ``cli``. ``verify-export`` checks an evidence package offline (no
configuration needed): exit 0 if it verifies, 1 with each problem on stderr otherwise. Exit status 2 on bad
input or conflicts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from google.cloud import firestore as fs

from vigint import config, provisioning


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vigint.admin", description="Provision Vigint tenants and devices.")
    sub = p.add_subparsers(dest="what", required=True)

    tenant = sub.add_parser("tenant").add_subparsers(dest="action", required=True)
    tc = tenant.add_parser("create", help="create a tenant")
    tc.add_argument("--id", required=True)
    tc.add_argument("--name", required=True)
    tc.add_argument("--recipient", action="append", default=[], help="alert e-mail address (repeatable)")
    tc.add_argument("--threshold", type=int, default=1, help="lowest threat level 0..3 that alerts")
    tc.add_argument("--link-ttl-seconds", type=int, default=7 * 24 * 3600)
    tc.add_argument("--cooldown-seconds", type=int, default=0)
    tc.add_argument("--normal-context", default="")
    td = tenant.add_parser("delete", help="delete everything of a tenant (documents, links, clips, snapshots)")
    td.add_argument("--id", required=True)
    td.add_argument("--confirm", required=True, help="the tenant id again")

    camera = sub.add_parser("camera").add_subparsers(dest="action", required=True)
    ce = camera.add_parser("erase", help="delete everything a camera recorded (events, links, clips, snapshots)")
    ce.add_argument("--tenant", required=True)
    ce.add_argument("--id", required=True)

    device = sub.add_parser("device").add_subparsers(dest="action", required=True)
    for action in ("create", "rotate", "revoke"):
        d = device.add_parser(action, help=f"{action} a device")
        d.add_argument("--tenant", required=True)
        d.add_argument("--id", required=True)
        if action == "create":
            d.add_argument("--name", default="")
    ec = device.add_parser("enroll-code", help="a one-use code a new edge box exchanges for its credentials")
    ec.add_argument("--tenant", required=True)
    ec.add_argument("--id", required=True, help="device id the box will get")
    ec.add_argument("--name", default="")
    ec.add_argument("--ttl-seconds", type=int, default=900)

    _hold_parser(sub)
    ve = sub.add_parser("verify-export", help="check an evidence package offline (signature and every hash)")
    ve.add_argument("file")
    ve.add_argument("--public-key", help="PEM file of the tenant's export key (GET /v1/export-key)")

    apikey = sub.add_parser("apikey").add_subparsers(dest="action", required=True)
    ak = apikey.add_parser("create", help="create a tenant API key (printed once)")
    ak.add_argument("--tenant", required=True)
    ak.add_argument("--role", required=True, choices=["admin", "viewer"])
    ak.add_argument("--name", required=True, help="the user's name")
    return p


def _hold_parser(sub) -> None:
    hold = sub.add_parser("hold", help="legal holds").add_subparsers(dest="action", required=True)
    he = hold.add_parser("event", help="place an event under legal hold")
    he.add_argument("--tenant", required=True)
    he.add_argument("--event", required=True)
    he.add_argument("--reason", required=True)
    he.add_argument("--by", default="operator", help="who asked (audit trail)")
    hr = hold.add_parser("release", help="release an event's hold, or a camera hold (--camera and --hold)")
    hr.add_argument("--tenant", required=True)
    hr.add_argument("--event")
    hr.add_argument("--camera")
    hr.add_argument("--hold")
    hr.add_argument("--by", default="operator", help="who asked (audit trail)")


def _hold_command(args) -> dict:
    """``hold event`` / ``hold release``: the hold record as JSON-ready values."""
    from vigint import legal_hold

    actor = {"kind": "cli", "id": "", "name": str(args.by)[:100]}
    try:
        if args.action == "event":
            out = legal_hold.hold_event(args.tenant, args.event, reason=args.reason, actor=actor)
        elif args.event and not (args.camera or args.hold):
            out = legal_hold.release_event(args.tenant, args.event, actor=actor)
        elif args.camera and args.hold and not args.event:
            out = legal_hold.release_camera(args.tenant, args.camera, args.hold, actor=actor)
        else:
            raise provisioning.ProvisioningError("give --event, or --camera and --hold")
    except legal_hold.HoldError as exc:
        raise provisioning.ProvisioningError(str(exc)) from None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.items()}


def verify_export(path: str, public_key_file: str | None) -> int:
    """``verify-export``: prints ``{"ok", "problems", "event_id", "export_id", "files", "key_id"}``; returns 0
    when the package verifies, 1 otherwise (each problem also on stderr)."""
    from vigint import evidence_export

    pem = None
    if public_key_file:
        try:
            with open(public_key_file, encoding="ascii") as f:
                pem = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: cannot read {public_key_file}: {exc}", file=sys.stderr)
            return 2
    problems, manifest = evidence_export.verify(path, pem)
    manifest = manifest or {}
    print(json.dumps({"ok": not problems, "problems": problems, "event_id": manifest.get("event_id"),
                      "export_id": manifest.get("export_id"), "files": len(manifest.get("files") or []),
                      "key_id": (manifest.get("signature") or {}).get("key_id"), "note": manifest.get("note")}))
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    return 0 if not problems else 1


def _jsonable(doc: dict) -> dict:
    return {k: (_jsonable(v) if isinstance(v, dict) else v) for k, v in doc.items() if v is not fs.SERVER_TIMESTAMP}


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0 ok, 2 bad input/conflict, 1 configuration error)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = _parser().parse_args(argv)
    if args.what == "verify-export":
        return verify_export(args.file, args.public_key)
    try:
        if args.what in ("tenant", "camera") and args.action in ("delete", "erase"):
            from vigint import retention

            if args.what == "tenant":
                if args.confirm != args.id:
                    raise provisioning.ProvisioningError("--confirm must repeat the tenant id")
                out = {"tenant_id": args.id, "deleted": retention.delete_tenant(args.id)}
            else:
                out = {"tenant_id": args.tenant, "camera_id": args.id,
                       "deleted": retention.delete_camera(args.tenant, args.id)}
        elif args.what == "tenant":
            doc = provisioning.create_tenant(
                args.id, args.name, args.recipient, threshold=args.threshold,
                link_ttl_seconds=args.link_ttl_seconds, cooldown_seconds=args.cooldown_seconds,
                normal_context=args.normal_context,
            )
            out = {"tenant_id": args.id, **_jsonable(doc)}
        elif args.what == "hold":
            out = _hold_command(args)
        elif args.what == "apikey":
            out = provisioning.create_api_key(args.tenant, args.role, args.name)
            out["created_at"] = out["created_at"].isoformat()
        elif args.action == "enroll-code":
            out = provisioning.create_enrollment_code(args.tenant, args.id, args.name, args.ttl_seconds)
            out["expires_at"] = out["expires_at"].isoformat()
        elif args.action == "create":
            out = provisioning.create_device(args.tenant, args.id, args.name)
        elif args.action == "rotate":
            out = provisioning.rotate_device_key(args.tenant, args.id)
        else:
            provisioning.revoke_device(args.tenant, args.id)
            out = {"tenant_id": args.tenant, "device_id": args.id, "status": "revoked"}
    except (provisioning.ProvisioningError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
