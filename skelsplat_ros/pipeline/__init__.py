"""Recordings end to end, above the core: one take's keypoints to a result file (``fuse.py``, the work of
``skelsplat fuse``) and whole studies (``skelsplat batch``: ``study.py`` finds the takes, ``take.py`` is one take's
work, ``runner.py`` schedules them on local worker processes (``local.py``) or Ray (``ray_backend.py``, imported
only when chosen)). No ROS import."""
