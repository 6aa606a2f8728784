"""Fusion node: `ros2 launch skelsplat_ros skelsplat.launch.py [params_file:=...] [calibration:=...]
[calibration_from_ros:=true] [publish_rig:=true] [namespace:=...] [use_sim_time:=true] [log_level:=debug]`.

Needs a ROS 2 installation (launch, launch_ros); in the pip environment run `skelsplat_node` directly. The nodes and
their parameters are built by skelsplat_ros.ros.launch_actions (tested without `launch`), argument by argument.
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from skelsplat_ros.ros.launch_actions import SKELSPLAT_ARGUMENTS, skelsplat_actions


def _nodes(context):
    share = FindPackageShare("skelsplat_ros").perform(context)
    return [Node(**action.launch_kwargs()) for action in skelsplat_actions(context.launch_configurations, share)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in SKELSPLAT_ARGUMENTS]
        + [OpaqueFunction(function=_nodes)])
