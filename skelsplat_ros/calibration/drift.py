"""Live: each camera's reprojection residual against the joints the other cameras agree on, a camera that moved
named from it, and the refinement of that camera from the frames that follow.

:class:`DriftWatch` reads what the tracker did (``TrackerStep.assignments``: the keypoints each track was fitted to,
and ``people[].views``: which detection each confirmed person took): for every track and camera, the track's joints
are triangulated from the *other* cameras alone and projected into this one, and the distance to this camera's
detection is that camera's residual. A camera the tracker no longer associates (a bumped camera's rays miss the
people by more than its gate: none of its detections taken by any track this frame) is measured against the nearest
of its detections nobody took; while it still gives some track a detection, a track it did not give one is no
evidence (on a real take that nearest free detection is mostly another person: a bystander, an occluded track).
A camera whose median residual over the last ``window`` seconds stands well above the others' is named as moved;
it is judged only against ``min_peers`` other cameras' figures (at the start, alone, it has no reference).

:class:`Recalibrator` collects the frames after that and refines the moved camera alone, the others held, with the
offline pipeline (:func:`~.refine.self_calibrate`): the same association, relocation and acceptance checks. An
accepted pose enters the fusion through :class:`CorrectedRigSource`.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

import numpy as np

from ..geometry.camera import Camera, CameraRig
from ..geometry.rig_source import FrameRig, RigSource, ViewRef
from ..geometry.triangulation import triangulate_leave_one_out
from ..skeleton.models import Skeleton
from ..tracking.tracker import TrackerStep
from .refine import CalibrationConfig, CalibrationResult, self_calibrate
from .tracklets import median_over_joints
from .world import WorldAnchor

__all__ = ["DriftConfig", "DriftWatch", "RecalibrationConfig", "Recalibrator", "Correction", "CorrectedRigSource"]


@dataclass(frozen=True)
class DriftConfig:
    """When :class:`DriftWatch` calls a camera moved.

    Attributes:
        window: seconds of residuals pooled per camera (their median is the camera's figure).
        min_samples: residuals a camera needs in the window to be judged.
        threshold_px: a camera is moved when its median residual exceeds this (px) ...
        ratio: ... and this many times the median of the other cameras' figures.
        min_confidence: keypoints below this confidence are not used.
        min_joints: joints a residual needs (seen by the camera and triangulated by the others).
        interval: frames closer than this (s) to the last one measured are skipped: at ten frames a second the
            window still holds enough residuals, for a third of the cost at camera rates.
        min_peers: other cameras (at most all the others) that need a figure before a camera is judged: real
            leave-one-out residuals are tens of px on every camera (detector noise over a few metres), so a camera is
            only ever moved relative to the others, never against ``threshold_px`` alone.
    """

    window: float = 1.0
    min_samples: int = 8
    threshold_px: float = 15.0
    ratio: float = 3.0
    min_confidence: float = 0.3
    min_joints: int = 5
    interval: float = 0.1
    min_peers: int = 2


class DriftWatch:
    """Per-camera reprojection residuals against the other cameras (see the module docstring). :meth:`observe` is
    called from one thread (the fusion thread); :meth:`figures`, :meth:`moved` and :meth:`reset` from any."""

    def __init__(self, cameras: list[str], skeleton: Skeleton, config: DriftConfig = DriftConfig()) -> None:
        self.cameras = list(cameras)
        self.config = config
        self._flip = skeleton.flip_permutation
        # (stamp s, residual px, measured on the track's own detection) per camera
        self._samples: list[collections.deque[tuple[float, float, bool]]] = [collections.deque() for _ in cameras]
        self._lock = threading.Lock()
        self._figures = np.full(len(cameras), np.nan)
        self._moved: dict[str, float] = {}  # camera -> stamp it was found moved
        self._last = -np.inf
        self._forget: set[int] = set()  # cameras to reset at the next frame (asked from another thread)

    def observe(self, stamp: float, rig: CameraRig, detections: list[np.ndarray], step: TrackerStep) -> list[str]:
        """Take one frame: ``detections[v]`` ``[S_v, J, 3]`` as given to the tracker, ``step`` what it did, ``rig``
        the cameras it used. Returns the cameras found moved at this frame."""
        if self._last <= stamp < self._last + self.config.interval:
            return []
        with self._lock:
            # A clock that went back (a bag replayed again) starts every camera afresh.
            forget = range(len(self.cameras)) if stamp < self._last else self._forget
            for v in forget:
                self._samples[v].clear()
            self._forget.clear()
        self._last = stamp
        residuals = self._residuals(rig, detections, step)
        window = self.config.window
        for v, (values, own) in enumerate(residuals):
            samples = self._samples[v]
            samples.extend((stamp, float(r), bool(o)) for r, o in zip(values, own))
            while samples and samples[0][0] < stamp - window:
                samples.popleft()
        figures = np.array([self._figure(s) for s in self._samples])
        found = []
        with self._lock:
            self._figures = figures
            for v, camera in enumerate(self.cameras):
                others = np.delete(figures, v)
                if np.isfinite(others).sum() < min(self.config.min_peers, len(others)):
                    continue  # no reference yet: keep any earlier verdict until the others can judge it
                reference = float(np.nanmedian(others))
                if figures[v] > max(self.config.threshold_px, self.config.ratio * reference):
                    if camera not in self._moved:
                        self._moved[camera] = stamp
                        found.append(camera)
                elif figures[v] < 0.5 * self.config.threshold_px:
                    self._moved.pop(camera, None)
        return found

    def figures(self) -> dict[str, float]:
        """Median residual (px) per camera over the window (NaN: too few samples)."""
        with self._lock:
            return dict(zip(self.cameras, self._figures.tolist()))

    def moved(self) -> dict[str, float]:
        """Cameras currently found moved, with the stamp they were found at."""
        with self._lock:
            return dict(self._moved)

    def reset(self, camera: str) -> None:
        """Forget a camera's residuals from the next frame on (its pose was corrected); any thread."""
        with self._lock:
            self._forget.add(self.cameras.index(camera))
            self._moved.pop(camera, None)

    def _figure(self, samples: collections.deque[tuple[float, float, bool]]) -> float:
        """A camera's median residual over the window: from its own detections while the tracker still gave it
        enough of them, from every sample once it lost the people (a bump); NaN with too few samples."""
        own = [r for _, r, o in samples if o]
        if len(own) >= self.config.min_samples:
            return float(np.median(own))
        return float(np.median([r for _, r, _ in samples])) if len(samples) >= self.config.min_samples else np.nan

    def _residuals(self, rig: CameraRig, detections: list[np.ndarray], step: TrackerStep
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each camera's residuals (px, ideal pinhole) of this frame, one per track it could be measured on, and
        whether each was measured on the track's own detection (else on the nearest free one)."""
        num_views = len(rig)
        if not step.assignments:
            return [(np.zeros(0), np.zeros(0, dtype=bool))] * num_views
        tracks = np.stack(list(step.assignments.values()))  # [T, V, J, 3]
        confidence = np.nan_to_num(tracks[..., 2])
        usable = (confidence >= self.config.min_confidence) & np.isfinite(tracks[..., :2]).all(-1)  # [T, V, J]
        uv = rig.undistort(np.moveaxis(np.where(usable[..., None], tracks[..., :2], np.nan), 1, 0))  # [V, T, J, 2]
        weight = np.moveaxis(np.where(usable, confidence, 0.0), 1, 0)  # [V, T, J]
        points = triangulate_leave_one_out(rig, uv, weight)  # [V, T, J, 3]: each camera's from the others
        homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
        projected = np.einsum("vij,vtkj->vtki", rig.projection_matrices, homogeneous)
        with np.errstate(divide="ignore", invalid="ignore"):
            predicted = np.where(projected[..., 2:] > 1e-9, projected[..., :2] / projected[..., 2:], np.nan)
        enough = np.isfinite(predicted).all(-1).sum(-1) >= self.config.min_joints  # [V, T]
        detected = np.concatenate([uv, weight[..., None]], axis=-1)  # [V, T, J, 3]
        own = enough & (np.moveaxis(usable, 1, 0).sum(-1) >= self.config.min_joints)  # the track took it
        residual = np.where(own, self._distance(predicted, detected), np.nan)  # [V, T]
        out = []
        for v, camera in enumerate(rig):
            lost = enough[v] & ~own[v]
            # The tracker gave this camera no track's detection (as after a bump): its nearest free ones instead.
            if lost.any() and not own[v].any():
                residual[v, lost] = self._nearest_free(camera, v, predicted[v, lost], detections[v], step)
            measured = np.isfinite(residual[v])
            out.append((residual[v][measured], own[v][measured]))
        return out

    def _nearest_free(self, camera: Camera, view: int, predicted: np.ndarray, detections: np.ndarray,
                      step: TrackerStep) -> np.ndarray:
        """Distance ``[L]`` of predicted joints ``[L, J, 2]`` (ideal pinhole) to the nearest detection of the camera
        that no confirmed person took, for those predicted inside its image (NaN otherwise: no evidence)."""
        taken = {int(person.views[view]) for person in step.people if len(person.views) > view
                 and person.views[view] >= 0}
        free = [row for row in range(len(detections)) if row not in taken]
        inside = np.array([camera.in_image(p).mean() > 0.5 for p in predicted])  # distortion is small at this grain
        if not free or not inside.any():
            return np.full(len(predicted), np.nan)
        candidates = np.asarray(detections, dtype=np.float64)[free]  # [D, J, 3]
        candidates = np.concatenate([camera.undistort_pixels(candidates[..., :2]), candidates[..., 2:]], axis=-1)
        distance = self._distance(predicted[:, None], candidates[None])  # [L, D]
        # One detection is evidence for one track only (its nearest): two tracks near one person count it once.
        nearest = np.argmin(np.nan_to_num(distance, nan=np.inf), axis=0)  # [D]
        keep = np.zeros(distance.shape, dtype=bool)
        keep[nearest, np.arange(distance.shape[1])] = True
        distance = np.fmin.reduce(np.where(keep, distance, np.nan), axis=1)
        return np.where(inside, distance, np.nan)

    def _distance(self, predicted: np.ndarray, detection: np.ndarray) -> np.ndarray:
        """Median distance (px) of detections ``[..., J, 3]`` from predicted joints ``[..., J, 2]`` (broadcast),
        left/right mirrored where that is closer (a detector's swap is no drift); NaN with too few joints."""
        best = None
        for order in (slice(None), self._flip):
            row = detection[..., order, :]
            good = (np.nan_to_num(row[..., 2]) >= self.config.min_confidence) & np.isfinite(predicted).all(-1) \
                & np.isfinite(row[..., :2]).all(-1)
            gap = np.where(good, np.linalg.norm(np.nan_to_num(row[..., :2] - predicted), axis=-1), np.nan)
            median = np.where(good.sum(-1) >= self.config.min_joints, median_over_joints(gap), np.nan)
            best = median if best is None else np.fmin(best, median)
        return best


@dataclass(frozen=True)
class RecalibrationConfig:
    """How :class:`Recalibrator` refines a moved camera.

    Attributes:
        collect: seconds of frames collected after the camera was found moved, before refining.
        calibration: the offline pipeline's thresholds (the same acceptance checks).
    """

    collect: float = 10.0
    calibration: CalibrationConfig = CalibrationConfig()


@dataclass
class Correction:
    """The outcome of one refinement of a moved camera.

    Attributes:
        camera: its name.
        accepted: the refinement converged and passed every check.
        pose: the refined camera (when accepted).
        result: the offline pipeline's full result (report, reasons).
    """

    camera: str
    accepted: bool
    pose: Camera | None
    result: CalibrationResult


class Recalibrator:
    """Collects frames after a camera was found moved and refines it alone (see the module docstring). The
    frames are taken by :meth:`add` (fusion thread); :meth:`refine` runs on a snapshot (a background thread)."""

    def __init__(self, skeleton: Skeleton, config: RecalibrationConfig = RecalibrationConfig()) -> None:
        self.skeleton = skeleton
        self.config = config
        self._lock = threading.Lock()
        self._camera: str | None = None
        self._since = 0.0
        self._frames: list[tuple[float, CameraRig, list[np.ndarray]]] = []

    @property
    def camera(self) -> str | None:
        """The camera being collected for, if any."""
        with self._lock:
            return self._camera

    def start(self, camera: str, stamp: float) -> None:
        """Collect frames for ``camera`` from ``stamp`` on (what came before may show it where it was)."""
        with self._lock:
            self._camera, self._since, self._frames = camera, stamp, []

    def stop(self) -> None:
        with self._lock:
            self._camera, self._frames = None, []

    def add(self, stamp: float, rig: CameraRig, detections: list[np.ndarray]) -> bool:
        """Keep one frame while collecting; True once ``collect`` seconds are in."""
        with self._lock:
            if self._camera is None or stamp < self._since:
                return False
            self._frames.append((stamp, rig, [np.asarray(d, dtype=np.float64) for d in detections]))
            return stamp - self._since >= self.config.collect

    def refine(self) -> Correction | None:
        """Refine the collected camera from the collected frames (the latest rig's other cameras held); ``None``
        when nothing was collected. Collecting stops."""
        with self._lock:
            camera, frames = self._camera, self._frames
            self._camera, self._frames = None, []
        if camera is None or not frames:
            return None
        rig = frames[-1][1]
        num_slots = max(1, max(len(d) for _, _, views in frames for d in views))
        keypoints = np.full((len(rig), len(frames), num_slots, self.skeleton.num_joints, 3), np.nan)
        keypoints[..., 2] = 0.0
        for f, (_, _, views) in enumerate(frames):
            for v, people in enumerate(views):
                keypoints[v, f, :len(people)] = people
        held = tuple(name for name in rig.names if name != camera)
        result = self_calibrate(rig, self.skeleton, keypoints, WorldAnchor(fixed=held), self.config.calibration)
        pose = result.rig[rig.index(camera)] if result.accepted else None
        return Correction(camera, result.accepted, pose, result)


@dataclass
class _Offset:
    """A rigid correction in a camera's frame: ``R = rotation R0``, ``t = rotation t0 + translation``."""

    rotation: np.ndarray
    translation: np.ndarray


class CorrectedRigSource:
    """A :class:`~skelsplat_ros.geometry.rig_source.RigSource` whose cameras get rigid corrections (in the camera's
    own frame) on top of another source's poses: a camera corrected while its source says the old pose (a calibration
    file, a static TF) keeps the correction on every frame, and so does one whose TF moves (the offset is the mount's
    error, not a place in the world)."""

    def __init__(self, source: RigSource) -> None:
        self.source = source
        self.cameras = source.cameras
        self._offsets: dict[str, _Offset] = {}
        self._lock = threading.Lock()
        self._cache: tuple[CameraRig, CameraRig] | None = None  # (source's rig, corrected rig)

    def correct(self, old: Camera, new: Camera) -> None:
        """From now on, ``old.name`` is posed as ``new`` where its source says ``old``."""
        rotation = new.R @ old.R.T
        with self._lock:
            self._offsets[old.name] = _Offset(rotation, new.t - rotation @ old.t)
            self._cache = None

    def rig_for(self, views: dict[str, ViewRef], timeout: float = 0.0) -> FrameRig:
        frame = self.source.rig_for(views, timeout)
        with self._lock:
            if not self._offsets:
                return frame
            if self._cache is not None and self._cache[0] is frame.rig:  # a static source: the same rig each time
                return FrameRig(self._cache[1], frame.missing)
            cameras = []
            for camera in frame.rig:
                offset = self._offsets.get(camera.name)
                if offset is not None:
                    camera = Camera(camera.name, camera.K, offset.rotation @ camera.R,
                                    offset.rotation @ camera.t + offset.translation, camera.size, camera.dist)
                cameras.append(camera)
            corrected = CameraRig(cameras)
            self._cache = (frame.rig, corrected)
            return FrameRig(corrected, frame.missing)
