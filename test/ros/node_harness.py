"""What the node tests share: a probe that records the fusion node's output, a background spinner, a polling
wait and a sender of a multi-person scene's detections. (The module-scoped rclpy context is the ``module_context`` fixture of conftest.py beside this file.)"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from skelsplat_ros.msg import Skeleton3DArray
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from skelsplat_ros.ros.conversions import keypoints_msg, stamp_to_ns

CAMERAS = ["cam0", "cam1", "cam2", "cam3"]


class Probe:
    """A node that records everything the fusion node publishes."""

    def __init__(self, context: Context) -> None:
        self.node = Node("probe", context=context)
        self.skeletons: list[tuple[float, Skeleton3DArray]] = []
        self.tf: list[TFMessage] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: list[dict[str, str]] = []
        self.messages: list[str] = []  # the diagnostics' status messages
        self.node.create_subscription(Skeleton3DArray, "skeletons",
                                      lambda m: self.skeletons.append((time.time(), m)), QoSProfile(depth=100))
        self.node.create_subscription(TFMessage, "/tf", self.tf.append, QoSProfile(depth=100))
        self.node.create_subscription(MarkerArray, "skeleton_markers", self.markers.append, QoSProfile(depth=100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=10))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": fusion"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})
                self.messages.append(status.message)

    def fused(self, since_ns: int = 0) -> list[Skeleton3DArray]:
        return [m for _, m in self.skeletons if m.skeletons and stamp_to_ns(m.header.stamp) >= since_ns]


class Spinner:
    """Spins an executor in a background thread while the test thread waits and checks."""

    def __init__(self, context: Context, nodes: list[Node]) -> None:
        self.executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down under it at teardown
            pass

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def wait_drained(fusion, probe: Probe, timeout: float = 15.0) -> bool:
    """Until the fusion node has synchronized, fused and published all it took in, and ``probe`` received it (stop
    its senders first): every frame sent is then counted, the last ones included, however loaded the machine."""
    return wait_until(lambda: fusion.sync.pending == 0 and len(fusion.queue) == 0 and fusion.queue.idle
                      and len(probe.skeletons) >= fusion.stats.published, timeout)


def robust_node(context: Context, tmp_path, seed: int, *parameters, num_frames: int = 2, namespace: str = ""):
    """A fusion node (robust method: cheap) on the simulated lab rig, and that scenario (clean noise, 20 Hz);
    ``parameters``: more ``rclpy.parameter.Parameter`` overrides; ``namespace``: the node's (its topics' too), apart
    from the other tests' nodes of the same module."""
    from rclpy.parameter import Parameter

    from skelsplat_ros.geometry.calibration import save_calibration
    from skelsplat_ros.ros.node import FusionNode
    from skelsplat_ros.sim import make_scenario

    scenario = make_scenario("lab", num_frames=num_frames, fps=20, noise="clean", seed=seed)
    calibration = tmp_path / "calibration.toml"
    save_calibration(scenario.rig, calibration)
    node = FusionNode(context=context, namespace=namespace, parameter_overrides=[
        Parameter("calibration_file", value=str(calibration)), Parameter("method", value="robust"), *parameters])
    return node, scenario


def synced_frame(scenario, stamp_ns: int, with_person: bool = True):
    """A complete synchronized frame of the scenario's first frame (or of nobody) at ``stamp_ns``, as the
    synchronizer hands it to the fusion thread."""
    import numpy as np

    from skelsplat_ros.io.sync import SyncedFrame

    nobody = np.empty((0, scenario.skeleton.num_joints, 3))
    views = {c: (stamp_ns, scenario.keypoints[v, 0][None] if with_person else nobody, f"{c}_optical")
             for v, c in enumerate(CAMERAS)}
    return SyncedFrame(stamp_ns * 1e-9, views, {c: stamp_ns * 1e-9 for c in CAMERAS}, True, 0.0, 0.0)


def detected_slots(scene, view: int, frame: int):
    """What camera ``view`` detects in ``frame`` of a multi-person scene: the slots with any keypoint ``[P, J, 3]``
    and whose they are ``[P]`` (the scene's person index, -1 for a ghost)."""
    import numpy as np

    slots = scene.keypoints[view, frame]
    detected = (np.nan_to_num(slots[..., 2]) > 0).any(-1)
    return slots[detected], scene.slot_person[view, frame][detected]


def send_scene(pubs: dict, scene, first_frame: int, seconds: float, rate_hz: float, frame_of_stamp: dict[int, int],
               slots_of=None, after_frame=None) -> tuple[int, tuple[int, int]]:
    """Publishes what each camera of a multi-person ``scene`` detects (:func:`detected_slots`), frame after frame from
    ``first_frame``, at ``rate_hz`` for ``seconds``, stamped at sending (``frame_of_stamp`` gets stamp ns -> frame).

    ``slots_of(view, slots [P, J, 3], person [P])`` returns what that camera sends instead (people leaving, a crowd);
    ``after_frame()`` runs after each frame is out. Returns the next frame and the phase's ``(start, end)`` ns.
    """
    from rclpy.time import Time as RosTime

    start_ns = time.time_ns()
    end = time.monotonic() + seconds
    frame = first_frame
    while time.monotonic() < end:
        stamp_ns = time.time_ns()
        frame_of_stamp[stamp_ns] = frame
        for view, camera in enumerate(CAMERAS):
            slots, person = detected_slots(scene, view, frame)
            if slots_of is not None:
                slots = slots_of(view, slots, person)
            pubs[camera].publish(keypoints_msg(slots, RosTime(nanoseconds=stamp_ns).to_msg(), camera, "h36m17", -1))
        if after_frame is not None:
            after_frame()
        frame += 1
        time.sleep(max(0.0, 1.0 / rate_hz - 0.004))
    return frame, (start_ns, time.time_ns())
