"""Simulated rig + fusion node + rviz2: `ros2 launch skelsplat_ros demo.launch.py [rviz:=false]`.

Needs a ROS 2 installation (launch, launch_ros, rviz2); in the pip environment use `skelsplat demo`. Both nodes
read config/sim_rig_lab.toml, so they agree on the rig whichever starts first.
"""
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("skelsplat_ros")
    params = PathJoinSubstitution([share, "config", "demo.yaml"])
    calibration = {"calibration_file": PathJoinSubstitution([share, "config", "sim_rig_lab.toml"])}
    return LaunchDescription([
        DeclareLaunchArgument("rviz", default_value="true", description="start rviz2"),
        Node(package="skelsplat_ros", executable="skelsplat_sim_rig", name="skelsplat_sim_rig", output="screen",
             parameters=[params, calibration]),
        Node(package="skelsplat_ros", executable="skelsplat_node", name="skelsplat_node", output="screen",
             parameters=[params, calibration]),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
             arguments=["-d", PathJoinSubstitution([share, "config", "skelsplat.rviz"])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
