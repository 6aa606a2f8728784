"""Self-calibration figures (``scripts/bench_calibration.py``): simulated takes with ground truth, a bumped camera,
starts beyond the basin, and the real Pose2Sim multi-person take when its files are given.

Simulation: ``--rig`` (portrait by default: 4 portrait HD cameras; the pipeline's thresholds were set on the lab
rig, seeds 0-2), seeds 3-5, 1-3 people for 15 s at 30 fps with realistic detector noise. ``fixed``: cam0 and cam1
hold the frame and the scale, the others start 10-15 degrees and 30-50 cm off; ``baseline``: cam0 holds the frame,
the true cam0-cam1 distance the scale, cam1-cam3 start off. Per take: the largest rotation and translation error
of a refined camera, MPJPE of SkelSplat (offline, each person's own detections) with the refined rig and with the
true one, and the CPU time (``time.process_time``) of the calibration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration import CalibrationConfig, WorldAnchor, self_calibrate
from ..calibration.refine import CalibrationResult, rig_change
from ..fusion import fuse_offline, preset_config
from ..geometry.camera import CameraRig
from ..sim import disturb_rig
from ..sim.scenes import MultiPersonScenario, make_multi_person_scenario

__all__ = ["Take", "simulated", "bumped", "beyond_basin", "real_take", "mpjpe"]


@dataclass
class Take:
    """One calibration run and what it gave."""

    name: str
    accepted: bool
    rotation: float = float("nan")  # worst refined camera vs the truth, degrees
    translation: float = float("nan")  # metres
    cpu: float = float("nan")  # s
    mpjpe_true: float = float("nan")  # m, SkelSplat with the true rig
    mpjpe_refined: float = float("nan")  # m, ... with the refined rig
    median_after: float = float("nan")  # px
    noise: float = float("nan")  # px
    reasons: list[str] = field(default_factory=list)


def mpjpe(scene: MultiPersonScenario, rig: CameraRig) -> float:
    """MPJPE (m) of SkelSplat (offline, default preset) on each person's own detections with ``rig``."""
    errors = []
    for p in range(scene.num_people):
        present = np.isfinite(scene.ground_truth[:, p]).all(-1).any(-1)
        if present.sum() < 10:
            continue
        result = fuse_offline(rig, scene.skeleton, scene.person_keypoints[:, present, p], preset_config("default"),
                              fps=scene.fps)
        error = np.linalg.norm(result.joints - scene.ground_truth[present, p], axis=-1)
        errors.append(error[np.isfinite(error)])
    return float(np.mean(np.concatenate(errors))) if errors else float("nan")


def _run(name: str, scene: MultiPersonScenario, rough: CameraRig, anchor: WorldAnchor, free: list[int],
         evaluate: bool = True) -> tuple[Take, CalibrationResult]:
    start = time.process_time()
    result = self_calibrate(rough, scene.skeleton, scene.keypoints, anchor, CalibrationConfig())
    cpu = time.process_time() - start
    rig = result.attempt if result.attempt is not None else result.rig
    errors = [rig_change(scene.rig[v], rig[v]) for v in free]
    take = Take(name, result.accepted, max(e[0] for e in errors), max(e[1] for e in errors), cpu,
                median_after=result.after, noise=result.noise, reasons=result.reasons)
    if evaluate and result.accepted:
        take.mpjpe_true, take.mpjpe_refined = mpjpe(scene, scene.rig), mpjpe(scene, result.rig)
    return take, result


def _anchored(scene: MultiPersonScenario, kind: str) -> tuple[list[int], WorldAnchor]:
    """The cameras to disturb and the anchor: ``fixed`` (cam0 and cam1 held) or ``baseline`` (cam0 held, the true
    cam0-cam1 distance)."""
    names = scene.rig.names
    if kind == "fixed":
        return list(range(2, len(names))), WorldAnchor(fixed=tuple(names[:2]))
    distance = float(np.linalg.norm(scene.rig.centres[0] - scene.rig.centres[1]))
    return list(range(1, len(names))), WorldAnchor(baseline=(names[0], names[1], distance))


def simulated(rig_kind: str, seeds: list[int], people: list[int], seconds: float = 15.0,
              anchors: tuple[str, ...] = ("fixed", "baseline")) -> list[Take]:
    """Every camera but the anchors started 10-15 degrees and 30-50 cm off (see the module docstring)."""
    takes = []
    for seed in seeds:
        for count in people:
            scene = make_multi_person_scenario(rig_kind, count, num_frames=int(seconds * 30), seed=seed)
            for kind in anchors:
                free, anchor = _anchored(scene, kind)
                rough = disturb_rig(scene.rig, free, seed=1000 + seed * 10 + count)
                takes.append(_run(f"{rig_kind} seed {seed}, {count} people, {kind}", scene, rough, anchor, free)[0])
    return takes


def bumped(rig_kind: str, seeds: list[int], people: list[int], seconds: float = 15.0) -> list[Take]:
    """One camera (the last) bumped by 30-90 degrees and 0.5-2 m, the others exact; cam0 and cam1 anchor."""
    takes = []
    for seed in seeds:
        for count in people:
            scene = make_multi_person_scenario(rig_kind, count, num_frames=int(seconds * 30), seed=seed)
            view = len(scene.rig) - 1
            rough = disturb_rig(scene.rig, [view], seed=2000 + seed * 10 + count, degrees=(30.0, 90.0),
                                metres=(0.5, 2.0))
            take, _ = _run(f"{rig_kind} seed {seed}, {count} people, {scene.rig.names[view]} bumped", scene, rough,
                           WorldAnchor(fixed=tuple(scene.rig.names[:2])), [view])
            takes.append(take)
    return takes


def beyond_basin(rig_kind: str, seeds: list[int], people: list[int], seconds: float = 15.0) -> list[Take]:
    """Every camera but the anchors started 30-45 degrees (and 30-50 cm) off: each must be refused."""
    takes = []
    for seed in seeds:
        for count in people:
            scene = make_multi_person_scenario(rig_kind, count, num_frames=int(seconds * 30), seed=seed)
            for kind in ("fixed", "baseline"):
                free, anchor = _anchored(scene, kind)
                rough = disturb_rig(scene.rig, free, seed=3000 + seed * 10 + count, degrees=(30.0, 45.0))
                take, _ = _run(f"{rig_kind} seed {seed}, {count} people, {kind}, 30-45 deg", scene, rough, anchor,
                               free, evaluate=False)
                takes.append(take)
    return takes


def real_take(folder: Path) -> list[tuple[str, CalibrationResult, CameraRig, float]]:
    """The Pose2Sim multi-person take (``calib.toml`` + ``keypoints_mediapipe.npz`` in ``folder``): cam03 and
    cam04 disturbed by 5 degrees and 15 cm with cam01 and cam02 fixed; cam02-cam04 disturbed with the true
    cam01-cam02 baseline. Returns per case the result, the Qualisys rig and the Qualisys rig's reprojection
    median on the same association."""
    from ..calibration.bundle import BundleSettings, bundle_adjust
    from ..geometry.calibration import load_calibration_metres
    from ..geometry.triangulation import triangulate_dlt
    from ..skeleton.models import get_skeleton

    truth, _ = load_calibration_metres(folder / "calib.toml")
    data = np.load(folder / "keypoints_mediapipe.npz")
    keypoints, skeleton = data["keypoints"], get_skeleton(str(data["skeleton"]))
    distance = float(np.linalg.norm(truth.centres[0] - truth.centres[1]))
    cases = [("cam03, cam04 off by 5 deg and 15 cm; --fixed cam01,cam02", [2, 3],
              WorldAnchor(fixed=("cam01", "cam02"))),
             ("cam02-cam04 off by 5 deg and 15 cm; --baseline cam01 cam02", [1, 2, 3],
              WorldAnchor(baseline=("cam01", "cam02", distance)))]
    out = []
    for name, views, anchor in cases:
        rough = disturb_rig(truth, views, seed=len(views), degrees=(5.0, 5.0), metres=(0.15, 0.15))
        result = self_calibrate(rough, skeleton, keypoints, anchor)
        # The Qualisys rig's own median on the association the refinement ended with (its points adjusted, the
        # cameras held): what "within 1 px of the Qualisys calibration's" compares with.
        qualisys = float("nan")
        observations = result.observations
        if observations is not None:
            uv = np.moveaxis(np.where(observations.observed[..., None], observations.uv, np.nan), 1, 0)
            start = triangulate_dlt(truth, uv, observations.weight.T)
            held = bundle_adjust(truth, observations, np.where(np.isfinite(start), start, 0.0),
                                 np.zeros(len(truth), dtype=bool), BundleSettings(noise=result.noise))
            qualisys = float(np.nanmedian(held.residuals))
        out.append((name, result, truth, qualisys))
    return out
