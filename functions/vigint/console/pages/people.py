"""Users and roles (``manage``): ``/settings/users`` lists the tenant's users and invites new ones;
``/settings/users/{user_id}`` changes a user's name, role and sites, disables and re-enables them.

Rules: only an owner (``own``) makes someone an owner or changes an owner; the tenant always keeps one enabled
owner (a change that would leave none is refused, checked in a transaction that reads the owners, so two admins
demoting the last two owners at once cannot both succeed); nobody disables themselves. Disabling sets
``status: "disabled"`` (every request of theirs fails from then on: ``users.get_user`` answers None) and revokes
all their sessions (``console_sessions`` where ``tenant_id`` and ``user_id`` match: composite index
``tenant_id ASC, user_id ASC``), so re-enabling them does not bring an old session back. An invitation e-mails a
one-time sign-in link (``signin.make_link``, 15 minutes) naming who invited them to which tenant. Audited:
``user.invite``, ``user.update``, ``user.disable``, ``user.enable``.
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage

from google.cloud import firestore as fs

from vigint import audit, clients, config, mailer, pipeline
from vigint.console import sessions, signin, sites, users
from vigint.console.http import ConsoleRequest, HttpError, Response, not_found, redirect

log = logging.getLogger(__name__)

USER_ID = re.compile(r"^[0-9a-f]{16}$")
ROLE_LABELS = {"owner": "Owner — everything, owners and billing", "admin": "Admin — settings, devices, users",
               "operator": "Operator — watch, acknowledge, share, request clips", "viewer": "Viewer — watch only"}


class _Refused(Exception):
    """A change the rules refuse; ``field`` names the form field, ``message`` says why."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def _tenant_name(tenant_id: str) -> str:
    return (pipeline.tenant_ref(tenant_id).get().to_dict() or {}).get("name") or tenant_id


def _roles_for(actor: users.ConsoleUser) -> list[str]:
    """The roles ``actor`` may give (owner only by an owner)."""
    return [r for r in users.ROLES if r != "owner" or actor.can("own")]


def _site_choice(req: ConsoleRequest, known: dict[str, sites.Site]) -> list[str] | None:
    """The sites of the form (``scope=all``: None, every site; ``scope=some``: the ticked ``site_ids``).

    Raises:
        _Refused: no site ticked, or one the tenant does not have.
    """
    if req.field("scope", "all") != "some":
        return None
    chosen = list(dict.fromkeys(s for s in req.form.get("site_ids") or [] if s))
    if not chosen:
        raise _Refused("sites", "tick at least one site, or choose every site")
    if any(s not in known for s in chosen):
        raise _Refused("sites", "unknown site")
    return chosen


def _list_page(req: ConsoleRequest, *, status: int = 200, errors: dict | None = None, form: dict | None = None,
               notice: str = "") -> Response:
    known = sites.list_sites(req.user.tenant_id)
    names = {s.site_id: s.name for s in known}
    rows = []
    for uid, doc in users.list_users(req.user.tenant_id):
        sids = doc.get("site_ids")
        rows.append({"user_id": uid, "email": doc.get("email", ""), "name": doc.get("name") or "",
                     "role": doc.get("role", ""), "status": doc.get("status", ""),
                     "sites": None if sids is None else [names.get(s, s) for s in sids],
                     "last_signin_at": doc.get("last_signin_at"), "me": uid == req.user.user_id})
    return req.page("people.html", status=status, rows=rows, sites=known, roles=_roles_for(req.user),
                    role_labels=ROLE_LABELS, errors=errors or {}, notice=notice,
                    form=form or {"email": "", "name": "", "role": "viewer", "scope": "all", "site_ids": []})


def users_list(req: ConsoleRequest) -> Response:
    """``GET /settings/users``."""
    notice = {"invited": "Invitation sent.", "resent": "Invitation sent again."}.get(req.query.get("done", ""), "")
    return _list_page(req, notice=notice)


def _send_invitation(req: ConsoleRequest, invitee: users.ConsoleUser) -> None:
    """E-mails ``invitee`` a one-time sign-in link naming the inviter and the tenant.

    Raises:
        vigint.mailer errors: the SMTP server refused or could not be reached.
    """
    url = signin.make_link(invitee, ip=req.ip, now=req.now)
    tenant_name = _tenant_name(invitee.tenant_id)
    inviter = req.user.name if req.user.name and req.user.name != req.user.email else ""
    who = f"{inviter} ({req.user.email})" if inviter else req.user.email
    msg = EmailMessage()
    msg["From"] = config.settings().mail_from
    msg["To"] = invitee.email
    msg["Subject"] = "You are invited to the Vigint console"
    msg.set_content("\n".join([
        f"{who} invited you to the Vigint console of {tenant_name} as {invitee.role}.", "",
        "Open this link to sign in. It works once, within 15 minutes:", url, "",
        f"Later, sign in at {signin.base_url()}/signin with this address ({invitee.email}).", "",
        "If you did not expect this invitation, ignore this e-mail.",
    ]))
    mailer.Mailer.from_settings(config.settings()).send(msg)


def invite(req: ConsoleRequest) -> Response:
    """``POST /settings/users``: creates the user (``invited``) and e-mails the invitation."""
    form = {"email": req.field("email").strip(), "name": req.field("name").strip(), "role": req.field("role"),
            "scope": req.field("scope", "all"), "site_ids": list(req.form.get("site_ids") or [])}
    known = {s.site_id: s for s in sites.list_sites(req.user.tenant_id)}
    try:
        try:
            email = users.normalise_email(form["email"])
        except users.UserError:
            raise _Refused("email", "not an e-mail address") from None
        if form["role"] not in users.ROLES:
            raise _Refused("role", "choose a role")
        if form["role"] == "owner" and not req.user.can("own"):
            raise _Refused("role", "only an owner can make someone an owner", 403)
        if len(form["name"]) > users.MAX_NAME:
            raise _Refused("name", f"at most {users.MAX_NAME} characters")
        site_ids = _site_choice(req, known)
        if users.users_col(req.user.tenant_id).document(users.user_id_of(email)).get().exists:
            raise _Refused("email", "already a user of this tenant (change them in the list below)")
        invitee = users.put_user(req.user.tenant_id, email=email, role=form["role"], name=form["name"] or None,
                                 site_ids=site_ids, created_by=req.user.email, status="invited", now=req.now)
    except _Refused as exc:
        return _list_page(req, status=exc.status, errors={exc.field: exc.message}, form=form)
    except users.UserError as exc:
        return _list_page(req, status=400, errors={"name": str(exc)}, form=form)
    audit.record(req.user.tenant_id, actor=req.user.actor, action="user.invite", target_kind="user",
                 target_id=invitee.user_id,
                 details={"email": invitee.email, "role": invitee.role,
                          "sites": "all" if site_ids is None else ",".join(site_ids)}, now=req.now)
    try:
        _send_invitation(req, invitee)
    except Exception as exc:  # noqa: BLE001 - the user exists; say so and offer a resend
        log.warning("console: invitation e-mail to user %s failed: %s", invitee.user_id, type(exc).__name__)
        return _list_page(req, status=502, notice="The user was added, but the invitation e-mail could not be "
                                                  "sent. Use “Send invitation again” on their page.")
    return redirect("/settings/users?done=invited")


def _load(tenant_id: str, user_id: str) -> dict:
    """The user document, or the uniform 404 (malformed id, another tenant's id, missing)."""
    if not USER_ID.match(user_id or ""):
        raise not_found()
    snap = users.users_col(tenant_id).document(user_id).get()
    if not snap.exists:
        raise not_found()
    return snap.to_dict() or {}


def _edit_page(req: ConsoleRequest, user_id: str, doc: dict, *, status: int = 200, errors: dict | None = None,
               form: dict | None = None, notice: str = "") -> Response:
    known = sites.list_sites(req.user.tenant_id)
    sids = doc.get("site_ids")
    form = form or {"name": doc.get("name") or "", "role": doc.get("role"),
                    "scope": "all" if sids is None else "some", "site_ids": list(sids or [])}
    may_change = doc.get("role") != "owner" or req.user.can("own")
    return req.page("people_edit.html", status=status, target_id=user_id, doc=doc, sites=known, form=form,
                    roles=_roles_for(req.user) if may_change else [doc.get("role")], role_labels=ROLE_LABELS,
                    errors=errors or {}, notice=notice, may_change=may_change, me=user_id == req.user.user_id)


def user_page(req: ConsoleRequest) -> Response:
    """``GET /settings/users/{user_id}``."""
    uid = req.params["user_id"]
    doc = _load(req.user.tenant_id, uid)
    notice = {"saved": "Saved.", "disabled": "Disabled; their sessions are ended.", "enabled": "Enabled again.",
              "resent": "Invitation sent again."}.get(req.query.get("done", ""), "")
    return _edit_page(req, uid, doc, notice=notice)


def _change(tenant_id: str, user_id: str, actor: users.ConsoleUser, updates: dict, now) -> dict:
    """Applies ``updates`` to the user in a transaction that keeps one enabled owner; returns the document
    before the change.

    The owners are read in the transaction (a query on ``role``, its automatic single-field index), so a
    concurrent change of another owner makes one of the two transactions retry and see the other.

    Raises:
        _Refused: the change would leave no enabled owner, or changes an owner without ``own``.
        HttpError: 404 when the user does not exist.
    """
    db = clients.firestore()
    col = users.users_col(tenant_id)
    ref = col.document(user_id)

    @fs.transactional
    def txn(tx):
        snap = ref.get(transaction=tx)
        if not snap.exists:
            raise not_found()
        before = snap.to_dict() or {}
        after = {**before, **updates}
        if (before.get("role") == "owner" or after.get("role") == "owner") and not actor.can("own"):
            raise _Refused("role", "only an owner can make or change an owner", 403)
        was_owner = before.get("role") == "owner" and before.get("status") != "disabled"
        still_owner = after.get("role") == "owner" and after.get("status") != "disabled"
        if was_owner and not still_owner:
            owners = [s for s in col.where(filter=fs.FieldFilter("role", "==", "owner")).limit(100).stream(
                transaction=tx) if s.id != user_id and (s.to_dict() or {}).get("status") != "disabled"]
            if not owners:
                raise _Refused("role", "this is the last owner: make someone else an owner first", 409)
        tx.update(ref, {**updates, "updated_at": now})
        return before

    return txn(db.transaction())


def user_update(req: ConsoleRequest) -> Response:
    """``POST /settings/users/{user_id}``: name, role and sites."""
    uid = req.params["user_id"]
    doc = _load(req.user.tenant_id, uid)
    form = {"name": req.field("name").strip(), "role": req.field("role"), "scope": req.field("scope", "all"),
            "site_ids": list(req.form.get("site_ids") or [])}
    known = {s.site_id: s for s in sites.list_sites(req.user.tenant_id)}
    try:
        if form["role"] not in users.ROLES:
            raise _Refused("role", "choose a role")
        if not 1 <= len(form["name"]) <= users.MAX_NAME:
            raise _Refused("name", f"1 to {users.MAX_NAME} characters")
        site_ids = _site_choice(req, known)
        before = _change(req.user.tenant_id, uid, req.user,
                         {"name": form["name"], "role": form["role"], "site_ids": site_ids}, req.now)
    except _Refused as exc:
        return _edit_page(req, uid, doc, status=exc.status, errors={exc.field: exc.message}, form=form)
    changed = {}
    if before.get("role") != form["role"]:
        changed["role"] = f"{before.get('role')}->{form['role']}"
    if before.get("site_ids") != site_ids:
        changed["sites"] = "all" if site_ids is None else ",".join(site_ids)
    if (before.get("name") or "") != form["name"]:
        changed["name"] = "changed"
    if changed:
        audit.record(req.user.tenant_id, actor=req.user.actor, action="user.update", target_kind="user",
                     target_id=uid, details={"email": before.get("email", ""), **changed}, now=req.now)
    return redirect(f"/settings/users/{uid}?done=saved")


def revoke_sessions(tenant_id: str, user_id: str, now) -> int:
    """Revokes every live session of the user; returns how many.

    Query: ``console_sessions`` where ``tenant_id ==`` and ``user_id ==`` (composite index ``tenant_id ASC,
    user_id ASC``). One write per session, each to its own document."""
    q = (clients.firestore().collection(sessions.COLLECTION)
         .where(filter=fs.FieldFilter("tenant_id", "==", tenant_id))
         .where(filter=fs.FieldFilter("user_id", "==", user_id)).limit(1000))
    n = 0
    for snap in q.stream():
        if not (snap.to_dict() or {}).get("revoked_at"):
            snap.reference.update({"revoked_at": now})
            n += 1
    return n


def user_disable(req: ConsoleRequest) -> Response:
    """``POST /settings/users/{user_id}/disable``: status ``disabled`` and all their sessions revoked."""
    uid = req.params["user_id"]
    doc = _load(req.user.tenant_id, uid)
    if uid == req.user.user_id:
        return _edit_page(req, uid, doc, status=409, errors={"status": "you cannot disable yourself"})
    try:
        before = _change(req.user.tenant_id, uid, req.user, {"status": "disabled"}, req.now)
    except _Refused as exc:
        return _edit_page(req, uid, doc, status=exc.status, errors={"status": exc.message})
    ended = revoke_sessions(req.user.tenant_id, uid, req.now)
    if before.get("status") != "disabled":
        audit.record(req.user.tenant_id, actor=req.user.actor, action="user.disable", target_kind="user",
                     target_id=uid, details={"email": before.get("email", ""), "sessions_ended": ended}, now=req.now)
    return redirect(f"/settings/users/{uid}?done=disabled")


def user_enable(req: ConsoleRequest) -> Response:
    """``POST /settings/users/{user_id}/enable``: back to ``active`` (``invited`` if they never signed in)."""
    uid = req.params["user_id"]
    doc = _load(req.user.tenant_id, uid)
    status = "active" if doc.get("last_signin_at") else "invited"
    try:
        before = _change(req.user.tenant_id, uid, req.user, {"status": status}, req.now)
    except _Refused as exc:
        return _edit_page(req, uid, doc, status=exc.status, errors={"status": exc.message})
    if before.get("status") == "disabled":
        audit.record(req.user.tenant_id, actor=req.user.actor, action="user.enable", target_kind="user",
                     target_id=uid, details={"email": before.get("email", "")}, now=req.now)
    return redirect(f"/settings/users/{uid}?done=enabled")


def user_reinvite(req: ConsoleRequest) -> Response:
    """``POST /settings/users/{user_id}/invite``: e-mails a fresh invitation to a user who has not signed in."""
    uid = req.params["user_id"]
    doc = _load(req.user.tenant_id, uid)
    invitee = users.from_doc(req.user.tenant_id, uid, doc)
    if invitee is None or doc.get("status") != "invited":
        return _edit_page(req, uid, doc, status=409, errors={"status": "only an invited, enabled user"})
    try:
        _send_invitation(req, invitee)
    except Exception as exc:  # noqa: BLE001
        log.warning("console: invitation e-mail to user %s failed: %s", uid, type(exc).__name__)
        raise HttpError(502, "The invitation e-mail could not be sent. Try again later.") from None
    audit.record(req.user.tenant_id, actor=req.user.actor, action="user.invite", target_kind="user",
                 target_id=uid, details={"email": invitee.email, "role": invitee.role, "again": True}, now=req.now)
    return redirect(f"/settings/users/{uid}?done=resent")
