"""Vendored browser libraries of the link page: ``python -m infra.vendor`` refreshes them, ``--check`` verifies.

The link page (``functions/vigint/templates/video_page.html``) loads hls.js from ``/v/static/`` and never from a
CDN. The pinned version and its npm tarball integrity are in ``functions/vigint/static/vendor/package.json`` and
``package-lock.json`` (written by ``npm install --package-lock-only``). Refreshing:

1. ``npm pack hls.js@<locked version>`` into a temporary directory;
2. the tarball's SHA-512 must equal the lock's ``integrity`` (Subresource-Integrity form ``sha512-<base64>``);
3. ``package/dist/hls.light.min.js`` and ``package/LICENSE`` are extracted into ``functions/vigint/static/``
   (``hls.light.min.js``, ``vendor/hls.js.LICENSE``) and their SHA-256 recorded in ``vendor/SHA256SUMS``.

To move to another version: change ``package.json``, run ``npm install --package-lock-only --ignore-scripts`` in
``static/vendor/``, then ``python -m infra.vendor``.

``--check`` needs no network: it verifies the committed files against ``vendor/SHA256SUMS`` and that the sums
belong to the locked version (the tests run it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATIC = REPO / "functions" / "vigint" / "static"
VENDOR = STATIC / "vendor"
PACKAGE = "hls.js"
# tarball member -> path under STATIC
FILES = {"package/dist/hls.light.min.js": "hls.light.min.js", "package/LICENSE": "vendor/hls.js.LICENSE"}


class VendorError(RuntimeError):
    """npm failed, the tarball does not match the lock, or a vendored file differs from its recorded sum."""


def locked(package: str = PACKAGE, vendor_dir: Path = VENDOR) -> tuple[str, str]:
    """``(version, integrity)`` of ``package`` in ``vendor_dir/package-lock.json`` (lockfile version 2 or 3).

    Raises:
        VendorError: the package is not in the lock, or the lock does not pin the version package.json asks for.
    """
    lock = json.loads((vendor_dir / "package-lock.json").read_text())
    wanted = json.loads((vendor_dir / "package.json").read_text())["dependencies"][package]
    entry = (lock.get("packages") or {}).get(f"node_modules/{package}")
    if not entry or "integrity" not in entry:
        raise VendorError(f"{package} is not in {vendor_dir / 'package-lock.json'}")
    if entry["version"] != wanted:
        raise VendorError(f"package.json pins {package} {wanted} but the lock has {entry['version']}: "
                          "run npm install --package-lock-only --ignore-scripts in " + str(vendor_dir))
    return entry["version"], entry["integrity"]


def sri_sha512(data: bytes) -> str:
    """Subresource-Integrity form of SHA-512, as npm writes ``integrity``: ``sha512-<base64>``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _sums_path(vendor_dir: Path) -> Path:
    return vendor_dir / "SHA256SUMS"


def refresh(static_dir: Path = STATIC, vendor_dir: Path = VENDOR) -> dict[str, str]:
    """Fetches the locked hls.js with ``npm pack``, checks it, and writes the vendored files.

    Returns:
        ``{path under static_dir: sha256 hex}`` of the files written.

    Raises:
        VendorError: npm failed, the tarball's integrity differs from the lock, or a file is missing from it.
    """
    version, integrity = locked(vendor_dir=vendor_dir)
    with tempfile.TemporaryDirectory(prefix="vigint-vendor-") as tmp:
        proc = subprocess.run(["npm", "pack", "--silent", f"{PACKAGE}@{version}"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise VendorError(f"npm pack {PACKAGE}@{version} failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-2000:]}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise VendorError(f"npm pack left {len(tarballs)} tarballs")
        data = tarballs[0].read_bytes()
        if sri_sha512(data) != integrity:
            raise VendorError(f"{tarballs[0].name}: integrity {sri_sha512(data)} is not the locked {integrity}")
        sums = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member, target in FILES.items():
                f = tar.extractfile(member)
                if f is None:
                    raise VendorError(f"{member} is not in {tarballs[0].name}")
                content = f.read()
                (static_dir / target).parent.mkdir(parents=True, exist_ok=True)
                (static_dir / target).write_bytes(content)
                sums[target] = hashlib.sha256(content).hexdigest()
    lines = [f"# {PACKAGE}@{version} {integrity}"] + [f"{h}  {p}" for p, h in sorted(sums.items())]
    _sums_path(vendor_dir).write_text("\n".join(lines) + "\n")
    return sums


def check(static_dir: Path = STATIC, vendor_dir: Path = VENDOR) -> None:
    """Verifies the vendored files offline against ``vendor/SHA256SUMS`` and the lock.

    Raises:
        VendorError: the sums were made for another version or tarball than the lock pins, a file is missing,
            or its SHA-256 differs.
    """
    version, integrity = locked(vendor_dir=vendor_dir)
    lines = _sums_path(vendor_dir).read_text().splitlines()
    if not lines or lines[0] != f"# {PACKAGE}@{version} {integrity}":
        raise VendorError(f"{_sums_path(vendor_dir)} is not for {PACKAGE}@{version}: run python -m infra.vendor")
    listed = {}
    for line in lines[1:]:
        digest, path = line.split(None, 1)
        listed[path.strip()] = digest
    if set(listed) != set(FILES.values()):
        raise VendorError(f"{_sums_path(vendor_dir)} lists {sorted(listed)}, expected {sorted(FILES.values())}")
    for path, digest in listed.items():
        target = static_dir / path
        if not target.is_file():
            raise VendorError(f"{target} is missing: run python -m infra.vendor")
        if hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            raise VendorError(f"{target} differs from {PACKAGE}@{version}: run python -m infra.vendor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.vendor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files offline, change nothing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check()
            print(f"vendored {PACKAGE} matches the lock")
        else:
            for path, digest in sorted(refresh().items()):
                print(f"{digest}  functions/vigint/static/{path}")
    except VendorError as exc:
        print(f"infra.vendor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
