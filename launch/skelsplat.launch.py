"""Fusion node only: `ros2 launch skelsplat_ros skelsplat.launch.py [params_file:=...] [calibration:=...]`.

Needs a ROS 2 installation (launch, launch_ros); in the pip environment run `skelsplat_node` directly.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("skelsplat_ros")
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=PathJoinSubstitution([share, "config", "skelsplat.yaml"]),
            description="skelsplat_node parameters (YAML)"),
        DeclareLaunchArgument(
            "calibration", default_value=PathJoinSubstitution([share, "config", "sim_rig_lab.toml"]),
            description="camera calibration, Pose2Sim/Anipose TOML"),
        Node(
            package="skelsplat_ros",
            executable="skelsplat_node",
            name="skelsplat_node",
            output="screen",
            # The calibration argument overrides the params file's relative path (launch's cwd is arbitrary).
            parameters=[LaunchConfiguration("params_file"),
                        {"calibration_file": LaunchConfiguration("calibration")}],
        ),
    ])
