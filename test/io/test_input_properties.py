"""Property tests (hypothesis) of the input path's pure core: the validator against a per-person reference, and the
synchronizer's invariants under arbitrary arrival orders, duplicates, stamps and qualities."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from skelsplat_ros.io.sync import PartialViewSynchronizer
from skelsplat_ros.io.validation import KeypointValidator, ValidationConfig

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)
J = 5
SIZE = (640.0, 480.0)
MARGIN = 0.25

# No subnormals: torch may have set flush-to-zero in this process, and hypothesis refuses to draw them then.
values = st.one_of(st.floats(-1e3, 1e3, allow_subnormal=False),
                   st.floats(allow_nan=True, allow_infinity=True, width=32, allow_subnormal=False),
                   st.sampled_from([0.0, 1.0, -1e-9, 1.0 + 1e-3, 1e38, -1e38]))
arrays = st.lists(values, min_size=0, max_size=J + 2)
people = st.lists(st.tuples(arrays, arrays, arrays) | st.tuples(
    st.lists(st.floats(0, 640, allow_subnormal=False), min_size=J, max_size=J),
    st.lists(st.floats(0, 480, allow_subnormal=False), min_size=J, max_size=J),
    st.lists(st.floats(0, 1, allow_subnormal=False), min_size=J, max_size=J)), max_size=8)


def reference_reason(x, y, c) -> str | None:
    """The rules of io/validation.py, person by person, in plain Python."""
    if not len(x) == len(y) == len(c):
        return "bad_shape"
    if len(x) != J:
        return "wrong_joint_count"
    x, y, c = (np.asarray(a, dtype=np.float64) for a in (x, y, c))
    if any(not (0.0 <= v <= 1.0 + 1e-6) for v in c):  # NaN fails the comparison
        return "bad_confidence"
    claimed = c > 0
    if any(not (math.isfinite(a) and math.isfinite(b)) for a, b in zip(x[claimed], y[claimed])):
        return "nonfinite"
    for a, b in zip(x[claimed], y[claimed]):
        if not (-MARGIN * SIZE[0] <= a <= (1 + MARGIN) * SIZE[0] and -MARGIN * SIZE[1] <= b <= (1 + MARGIN) * SIZE[1]):
            return "outside_image"
    return None


@SETTINGS
@given(people=people, max_people=st.integers(1, 4))
def test_validator_keeps_exactly_the_people_the_rules_allow(people, max_people):
    validator = KeypointValidator(ValidationConfig("s", J, image_sizes=np.array([SIZE]), image_margin=MARGIN,
                                                   max_people=max_people))
    check = validator.check_people(people, 0)
    reasons = [reference_reason(*p) for p in people]
    valid = [k for k, r in enumerate(reasons) if r is None]
    assert set(check.keep) <= set(valid)
    assert len(check.keep) == min(len(valid), max_people) and check.capped == len(valid) - len(check.keep)
    rejected = {}
    for r in reasons:
        if r is not None:
            rejected[r] = rejected.get(r, 0) + 1
    assert check.person_rejections == rejected
    if people and not valid:
        assert check.rejected == reasons[0]
    else:
        assert check.rejected is None
    # The kept people are the most confident of the valid ones.
    means = {k: float(np.mean(np.asarray(people[k][2], dtype=np.float64))) for k in valid}
    if check.keep.size:
        assert min(means[k] for k in check.keep) >= max(
            [means[k] for k in valid if k not in set(check.keep)], default=-1.0) - 1e-6


CAMS = ["a", "b", "c"]
events = st.lists(st.tuples(
    st.sampled_from(CAMS + ["zz"]),  # camera (one unknown)
    st.integers(0, 40) | st.sampled_from([-100, 10_000]),  # stamp in ms (a few far ones)
    st.floats(0.0, 0.2, allow_subnormal=False),  # arrival delay after the previous event, s
    st.floats(0.0, 1.0, allow_subnormal=False),  # quality
), max_size=60)


@SETTINGS
@given(events=events, slop_ms=st.integers(0, 30), max_wait=st.floats(0.001, 0.1, allow_subnormal=False),
       min_views=st.integers(1, 3), max_pending=st.integers(1, 6))
def test_synchronizer_invariants(events, slop_ms, max_wait, min_views, max_pending):
    sync = PartialViewSynchronizer(CAMS, slop=slop_ms / 1000.0, max_wait=max_wait, min_views=min_views,
                                   max_pending=max_pending, jump_threshold=max(1.0, 2 * slop_ms / 1000.0 + 1e-3))
    frames, epochs, now = [], [], 0.0

    def collect(out) -> None:
        frames.extend(out)
        epochs.extend([sync.drops["clock_jump"]] * len(out))

    for k, (camera, stamp_ms, delay, quality) in enumerate(events):
        now += delay
        collect(sync.poll(now))
        collect(sync.add(camera, stamp_ms / 1000.0, (k, camera), now, quality))
        assert sync.pending <= max_pending
    collect(sync.poll(now + 10.0))
    assert sync.pending == 0
    # In stamp order and each frame once, between confirmed clock jumps (after one, stamps start over).
    for epoch in set(epochs):
        stamps = [f.stamp for f, e in zip(frames, epochs) if e == epoch]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    seen = set()
    for frame in frames:
        assert frame.num_views >= min_views
        assert set(frame.views) <= set(CAMS)
        for camera, payload in frame.views.items():
            assert payload[1] == camera and payload not in seen  # each message in at most one frame
            seen.add(payload)
            assert abs(frame.stamps[camera] - frame.stamp) <= sync.slop + 1e-12
    assert sync.emitted == len(frames)
    assert all(v >= 0 for v in sync.drops.values())
