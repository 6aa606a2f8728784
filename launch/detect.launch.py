"""Cameras to 3D skeletons: `ros2 launch skelsplat_ros detect.launch.py cameras:=cam01,cam02,cam03,cam04
calibration:=/path/calib.toml [backend:=mediapipe|onnx] [compressed:=true] [params_file:=...] [namespace:=...]
[use_sim_time:=true] [log_level:=debug]`.

Starts skelsplat_detector (images on /<camera>/image_raw -> /<camera>/keypoints) and skelsplat_node (keypoints ->
skeletons, coco17). Needs a ROS 2 installation (launch, launch_ros); in the pip environment run both executables
directly. The nodes are built by skelsplat_ros.ros.launch_actions.detect_actions (tested without `launch`).
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from skelsplat_ros.ros.launch_actions import DETECT_ARGUMENTS, detect_actions


def _nodes(context):
    share = FindPackageShare("skelsplat_ros").perform(context)
    return [Node(**action.launch_kwargs()) for action in detect_actions(context.launch_configurations, share)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
         for a in DETECT_ARGUMENTS]
        + [OpaqueFunction(function=_nodes)])
