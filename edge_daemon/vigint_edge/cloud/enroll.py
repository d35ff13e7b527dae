"""``vigint-edge enroll``: a one-time enrollment code from the tenant becomes this box's credentials.

``POST {api_url}/v1/enroll {"code": ...}`` answers ``{tenant_id, device_id, key_version, secret}`` once per
code. The secret goes to a file with mode 0600 (written atomically); the ids, key version and URL go into the
``device`` section of the configuration file, whose other sections are kept.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import requests
import yaml


class EnrollError(RuntimeError):
    """The code was refused or the answer was unusable (the message says which; never the secret)."""


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Writes ``data`` to ``path`` atomically. An existing file keeps its owner, group and mode (what the
    package or the operator set up stays as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = None
    if path.exists():
        st = path.stat()
        owner, mode = (st.st_uid, st.st_gid), st.st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if owner is not None and hasattr(os, "fchown"):
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def enroll(code: str, api_url: str, config_path: Path, secret_path: Path, timeout: float = 15) -> dict:
    """Redeems ``code`` and writes the credentials.

    Returns:
        ``{tenant_id, device_id, key_version}`` (no secret).

    Raises:
        EnrollError: refused (401: unknown, used or expired code), unreachable, or a malformed answer.
    """
    try:
        r = requests.post(f"{api_url.rstrip('/')}/v1/enroll", json={"code": code.strip()}, timeout=timeout)
    except requests.RequestException as exc:
        raise EnrollError(f"cannot reach {api_url}: {type(exc).__name__}") from None
    if r.status_code == 401:
        raise EnrollError("the code is unknown, already used or expired; ask for a new one")
    if r.status_code != 200:
        raise EnrollError(f"edge_api answered {r.status_code}")
    try:
        creds = r.json()
        device = {"tenant_id": creds["tenant_id"], "device_id": creds["device_id"],
                  "key_version": int(creds["key_version"]), "api_url": api_url.rstrip("/"),
                  "secret_file": str(secret_path)}
        secret = creds["secret"]
    except (ValueError, KeyError, TypeError):
        raise EnrollError("edge_api's answer is not a credentials object") from None
    _atomic_write(secret_path, secret.encode(), 0o600)
    raw = {}
    if config_path.exists():
        raw = yaml.safe_load(config_path.read_text()) or {}
    raw["device"] = {**(raw.get("device") or {}), **device}
    raw.setdefault("cameras", [])
    _atomic_write(config_path, yaml.safe_dump(raw, sort_keys=False).encode(), 0o640)
    return {k: device[k] for k in ("tenant_id", "device_id", "key_version")}
