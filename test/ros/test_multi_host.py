"""Across machines: keypoints published in one network namespace reach the fusion node in another, over a veth pair
made by the test (the only link between them), with the DDS settings README "Several machines" documents.

Needs root (CI runs as root) and the ``ip`` tool; skipped with the reason otherwise. Fast DDS is held to UDP
(``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``): its shared-memory transport would otherwise carry the data between two
processes of one host whatever the network namespaces, and the test would not prove the link works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("skelsplat_ros.msg")

REPO = Path(__file__).resolve().parents[2]
CALIBRATION = REPO / "config" / "sim_rig_lab.toml"

FUSION_SIDE = """
import sys, time, rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from skelsplat_ros.msg import Skeleton3DArray
from skelsplat_ros.ros.node import FusionNode
context = Context(); rclpy.init(context=context, args=[])
fusion = FusionNode(context=context, parameter_overrides=[Parameter("calibration_file", value=sys.argv[1]),
                    Parameter("method", value="robust"), Parameter("threads", value=0)])
probe = Node("multi_host_probe", context=context)
fused = []
probe.create_subscription(Skeleton3DArray, "skeletons", lambda m: fused.append(m) if m.skeletons else None,
                          QoSProfile(depth=100))
executor = SingleThreadedExecutor(context=context)
executor.add_node(fusion); executor.add_node(probe)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and len(fused) < 10:
    executor.spin_once(timeout_sec=0.1)
print(f"fused {len(fused)}")
sys.exit(0 if len(fused) >= 10 else 1)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: 10.231.<n>.1 (detectors) and 10.231.<n>.2 (fusion)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("needs the iproute2 `ip` tool")
    tag = f"{os.getpid() % 100000}"
    ns = (f"sk_a{tag}", f"sk_b{tag}")
    veth = (f"ska{tag}", f"skb{tag}")
    subnet = f"10.231.{os.getpid() % 250}"
    try:
        for name in ns:
            _ip("netns", "add", name)
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for i, (name, link) in enumerate(zip(ns, veth), start=1):
            _ip("link", "set", link, "netns", name)
            _ip("-n", name, "addr", "add", f"{subnet}.{i}/24", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, OSError) as error:
        for name in ns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        stderr = getattr(error, "stderr", b"") or b""
        pytest.skip(f"cannot create network namespaces here: {stderr.decode().strip() or error}")
    try:
        yield ns, veth, subnet
    finally:
        for name in ns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _tx_bytes(namespace: str, link: str) -> int:
    out = subprocess.run(["ip", "netns", "exec", namespace, "cat", f"/sys/class/net/{link}/statistics/tx_bytes"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def test_keypoints_from_another_host_reach_the_node_over_the_link(two_hosts, ros_env):
    (ns_detectors, ns_fusion), (veth_detectors, _), subnet = two_hosts
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               ROS_DOMAIN_ID=str((ros_env["ROS_DOMAIN_ID"] + 10) % 233), ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
               FASTDDS_BUILTIN_TRANSPORTS="UDPv4")
    detectors = subprocess.Popen(
        ["ip", "netns", "exec", ns_detectors, "env", f"ROS_STATIC_PEERS={subnet}.2", sys.executable, "-m",
         "skelsplat_ros.ros.sim_rig", "--ros-args", "-p", f"calibration_file:={CALIBRATION}", "-p", "rate:=20.0",
         "-p", "motion_seconds:=5.0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        fusion = subprocess.run(
            ["ip", "netns", "exec", ns_fusion, "env", f"ROS_STATIC_PEERS={subnet}.1", sys.executable, "-c",
             FUSION_SIDE, str(CALIBRATION), "25"],
            env=env, capture_output=True, text=True, timeout=60)
        sent = _tx_bytes(ns_detectors, veth_detectors)
    finally:
        detectors.terminate()
        try:
            detectors.wait(timeout=10)
        except subprocess.TimeoutExpired:
            detectors.kill()
    assert fusion.returncode == 0, fusion.stdout + fusion.stderr
    assert sent > 10_000, f"only {sent} bytes left the detectors' namespace: the data did not cross the link"
