"""Single sign-on with OpenID Connect, one provider per tenant (authorization-code flow with PKCE).

Configuration, ``tenants/{t}/console/sso`` (written by ``/settings/sso``, ``put_config``)::

    {"issuer": "https://login.example.com" (the provider's issuer identifier, OpenID Connect Discovery 1.0 §4),
     "client_id": str, "client_secret_enc": str (see below), "allowed_domains": [str] (at least one),
     "auto_create": bool (unknown users of an allowed domain are created at their first sign-in),
     "auto_create_role": "viewer" | "operator", "updated_at", "updated_by"}

The client secret is never shown again and is stored encrypted, not in clear as the alert webhook's secret is
(``tenants/{t}.alert.webhook.secret``): AES-256-GCM under a key derived with HKDF-SHA256 from the deployment's
master secret (``VIGINT_DEVICE_KEY_SECRET``, held in Secret Manager) with its own ``info`` label, the tenant id
as associated data (a ciphertext copied to another tenant does not open). A copy of the database alone does not
reveal it. Stored as ``v1.{base64url(nonce 12 bytes || ciphertext+tag)}``. (Rotating the master secret means
entering the client secrets again.)

A sign-in (``begin`` / ``finish``):

1. ``begin``: discovery (``{issuer}/.well-known/openid-configuration``, fetched with a timeout, cached
   ``METADATA_CACHE_S``; its ``issuer`` must equal the configured one), then fresh ``state``, ``nonce`` and PKCE
   ``code_verifier`` (RFC 7636, method S256), stored in ``console_oidc_states/{sha256(cookie value)}``
   ``{tenant_id, state, nonce, code_verifier, redirect_uri, created_at, expire_at}`` (``STATE_TTL_S``; also the
   Firestore TTL field). The browser gets only the random cookie value (``COOKIE``: HttpOnly, SameSite=Lax so
   that it comes back on the provider's top-level redirect, Path ``/signin/oidc``, 10 minutes): the state is
   bound to that browser.
2. ``finish`` (the callback): the state document is taken and deleted in one transaction (single use, so a
   replayed callback finds nothing); the ``state`` parameter must equal it; the code is exchanged (Authlib's
   OAuth2 client, with the code verifier, client_secret_basic); the ID token is checked with joserfc
   (``validate_id_token``: signature against the provider's JWKS, issuer, audience/azp, expiry, issued-at,
   nonce); ``email_verified`` must be true and the e-mail's domain allowed; the user of that e-mail in the
   tenant is used (created if so configured; a disabled user is refused).

Every failure is ``SsoError`` with a status (400 for a bad or stale flow, 403 for an identity the tenant does
not accept) and a message fit to show; the reason is logged without tokens or secrets.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from urllib.parse import urlsplit

import requests
from google.cloud import firestore as fs

from vigint import audit, clients, config, pipeline
from vigint.console import users

log = logging.getLogger(__name__)

STATES = "console_oidc_states"
STATE_TTL_S = 600
COOKIE = "vigint_oidc"
COOKIE_PATH = "/signin/oidc"
HTTP_TIMEOUT_S = 5.0
METADATA_CACHE_S = 300.0
JWKS_CACHE_S = 300.0
CLOCK_LEEWAY_S = 60
SCOPE = "openid email profile"
AUTO_CREATE_ROLES = ("viewer", "operator")
# Flows one client IP may start per ``signin.WINDOW_S`` (15 min): each writes a state document.
STARTS_PER_IP = 60
# Asymmetric algorithms only: HS* would make the client secret a verification key, "none" no check at all.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_HKDF_INFO = b"vigint/console/oidc-client-secret/v1"
GENERIC_REFUSAL = "Single sign-on is not available for this organisation."


class SsoError(Exception):
    """A refused sign-in: ``status`` (400/403), ``message`` (shown), ``reason`` (logged)."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(reason)
        self.status, self.message, self.reason = status, message, reason


class ConfigError(ValueError):
    """A configuration the settings form refuses; the message says which field."""


@dataclasses.dataclass(frozen=True)
class SsoConfig:
    """A tenant's OpenID Connect settings (the secret stays encrypted; ``has_secret`` says whether one is set)."""

    tenant_id: str
    issuer: str
    client_id: str
    allowed_domains: tuple[str, ...]
    auto_create: bool
    auto_create_role: str
    has_secret: bool
    updated_at: dt.datetime | None = None


def _config_ref(tenant_id: str):
    return pipeline.tenant_ref(tenant_id).collection("console").document("sso")


# --- the client secret, encrypted ------------------------------------------------------------------------

def _aead():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    master = config.settings().device_key_secret.get_secret_value().encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(master)
    return AESGCM(key)


def encrypt_secret(tenant_id: str, secret: str) -> str:
    """``v1.{base64url(nonce || AES-256-GCM(secret))}`` bound to ``tenant_id``."""
    nonce = secrets.token_bytes(12)
    blob = nonce + _aead().encrypt(nonce, secret.encode(), tenant_id.encode())
    return "v1." + base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decrypt_secret(tenant_id: str, stored: str) -> str:
    """The clear secret of ``encrypt_secret``'s output. Raises ``cryptography.exceptions.InvalidTag`` or
    ``ValueError`` when it does not open (another tenant's, another master secret, damaged)."""
    version, _, body = stored.partition(".")
    if version != "v1":
        raise ValueError("unknown secret format")
    blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return _aead().decrypt(blob[:12], blob[12:], tenant_id.encode()).decode()


# --- configuration ---------------------------------------------------------------------------------------

def get_config(tenant_id: str) -> SsoConfig | None:
    """The tenant's settings, or None when it has none (or the tenant id is not a plausible one)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", tenant_id or ""):
        return None
    snap = _config_ref(tenant_id).get()
    d = snap.to_dict() if snap.exists else None
    if not d or not d.get("issuer") or not d.get("client_id"):
        return None
    return SsoConfig(tenant_id=tenant_id, issuer=d["issuer"], client_id=d["client_id"],
                     allowed_domains=tuple(d.get("allowed_domains") or ()), auto_create=bool(d.get("auto_create")),
                     auto_create_role=d.get("auto_create_role") if d.get("auto_create_role") in AUTO_CREATE_ROLES
                     else "viewer", has_secret=bool(d.get("client_secret_enc")), updated_at=d.get("updated_at"))


def check_issuer(issuer: str) -> str:
    """The issuer URL, normalised (no trailing slash). https is required, except when the console itself is served
    over http (the local stack), where http on 127.0.0.1/localhost is accepted.

    Raises:
        ConfigError: not an absolute URL of that kind, or with a query or fragment (Discovery §4.1).
    """
    issuer = (issuer or "").strip().rstrip("/")
    parts = urlsplit(issuer)
    local = not config.settings().console_base_url.startswith("https://")
    ok_scheme = parts.scheme == "https" or (local and parts.scheme == "http"
                                             and parts.hostname in ("127.0.0.1", "localhost"))
    if not ok_scheme or not parts.hostname or parts.query or parts.fragment or parts.username or len(issuer) > 300:
        raise ConfigError("The issuer must be an https:// URL without a query (your provider's issuer identifier).")
    return issuer


def check_domains(text: str) -> tuple[str, ...]:
    """Domains from a comma/space/newline separated list, lower-cased, de-duplicated.

    Raises:
        ConfigError: none, more than 20, or one that is not a domain name.
    """
    out: list[str] = []
    for d in re.split(r"[\s,;]+", (text or "").strip().lower()):
        d = d.lstrip("@")
        if not d:
            continue
        if not _DOMAIN.match(d):
            raise ConfigError(f"“{d[:80]}” is not a domain name.")
        if d not in out:
            out.append(d)
    if not out:
        raise ConfigError("Give at least one e-mail domain: only addresses of these domains may sign in.")
    if len(out) > 20:
        raise ConfigError("At most 20 domains.")
    return tuple(out)


def put_config(tenant_id: str, *, issuer: str, client_id: str, client_secret: str, allowed_domains: str,
               auto_create: bool, auto_create_role: str, actor: dict, now: dt.datetime) -> SsoConfig:
    """Saves the settings and audits ``settings.sso`` (no secret in the entry). An empty ``client_secret`` keeps
    the stored one (one must exist).

    Raises:
        ConfigError: a field is unusable (the message names it).
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    issuer = check_issuer(issuer)
    client_id = (client_id or "").strip()
    if not client_id or len(client_id) > 255 or any(c.isspace() for c in client_id):
        raise ConfigError("The client id is required (as your provider shows it, without spaces).")
    domains = check_domains(allowed_domains)
    if auto_create_role not in AUTO_CREATE_ROLES:
        raise ConfigError("New users can be created as viewer or operator only.")
    client_secret = client_secret or ""
    if len(client_secret) > 1024:
        raise ConfigError("The client secret is too long.")
    ref = _config_ref(tenant_id)
    before = get_config(tenant_id)
    if not client_secret and not (before and before.has_secret):
        raise ConfigError("The client secret is required.")
    fields = {"issuer": issuer, "client_id": client_id, "allowed_domains": list(domains),
              "auto_create": bool(auto_create), "auto_create_role": auto_create_role, "updated_at": now,
              "updated_by": actor.get("id", "")}
    if client_secret:
        fields["client_secret_enc"] = encrypt_secret(tenant_id, client_secret)
    batch = clients.firestore().batch()
    batch.set(ref, fields, merge=True)
    audit.record(tenant_id, actor=actor, action="settings.sso", target_kind="tenant", target_id=tenant_id,
                 details={"issuer": issuer[:200], "client_id": client_id[:200], "allowed_domains": ",".join(domains),
                          "auto_create": bool(auto_create), "auto_create_role": auto_create_role,
                          "secret_changed": bool(client_secret)}, now=now, batch=batch)
    batch.commit()
    _METADATA.pop(issuer, None)
    return get_config(tenant_id)


def remove_config(tenant_id: str, *, actor: dict, now: dt.datetime) -> None:
    """Turns single sign-on off (deletes the settings, secret included) and audits ``settings.sso``."""
    batch = clients.firestore().batch()
    batch.delete(_config_ref(tenant_id))
    audit.record(tenant_id, actor=actor, action="settings.sso", target_kind="tenant", target_id=tenant_id,
                 details={"removed": True}, now=now, batch=batch)
    batch.commit()


def _client_secret(cfg: SsoConfig) -> str:
    d = _config_ref(cfg.tenant_id).get().to_dict() or {}
    try:
        return decrypt_secret(cfg.tenant_id, d.get("client_secret_enc") or "")
    except Exception as exc:  # InvalidTag, ValueError: the secret must be entered again
        raise SsoError(400, GENERIC_REFUSAL, f"client secret does not open: {type(exc).__name__}") from None


# --- discovery and keys, cached briefly ------------------------------------------------------------------

_LOCK = threading.Lock()
_METADATA: dict[str, tuple[float, dict]] = {}
_JWKS: dict[str, tuple[float, dict]] = {}


def _get_json(url: str) -> dict:
    resp = requests.get(url, timeout=HTTP_TIMEOUT_S, headers={"Accept": "application/json"},
                        allow_redirects=False)
    resp.raise_for_status()
    body = resp.json()
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def metadata(issuer: str) -> dict:
    """The provider's discovery document (cached ``METADATA_CACHE_S``).

    Raises:
        SsoError: unreachable, not JSON, or its ``issuer`` differs from the configured one (Discovery §4.3).
    """
    with _LOCK:
        hit = _METADATA.get(issuer)
    if hit and time.monotonic() - hit[0] < METADATA_CACHE_S:
        return hit[1]
    try:
        meta = _get_json(issuer + "/.well-known/openid-configuration")
    except (requests.RequestException, ValueError) as exc:
        raise SsoError(400, "Your organisation's sign-in service did not answer. Try again in a moment.",
                       f"discovery of {issuer} failed: {type(exc).__name__}") from None
    if meta.get("issuer") != issuer or not all(_endpoint_ok(meta.get(k)) for k in (
            "authorization_endpoint", "token_endpoint", "jwks_uri")):
        raise SsoError(400, GENERIC_REFUSAL, f"discovery of {issuer}: issuer {meta.get('issuer')!r} or endpoints wrong")
    with _LOCK:
        _METADATA[issuer] = (time.monotonic(), meta)
    return meta


def _endpoint_ok(url) -> bool:
    """An endpoint of the discovery document: an URL of the kind ``check_issuer`` accepts (so the browser is
    never sent to a ``javascript:`` or other URL, and the console never fetches a non-https one in Google
    Cloud)."""
    if not isinstance(url, str) or len(url) > 2000:
        return False
    try:
        return check_issuer(url.split("?", 1)[0]) != ""
    except ConfigError:
        return False


def _jwks(uri: str, *, fresh: bool = False) -> dict:
    with _LOCK:
        hit = _JWKS.get(uri)
    if hit and not fresh and time.monotonic() - hit[0] < JWKS_CACHE_S:
        return hit[1]
    try:
        keys = _get_json(uri)
    except (requests.RequestException, ValueError) as exc:
        raise SsoError(400, "Your organisation's sign-in service did not answer. Try again in a moment.",
                       f"JWKS {uri} failed: {type(exc).__name__}") from None
    with _LOCK:
        _JWKS[uri] = (time.monotonic(), keys)
    return keys


def validate_id_token(id_token: str, *, jwks: dict, issuer: str, client_id: str, nonce: str,
                      now: dt.datetime, algorithms=ALGORITHMS) -> dict:
    """The claims of ``id_token`` once its signature (one of ``jwks``'s keys, an asymmetric algorithm), ``iss``,
    ``aud`` (and ``azp`` when there are several audiences), ``exp``, ``iat`` and ``nonce`` are right (OpenID
    Connect Core 1.0 §3.1.3.7), with ``CLOCK_LEEWAY_S`` of clock skew.

    Raises:
        joserfc.errors.JoseError: a check failed (``BadSignatureError``, ``InvalidClaimError``, ``ExpiredTokenError``,
            ``MissingClaimError``, ...).
    """
    from joserfc import jwt
    from joserfc.errors import InvalidClaimError
    from joserfc.jwk import KeySet

    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=list(algorithms))
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()), leeway=CLOCK_LEEWAY_S,
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": client_id},
        sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
        nonce={"essential": True, "value": nonce})
    registry.validate(token.claims)
    aud = token.claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and token.claims.get("azp") != client_id:
        raise InvalidClaimError("azp")
    return dict(token.claims)


# --- the flow ---------------------------------------------------------------------------------------------

def _state_ref(cookie_value: str):
    return clients.firestore().collection(STATES).document(hashlib.sha256(cookie_value.encode()).hexdigest())


def cookie_header(value: str, max_age_s: int) -> str:
    """``Set-Cookie`` of the flow's browser binding ("" with 0 clears it)."""
    from vigint.console import sessions

    parts = [f"{COOKIE}={value}", f"Path={COOKIE_PATH}", "HttpOnly", "SameSite=Lax", f"Max-Age={max_age_s}"]
    if sessions.secure():
        parts.append("Secure")
    return "; ".join(parts)


def redirect_uri() -> str:
    """The console's callback, as registered at the provider: ``{VIGINT_CONSOLE_BASE_URL}/signin/oidc/callback``."""
    return config.settings().console_base_url.rstrip("/") + "/signin/oidc/callback"


def begin(tenant_id: str, *, ip: str | None, now: dt.datetime) -> tuple[str, str]:
    """Starts a sign-in at the tenant's provider; returns ``(authorization URL, cookie value)``. At most
    ``STARTS_PER_IP`` per client IP per 15 minutes (counted as the e-mailed links are, ``signin``).

    Raises:
        SsoError: the tenant has no single sign-on (unknown tenants alike: same message), its provider's
            discovery failed (400), or the client IP started too many (429).
        google.api_core.exceptions.GoogleAPICallError: Firestore failed.
    """
    from authlib.integrations.requests_client import OAuth2Session

    from vigint.console import signin

    if ip and not signin._allowed("sso-ip", ip, STARTS_PER_IP, now):
        raise SsoError(429, "Too many sign-in attempts from your network. Wait a few minutes and try again.",
                       "SSO starts per IP over the limit")
    cfg = get_config(tenant_id)
    if cfg is None or not cfg.has_secret:
        raise SsoError(400, GENERIC_REFUSAL, f"tenant {tenant_id[:64]!r} has no SSO")
    meta = metadata(cfg.issuer)
    state, nonce, verifier, cookie = (secrets.token_urlsafe(32) for _ in range(4))
    session = OAuth2Session(cfg.client_id, scope=SCOPE, redirect_uri=redirect_uri(), code_challenge_method="S256")
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                              code_verifier=verifier)
    _state_ref(cookie).set({"tenant_id": tenant_id, "state": state, "nonce": nonce, "code_verifier": verifier,
                            "redirect_uri": redirect_uri(), "created_at": now,
                            "expire_at": now + dt.timedelta(seconds=STATE_TTL_S)})
    return url, cookie


def _take_state(cookie_value: str, now: dt.datetime) -> dict | None:
    """The flow's document, deleted in the same transaction (of two concurrent callbacks one gets it)."""
    if not cookie_value or len(cookie_value) > 100:
        return None
    ref = _state_ref(cookie_value)

    @fs.transactional
    def txn(tx):
        snap = ref.get(transaction=tx)
        if not snap.exists:
            return None
        tx.delete(ref)
        return snap.to_dict()

    d = txn(clients.firestore().transaction())
    if d is None or now >= d["expire_at"]:
        return None
    return d


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: the tenant, the verified e-mail, the provider's subject."""

    tenant_id: str
    email: str
    subject: str
    name: str


def finish(cookie_value: str, *, query, now: dt.datetime) -> Identity:
    """Completes the sign-in from the callback's query (``code``, ``state`` or ``error``).

    Raises:
        SsoError: bad/missing/used state (400), the provider's error or a refused code (400), an ID token that
            fails a check (400), an unverified e-mail or one of a domain the tenant does not allow (403).
    """
    from authlib.common.errors import AuthlibBaseError
    from authlib.integrations.requests_client import OAuth2Session
    from joserfc.errors import JoseError

    flow = _take_state(cookie_value, now)
    stale = "This sign-in has expired or was already used. Start again from the sign-in page."
    if flow is None:
        raise SsoError(400, stale, "no (or an expired) flow for the browser's cookie")
    if not hmac.compare_digest(str(query.get("state") or ""), flow["state"]):
        raise SsoError(400, stale, "state parameter differs from the browser's flow")
    tenant_id = flow["tenant_id"]
    if query.get("error"):
        raise SsoError(400, "Your organisation's sign-in service refused the sign-in.",
                       f"provider error {str(query.get('error'))[:60]!r}")
    code = str(query.get("code") or "")
    if not code or len(code) > 2048:
        raise SsoError(400, stale, "no code")
    cfg = get_config(tenant_id)
    if cfg is None:
        raise SsoError(400, GENERIC_REFUSAL, "SSO removed during the flow")
    meta = metadata(cfg.issuer)
    session = OAuth2Session(cfg.client_id, _client_secret(cfg), token_endpoint_auth_method="client_secret_basic",
                            redirect_uri=flow["redirect_uri"])
    try:
        token = session.fetch_token(meta["token_endpoint"], grant_type="authorization_code", code=code,
                                    code_verifier=flow["code_verifier"], timeout=HTTP_TIMEOUT_S)
    except (AuthlibBaseError, requests.RequestException, ValueError) as exc:
        raise SsoError(400, "Your organisation's sign-in service did not accept this sign-in. Start again.",
                       f"code exchange refused: {type(exc).__name__} {getattr(exc, 'error', '')}") from None
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoError(400, GENERIC_REFUSAL, "no id_token in the token response")
    try:
        try:
            claims = validate_id_token(id_token, jwks=_jwks(meta["jwks_uri"]), issuer=cfg.issuer,
                                       client_id=cfg.client_id, nonce=flow["nonce"], now=now)
        except JoseError as exc:
            if type(exc).__name__ not in ("InvalidKeyIdError", "MissingKeyError", "BadSignatureError"):
                raise
            # the provider may have rotated its keys since they were cached: fetch them once more
            claims = validate_id_token(id_token, jwks=_jwks(meta["jwks_uri"], fresh=True), issuer=cfg.issuer,
                                       client_id=cfg.client_id, nonce=flow["nonce"], now=now)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoError(400, "The sign-in could not be verified. Start again.",
                       f"ID token refused: {type(exc).__name__} {getattr(exc, 'claim', '')}") from None
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SsoError(403, "Your organisation's sign-in service did not give an e-mail address.", "no email claim")
    if claims.get("email_verified") is not True:
        raise SsoError(403, "Your e-mail address is not verified at your organisation's sign-in service.",
                       "email_verified is not true")
    try:
        email = users.normalise_email(email)
    except users.UserError:
        raise SsoError(403, "This e-mail address may not sign in here.", "email does not normalise") from None
    if email.rsplit("@", 1)[1] not in cfg.allowed_domains:
        raise SsoError(403, "This e-mail address may not sign in here.", "email domain not allowed")
    return Identity(tenant_id, email, str(claims["sub"]), str(claims.get("name") or "")[:100])


def user_for(identity: Identity, *, now: dt.datetime) -> users.ConsoleUser:
    """The tenant's user of the identity's e-mail; created (``created_by: "sso"``, the configured role, every
    site) when the tenant allows it and the address has none.

    The provider's subject is remembered on the user (``oidc_subjects: {subject_slot(issuer): sub}``) at the first
    single sign-on: ``iss`` and ``sub`` together are the only stable identifier of a person (OpenID Connect Core
    1.0 §5.7), so an address the provider later gives to someone else does not open the first person's account.

    Raises:
        SsoError: 403 when there is no such user (and none may be created), the user is disabled, or the
            provider's subject differs from the one the user first signed in with.
    """
    cfg = get_config(identity.tenant_id)
    if cfg is None:
        raise SsoError(400, GENERIC_REFUSAL, "SSO removed during the flow")
    uid = users.user_id_of(identity.email)
    ref = users.users_col(identity.tenant_id).document(uid)
    snap = ref.get()
    slot = f"oidc_subjects.{subject_slot(cfg.issuer)}"
    if snap.exists:
        user = users.get_user(identity.tenant_id, uid)
        if user is None:
            raise SsoError(403, "This account is disabled. Ask an administrator of your organisation.",
                           "user disabled")
        known = (snap.to_dict().get("oidc_subjects") or {}).get(subject_slot(cfg.issuer))
        if known is None:
            ref.update({slot: identity.subject})
        elif not hmac.compare_digest(str(known), identity.subject):
            raise SsoError(403, "This e-mail address belongs to another person at your organisation's sign-in "
                                "service than the one it was first used by. Ask an administrator.",
                           "subject differs from the one this user first signed in with")
        return user
    if not cfg.auto_create:
        raise SsoError(403, "There is no account for this e-mail address here. Ask an administrator to add you.",
                       "no user and auto-create off")
    try:
        users.put_user(identity.tenant_id, email=identity.email, role=cfg.auto_create_role,
                       name=identity.name or None, created_by="sso", now=now)
    except users.UserError:  # a name from the provider the console does not accept: the address's own part
        users.put_user(identity.tenant_id, email=identity.email, role=cfg.auto_create_role, created_by="sso",
                       now=now)
    audit.record(identity.tenant_id, actor={"kind": "system", "id": "sso", "name": "single sign-on"},
                 action="user.create", target_kind="user", target_id=uid,
                 details={"role": cfg.auto_create_role, "via": "oidc"}, now=now)
    ref.update({slot: identity.subject})
    user = users.get_user(identity.tenant_id, uid)
    assert user is not None
    return user


def subject_slot(issuer: str) -> str:
    """The key under a user's ``oidc_subjects`` for ``issuer``: the first 16 hex of its SHA-256 (a field name
    without dots or slashes)."""
    return hashlib.sha256(issuer.encode()).hexdigest()[:16]
