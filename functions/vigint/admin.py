"""Operator CLI: provision tenants and devices, printing JSON.

Usage::

    python -m vigint.admin tenant create --id demo --name "Demo" --recipient a@b.c [--recipient ...]
        [--threshold 1] [--link-ttl-seconds 604800] [--cooldown-seconds 0] [--normal-context TEXT]
    python -m vigint.admin user add --tenant demo --email a@b.c --role owner [--site S ...]
    python -m vigint.admin user signin-link --tenant demo --email a@b.c
    python -m vigint.admin device create --tenant demo --id nuc-1 [--name "Lobby NUC"]
    python -m vigint.admin device rotate --tenant demo --id nuc-1
    python -m vigint.admin device revoke --tenant demo --id nuc-1
    python -m vigint.admin device enroll-code --tenant demo --id nuc-2 [--name NAME] [--ttl-seconds 900]
    python -m vigint.admin apikey create --tenant demo --role admin --name "Alice"
    python -m vigint.admin link list --tenant demo --event evt_...
    python -m vigint.admin link revoke --tenant demo (--link LINK_ID | --event evt_...) [--by "Alice"]
    python -m vigint.admin hold event --tenant demo --event EVENT_ID --reason "case 42" [--by NAME]
    python -m vigint.admin hold release --tenant demo --event EVENT_ID [--by NAME]
    python -m vigint.admin hold release --tenant demo --camera CAMERA_ID --hold HOLD_ID [--by NAME]
    python -m vigint.admin verify-export FILE [--public-key PEM_FILE]

Reads the same environment as the functions (``GOOGLE_CLOUD_PROJECT``, ``VIGINT_DEVICE_KEY_SECRET``,
``FIRESTORE_EMULATOR_HOST`` locally). ``device create``/``rotate`` print the device secret once: store it
on the device (file mode 0600 or a systemd credential). ``apikey create`` prints the tenant API key once
(``{"key": "vgk_...", "key_id", ...}``): hand it to its user. ``link list`` prints an event's video links (as
``GET /v1/events/{id}/links``); ``link revoke`` revokes one or all of them (as the tenant API's revoke routes,
audit actor ``{"kind": "cli", "name": --by or $USER}``; an unknown event or link: ``error: ... not found``).
``hold`` places and releases legal holds (``vigint.legal_hold``), also for a deleted tenant whose held
evidence was kept (its API keys are gone); each is an audit entry with actor ``cli``. ``verify-export`` checks
an evidence package offline (no configuration needed): exit 0 if it verifies, 1 with each problem on stderr
otherwise. Exit status 2 on bad input or conflicts.
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

    user = sub.add_parser("user", help="console users").add_subparsers(dest="action", required=True)
    ua = user.add_parser("add", help="add a console user to a tenant (or change their role and sites)")
    ua.add_argument("--tenant", required=True)
    ua.add_argument("--email", required=True)
    ua.add_argument("--role", required=True, choices=["owner", "admin", "operator", "viewer"])
    ua.add_argument("--name", default=None)
    ua.add_argument("--site", action="append", default=None, help="limit to this site (repeatable; none: all)")
    us = user.add_parser("signin-link", help="a one-time console sign-in link for a user (15 minutes)")
    us.add_argument("--tenant", required=True)
    us.add_argument("--email", required=True)

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
    _link_parser(sub)
    return p


def _link_parser(sub) -> None:
    link = sub.add_parser("link").add_subparsers(dest="action", required=True)
    ll = link.add_parser("list", help="an event's video links: recipient, expiry, revocation, accesses")
    ll.add_argument("--tenant", required=True)
    ll.add_argument("--event", required=True)
    lr = link.add_parser("revoke", help="revoke one video link or every link of an event")
    lr.add_argument("--tenant", required=True)
    which = lr.add_mutually_exclusive_group(required=True)
    which.add_argument("--link", help="link id (as listed; not the token)")
    which.add_argument("--event", help="revoke every link of this event")
    lr.add_argument("--by", default=None, help="who revokes, for the audit trail (default $USER)")


def _link_command(args) -> dict:
    """``link list`` / ``link revoke``: the same answers as the tenant API's link routes (JSON-ready).

    Raises:
        provisioning.ProvisioningError: unknown tenant, event or link (or a link of another tenant).
    """
    import datetime as dt
    import getpass
    import re

    from vigint import links, pipeline
    from vigint.schema import EVENT_ID_PATTERN
    from vigint.tenant_api.links import link_out
    from vigint.tenant_api.models import LINK_ID_PATTERN

    now = dt.datetime.now(dt.timezone.utc)
    name = getattr(args, "by", None)
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no $USER and no passwd entry (a container)
            name = "cli"
    actor = {"kind": "cli", "id": "", "name": str(name)[:100]}
    if args.action == "revoke" and args.link:
        doc = links.revoke(args.link, by=actor, now=now, tenant_id=args.tenant) \
            if re.match(LINK_ID_PATTERN, args.link) else None
        if doc is None:
            raise provisioning.ProvisioningError(f"link {args.link} not found in tenant {args.tenant}")
        return link_out(doc, now).model_dump(mode="json")
    snap = pipeline.event_ref(args.tenant, args.event).get() if re.match(EVENT_ID_PATTERN, args.event) else None
    if snap is None or not snap.exists or "event_id" not in (snap.to_dict() or {}):
        raise provisioning.ProvisioningError(f"event {args.event} not found in tenant {args.tenant}")
    docs = links.of_event(args.tenant, args.event)
    if args.action == "list":
        return {"event_id": args.event, "links": [link_out(d, now).model_dump(mode="json") for d in docs]}
    out, revoked = [], 0
    for doc in docs:
        if not doc.get("revoked"):
            doc = links.revoke(doc["id"], by=actor, now=now, tenant_id=args.tenant) or doc
            revoked += bool(doc.get("revoked_now"))
        out.append(link_out(doc, now).model_dump(mode="json"))
    return {"event_id": args.event, "revoked": revoked, "links": out}


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


def _user_command(args) -> dict:
    """``user add`` / ``user signin-link``.

    Raises:
        provisioning.ProvisioningError: unknown tenant or (signin-link) user.
        ValueError: a bad address, role or name (``vigint.console.users.UserError``).
    """
    import datetime as dt

    from vigint import pipeline
    from vigint.console import signin, users

    if not pipeline.tenant_ref(args.tenant).get().exists:
        raise provisioning.ProvisioningError(f"tenant {args.tenant} not found")
    now = dt.datetime.now(dt.timezone.utc)
    if args.action == "add":
        u = users.put_user(args.tenant, email=args.email, role=args.role, name=args.name, site_ids=args.site,
                           created_by="cli", now=now)
        return {"tenant_id": u.tenant_id, "user_id": u.user_id, "email": u.email, "role": u.role,
                "site_ids": list(u.site_ids) if u.site_ids is not None else None}
    u = users.get_user(args.tenant, users.user_id_of(args.email))
    if u is None:
        raise provisioning.ProvisioningError(f"no enabled user {args.email} in tenant {args.tenant}")
    return {"tenant_id": u.tenant_id, "email": u.email, "signin_link": signin.make_link(u, ip=None, now=now),
            "expires_in_s": signin.LINK_TTL_S}


def _jsonable(doc: dict) -> dict:
    return {k: (_jsonable(v) if isinstance(v, dict) else v) for k, v in doc.items() if v is not fs.SERVER_TIMESTAMP}


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status (0 ok, 2 bad input/conflict, 1 configuration error)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = _parser().parse_args(argv)
    if args.what == "verify-export":
        return verify_export(args.file, args.public_key)
    try:
        if args.what == "link":
            out = _link_command(args)
        elif args.what == "user":
            out = _user_command(args)
        elif args.what in ("tenant", "camera") and args.action in ("delete", "erase"):
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
