"""The fusion core: pure numpy/torch, no ROS import. The ROS adapters and the CLI sit on top of it."""
