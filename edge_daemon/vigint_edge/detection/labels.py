"""Class label maps: the built-in COCO map and a loader for user-supplied maps.

``COCO_LABELS`` is the COCO 2017 detection label map in its original 91-id numbering (ids 1..90 are used by
the 80 annotated categories; ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 and 91 belong to categories that were
never annotated and have no entry). Source: TensorFlow Object Detection API
``research/object_detection/data/mscoco_label_map.pbtxt`` (display names), which is also the map of
tfjs-models ``coco-ssd/src/classes.ts`` used with the tfjs coco-ssd model this project converts; the model's
score column ``k`` is COCO id ``k + 1``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

COCO_LABELS: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}


def label_for(labels: dict[int, str], class_id: int) -> str:
    """Name of ``class_id`` in ``labels``, or ``"class_<id>"`` when the map has no entry for it."""
    return labels.get(class_id) or f"class_{class_id}"


def load_label_map(path: Path) -> dict[int, str]:
    """Reads a user-supplied label map.

    Two formats are accepted:

    * JSON object ``{"1": "person", "2": "bicycle", ...}`` (keys are integer class ids as strings or
      numbers), or a JSON list ``["person", "bicycle", ...]`` whose index is the id;
    * plain text, one label per line, the first line being id 0 (blank lines keep their id, so a map with
      gaps can be written; lines starting with ``#`` are comments and take no id).

    Args:
        path: The file; ``.json`` files (or files whose content starts with ``{`` / ``[``) are read as JSON.

    Returns:
        Map class id -> label name.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The content is not one of the formats above (message names the file and the problem).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"label map {path}: invalid JSON ({exc})") from exc
        if isinstance(data, list):
            items = enumerate(data)
        elif isinstance(data, dict):
            items = data.items()
        else:
            raise ValueError(f"label map {path}: expected a JSON object or list, got {type(data).__name__}")
        labels: dict[int, str] = {}
        for key, name in items:
            try:
                class_id = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"label map {path}: key {key!r} is not an integer class id") from None
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"label map {path}: label for id {class_id} must be a non-empty string")
            labels[class_id] = name.strip()
        if not labels:
            raise ValueError(f"label map {path}: no labels")
        return labels
    labels = {}
    class_id = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        if line:
            labels[class_id] = line
        class_id += 1
    if not labels:
        raise ValueError(f"label map {path}: no labels")
    return labels
