"""Simulated rig + fusion node + rviz2: `ros2 launch skelsplat_ros demo.launch.py [rviz:=false] [log_level:=debug]`.

Needs a ROS 2 installation (launch, launch_ros, rviz2); in the pip environment use `skelsplat demo`. Both nodes
read config/sim_rig_lab.toml, so they agree on the rig whichever starts first. The nodes are built by
skelsplat_ros.ros.launch_actions (tested without `launch`).
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from skelsplat_ros.ros.launch_actions import DEMO_ARGUMENTS, demo_actions


def _nodes(context):
    share = FindPackageShare("skelsplat_ros").perform(context)
    return [Node(**action.launch_kwargs()) for action in demo_actions(context.launch_configurations, share)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in DEMO_ARGUMENTS]
        + [OpaqueFunction(function=_nodes)])
