"""Videos and image folders as frame sources, their alignment, and what every backend does last (finish_people)."""

from __future__ import annotations

import numpy as np
import pytest

from skelsplat_ros.detection.base import DetectorConfig, finish_people
from skelsplat_ros.detection.sources import SourceError, aligned_span, open_source

cv2 = pytest.importorskip("cv2")


def write_video(path, frames: int, fps: float = 30.0, size=(32, 24)):
    """An MJPG .avi whose frame k is a flat grey of value 8 k (so a frame's index can be read back)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for k in range(frames):
        writer.write(np.full((size[1], size[0], 3), 8 * k, dtype=np.uint8))
    writer.release()
    return path


def _index(image: np.ndarray) -> int:
    return round(float(image.mean()) / 8)


def test_video_source_reads_its_name_count_rate_and_frames_from_an_offset(tmp_path):
    source = open_source(write_video(tmp_path / "cam07.avi", 12, fps=25.0))
    assert (source.name, source.num_frames, source.fps) == ("cam07", 12, 25.0)
    frames = list(source.frames(start=4, count=3))
    assert [_index(f) for f in frames] == [4, 5, 6]
    assert frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8


def test_image_folder_is_sorted_naturally_and_has_no_rate_unless_given(tmp_path):
    folder = tmp_path / "left"
    folder.mkdir()
    for k in (1, 2, 10):
        cv2.imwrite(str(folder / f"img{k}.png"), np.full((6, 8, 3), 8 * k, dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    source = open_source(folder)
    assert (source.name, source.num_frames, source.fps) == ("left", 3, None)
    assert [_index(f) for f in source.frames()] == [1, 2, 10]
    assert open_source(folder, name="cam1", fps=15.0).fps == 15.0


def test_unequal_lengths_are_refused_unless_offsets_align_them(tmp_path):
    a = open_source(write_video(tmp_path / "a.avi", 10))
    b = open_source(write_video(tmp_path / "b.avi", 13))
    with pytest.raises(SourceError, match=r"different lengths \(a 10 frames, b 13 frames\).*--offsets"):
        aligned_span([a, b])
    assert aligned_span([a, b], [0, 3]) == ([0, 3], 10)
    assert aligned_span([a, b], [2, 0]) == ([2, 0], 8)
    with pytest.raises(SourceError, match="no frame common"):
        aligned_span([a, b], [10, 0])
    with pytest.raises(SourceError, match="2 offsets for 3 sources"):
        aligned_span([a, b, a], [0, 0])


def test_unequal_frame_rates_are_refused_even_with_offsets(tmp_path):
    a = open_source(write_video(tmp_path / "a.avi", 10, fps=30.0))
    b = open_source(write_video(tmp_path / "b.avi", 10, fps=60.0))
    with pytest.raises(SourceError, match="different frame rates.*a 30 fps, b 60 fps"):
        aligned_span([a, b], [0, 0])


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="bad.mp4"):
        open_source(tmp_path / "bad.mp4")
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "empty")


def _person(x0: float, y0: float, conf: float = 0.9) -> np.ndarray:
    """17 joints on a 100 px tall figure at (x0, y0)."""
    joints = np.zeros((17, 3))
    joints[:, 0] = x0 + 10 * np.sin(np.arange(17))
    joints[:, 1] = y0 + np.linspace(0, 100, 17)
    joints[:, 2] = conf
    return joints


def test_duplicates_are_suppressed_keeping_the_more_confident_one():
    original = _person(100, 100, 0.9)
    duplicate = original.copy()
    duplicate[:, :2] += 3.0  # within 0.1 x the ~100 px size
    duplicate[:, 2] = 0.95
    neighbour = _person(160, 100, 0.8)  # 60 px away: somebody else
    people = finish_people(np.stack([original, duplicate, neighbour]), np.array([0.9, 0.95, 0.8]), DetectorConfig())
    assert len(people) == 2
    np.testing.assert_array_equal(people[0], duplicate)
    np.testing.assert_array_equal(people[1], neighbour)


def test_thresholds_and_max_people():
    weak_joints = _person(0, 0, 0.9)
    weak_joints[:5, 2] = 0.1
    people = np.stack([weak_joints, _person(300, 0, 0.9), _person(600, 0, 0.9), _person(900, 0, 0.2)])
    scores = np.array([0.9, 0.4, 0.8, 0.7])
    out = finish_people(people, scores, DetectorConfig(max_people=5, min_person_score=0.5, min_keypoint_score=0.3))
    assert len(out) == 2  # person 1 under min_person_score; person 3's every joint under min_keypoint_score
    assert np.isnan(out[0, :5, :2]).all() and np.all(out[0, :5, 2] == 0.0)  # the weak joints of person 0
    np.testing.assert_array_equal(out[0, 5:], people[0, 5:])
    np.testing.assert_array_equal(out[1], people[2])
    assert len(finish_people(people, scores, DetectorConfig(max_people=1))) == 1
