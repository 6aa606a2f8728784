"""Small ONNX models with the input and output signatures of RTMO, RTMPose and YOLOX, built with ``onnx`` for the
tests (the real weights cannot be fetched here).

Each model finds the brightest pixel of the image's channel 2 (red in OpenCV's BGR order, which rtmlib feeds these
models) and reports it, so a test image with one red dot checks the backend's whole path: channel order,
letterbox or crop, normalisation, and the mapping back to image pixels.

- ``rtmo_model``: input ``[1, 3, S, S]``; ``dets [1, 3, 5]``, ``keypoints [1, 3, 17, 3]``. Person 0: the dot, joint
  ``j`` at ``dot + (j, 2 j)`` model pixels, box ``dot -+ 8``, score 0.95. Person 1: a copy shifted by half a pixel,
  score 0.9 (a duplicate: non-maximum suppression must remove it). Person 2: far away, score 0.3 (under
  ``min_person_score``).
- ``yolox_model``: input ``[1, 3, S, S]``; ``dets [1, 1, 5]`` = box ``dot -+ 10``, score 0.9.
- ``rtmpose_model``: input ``[1, 3, h, w]``; ``simcc_x [1, 17, 2 w]``, ``simcc_y [1, 17, 2 h]`` peaking at twice the
  dot's input column and row, with the dot's normalised value as the peak.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _const(name: str, array) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name + "_v"))


def _dot_nodes(height: int, width: int) -> list[onnx.NodeProto]:
    """Nodes giving ``dot_xy [1, 2]`` (float, model pixels) and ``red [1, 1, H, W]`` from ``input``."""
    return [
        _const("starts", np.array([2], np.int64)), _const("ends", np.array([3], np.int64)),
        _const("axes", np.array([1], np.int64)),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["red"]),
        helper.make_node("ReduceMax", ["red"], ["col"], axes=[2], keepdims=1),  # [1, 1, 1, W]
        helper.make_node("ReduceMax", ["red"], ["row"], axes=[3], keepdims=1),  # [1, 1, H, 1]
        helper.make_node("ArgMax", ["col"], ["x_i"], axis=3, keepdims=1),
        helper.make_node("ArgMax", ["row"], ["y_i"], axis=2, keepdims=1),
        _const("one_shape", np.array([1, 1], np.int64)),
        helper.make_node("Reshape", ["x_i", "one_shape"], ["x_r"]),
        helper.make_node("Reshape", ["y_i", "one_shape"], ["y_r"]),
        helper.make_node("Concat", ["x_r", "y_r"], ["xy_i"], axis=1),
        helper.make_node("Cast", ["xy_i"], ["dot_xy"], to=TensorProto.FLOAT),  # [1, 2]
    ]


def _save(nodes, inputs, outputs, path: Path) -> Path:
    graph = helper.make_graph(nodes, "test_model", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image_input(height: int, width: int):
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])


def rtmo_model(path: Path, size: int = 128) -> Path:
    offsets = np.stack([np.arange(17), 2 * np.arange(17)], axis=-1).astype(np.float32)  # [17, 2]
    nodes = _dot_nodes(size, size) + [
        _const("offsets", offsets[None]),  # [1, 17, 2]
        _const("xy_shape", np.array([1, 1, 2], np.int64)),
        helper.make_node("Reshape", ["dot_xy", "xy_shape"], ["dot_b"]),  # [1, 1, 2]
        helper.make_node("Add", ["dot_b", "offsets"], ["joints0"]),  # [1, 17, 2]
        _const("shift", np.array([[[0.5, 0.5]]], np.float32)),
        helper.make_node("Add", ["joints0", "shift"], ["joints1"]),
        _const("joints2", np.full((1, 17, 2), size * 0.9, np.float32)),
        helper.make_node("Concat", ["joints0", "joints1", "joints2"], ["joints_xy"], axis=0),  # [3, 17, 2]
        _const("scores", np.full((3, 17, 1), 0.8, np.float32)),
        helper.make_node("Concat", ["joints_xy", "scores"], ["joints"], axis=2),  # [3, 17, 3]
        _const("kp_shape", np.array([1, 3, 17, 3], np.int64)),
        helper.make_node("Reshape", ["joints", "kp_shape"], ["keypoints"]),
        _const("corner", np.array([[-8.0, -8.0, 8.0, 8.0]], np.float32)),
        helper.make_node("Concat", ["dot_xy", "dot_xy"], ["dot4"], axis=1),  # [1, 4]
        helper.make_node("Add", ["dot4", "corner"], ["box0"]),
        helper.make_node("Add", ["box0", "shift_box"], ["box1"]),
        _const("shift_box", np.full((1, 4), 0.5, np.float32)),
        _const("box2", np.array([[size * 0.85, size * 0.85, size * 0.95, size * 0.95]], np.float32)),
        helper.make_node("Concat", ["box0", "box1", "box2"], ["boxes"], axis=0),  # [3, 4]
        _const("box_scores", np.array([[0.95], [0.9], [0.3]], np.float32)),
        helper.make_node("Concat", ["boxes", "box_scores"], ["dets3"], axis=1),
        _const("det_shape", np.array([1, 3, 5], np.int64)),
        helper.make_node("Reshape", ["dets3", "det_shape"], ["dets"]),
    ]
    # Constants must come before their users in an ONNX graph.
    nodes = sorted(nodes, key=lambda n: n.op_type != "Constant")
    outputs = [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 3, 5]),
               helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, [1, 3, 17, 3])]
    return _save(nodes, [_image_input(size, size)], outputs, path)


def yolox_model(path: Path, size: int = 128) -> Path:
    nodes = _dot_nodes(size, size) + [
        _const("corner", np.array([[-10.0, -10.0, 10.0, 10.0]], np.float32)),
        helper.make_node("Concat", ["dot_xy", "dot_xy"], ["dot4"], axis=1),
        helper.make_node("Add", ["dot4", "corner"], ["box"]),
        _const("score", np.array([[0.9]], np.float32)),
        helper.make_node("Concat", ["box", "score"], ["det"], axis=1),
        _const("det_shape", np.array([1, 1, 5], np.int64)),
        helper.make_node("Reshape", ["det", "det_shape"], ["dets"]),
    ]
    nodes = sorted(nodes, key=lambda n: n.op_type != "Constant")
    return _save(nodes, [_image_input(size, size)],
                 [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 1, 5])], path)


def rtmpose_model(path: Path, height: int = 64, width: int = 48) -> Path:
    def simcc(reduced: str, length: int, name: str) -> list[onnx.NodeProto]:
        # [1, 1, ..., n] -> each value twice in a row ([v0, v0, v1, v1, ...]) -> the same vector for 17 joints.
        return [
            _const(f"{name}_flat", np.array([1, length, 1], np.int64)),
            helper.make_node("Reshape", [reduced, f"{name}_flat"], [f"{name}_col"]),
            helper.make_node("Concat", [f"{name}_col", f"{name}_col"], [f"{name}_pair"], axis=2),
            _const(f"{name}_long", np.array([1, 1, 2 * length], np.int64)),
            helper.make_node("Reshape", [f"{name}_pair", f"{name}_long"], [f"{name}_one"]),
            _const(f"{name}_joints", np.array([1, 17, 2 * length], np.int64)),
            helper.make_node("Expand", [f"{name}_one", f"{name}_joints"], [name]),
        ]

    nodes = _dot_nodes(height, width)[:6] + simcc("col", width, "simcc_x") + simcc("row", height, "simcc_y")
    nodes = sorted(nodes, key=lambda n: n.op_type != "Constant")
    outputs = [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 17, 2 * width]),
               helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 17, 2 * height])]
    return _save(nodes, [_image_input(height, width)], outputs, path)


def red_dot_image(height: int, width: int, x: int, y: int, radius: int = 3) -> np.ndarray:
    """An RGB image ``[height, width, 3]``, dark grey, with a red square of side ``2 radius + 1`` centred at
    ``(x, y)``."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[y - radius: y + radius + 1, x - radius: x + radius + 1] = (255, 0, 0)
    return image
