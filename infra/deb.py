"""Builds the Debian package ``vigint-edge`` (amd64): the edge daemon in a private virtualenv.

What goes in (``edge_daemon/debian/`` holds the hand-written parts):

* ``/usr/lib/vigint-edge/``: a virtualenv created by Debian's ``/usr/bin/python3.11 -m venv --without-pip``
  holding the pinned wheels of ``edge_daemon/requirements.txt`` (with ``constraints.txt``) and the
  ``vigint-edge`` wheel built from ``edge_daemon/``. It is built in a staging directory and relocated
  (``relocate``). No ``.pyc`` is shipped: postinst byte-compiles, prerm removes them.
* ``/usr/bin/vigint-edge``: a shell wrapper running ``python3 -I -u -m vigint_edge.cli`` in the venv.
* ``/usr/share/vigint-edge/models/ssdlite_mobilenet_v2_coco/``: the converted default detector
  (``infra.assets.ensure_default_model``; converted once into ``.local/models/`` if absent).
* ``/etc/vigint-edge/config.yaml`` (conffile), ``/lib/systemd/system/vigint-edge.service``, maintainer
  scripts, ``/usr/share/doc/vigint-edge/`` (copyright, changelog.Debian.gz, README.Debian), the man page and
  the lintian overrides.

Reproducible: ``SOURCE_DATE_EPOCH`` is the last git commit's time (or the environment's), every mtime is
set to it, owners are root:root (``dpkg-deb --root-owner-group``), modes are normalised (0755 / 0644),
dpkg-deb writes sorted archives, gzip'd files carry no name or time, and the build fails if the staging
path leaks into any shipped file. ``Depends:`` in ``debian/control`` is checked against the ELF scan of the
venv: every shared library the bundled binaries need from outside the venv must map to a listed package,
and the highest GLIBC symbol version must not exceed the declared ``libc6 (>= ...)``.

CLI::

    python -m infra.deb build [--out DIR] [--force]

prints the path of the ``.deb``. A package already built from the same inputs (sha256 over the sources,
requirements, debian/ files, model and SOURCE_DATE_EPOCH, stored beside it as ``<deb>.inputs``) is reused
unless ``--force``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from base64 import urlsafe_b64encode
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
EDGE_DIR = REPO / "edge_daemon"
DEBIAN_DIR = EDGE_DIR / "debian"
CONSTRAINTS = REPO / "constraints.txt"
DEFAULT_OUT = REPO / ".local" / "deb"

PACKAGE = "vigint-edge"
ARCH = "amd64"
#: Where the virtualenv lives on the target (FHS: package-private programs under /usr/lib).
PREFIX = "/usr/lib/vigint-edge"
MODEL_NAME = "ssdlite_mobilenet_v2_coco"
MODEL_DEST = f"/usr/share/vigint-edge/models/{MODEL_NAME}"
MODEL_FILES = ("model.xml", "model.bin", "labels.json", "model.json")
#: The interpreter the venv is built against and runs on (Depends: python3.11).
SYSTEM_PYTHON = "/usr/bin/python3.11"
UNIT = "vigint-edge.service"
#: /usr/bin/vigint-edge. -I (isolated): PYTHONPATH, user site-packages and the current directory cannot
#: change what the daemon imports; -u: log lines reach the journal as they are written.
WRAPPER = f"""#!/bin/sh
# vigint-edge: the edge daemon's command line, run in its private virtualenv ({PREFIX}).
exec {PREFIX}/bin/python3 -I -u -m vigint_edge.cli "$@"
"""

#: Shared libraries the bundled wheels may take from the system, and the Debian package providing each.
SYSTEM_SONAMES = {
    "libc.so.6": "libc6", "libm.so.6": "libc6", "libmvec.so.1": "libc6", "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6", "librt.so.1": "libc6", "ld-linux-x86-64.so.2": "libc6",
    "libutil.so.1": "libc6", "libresolv.so.2": "libc6",
    "libgcc_s.so.1": "libgcc-s1", "libstdc++.so.6": "libstdc++6", "libz.so.1": "zlib1g",
}
#: Libraries loaded only by optional parts (OpenVINO's GPU plugin); they belong in Suggests:.
OPTIONAL_SONAMES = {"libOpenCL.so.1": "ocl-icd-libopencl1"}


class BuildError(RuntimeError):
    """The package could not be built or failed one of its checks."""


# ------------------------------------------------------------------------------------------ inputs

def source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH`` if set, else the committer time of the last git commit (seconds, UTC).

    Raises:
        BuildError: neither is available.
    """
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"SOURCE_DATE_EPOCH is not set and git log failed: {out.stderr.strip()}")
    return int(out.stdout.strip())


def package_version(changelog: Path = DEBIAN_DIR / "changelog") -> str:
    """The version of the newest ``debian/changelog`` entry, e.g. ``0.1.0-1``."""
    first = changelog.read_text().splitlines()[0]
    m = re.match(rf"^{re.escape(PACKAGE)} \(([^)]+)\)", first)
    if not m:
        raise BuildError(f"{changelog}: first line is not '{PACKAGE} (VERSION) ...'")
    return m.group(1)


def parse_control(path: Path = DEBIAN_DIR / "control") -> list[dict[str, str]]:
    """Parses a deb822 file (``debian/control``) into its stanzas; ``#`` comment lines are dropped and
    continuation lines are kept with their leading space (Description) or joined (other fields)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if line[0] in " \t":
            if key is None:
                raise BuildError(f"{path}: continuation line without a field: {line!r}")
            current[key] += "\n" + line
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def model_dir() -> Path:
    """The converted default model in the checkout (converted from the cached tfjs model if absent)."""
    from infra import assets

    return assets.ensure_default_model().parent


def _input_files(model: Path) -> list[Path]:
    files = [CONSTRAINTS, Path(__file__).resolve()]
    files += [p for p in EDGE_DIR.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
              and not any(part.endswith(".egg-info") or part == "build" for part in p.relative_to(EDGE_DIR).parts)]
    files += [model / f for f in MODEL_FILES]
    return sorted(set(files))


def input_digest(model: Path, epoch: int) -> str:
    """sha256 over everything the package is made from: relative path and content of each input file
    (edge_daemon/ incl. debian/, constraints.txt, this module, the model) and SOURCE_DATE_EPOCH."""
    h = hashlib.sha256(f"epoch={epoch}\n".encode())
    for f in _input_files(model):
        rel = f.relative_to(REPO) if f.is_relative_to(REPO) else Path("model") / f.name
        h.update(f"{rel}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


# --------------------------------------------------------------------------------------- the venv

def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    logger.debug("run: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def build_venv(venv: Path, work: Path) -> None:
    """Creates the venv at ``venv`` (staging path) with the pinned runtime wheels and vigint-edge itself.

    Raises:
        BuildError: no ``/usr/bin/python3.11`` (apt-get install python3 python3-venv), or pip failed.
    """
    if not Path(SYSTEM_PYTHON).exists():
        raise BuildError(f"{SYSTEM_PYTHON} is missing: apt-get update && apt-get install -y python3 python3-venv")
    _run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)])
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python3"), "install", "--quiet",
           "--no-compile", "--no-warn-script-location", "--disable-pip-version-check"]
    _run(pip + ["--only-binary", ":all:", "-r", str(EDGE_DIR / "requirements.txt"), "-c", str(CONSTRAINTS)])
    # vigint-edge itself: a wheel built from a clean copy of edge_daemon/ (so no build/ or *.egg-info
    # appears in the shared source tree), installed without dependencies (all pinned above).
    src = work / "src"
    shutil.copytree(EDGE_DIR, src, ignore=shutil.ignore_patterns("debian", "__pycache__", "*.pyc", "build",
                                                                 "*.egg-info"))
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
          "--disable-pip-version-check", "-w", str(wheels), str(src)])
    wheel = next(wheels.glob("vigint_edge-*.whl"))
    _run(pip + ["--no-deps", str(wheel)])


def _record_hash(data: bytes) -> str:
    return "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def relocate(venv: Path, prefix: str = PREFIX) -> None:
    """Makes the staged venv correct at ``prefix``.

    bin/ keeps only the interpreter links (python3 -> ``/usr/bin/python3.11``): the console scripts pip
    wrote (ours and the dependencies' ovc, f2py, ...) and the activate scripts embed the staging path and
    are not needed, since ``/usr/bin/vigint-edge`` is a wrapper running ``python3 -m vigint_edge.cli``.
    ``pyvenv.cfg``'s ``command`` is rewritten, ``direct_url.json`` (it names the temporary wheel) and any
    byte-code are removed, and each ``RECORD`` is rewritten to match.
    """
    changed: dict[Path, bytes | None] = {}
    for f in sorted((venv / "bin").iterdir()):
        if f.name.startswith("python") and f.is_symlink():
            continue
        changed[f] = None
        f.unlink()
    # One absolute link to the system interpreter; python and python3.11 point at it.
    for name in ("python", "python3", "python3.11"):
        link = venv / "bin" / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(SYSTEM_PYTHON if name == "python3" else "python3")
    cfg = venv / "pyvenv.cfg"
    lines = [f"command = {SYSTEM_PYTHON} -m venv --without-pip {prefix}" if ln.startswith("command =") else ln
             for ln in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")
    for d in list(venv.rglob("__pycache__")):
        shutil.rmtree(d)
    for f in venv.rglob("direct_url.json"):
        f.unlink()
        changed[f] = None
    site = next((venv / "lib").glob("python3.*/site-packages"))
    for record in sorted(site.glob("*.dist-info/RECORD")):
        out = []
        for line in record.read_text().splitlines():
            name = line.split(",", 1)[0]
            target = Path(os.path.normpath(record.parent.parent / name)) if name else None
            if target is not None and target in changed:
                data = changed[target]
                if data is None:
                    continue
                line = f"{name},{_record_hash(data)},{len(data)}"
            out.append(line)
        record.write_text("\n".join(out) + "\n")


# ----------------------------------------------------------------------------------- system deps

def scan_elf_needs(root: Path) -> tuple[dict[str, set[str]], str]:
    """Shared libraries that ELF files under ``root`` need from outside it, and the highest GLIBC_ symbol
    version they reference.

    Returns:
        (soname -> set of relative paths needing it, highest ``GLIBC_x.y`` as "x.y").
    """
    provided: set[str] = set()
    needs: dict[str, set[str]] = {}
    glibc = (0, 0)
    for f in sorted(root.rglob("*")):
        if f.is_symlink() or not f.is_file():
            continue
        with f.open("rb") as fh:
            if fh.read(4) != b"\x7fELF":
                continue
        provided.add(f.name)
        dump = _run(["objdump", "-p", str(f)]).stdout
        for soname in re.findall(r"^\s+NEEDED\s+(\S+)$", dump, re.M):
            needs.setdefault(soname, set()).add(str(f.relative_to(root)))
        for major, minor in re.findall(r"\bGLIBC_(\d+)\.(\d+)\b", dump):
            glibc = max(glibc, (int(major), int(minor)))
    return {k: v for k, v in needs.items() if k not in provided}, f"{glibc[0]}.{glibc[1]}"


def _dep_names(field: str) -> dict[str, str]:
    """``Depends:`` value -> {package: version constraint or ""} (alternatives taken as listed)."""
    deps = {}
    for item in re.split(r"[,|]", field):
        m = re.match(r"\s*([a-z0-9.+-]+)\s*(?:\(([^)]*)\))?", item)
        if m:
            deps[m.group(1)] = (m.group(2) or "").strip()
    return deps


def check_system_deps(venv: Path, binary: dict[str, str]) -> None:
    """Fails unless every library the venv needs from the system is covered by Depends/Suggests.

    Raises:
        BuildError: an unknown library, a package missing from ``Depends:``, or a GLIBC_ version newer
            than the declared ``libc6 (>= ...)``.
    """
    needs, glibc = scan_elf_needs(venv)
    depends = _dep_names(binary.get("Depends", ""))
    suggests = _dep_names(binary.get("Suggests", ""))
    problems = []
    for soname, users in sorted(needs.items()):
        if soname in SYSTEM_SONAMES:
            if SYSTEM_SONAMES[soname] not in depends:
                problems.append(f"{soname} ({SYSTEM_SONAMES[soname]}) is needed but not in Depends")
        elif soname in OPTIONAL_SONAMES:
            if OPTIONAL_SONAMES[soname] not in suggests:
                problems.append(f"{soname} ({OPTIONAL_SONAMES[soname]}) should be in Suggests")
        else:
            problems.append(f"{soname} needed by {sorted(users)[:3]} maps to no known Debian package")
    declared = re.match(r">=\s*([\d.]+)", depends.get("libc6", ""))
    if not declared or tuple(map(int, declared.group(1).split("."))) < tuple(map(int, glibc.split("."))):
        problems.append(f"bundled binaries need GLIBC_{glibc}; Depends has libc6 ({depends.get('libc6')})")
    if problems:
        raise BuildError("system dependencies:\n  " + "\n  ".join(problems))
    logger.info("system libraries needed: %s; highest GLIBC_%s", ", ".join(sorted(needs)), glibc)


# ------------------------------------------------------------------------------------ the package

def _gzip_n(src: Path, dest: Path) -> None:
    """``gzip -9n``: no file name and a zero timestamp in the header (lintian: package-contains-timestamped-gzip)."""
    with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9,
                                               mtime=0) as gz:
        gz.write(src.read_bytes())


def stage(root: Path, model: Path) -> None:
    """Lays out every shipped file under ``root`` (the venv is already at ``root/usr/lib/vigint-edge``)."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/vigint-edge").write_text(WRAPPER)
    (root / "usr/bin/vigint-edge").chmod(0o755)
    dest = root / MODEL_DEST.lstrip("/")
    dest.mkdir(parents=True)
    for f in MODEL_FILES:
        shutil.copyfile(model / f, dest / f)
    (root / "etc/vigint-edge").mkdir(parents=True)
    shutil.copyfile(DEBIAN_DIR / "config.yaml", root / "etc/vigint-edge/config.yaml")
    (root / "lib/systemd/system").mkdir(parents=True)
    shutil.copyfile(DEBIAN_DIR / UNIT, root / "lib/systemd/system" / UNIT)
    doc = root / "usr/share/doc" / PACKAGE
    doc.mkdir(parents=True)
    shutil.copyfile(DEBIAN_DIR / "copyright", doc / "copyright")
    shutil.copyfile(DEBIAN_DIR / "README.Debian", doc / "README.Debian")
    _gzip_n(DEBIAN_DIR / "changelog", doc / "changelog.Debian.gz")
    man = DEBIAN_DIR / "vigint-edge.1"
    if man.exists():
        (root / "usr/share/man/man1").mkdir(parents=True)
        _gzip_n(man, root / "usr/share/man/man1/vigint-edge.1.gz")
    overrides = DEBIAN_DIR / f"{PACKAGE}.lintian-overrides"
    if overrides.exists():
        (root / "usr/share/lintian/overrides").mkdir(parents=True)
        shutil.copyfile(overrides, root / "usr/share/lintian/overrides" / PACKAGE)


def normalise(root: Path, epoch: int) -> None:
    """Modes: 0755 for directories and executables, 0644 for other files and for everything inside the
    venv's ``lib/`` (shared objects and modules are loaded, never executed; wheels ship some with x bits);
    every mtime = ``epoch``."""
    venv_lib = root / PREFIX.lstrip("/") / "lib"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        in_lib = Path(dirpath).is_relative_to(venv_lib)
        for name in sorted(filenames) + dirnames:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            mode = p.stat().st_mode
            p.chmod(0o755 if p.is_dir() or (mode & 0o111 and not in_lib) else 0o644)
    root.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(Path(dirpath) / name, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def _installed_size_kib(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root / "DEBIAN":
            continue
        total += 1  # each directory counts one KiB, as dpkg-gencontrol counts it
        for name in filenames:
            p = Path(dirpath) / name
            total += 1 if p.is_symlink() else (p.stat().st_size + 1023) // 1024
    return total


def write_control(root: Path, version: str, stanzas: list[dict[str, str]]) -> dict[str, str]:
    """Writes ``DEBIAN/`` (control, conffiles, md5sums, maintainer scripts) and returns the binary stanza."""
    source, binary = stanzas[0], next(s for s in stanzas if s.get("Package") == PACKAGE)
    meta = root / "DEBIAN"
    meta.mkdir()
    fields = {"Package": PACKAGE, "Version": version, "Architecture": binary["Architecture"],
              "Maintainer": source["Maintainer"], "Installed-Size": str(_installed_size_kib(root))}
    for key in ("Depends", "Recommends", "Suggests"):
        if binary.get(key):
            fields[key] = " ".join(binary[key].split())
    fields.update({"Section": binary.get("Section", source["Section"]),
                   "Priority": binary.get("Priority", source["Priority"])})
    if source.get("Homepage"):
        fields["Homepage"] = source["Homepage"]
    fields["Description"] = binary["Description"]
    (meta / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    conffiles = sorted("/" + str(p.relative_to(root)) for p in (root / "etc").rglob("*") if p.is_file())
    (meta / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for script in ("postinst", "prerm", "postrm"):
        shutil.copyfile(DEBIAN_DIR / script, meta / script)
        (meta / script).chmod(0o755)
    sums = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) == root and d == "DEBIAN"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            digest = hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
            sums.append(f"{digest}  {p.relative_to(root)}\n")
    (meta / "md5sums").write_text("".join(sorted(sums, key=lambda s: s[34:])))
    return binary


def assert_no_leak(root: Path, needle: str) -> None:
    """Fails if ``needle`` (the staging path) occurs in any shipped file: it would break relocation and
    make the package depend on where it was built.

    Raises:
        BuildError: naming up to five files that contain it.
    """
    token = needle.encode()
    hits = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink() and token in p.read_bytes():
                hits.append(str(p.relative_to(root)))
    if hits:
        raise BuildError(f"the staging path {needle} leaks into {len(hits)} file(s): {sorted(hits)[:5]}")


def build(out_dir: Path = DEFAULT_OUT, *, force: bool = False) -> Path:
    """Builds (or reuses) ``<out_dir>/vigint-edge_<version>_amd64.deb``.

    Args:
        out_dir: Where the .deb goes; ``<out_dir>/build/`` is the scratch area (replaced each build).
        force: Build even when a package from the same inputs exists.

    Returns:
        Path of the .deb.

    Raises:
        BuildError: a tool failed or a check did not pass (system deps, path leak).
    """
    started = time.monotonic()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    epoch = source_date_epoch()
    version = package_version()
    model = model_dir()
    digest = input_digest(model, epoch)
    deb = out_dir / f"{PACKAGE}_{version}_{ARCH}.deb"
    stamp = deb.with_name(deb.name + ".inputs")
    if not force and deb.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        logger.info("reusing %s (inputs %s)", deb, digest[:12])
        return deb
    stanzas = parse_control()
    work = out_dir / "build"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    venv = root / PREFIX.lstrip("/")
    venv.parent.mkdir(parents=True)
    build_venv(venv, work)
    relocate(venv)
    logger.info("venv built in %.0f s", time.monotonic() - started)
    stage(root, model)
    assert_no_leak(root, str(root))
    binary = write_control(root, version, stanzas)
    check_system_deps(venv, binary)
    normalise(root, epoch)
    tmp = deb.with_name(f".{deb.name}.tmp")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    # gzip -1: about 45 s for ~680 MB here (xz -1 took 3m45s for 25 % less). Not zstd: Debian 12's lintian
    # rejects zstd members as malformed-deb-archive.
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(root), str(tmp)], env=env)
    tmp.replace(deb)
    stamp.write_text(digest + "\n")
    shutil.rmtree(work, ignore_errors=True)
    logger.info("built %s (%.1f MB) in %.0f s", deb, deb.stat().st_size / 1e6, time.monotonic() - started)
    return deb


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m infra.deb build [--out DIR] [--force]``; prints the .deb path."""
    parser = argparse.ArgumentParser(prog="python -m infra.deb", description="Build the vigint-edge .deb")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or reuse) the package and print its path")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    b.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        deb = build(args.out, force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
