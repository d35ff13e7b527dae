"""The OpenVINO SSD detector on the real converted model and the real vtest.avi clip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigint_edge.detection.detector import Detection, Detector, OpenVINOSSDDetector, load_detector, nms_per_class
from vigint_edge.detection.labels import COCO_LABELS, load_label_map


def read_frame(video: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok, f"cannot read frame {index} of {video}"
    return frame


@pytest.fixture(scope="module")
def detector(default_model_dir: Path) -> OpenVINOSSDDetector:
    return load_detector(default_model_dir / "model.xml", "CPU", num_threads=1)


@pytest.fixture(scope="module")
def frame100(vtest_video: Path) -> np.ndarray:
    return read_frame(vtest_video, 100)


def test_people_found_in_vtest_frame(detector, frame100):
    assert isinstance(detector, Detector)
    height, width = frame100.shape[:2]
    detections = detector.detect(frame100)
    for d in detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, d
        assert detector.score_threshold <= d.score <= 1.0
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    people = [d for d in detections if d.label == "person" and d.score >= 0.5]
    upright = [d for d in people if (d.box[3] - d.box[1]) > 1.5 * (d.box[2] - d.box[0])]
    assert len(upright) >= 2, detections
    # a walker seen from the camera's height is neither a speck nor most of the frame
    for d in upright:
        assert 100 < d.area < 0.1 * width * height, d


def test_blank_frames_give_nothing(detector):
    black = np.zeros((576, 768, 3), np.uint8)
    grey = np.full((576, 768, 3), 128, np.uint8)
    assert detector.detect(black) == []
    assert detector.detect(grey) == []


def test_model_shapes_and_names(default_model_dir):
    import openvino as ov

    model = ov.Core().read_model(str(default_model_dir / "model.xml"))
    assert [sorted(i.get_names()) for i in model.inputs] == [["image"]]
    assert list(model.input(0).get_shape()) == [1, 300, 300, 3]
    assert model.input(0).get_element_type() == ov.Type.u8
    shapes = {next(iter(o.get_names())): list(o.get_shape()) for o in model.outputs}
    assert shapes == {"boxes": [1, 1917, 1, 4], "scores": [1, 1917, 90]}


def test_fifty_frames(detector, vtest_video):
    cap = cv2.VideoCapture(str(vtest_video))
    counts = []
    try:
        for _ in range(50):
            ok, frame = cap.read()
            assert ok
            counts.append(sum(1 for d in detector.detect(frame) if d.label == "person" and d.score >= 0.5))
    finally:
        cap.release()
    print(f"\nrolling mean detect latency (1 CPU thread): {detector.latency_ms:.1f} ms; "
          f"people per frame: {counts}")
    assert detector.latency_ms > 0
    # the clip's first 5 seconds always have several people walking in view
    assert sum(c >= 2 for c in counts) >= 45, counts


def test_labels_of_interest_and_threshold(default_model_dir, frame100):
    only_cars = load_detector(default_model_dir, labels_of_interest={"car"}, score_threshold=0.5)
    found = only_cars.detect(frame100)
    assert found and {d.label for d in found} == {"car"}
    assert load_detector(default_model_dir, labels_of_interest=set()).detect(frame100) == []
    strict = load_detector(default_model_dir, score_threshold=0.9)
    assert all(d.score >= 0.9 for d in strict.detect(frame100))


def test_labels_of_interest_change_at_run_time(default_model_dir, frame100):
    det = load_detector(default_model_dir, labels_of_interest={"car"}, num_threads=1)
    assert "person" not in {d.label for d in det.detect(frame100)}
    det.set_labels_of_interest({"car", "person"})
    found = det.detect(frame100)
    assert sum(d.label == "person" for d in found) >= 3, "vtest frame 100 shows several people"
    det.set_labels_of_interest(set())
    assert det.detect(frame100) == []
    det.set_labels_of_interest(None)
    assert len(det.detect(frame100)) >= len(found)
    with pytest.raises(TypeError):
        det.set_labels_of_interest("person")


def test_user_label_map_renames_classes(default_model_dir, frame100, tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"1": "human", "3": "automobile"}))
    det = load_detector(default_model_dir, labels_path=labels, score_threshold=0.5)
    names = {d.label for d in det.detect(frame100)}
    assert "human" in names and "person" not in names


def test_async_matches_sync(detector, frame100):
    results = []
    assert detector.async_jobs >= 2
    for i in range(4):
        detector.detect_async(frame100, lambda dets, err, i=i: results.append((i, dets, err)))
    detector.wait_all()
    assert sorted(u for u, _, _ in results) == [0, 1, 2, 3]
    assert all(err is None for _, _, err in results)
    sync = detector.detect(frame100)
    for _, dets, _ in results:
        assert [d.label for d in dets] == [d.label for d in sync]
        np.testing.assert_allclose([d.box for d in dets], [d.box for d in sync], atol=0.5)


def test_bad_frames_rejected(detector):
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            detector.detect(bad)


def test_non_ssd_model_rejected_with_output_names(tmp_path):
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 300, 300, 3], ov.Type.u8, name="image")
    mean = ops.reduce_mean(ops.convert(image, ov.Type.f32), ops.constant(np.array([1, 2], np.int64)), False)
    mean.output(0).get_tensor().set_names({"embedding"})
    path = tmp_path / "classifier.xml"
    ov.save_model(ov.Model([mean], [image], "classifier"), str(path))
    with pytest.raises(ValueError, match=r"neither SSD-style.*embedding \[1, 3\]"):
        load_detector(path)
    with pytest.raises(ValueError, match="expected OpenVINO IR"):
        load_detector(tmp_path / "model.tflite")
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "missing.xml")


def test_detection_output_model_decoded(tmp_path):
    """An OpenVINO DetectionOutput-style model ([1,1,K,7], NMS in the model) is decoded too."""
    import openvino as ov
    import openvino.opset13 as ops

    rows = np.array([[[[0, 1, 0.9, 0.1, 0.2, 0.3, 0.8],      # person
                       [0, 3, 0.3, 0.5, 0.5, 0.6, 0.6],      # car below the threshold
                       [-1, 0, 0, 0, 0, 0, 0],              # end of list
                       [0, 3, 0.99, 0.0, 0.0, 1.0, 1.0]]]], np.float32)  # after the end: ignored
    image = ops.parameter([1, 3, 200, 100], ov.Type.f32, name="data")
    zero = ops.multiply(ops.reduce_sum(image, ops.constant(np.array([0, 1, 2, 3], np.int64)), False),
                        ops.constant(np.float32(0)))
    out = ops.add(ops.constant(rows), zero)
    out.output(0).get_tensor().set_names({"detection_out"})
    path = tmp_path / "ssd.xml"
    ov.save_model(ov.Model([out], [image], "ssd"), str(path), compress_to_fp16=False)
    det = load_detector(path, score_threshold=0.5)
    assert det.kind == "detection_output" and det.input_size == (100, 200)
    frame = np.zeros((400, 600, 3), np.uint8)
    [d] = det.detect(frame)
    assert d.label == "person" and d.score == pytest.approx(0.9)
    assert d.box == pytest.approx((60.0, 80.0, 180.0, 320.0), abs=1e-3)


def test_nms_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([1, 1, 2, 1])
    keep = nms_per_class(boxes, scores, classes, 0.5)
    assert list(keep) == [0, 2, 3]
    assert list(nms_per_class(boxes[:0], scores[:0], classes[:0], 0.5)) == []


def test_detection_area():
    assert Detection("person", 0.5, (10.0, 20.0, 14.0, 30.0)).area == 40.0
    assert Detection("person", 0.5, (10.0, 20.0, 10.0, 30.0)).area == 0.0


def test_label_maps(tmp_path):
    assert COCO_LABELS[1] == "person" and COCO_LABELS[3] == "car" and COCO_LABELS[8] == "truck"
    assert len(COCO_LABELS) == 80 and max(COCO_LABELS) == 90 and 12 not in COCO_LABELS
    text = tmp_path / "labels.txt"
    text.write_text("background\nperson\n\n# comment\ncar\n")
    assert load_label_map(text) == {0: "background", 1: "person", 3: "car"}
    as_list = tmp_path / "list.json"
    as_list.write_text('["a", "b"]')
    assert load_label_map(as_list) == {0: "a", 1: "b"}
    for content, match in (('{"x": "a"}', "not an integer"), ('{"1": ""}', "non-empty"), ("{", "invalid JSON"),
                           ("{}", "no labels")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(ValueError, match=match):
            load_label_map(bad)


def _yolo_model(tmp_path, head: np.ndarray, name: str):
    """A model with a YOLO-style head: float NCHW 64x64 input; the output is ``head`` (a constant, plus
    0 x the input's mean so the graph really reads the image)."""
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    zero = ops.multiply(ops.reduce_mean(image, ops.constant(np.array([0, 1, 2, 3], np.int64)), True),
                        ops.constant(np.zeros((1, 1, 1), np.float32)))
    out = ops.add(ops.constant(head.astype(np.float32)), ops.reshape(zero, ops.constant(np.array([1, 1, 1])), False))
    out.output(0).get_tensor().set_names({"output0"})
    path = tmp_path / f"{name}.xml"
    ov.save_model(ov.Model([out], [image], name), str(path))
    return path


def test_yolo_v8_and_v5_heads_decode_to_pixel_boxes_with_coco_names(tmp_path):
    # YOLOv8 layout [1, 84, N]: a person (class 0) centred at (32, 32), 16x32 input pixels, score 0.9, a
    # duplicate box NMS must remove, and a car (class 2) at 0.2 below the threshold.
    v8 = np.zeros((1, 84, 100))  # real heads have many more anchors than channels (8400 at 640x640)
    v8[0, :4, 0], v8[0, 4, 0] = [32, 32, 16, 32], 0.9
    v8[0, :4, 1], v8[0, 4, 1] = [33, 32, 16, 32], 0.8
    v8[0, :4, 2], v8[0, 6, 2] = [10, 10, 8, 8], 0.2
    det = load_detector(_yolo_model(tmp_path, v8, "yolov8"), score_threshold=0.5)
    found = det.detect(np.zeros((128, 256, 3), np.uint8))  # frame 4x wider, 2x taller than the input
    assert [(d.label, round(d.score, 1)) for d in found] == [("person", 0.9)]
    assert found[0].box == pytest.approx((96.0, 32.0, 160.0, 96.0), abs=1.0)
    # YOLOv5 layout [1, N, 85] with objectness: 0.8 x 0.9 for a truck (class 7).
    v5 = np.zeros((1, 100, 85))
    v5[0, 0, :5], v5[0, 0, 5 + 7] = [32, 16, 32, 16, 0.8], 0.9
    det = load_detector(_yolo_model(tmp_path, v5, "yolov5"), score_threshold=0.5)
    (truck,) = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert truck.label == "truck" and truck.score == pytest.approx(0.72, abs=0.01)  # bf16 on some CPUs
    assert truck.box == pytest.approx((16.0, 8.0, 48.0, 24.0), abs=0.5)
