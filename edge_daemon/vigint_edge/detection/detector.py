"""Object detectors: the small interface the pipeline uses and its OpenVINO SSD implementation.

The interface follows Frigate's ``DetectionApi`` idea: one call, frame in, detections out, so another
implementation (another runtime, a test double) plugs in at the constructor of the pipeline.

``OpenVINOSSDDetector`` runs an SSD-style model and does the post-processing outside the model:

* "raw" SSD outputs, as produced by ``vigint_edge.detection.model_convert`` from the tfjs coco-ssd model: boxes
  ``[1, N, 1, 4]`` or ``[1, N, 4]`` (y1, x1, y2, x2 normalised 0..1) and scores ``[1, N, C]`` (per-class
  probabilities, column ``k`` is class id ``k + class_id_offset``, 1 for the COCO model). Each anchor keeps
  its best class (as tfjs-models coco-ssd does), then thresholds and per-class NMS are applied here.
* OpenVINO ``DetectionOutput`` models (Open Model Zoo SSDs): one output ``[1, 1, K, 7]`` rows of
  ``image_id, label, confidence, x_min, y_min, x_max, y_max`` (normalised; ``image_id < 0`` ends the list);
  NMS has been done by the model, thresholds and label filters are applied here.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import cv2
import numpy as np

from .labels import COCO_LABELS, label_for, load_label_map

logger = logging.getLogger(__name__)

#: Number of recent ``detect`` calls the rolling ``latency_ms`` figure averages over.
LATENCY_WINDOW = 100


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        label: Class name (``"person"``), from the detector's label map.
        score: Confidence 0..1.
        box: ``(x1, y1, x2, y2)`` corners in pixels of the frame given to ``detect`` (float; x to the right,
            y down, ``0 <= x1 <= x2 <= width``, ``0 <= y1 <= y2 <= height``).
    """

    label: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@runtime_checkable
class Detector(Protocol):
    """Anything that finds objects in a frame."""

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Detects objects in one frame.

        Args:
            frame_bgr: ``H x W x 3`` uint8 image in BGR order, as OpenCV decodes it.

        Returns:
            Detections, best score first, boxes in pixels of ``frame_bgr``.
        """
        ...

    def detect_async(self, frame_bgr: np.ndarray, callback: "DetectCallback") -> None:
        """Starts detection on one frame; ``callback(detections, error)`` is called once when it is done
        (``error`` None on success), possibly on another thread, possibly before this returns."""
        ...


DetectCallback = Callable[[Optional[list[Detection]], Optional[BaseException]], None]


class SyncDetector:
    """Base for detectors without a queue of their own: ``detect_async`` runs ``detect`` at once."""

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:  # pragma: no cover - overridden
        raise NotImplementedError

    def detect_async(self, frame_bgr: np.ndarray, callback: DetectCallback) -> None:
        try:
            found = self.detect(frame_bgr)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            callback(None, exc)
            return
        callback(found, None)


def nms_per_class(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float) -> np.ndarray:
    """Per-class non-maximum suppression.

    Args:
        boxes: ``[M, 4]`` float ``x1, y1, x2, y2`` (any unit, same for all).
        scores: ``[M]`` float.
        class_ids: ``[M]`` int; boxes of different classes never suppress each other.
        iou: Intersection-over-union above which the lower-scored box of a class is dropped.

    Returns:
        Indices of the kept boxes, best score first.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float32).tolist(), scores.astype(np.float32).tolist(),
                                   class_ids.astype(np.int32).tolist(), 0.0, float(iou))
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


class _Layout:
    """Where the model's input dimensions are: NHWC (``[1,H,W,3]``) or NCHW (``[1,3,H,W]``)."""

    def __init__(self, shape: list[int]):
        if len(shape) != 4 or shape[0] not in (1, -1):
            raise ValueError(f"model input shape {shape} is not a single 4-D image")
        if shape[3] == 3:
            self.nchw, self.height, self.width = False, shape[1], shape[2]
        elif shape[1] == 3:
            self.nchw, self.height, self.width = True, shape[2], shape[3]
        else:
            raise ValueError(f"model input shape {shape} has no 3-channel axis (NHWC or NCHW expected)")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"model input shape {shape} is dynamic; a fixed image size is required")


def _static_shape(port) -> list[int]:
    ps = port.get_partial_shape()
    return [d.get_length() if d.is_static else -1 for d in ps]


def _port_names(port) -> str:
    return "/".join(sorted(port.get_names())) or port.get_node().get_friendly_name()


def classify_outputs(outputs: list) -> tuple[str, dict[str, Any]]:
    """Recognises SSD-style and YOLO-style output ports.

    Args:
        outputs: ``model.outputs`` (OpenVINO ports).

    Returns:
        ``("raw", {"boxes": port, "scores": port})``, ``("detection_output", {"detections": port})``, or
        ``("yolo_v8" | "yolo_v5", {"predictions": port})``.

    Raises:
        ValueError: The outputs are neither SSD- nor YOLO-style; the message lists every output's names and
            shape.
    """
    described = [(o, _static_shape(o)) for o in outputs]
    by_name = {n: o for o in outputs for n in o.get_names()}
    if "boxes" in by_name and "scores" in by_name:
        return "raw", {"boxes": by_name["boxes"], "scores": by_name["scores"]}
    if len(outputs) == 1:
        shape = described[0][1]
        if len(shape) == 4 and shape[-1] == 7:
            return "detection_output", {"detections": outputs[0]}
        if len(shape) == 3 and shape[0] == 1 and min(shape[1:]) >= 5 and shape[1] != shape[2]:
            # YOLO heads: [1, 4+C, N] (YOLOv8/v11: cx, cy, w, h, class scores) or [1, N, 5+C] (YOLOv5:
            # cx, cy, w, h, objectness, class scores), boxes in the model input's pixels.
            return ("yolo_v8" if shape[1] < shape[2] else "yolo_v5"), {"predictions": outputs[0]}
    boxes = [o for o, s in described if (len(s) == 4 and s[2] == 1 and s[3] == 4) or (len(s) == 3 and s[2] == 4)]
    scores = [o for o, s in described if len(s) == 3 and s[2] not in (4, -1) and o not in boxes]
    if len(outputs) == 2 and len(boxes) == 1 and len(scores) == 1 \
            and _static_shape(boxes[0])[1] == _static_shape(scores[0])[1]:
        return "raw", {"boxes": boxes[0], "scores": scores[0]}
    found = ", ".join(f"{_port_names(o)} {s}" for o, s in described)
    raise ValueError("model outputs are neither SSD-style (boxes [1,N,1,4] + scores [1,N,C], or "
                     "DetectionOutput [1,1,K,7]) nor YOLO-style ([1,4+C,N] or [1,N,5+C]); "
                     f"found: {found}")


class OpenVINOSSDDetector:
    """SSD-style (and YOLO-style) detector on OpenVINO.

    YOLO heads (``[1, 4+C, N]`` as YOLOv8/v11 export, ``[1, N, 5+C]`` as YOLOv5) are decoded from centre/size
    boxes in input pixels, with the input scaled to 0..1; without a label map their class ids 0..79 are the
    COCO classes in id order.

    Calls to ``detect`` are thread-safe (one infer request, serialised with a lock).

    Attributes:
        input_size: ``(width, height)`` in pixels the model's input has (300x300 for the COCO model).
        labels: Class id -> name map in use.
        kind: ``"raw"`` or ``"detection_output"`` (see the module docstring).
    """

    def __init__(self, model_path: Path, device: str = "CPU", labels: dict[int, str] | None = None,
                 score_threshold: float = 0.4, nms_iou: float = 0.5, labels_of_interest: set[str] | None = None,
                 num_threads: int | None = None, class_id_offset: int | None = None,
                 inference_precision: str | None = None, core: Any = None,
                 performance_hint: str = "THROUGHPUT"):
        """Reads and compiles the model.

        Args:
            model_path: OpenVINO IR ``.xml`` (with its ``.bin``) or ``.onnx``.
            device: OpenVINO device name: ``CPU``, ``GPU``, ``NPU``, ``AUTO``...
            labels: Class id -> name; ``labels.json`` beside the model if omitted and present, else COCO.
            score_threshold: Minimum score 0..1 of a returned detection.
            nms_iou: IoU above which a lower-scored box of the same class is suppressed.
            labels_of_interest: If given, only these labels are returned (empty set: none).
            num_threads: CPU inference threads (``INFERENCE_NUM_THREADS``); OpenVINO's default if None.
            class_id_offset: Class id of score column 0 for raw SSD outputs; from the ``model.json`` beside
                the model (``outputs.scores.class_id_offset``) if present, else 1 (COCO SSDs without a
                background column).
            inference_precision: OpenVINO ``INFERENCE_PRECISION_HINT`` (``"f32"``, ``"bf16"``, ``"f16"``);
                the device's default if None (on CPUs with AMX/AVX512-BF16 that default is bf16).
            core: An ``openvino.Core`` to share between detectors; a new one if None.
            performance_hint: OpenVINO ``PERFORMANCE_HINT``: ``"THROUGHPUT"`` (the default: parallel
                streams, what ``detect_async`` and several cameras use best; one ``detect`` at a time runs
                on part of the cores) or ``"LATENCY"`` (one stream on all cores: fastest single ``detect``).

        Raises:
            FileNotFoundError: ``model_path`` does not exist.
            ValueError: The model's input is not one fixed-size image, or its outputs are not SSD-style.
        """
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"model file {model_path} does not exist")
        if performance_hint not in ("THROUGHPUT", "LATENCY"):
            raise ValueError(f"performance_hint must be THROUGHPUT or LATENCY, got {performance_hint!r}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold {score_threshold} is not in 0..1")
        self.model_path = model_path
        self.device = device
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.labels_of_interest = frozenset(labels_of_interest) if labels_of_interest is not None else None
        meta = self._sidecar_meta(model_path)
        labels_given = labels
        if labels is None:
            sidecar = model_path.parent / "labels.json"
            labels = load_label_map(sidecar) if sidecar.is_file() else dict(COCO_LABELS)
        self.labels = dict(labels)
        self._core = core or ov.Core()
        model = self._core.read_model(str(model_path))
        yolo = classify_outputs(list(model.outputs))[0].startswith("yolo")
        if yolo and labels_given is None and not (model_path.parent / "labels.json").is_file():
            # YOLO exports number the 80 COCO classes 0..79 in COCO id order (Ultralytics' coco.yaml).
            self.labels = dict(enumerate(COCO_LABELS[k] for k in sorted(COCO_LABELS)))
        if class_id_offset is None:
            default = 0 if yolo else 1
            class_id_offset = int(meta.get("outputs", {}).get("scores", {}).get("class_id_offset", default))
        self.class_id_offset = class_id_offset
        if len(model.inputs) != 1:
            raise ValueError(f"model has {len(model.inputs)} inputs; one image input is expected")
        self._layout = _Layout(_static_shape(model.input(0)))
        self.input_size = (self._layout.width, self._layout.height)
        self._input_type = model.input(0).get_element_type()
        self.kind, ports = classify_outputs(list(model.outputs))
        self._out_index = {key: [i for i, o in enumerate(model.outputs) if o.get_node() == p.get_node()
                                 and o.get_index() == p.get_index()][0] for key, p in ports.items()}
        config: dict[str, Any] = {hints.performance_mode(): getattr(hints.PerformanceMode, performance_hint)}
        if num_threads and device.upper() == "CPU":
            config[props.inference_num_threads()] = int(num_threads)
        if inference_precision:
            config[hints.inference_precision()] = inference_precision
        self._compiled = self._core.compile_model(model, device, config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._async_queue = None
        self._async_lock = threading.Lock()
        # OpenVINO's own count for the hint (THROUGHPUT on 2 cores: 2 streams -> 2 requests) plus one, so the
        # streams stay busy while the camera thread prepares the next frame (measured: +5 % pipeline fps).
        self.async_jobs = 1 + max(1, int(self._compiled.get_property(props.optimal_number_of_infer_requests())))
        logger.info("detector %s on %s: input %dx%d %s, outputs %s", model_path.name, device,
                    self.input_size[0], self.input_size[1], self._input_type, self.kind)

    @staticmethod
    def _sidecar_meta(model_path: Path) -> dict:
        meta_path = model_path.parent / "model.json"
        if not meta_path.is_file():
            return {}
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            logger.warning("ignoring unreadable model metadata %s", meta_path)
            return {}
        return meta if isinstance(meta, dict) else {}

    def set_labels_of_interest(self, labels: set[str] | frozenset[str] | None) -> None:
        """Replaces the label filter (e.g. when the cloud adds a label to a camera); takes effect from the next
        decoded frame. Thread-safe: the filter is swapped as one immutable set.

        Args:
            labels: Labels to return from now on (empty: none); None returns every label.

        Raises:
            TypeError: ``labels`` is a string (a set of labels was meant).
        """
        if isinstance(labels, str):
            raise TypeError("labels must be a set of label names, not one string")
        new = frozenset(labels) if labels is not None else None
        if new != self.labels_of_interest:
            logger.info("detector: labels of interest now %s", "all" if new is None else ", ".join(sorted(new)))
        self.labels_of_interest = new

    @property
    def latency_ms(self) -> float:
        """Mean wall time of the last ``LATENCY_WINDOW`` ``detect`` calls in milliseconds (pre- and
        post-processing included); 0.0 before the first call."""
        lat = list(self._latencies)
        return sum(lat) / len(lat) if lat else 0.0

    # ----------------------------------------------------------------------------------- processing

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR frame -> the model's input tensor (RGB, resized to ``input_size``, NHWC or NCHW).

        Raises:
            ValueError: The frame is not an ``H x W x 3`` uint8 array.
        """
        if not isinstance(frame_bgr, np.ndarray) or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 \
                or frame_bgr.dtype != np.uint8 or frame_bgr.shape[0] == 0 or frame_bgr.shape[1] == 0:
            shape = getattr(frame_bgr, "shape", None)
            dtype = getattr(frame_bgr, "dtype", type(frame_bgr).__name__)
            raise ValueError(f"frame must be an HxWx3 uint8 BGR array, got shape {shape} dtype {dtype}")
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, self.input_size, interpolation=cv2.INTER_LINEAR)
        tensor = resized.transpose(2, 0, 1)[None] if self._layout.nchw else resized[None]
        if self._input_type.to_dtype() != np.uint8:
            tensor = tensor.astype(self._input_type.to_dtype())
            if self.kind.startswith("yolo"):
                tensor /= 255.0  # YOLO exports take RGB in 0..1
        return np.ascontiguousarray(tensor)

    def decode(self, outputs: list[np.ndarray], frame_shape: tuple[int, ...]) -> list[Detection]:
        """Model outputs -> detections in pixels of a frame of ``frame_shape`` (``(H, W, ...)``)."""
        height, width = frame_shape[0], frame_shape[1]
        if self.kind == "raw":
            boxes = outputs[self._out_index["boxes"]].reshape(-1, 4)
            scores = outputs[self._out_index["scores"]].reshape(boxes.shape[0], -1)
            best = scores.argmax(axis=1)
            best_score = scores[np.arange(len(best)), best]
            keep = best_score >= self.score_threshold
            boxes, best_score = boxes[keep], best_score[keep]
            class_ids = best[keep] + self.class_id_offset
            # y1, x1, y2, x2 (normalised) -> x1, y1, x2, y2 (pixels)
            pixel = np.column_stack([boxes[:, 1] * width, boxes[:, 0] * height,
                                     boxes[:, 3] * width, boxes[:, 2] * height])
        elif self.kind.startswith("yolo"):
            pred = outputs[self._out_index["predictions"]][0]
            pred = pred.T if self.kind == "yolo_v8" else pred  # -> [N, 4+C] or [N, 5+C]
            scores = pred[:, 4:] if self.kind == "yolo_v8" else pred[:, 5:] * pred[:, 4:5]
            best = scores.argmax(axis=1)
            best_score = scores[np.arange(len(best)), best]
            keep = best_score >= self.score_threshold
            pred, best_score = pred[keep], best_score[keep]
            class_ids = best[keep] + self.class_id_offset
            sx, sy = width / self.input_size[0], height / self.input_size[1]
            cx, cy, w, h = pred[:, 0] * sx, pred[:, 1] * sy, pred[:, 2] * sx, pred[:, 3] * sy
            pixel = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        else:
            rows = outputs[self._out_index["detections"]].reshape(-1, 7)
            end = np.nonzero(rows[:, 0] < 0)[0]
            rows = rows[: end[0]] if len(end) else rows
            rows = rows[rows[:, 2] >= self.score_threshold]
            class_ids = rows[:, 1].astype(np.int64)
            best_score = rows[:, 2]
            pixel = rows[:, 3:7] * np.array([width, height, width, height], dtype=np.float32)
        if len(pixel) == 0:
            return []
        pixel = np.clip(pixel, 0, [width, height, width, height]).astype(np.float64)
        names = [label_for(self.labels, int(c)) for c in class_ids]
        wanted_labels = self.labels_of_interest  # read once: set_labels_of_interest may swap it meanwhile
        if wanted_labels is not None:
            wanted = np.array([n in wanted_labels for n in names], dtype=bool)
            pixel, best_score, class_ids = pixel[wanted], best_score[wanted], class_ids[wanted]
            names = [n for n, w in zip(names, wanted) if w]
        valid = (pixel[:, 2] > pixel[:, 0]) & (pixel[:, 3] > pixel[:, 1])
        order = nms_per_class(pixel[valid], best_score[valid], class_ids[valid], self.nms_iou) \
            if self.kind != "detection_output" else np.argsort(-best_score[valid], kind="stable")
        idx = np.nonzero(valid)[0][order]
        return [Detection(label=names[i], score=float(best_score[i]),
                          box=(float(pixel[i, 0]), float(pixel[i, 1]), float(pixel[i, 2]), float(pixel[i, 3])))
                for i in idx]

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Detects objects in one BGR frame (see ``Detector.detect``).

        Raises:
            ValueError: The frame is not an ``H x W x 3`` uint8 array.
        """
        started = time.perf_counter()
        tensor = self.preprocess(frame_bgr)
        with self._lock:
            self._request.infer({0: tensor})
            outputs = [self._request.get_output_tensor(i).data.copy()
                       for i in range(len(self._compiled.outputs))]
        detections = self.decode(outputs, frame_bgr.shape)
        self._latencies.append((time.perf_counter() - started) * 1000.0)
        return detections

    # ---------------------------------------------------------------------------------------- async

    def detect_async(self, frame_bgr: np.ndarray, callback: DetectCallback) -> None:
        """Starts detection on a frame through OpenVINO's ``AsyncInferQueue`` (``async_jobs`` infer requests
        shared by every caller, so several cameras infer at once); blocks only while all requests are busy.
        ``callback(detections, error)`` runs on an OpenVINO thread when the result is ready (completion
        order, not submission order); a decoding failure is passed as ``error``.

        Raises:
            ValueError: The frame is not an ``H x W x 3`` uint8 array (raised here, before submitting).
        """
        import openvino as ov

        started = time.perf_counter()
        tensor = self.preprocess(frame_bgr)
        with self._async_lock:
            if self._async_queue is None:
                self._async_queue = ov.AsyncInferQueue(self._compiled, self.async_jobs)
                self._async_queue.set_callback(self._async_done)
            self._async_queue.start_async({0: tensor}, (frame_bgr.shape, started, callback))

    def _async_done(self, request, userdata) -> None:
        shape, started, callback = userdata
        try:
            outputs = [request.get_output_tensor(i).data.copy() for i in range(len(self._compiled.outputs))]
            detections = self.decode(outputs, shape)
        except Exception as exc:  # noqa: BLE001 - never let an exception die silently on OpenVINO's thread
            logger.exception("decoding an async detection failed")
            callback(None, exc)
            return
        self._latencies.append((time.perf_counter() - started) * 1000.0)
        callback(detections, None)

    def wait_all(self) -> None:
        """Waits until every ``detect_async`` call has delivered its callback."""
        with self._async_lock:
            queue = self._async_queue
        if queue is not None:
            queue.wait_all()


def load_detector(model_path: Path, device: str = "CPU", labels_path: Path | None = None, **kw) -> Detector:
    """Builds the detector for a model file.

    Args:
        model_path: OpenVINO IR ``.xml`` or ``.onnx``; a directory means ``<dir>/model.xml``.
        device: OpenVINO device (``CPU``, ``GPU``, ``NPU``, ``AUTO``).
        labels_path: Label map file (see ``labels.load_label_map``); else ``labels.json`` beside the model,
            else the COCO map.
        **kw: Passed to ``OpenVINOSSDDetector`` (``score_threshold``, ``nms_iou``, ``labels_of_interest``,
            ``num_threads``, ``class_id_offset``).

    Returns:
        A ``Detector`` (an ``OpenVINOSSDDetector``, which also decodes YOLO-style heads).

    Raises:
        FileNotFoundError: The model or label file does not exist.
        ValueError: Unsupported file type, or the model's outputs are not SSD-style (the message names the
            outputs found).
    """
    model_path = Path(model_path)
    if model_path.is_dir():
        model_path = model_path / "model.xml"
    if model_path.suffix.lower() not in (".xml", ".onnx"):
        raise ValueError(f"unsupported model file {model_path}: expected OpenVINO IR .xml or .onnx")
    labels = load_label_map(Path(labels_path)) if labels_path is not None else kw.pop("labels", None)
    return OpenVINOSSDDetector(model_path, device=device, labels=labels, **kw)
