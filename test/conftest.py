"""Shared pytest fixtures: DDS isolation for every test process and an rclpy context.

DDS discovery must stay on this machine and must not meet other test runs, so the environment is
set at import time, before any test (or a subprocess it starts, which inherits os.environ) can
initialise rclpy:
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, always: discovery and data stay on loopback.
- ROS_DOMAIN_ID: kept when the caller set it (.ci/run does), otherwise derived from the pid so
  that concurrent runs on one machine rarely share a domain. Fast DDS accepts 0..232; 1..200 leaves
  0 (everyone's default) alone.
"""
import os
import time

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))


@pytest.fixture(scope="session")
def ros_env():
    """The DDS settings of this test run, as applied to os.environ at conftest import."""
    domain_id = int(os.environ["ROS_DOMAIN_ID"])
    assert 0 <= domain_id <= 232, f"ROS_DOMAIN_ID={domain_id} is outside Fast DDS's range"
    return {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"],
        "ROS_DOMAIN_ID": domain_id,
    }


@pytest.fixture
def rclpy_context(ros_env):
    """An initialised rclpy Context of its own (not the global default), shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture(scope="module")
def restore_torch_threads():
    """Undo, after a module, what ``skelsplat_ros.cli.main`` does to the whole process: set torch's thread count."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spin_until():
    """spin_until(executor, predicate, timeout_s=10.0, tick=None) -> bool.

    Spins the executor in short steps until predicate() is true or the timeout passes; tick(), when
    given, runs before every step (e.g. to publish again while discovery is still matching).
    """
    def _spin_until(executor, predicate, timeout_s=10.0, tick=None):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            if tick is not None:
                tick()
            executor.spin_once(timeout_sec=0.05)
        return True

    return _spin_until
