"""ROS 2 side of skelsplat_ros: the fusion node, the simulated rig, the demo (needs rclpy and the generated messages).

The fusion maths lives in the core packages (geometry, skeleton, fusion, io) and does not import ROS; these modules only translate.
"""
