"""Input and output: keypoint files (NPZ, OpenPose JSON), result exports (NPZ, TRC, CSV) and the partial-view
synchronizer shared by the node and recordings. No ROS import."""
