"""skelsplat_ros: multi-view 3D human skeletons by Gaussian-splat refinement (SkelSplat), for ROS 2."""

__version__ = "0.1.0"
