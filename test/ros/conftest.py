"""Fixtures of the ROS tests: one rclpy context per test module, for the module-scoped runs of real nodes."""

import pytest


@pytest.fixture(scope="module")
def module_context(ros_env):
    """An initialised rclpy Context shared by one module's tests, shut down after the last of them."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, args=[])
    yield context
    context.try_shutdown()
