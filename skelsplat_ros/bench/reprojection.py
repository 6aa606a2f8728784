"""Reprojection error of fused people against a recording's detections: the figure of the issue-19 target on the real
Pose2Sim multi-person take (median over the views <= 12 px), where there is no 3D ground truth.

Each fused person of each frame is projected into each camera and compared with the detection nearest to it there (the
one whose median distance over the joints both have is smallest, if under ``match_px``), joint by joint, over the
joints the person has output and the detection has with confidence > 0. No track-to-detection assignment is needed, so
every method (SkelSplat, DLT, robust triangulation) is judged the same way.
"""

from __future__ import annotations

import numpy as np

from ..geometry.camera import CameraRig

MATCH_PX = 80.0
"""A detection farther than this (median over the joints, px) from where a person projects is someone else's."""


def nearest_detection_errors(
    rig: CameraRig, joints: np.ndarray, detections: np.ndarray, match_px: float = MATCH_PX
) -> np.ndarray:
    """Pixel errors ``[N]`` of fused ``joints [F, T, J, 3]`` (NaN = not output) against ``detections [V, F, S, J, 3]``
    (x px, y px, confidence) of the same rig, each person against the detection nearest to it in each view."""
    errors = []
    num_frames, num_tracks = joints.shape[:2]
    for f in range(num_frames):
        for t in range(num_tracks):
            points = joints[f, t]
            seen = np.isfinite(points).all(-1)
            if not seen.any():
                continue
            uv = rig.project(np.where(seen[:, None], points, 0.0))  # [V, J, 2]
            for v in range(len(rig)):
                slots = detections[v, f]  # [S, J, 3]
                valid = (np.nan_to_num(slots[..., 2]) > 0) & seen[None]
                distance = np.linalg.norm(slots[..., :2] - uv[v][None], axis=-1)  # [S, J]
                medians = [np.median(d[m]) if m.any() else np.inf for d, m in zip(distance, valid)]
                best = int(np.argmin(medians))
                if medians[best] < match_px:
                    errors.append(distance[best][valid[best]])
    return np.concatenate(errors) if errors else np.empty(0)
