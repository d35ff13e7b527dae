"""Vendored browser libraries: ``python -m infra.vendor`` refreshes them, ``--check`` verifies.

The link page and the console load their scripts and styles from our own origin, never from a CDN: hls.js
(``functions/vigint/templates/video_page.html``, the console's player), htmx and Pico CSS (the console,
``functions/vigint/templates/console/``). axe-core is vendored for the browser tests only (``tests/browser/``,
never served). Each package's pinned version and npm tarball integrity are in ``vendor/package.json`` and
``package-lock.json`` under ``functions/vigint/static/`` (written by ``npm install --package-lock-only``).
Refreshing, for each package of ``PACKAGES``:

1. ``npm pack <name>@<locked version>`` into a temporary directory;
2. the tarball's SHA-512 must equal the lock's ``integrity`` (Subresource-Integrity form ``sha512-<base64>``);
3. the listed members (the minified file and the licence) are extracted to their targets, and their SHA-256
   recorded in ``vendor/SHA256SUMS`` under a ``# name@version integrity`` line.

To move to another version: change ``package.json``, run ``npm install --package-lock-only --ignore-scripts`` in
``static/vendor/``, then ``python -m infra.vendor``.

``--check`` needs no network: it verifies the committed files against ``vendor/SHA256SUMS`` and that the sums
belong to the locked versions (the tests run it).
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
# package -> {tarball member: target path relative to the repository}
PACKAGES = {
    "hls.js": {"package/dist/hls.light.min.js": "functions/vigint/static/hls.light.min.js",
               "package/LICENSE": "functions/vigint/static/vendor/hls.js.LICENSE"},
    "htmx.org": {"package/dist/htmx.min.js": "functions/vigint/static/console/vendor/htmx.min.js",
                 "package/LICENSE": "functions/vigint/static/console/vendor/htmx.org.LICENSE"},
    "@picocss/pico": {"package/css/pico.min.css": "functions/vigint/static/console/vendor/pico.min.css",
                      "package/LICENSE.md": "functions/vigint/static/console/vendor/pico.LICENSE.md"},
    "axe-core": {"package/axe.min.js": "tests/browser/vendor/axe.min.js",
                 "package/LICENSE": "tests/browser/vendor/axe-core.LICENSE"},
}
PACKAGE = "hls.js"


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


def _pack(package: str, version: str, integrity: str, tmp: str) -> Path:
    proc = subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=tmp,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise VendorError(f"npm pack {package}@{version} failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-2000:]}")
    tarballs = [t for t in Path(tmp).glob("*.tgz")]
    if len(tarballs) != 1:
        raise VendorError(f"npm pack left {len(tarballs)} tarballs")
    data = tarballs[0].read_bytes()
    if sri_sha512(data) != integrity:
        raise VendorError(f"{tarballs[0].name}: integrity {sri_sha512(data)} is not the locked {integrity}")
    return tarballs[0]


def refresh(repo: Path = REPO, vendor_dir: Path = VENDOR, packages: dict = PACKAGES) -> dict[str, str]:
    """Fetches each locked package with ``npm pack``, checks it, and writes the vendored files.

    Returns:
        ``{path under repo: sha256 hex}`` of the files written.

    Raises:
        VendorError: npm failed, a tarball's integrity differs from the lock, or a file is missing from it.
    """
    sums_all, lines = {}, []
    for package, files in packages.items():
        version, integrity = locked(package, vendor_dir=vendor_dir)
        with tempfile.TemporaryDirectory(prefix="vigint-vendor-") as tmp:
            tarball = _pack(package, version, integrity, tmp)
            sums = {}
            with tarfile.open(tarball, "r:gz") as tar:
                for member, target in files.items():
                    f = tar.extractfile(member)
                    if f is None:
                        raise VendorError(f"{member} is not in {tarball.name}")
                    content = f.read()
                    (repo / target).parent.mkdir(parents=True, exist_ok=True)
                    (repo / target).write_bytes(content)
                    sums[target] = hashlib.sha256(content).hexdigest()
        lines += [f"# {package}@{version} {integrity}"] + [f"{h}  {p}" for p, h in sorted(sums.items())]
        sums_all.update(sums)
    _sums_path(vendor_dir).write_text("\n".join(lines) + "\n")
    return sums_all


def check(repo: Path = REPO, vendor_dir: Path = VENDOR, packages: dict = PACKAGES) -> None:
    """Verifies the vendored files offline against ``vendor/SHA256SUMS`` and the lock.

    Raises:
        VendorError: the sums were made for another version or tarball than the lock pins, a file is missing,
            or its SHA-256 differs.
    """
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in _sums_path(vendor_dir).read_text().splitlines():
        if line.startswith("# "):
            current = line[2:]
            sections[current] = {}
        elif line.strip() and current is not None:
            digest, path = line.split(None, 1)
            sections[current][path.strip()] = digest
    for package, files in packages.items():
        version, integrity = locked(package, vendor_dir=vendor_dir)
        listed = sections.get(f"{package}@{version} {integrity}")
        if listed is None:
            raise VendorError(f"{_sums_path(vendor_dir)} has no sums for {package}@{version}: "
                              "run python -m infra.vendor")
        if set(listed) != set(files.values()):
            raise VendorError(f"{_sums_path(vendor_dir)} lists {sorted(listed)} for {package}, "
                              f"expected {sorted(files.values())}")
        for path, digest in listed.items():
            target = repo / path
            if not target.is_file():
                raise VendorError(f"{target} is missing: run python -m infra.vendor")
            if hashlib.sha256(target.read_bytes()).hexdigest() != digest:
                raise VendorError(f"{target} differs from {package}@{version}: run python -m infra.vendor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.vendor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files offline, change nothing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check()
            print(f"vendored {', '.join(PACKAGES)} match the lock")
        else:
            for path, digest in sorted(refresh().items()):
                print(f"{digest}  {path}")
    except VendorError as exc:
        print(f"infra.vendor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
