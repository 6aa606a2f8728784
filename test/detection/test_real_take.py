"""The real Pose2Sim multi-person take (pose2sim 0.10.49 wheel: 4 portrait videos, 60 fps, 100 frames, two people and
a bystander) from video to 3D tracks and pictures, through the repository's own fetch script and mediapipe detector.

The wheel is fetched once into data/pose2sim_multi (gitignored) and the 400 images are detected once per detector
version (the keypoints are cached there under a hash of the detection code and settings), so a test run pays for them
at most once.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("mediapipe")
cv2 = pytest.importorskip("cv2")

from skelsplat_ros.bench.limbs import limb_table, people_limb_consistency, worst  # noqa: E402
from skelsplat_ros.bench.reprojection import nearest_detection_errors  # noqa: E402
from skelsplat_ros.calibration.drift import DriftWatch  # noqa: E402
from skelsplat_ros.detection import DetectorConfig  # noqa: E402
from skelsplat_ros.detection.recording import detect_recording  # noqa: E402
from skelsplat_ros.detection.sources import open_source  # noqa: E402
from skelsplat_ros.fusion import preset_config  # noqa: E402
from skelsplat_ros.fusion.config import DEPTH_FILTER  # noqa: E402
from skelsplat_ros.fusion.streaming import uses_depth_filter  # noqa: E402
from skelsplat_ros.geometry.calibration import load_calibration  # noqa: E402
from skelsplat_ros.io.keypoints import align_to_rig, load_keypoints, save_keypoints_npz  # noqa: E402
from skelsplat_ros.skeleton.models import get_skeleton, track_rgb  # noqa: E402
from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig  # noqa: E402
from skelsplat_ros.tracking.recording import track_offline, track_streaming  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "pose2sim_multi"
CONFIG = DetectorConfig()


@pytest.fixture(scope="module")
def take():
    """``(keypoint set [4, 100, S, 17, 3], rig, video paths)`` of the take, fetched and detected at most once."""
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_pose2sim_multi.py"), "--dest", str(DATA)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    videos = sorted((DATA / "videos").glob("cam0*.mp4"))
    code = b"".join(p.read_bytes() for p in sorted((REPO / "skelsplat_ros" / "detection").glob("*.py")))
    key = hashlib.sha256(code + repr(CONFIG).encode()).hexdigest()[:12]
    cache = DATA / f"keypoints_test_{key}.npz"
    if not cache.is_file():
        keypoints, _ = detect_recording([open_source(v) for v in videos], CONFIG)
        save_keypoints_npz(keypoints, cache)
    keypoints, rig = align_to_rig(load_keypoints(cache), load_calibration(DATA / "calib.toml"))
    return keypoints, rig, videos


def test_every_camera_finds_people_without_duplicates_inside_its_image(take):
    keypoints, rig, _ = take
    data = keypoints.keypoints  # [V, F, S, J, 3]
    assert data.shape[:2] == (4, 100) and keypoints.fps == 60.0 and keypoints.skeleton == "coco17"
    seen = np.isfinite(data[..., 0])  # [V, F, S, J]
    people = seen.any(-1).sum(-1)  # [V, F]
    assert np.all((people > 0).mean(axis=1) >= 0.9), (people > 0).mean(axis=1)
    assert people.max() <= 3  # two people and the bystander at most
    xy = data[..., :2][seen]
    assert np.all((xy > -0.25 * 1088) & (xy < 1.25 * np.array([1088, 1920])))
    for v in range(4):
        for f in range(100):
            slots = [s for s in data[v, f] if np.isfinite(s[:, 0]).any()]
            for i in range(len(slots)):
                for k in range(i + 1, len(slots)):
                    both = np.isfinite(slots[i][:, 0]) & np.isfinite(slots[k][:, 0])
                    gap = np.median(np.linalg.norm(slots[i][both, :2] - slots[k][both, :2], axis=-1))
                    assert not both.any() or gap > 30.0, f"camera {v} frame {f}: the same person twice"


def test_offline_fusion_tracks_both_people_through_the_take_and_never_the_bystander(take):
    keypoints, rig, _ = take
    skeleton = get_skeleton("coco17")
    result = track_offline(rig, skeleton, keypoints.keypoints, preset_config("default"), keypoints.fps)
    present = np.isfinite(result.joints).all(-1).any(-1)  # [F, T]
    assert result.num_tracks == 2, present.sum(axis=0)  # a bystander's track would be a third
    assert np.all(present.sum(axis=0) >= 95), present.sum(axis=0)
    names = list(skeleton.joint_names)
    hips = result.joints[:, :, [names.index("l_hip"), names.index("r_hip")]].mean(axis=2)  # [F, T, 3]
    jumps = np.linalg.norm(np.diff(hips, axis=0), axis=-1)
    assert np.nanmax(jumps) < 0.25, "a track jumped between people"


def test_offline_fusion_reprojects_onto_the_detections_within_the_issue_target(take):
    """Issue 19: median reprojection error over the four views at most 12 px (each person against the detection
    nearest to it; plain DLT about 13.7 px). With the offline fit's splat as wide as the streaming one's (30 mm) it
    was 12.2 px: a view that disagreed pulled the fit off the ones that agreed."""
    keypoints, rig, _ = take
    result = track_offline(rig, get_skeleton("coco17"), keypoints.keypoints, preset_config("default"), keypoints.fps)
    errors = nearest_detection_errors(rig, result.joints, keypoints.keypoints)
    assert errors.size > 7000 and np.median(errors) <= 12.0, (errors.size, np.median(errors))


def test_streaming_keeps_both_people_under_their_own_ids_and_never_the_bystander(take):
    """What the node would publish. Before a rejected refit left the track as it was (tracker.py), one person was
    lost around frame 80 and born again under a third id. In some frames one camera alone sees a person (the man's
    covered face: BlazePose's person detector misses him in three cameras at times; the other leaves three cameras at
    the end): a confirmed track goes on being output on that camera's rays (``TrackerConfig.single_view_for``;
    before it, 87 and 82 frames)."""
    keypoints, rig, _ = take
    skeleton = get_skeleton("coco17")
    result = track_streaming(rig, skeleton, keypoints.keypoints, preset_config("default"), keypoints.fps)
    present = np.isfinite(result.joints).all(-1).any(-1)  # [F, T]
    assert result.num_tracks == 2, present.sum(axis=0)
    assert np.all(present.sum(axis=0) >= 95), present.sum(axis=0)
    names = list(skeleton.joint_names)
    hips = result.joints[:, :, [names.index("l_hip"), names.index("r_hip")]].mean(axis=2)  # [F, T, 3]
    assert np.nanmax(np.linalg.norm(np.diff(hips, axis=0), axis=-1)) < 0.25, "a track jumped between people"


def test_at_the_node_chain_s_5_hz_both_people_are_out_from_their_first_frame(take):
    """Issue 19's node chain target (both people in >= 95 % of the frames at 5 Hz), bounded by the tracker: the
    take's first 60 frames stamped 0.2 s apart, with the chain's tracker settings (``config/detect.yaml``). The man
    is seen by two of the three cameras that face him in the first frames (cam01 misses his covered face); they agree
    closely, so his track is confirmed at its birth (``TrackerConfig.confirm_tight_births``) like the woman's, whom
    three cameras see. With complete skeletons (the node's default: ROS4HRI on) both are out from the first frame,
    60 of 60; without, from the fourth, once their bone lengths are known (``bone_warmup``), 57 of 60. Before, the man
    waited for a third camera: 56 of 60 (93 %) either way."""
    keypoints, rig, _ = take
    settings = yaml.safe_load((REPO / "config" / "detect.yaml").read_text())["skelsplat_node"]["ros__parameters"]
    tracking = TrackerConfig(tentative_timeout=settings["track_tentative_timeout"])
    for complete in (True, False):
        config = replace(preset_config("default"), complete=complete)
        result = track_streaming(rig, get_skeleton("coco17"), keypoints.keypoints[:, :60], config, 5.0, tracking)
        present = np.isfinite(result.joints).all(-1).any(-1)  # [F, T]
        assert result.num_tracks == 2, present.sum(axis=0)
        first = 0 if complete else config.bone_warmup
        assert present[first:].all(), (complete, np.flatnonzero(~present.all(axis=1)))


@pytest.mark.parametrize("rate", [60.0, 5.0])
def test_the_drift_watch_names_no_camera_of_the_still_rig(take, rate):
    """The rig never moved: no camera may be named, neither at the take's 60 Hz nor at the 5 Hz of the node chain
    benchmark (frames stamped as they were sent), where the watch named cam02 and cam04 from their first samples."""
    keypoints, rig, _ = take
    skeleton = get_skeleton(keypoints.skeleton)
    tracker = MultiPersonTracker(rig, skeleton, preset_config("default"), TrackerConfig())
    watch = DriftWatch(rig.names, skeleton)
    found = []
    for f in range(keypoints.keypoints.shape[1]):
        detections = [rows[(np.nan_to_num(rows[..., 2]) > 0).any(-1)] for rows in keypoints.keypoints[:, f]]
        step = tracker.step(detections, f / rate)
        found += [(f / rate, camera, watch.figures()) for camera in watch.observe(f / rate, rig, detections, step)]
    assert not found, found


@pytest.mark.parametrize("mode", ["offline", "streaming"])
def test_every_output_limb_keeps_its_length_through_the_take(take, mode):
    """Issue 18: a wrist that no camera placed well used to be output anyway (a forearm from 0.2 m to 0.65 m,
    CV 0.20 offline; 1.8x its median, CV 0.24, streaming). Every limb of every person output: at most 1.5x its
    median length, CV at most 0.05 (fusion/output.py). Streaming with the depth filter (issue 21 item 2, the
    default) too: before its prior left out the joints it would pull off the person's bone lengths
    (``streaming.BONE_GATE``), track 1's right forearm varied with CV 0.069 (measured since: 0.044 and 0.044)."""
    keypoints, rig, _ = take
    run = track_offline if mode == "offline" else track_streaming
    config = replace(preset_config("default"), depth_filter=DEPTH_FILTER)  # the default (test_fixed_lag.py)
    assert mode == "offline" or uses_depth_filter(config)
    result = run(rig, get_skeleton("coco17"), keypoints.keypoints, config, keypoints.fps)
    for track, stats in people_limb_consistency(result.joints, result.track_ids, result.joint_names).items():
        assert sum(s.frames for s in stats) > 0, f"track {track} outputs no limb"
        ratio, cv = worst(stats)
        assert ratio <= 1.5 and cv <= 0.05, f"track {track}: " + limb_table({track: stats})


def test_render_draws_each_track_in_its_colour_on_the_real_videos(take, tmp_path):
    from skelsplat_ros.cli import main

    keypoints, rig, videos = take
    result = track_offline(rig, get_skeleton("coco17"), keypoints.keypoints[:, :3], preset_config("default"), 60.0)
    from skelsplat_ros.io.export import save_people_result

    save_people_result(tmp_path / "people.npz", result.joints, result.confidence, result.covariance,
                       result.track_ids, result.joint_names, 60.0)
    assert main(["render", str(tmp_path / "people.npz"), "--calibration", str(DATA / "calib.toml"), "--videos",
                 *map(str, videos), "--output", str(tmp_path / "render.mp4"), "--height", "240",
                 "--sheet-frames", "2", "--quiet"]) == 0
    capture = cv2.VideoCapture(str(tmp_path / "render.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    sheet = cv2.imread(str(tmp_path / "render.png"))
    assert sheet.shape[0] == 2 * 240
    for track in result.track_ids:
        colour = np.array([255 * c for c in track_rgb(track)][::-1])  # BGR
        assert (np.abs(sheet.astype(int) - colour).max(axis=-1) < 40).sum() > 200, f"no pixels of track {track}"
