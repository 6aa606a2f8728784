"""Multi-person tracking (no ROS): detections of every view, in any order and without ids, to 3D people with stable
ids, each fused by SkelSplat. :class:`MultiPersonTracker` is the causal tracker (the node's); :func:`track_offline`
runs it over a recording, stitches tracks across short gaps and refits each person offline."""

from .tracker import MultiPersonTracker, PersonEstimate, TrackerConfig, TrackerStep

__all__ = ["MultiPersonTracker", "PersonEstimate", "TrackerConfig", "TrackerStep"]
