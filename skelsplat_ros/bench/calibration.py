"""Self-calibration figures (``scripts/bench_calibration.py``): simulated takes with ground truth, a bumped camera,
starts beyond the basin, and real data: the Pose2Sim multi-person take when its files are given, and Shelf.

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

__all__ = ["Take", "simulated", "bumped", "beyond_basin", "wrong_baseline", "RealCase", "real_take",
           "real_joint_subsets", "ShelfCase", "shelf",
           "shelf_score", "mpjpe"]


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


def wrong_baseline(rig_kind: str, seeds: list[int], people: list[int], seconds: float = 15.0) -> list[Take]:
    """The ``baseline`` takes of :func:`simulated` with a wrong distance: the cam0-cam2 distance given for cam0-cam1
    (a measurement between the wrong cameras). Residuals cannot see a scale, so only the cameras' moves from their
    start show it: each must be refused."""
    takes = []
    for seed in seeds:
        for count in people:
            scene = make_multi_person_scenario(rig_kind, count, num_frames=int(seconds * 30), seed=seed)
            names, free = scene.rig.names, list(range(1, len(scene.rig)))
            wrong = float(np.linalg.norm(scene.rig.centres[0] - scene.rig.centres[2]))
            rough = disturb_rig(scene.rig, free, seed=1000 + seed * 10 + count)
            take, _ = _run(f"{rig_kind} seed {seed}, {count} people, baseline cam0-cam2 given for cam0-cam1", scene,
                           rough, WorldAnchor(baseline=(names[0], names[1], wrong)), free, evaluate=False)
            takes.append(take)
    return takes


def _given_fit(given: CameraRig, result: CalibrationResult) -> tuple[float, np.ndarray]:
    """The given rig on the association the refinement ended with (its points adjusted, every camera held): its
    reprojection median (px) and each camera's inlier fraction (as :func:`self_calibrate` counts them), what the
    refined rig's are compared with. NaN when the refinement never got that far."""
    from ..calibration.bundle import BundleSettings, bundle_adjust
    from ..geometry.triangulation import triangulate_dlt

    observations = result.observations
    if observations is None:
        return float("nan"), np.full(len(given), np.nan)
    uv = np.moveaxis(np.where(observations.observed[..., None], observations.uv, np.nan), 1, 0)
    start = triangulate_dlt(given, uv, observations.weight.T)
    held = bundle_adjust(given, observations, np.where(np.isfinite(start), start, 0.0),
                         np.zeros(len(given), dtype=bool), BundleSettings(noise=result.noise))
    observed = np.isfinite(held.residuals)
    with np.errstate(invalid="ignore"):
        inside = held.residuals <= CalibrationConfig().inlier_factor * result.noise
    return float(np.nanmedian(held.residuals)), inside.sum(0) / np.maximum(observed.sum(0), 1)


@dataclass
class RealCase:
    """One real-data case: the given calibration disturbed, then refined from the people.

    Attributes:
        name: what was disturbed and how the world is anchored.
        seed: of the disturbance.
        result: what :func:`self_calibrate` gave.
        given: the dataset's own calibration (the reference).
        given_median: ``given``'s reprojection median (px) on the same association (:func:`_given_fit`).
        given_inliers: ``[V]`` ``given``'s inlier fractions there.
        cpu: ``time.process_time`` of the calibration (s).
    """

    name: str
    seed: int
    result: CalibrationResult
    given: CameraRig
    given_median: float
    given_inliers: np.ndarray
    cpu: float

    def errors(self) -> list[tuple[float, float]]:
        """Per camera: the refined rig (accepted or not) against the given one, degrees and metres (NaN when
        refused before any adjustment)."""
        if self.result.attempt is None:
            return [(float("nan"), float("nan"))] * len(self.given)
        return [rig_change(a, b) for a, b in zip(self.given, self.result.attempt)]


def _real_cases(given: CameraRig, skeleton, keypoints: np.ndarray, cases: list[tuple[str, list[int], WorldAnchor]],
                seeds: list[int]) -> list[RealCase]:
    """Each case's ``views`` disturbed by 5 degrees and 15 cm (seeded), then refined with its anchor."""
    out = []
    for name, views, anchor in cases:
        for seed in seeds:
            rough = disturb_rig(given, views, seed=seed, degrees=(5.0, 5.0), metres=(0.15, 0.15))
            start = time.process_time()
            result = self_calibrate(rough, skeleton, keypoints, anchor)
            cpu = time.process_time() - start
            out.append(RealCase(name, seed, result, given, *_given_fit(given, result), cpu))
    return out


def _baseline(given: CameraRig, a: int, b: int) -> WorldAnchor:
    """``--baseline`` between views ``a`` and ``b`` at their true distance."""
    return WorldAnchor(baseline=(given.names[a], given.names[b],
                                 float(np.linalg.norm(given.centres[a] - given.centres[b]))))


def real_take(folder: Path) -> list[RealCase]:
    """The Pose2Sim multi-person take (``calib.toml`` + ``keypoints_mediapipe.npz`` in ``folder``): cam03 and
    cam04 disturbed by 5 degrees and 15 cm with cam01 and cam02 fixed; cam02-cam04 disturbed with the true
    cam01-cam02 baseline. The disturbance's seed is the number of cameras disturbed (as first measured)."""
    from ..geometry.calibration import load_calibration_metres
    from ..skeleton.models import get_skeleton

    truth, _ = load_calibration_metres(folder / "calib.toml")
    data = np.load(folder / "keypoints_mediapipe.npz")
    keypoints, skeleton = data["keypoints"], get_skeleton(str(data["skeleton"]))
    cases = [("cam03, cam04 off by 5 deg and 15 cm; --fixed cam01,cam02", [2, 3], WorldAnchor(fixed=("cam01", "cam02"))),
             ("cam02-cam04 off by 5 deg and 15 cm; --baseline cam01 cam02", [1, 2, 3], _baseline(truth, 0, 1))]
    return [found for case in cases for found in _real_cases(truth, skeleton, keypoints, [case], [len(case[1])])]


JOINT_SUBSETS = {"all 17": None, "no face": ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"),
                 "no face, no hips": ("shoulder", "elbow", "wrist", "knee", "ankle"),
                 "elbows, wrists, knees, ankles": ("elbow", "wrist", "knee", "ankle"),
                 "hips, knees, ankles": ("hip", "knee", "ankle")}
"""Joint subsets of :func:`real_joint_subsets` (parts of coco17 joint names)."""


def real_joint_subsets(folder: Path) -> list[tuple[str, CalibrationResult, CameraRig]]:
    """Where the Pose2Sim take's keypoints put cam03 and cam04: started *at* the Qualisys rig, cam01 and cam02 held,
    with each of :data:`JOINT_SUBSETS` (the other joints' keypoints dropped; the spread check off, as the take is
    1.7 s). Returns ``(subset, result, Qualisys rig)``."""
    from ..geometry.calibration import load_calibration_metres
    from ..skeleton.models import get_skeleton

    truth, _ = load_calibration_metres(folder / "calib.toml")
    data = np.load(folder / "keypoints_mediapipe.npz")
    keypoints, skeleton = np.asarray(data["keypoints"], dtype=np.float64), get_skeleton(str(data["skeleton"]))
    out = []
    for name, parts in JOINT_SUBSETS.items():
        kept = keypoints.copy()
        if parts is not None:
            drop = [j for j, n in enumerate(skeleton.joint_names) if not any(p in n for p in parts)]
            kept[..., drop, :2], kept[..., drop, 2] = np.nan, 0.0
        result = self_calibrate(truth, skeleton, kept, WorldAnchor(fixed=("cam01", "cam02")),
                                CalibrationConfig(min_spread=0.0))
        out.append((name, result, truth))
    return out


@dataclass
class ShelfCase:
    """A :class:`RealCase` on Shelf, with the fusion scored against Shelf's ground truth (actors 0-2, the
    dataset's ``evaluate_pcp.py``): MPJPE (m, frame-weighted over the actors) and average PCP."""

    case: RealCase
    mpjpe: float
    pcp: float


def shelf_score(folder: Path, rig: CameraRig) -> tuple[float, float]:
    """MPJPE (m, actors 0-2 weighted by their frames) and average PCP of ``skelsplat bench-shelf``'s fusion
    (streaming tracker, default preset) of the Shelf detections with ``rig``."""
    from .shelf import evaluate_shelf, fuse_shelf

    result, _ = fuse_shelf(folder, "streaming", rig=rig)
    report = evaluate_shelf(folder, result)
    actors = [report["actors"][a] for a in sorted(report["actors"]) if int(a) in (0, 1, 2)]
    frames = np.array([a["n_frames"] for a in actors], dtype=float)
    mpjpe = float(np.sum(frames * [a["mpjpe_m"] for a in actors]) / frames.sum())
    return mpjpe, float(report["average_pcp"])


def shelf(folder: Path, seeds: list[int]) -> tuple[tuple[float, float], list[ShelfCase]]:
    """Shelf (5 cameras, OpenPose BODY_25 grouped per camera, 12 s at 25 fps, ground truth for the actors):
    ``fixed``: cam_3 and cam_4 disturbed by 5 degrees and 15 cm, cam_0-cam_2 held; ``baseline``: cam_1-cam_4
    disturbed, the true cam_0-cam_1 distance. Returns the given rig's (MPJPE, PCP) and each case and seed."""
    from ..geometry.calibration import load_calibration_metres
    from ..skeleton.models import get_skeleton

    data = np.load(folder / "keypoints.npz")
    given = load_calibration_metres(folder / "calibration.toml")[0].subset([str(c) for c in data["cameras"]])
    skeleton = get_skeleton(str(data["skeleton"]))
    names = given.names
    cases = [(f"{names[3]}, {names[4]} off by 5 deg and 15 cm; --fixed {','.join(names[:3])}", [3, 4],
              WorldAnchor(fixed=tuple(names[:3]))),
             (f"{names[1]}-{names[4]} off by 5 deg and 15 cm; --baseline {names[0]} {names[1]}", [1, 2, 3, 4],
              _baseline(given, 0, 1))]
    reference = shelf_score(folder, given)
    out = []
    for case in _real_cases(given, skeleton, np.asarray(data["keypoints"], dtype=np.float64), cases, seeds):
        attempt = case.result.attempt
        mpjpe, pcp = shelf_score(folder, attempt) if attempt is not None else (float("nan"), float("nan"))
        out.append(ShelfCase(case, mpjpe, pcp))
    return reference, out
