"""How steady a person's limbs stay over a recording: the figure to judge a fusion by where there is no ground truth.

A real limb keeps its length; a fused one that stretches (a wrist placed on the wrong thing, a joint held where no
camera saw it) does not. Per limb, over the frames where both of its joints are output (finite):

- ``max_ratio``: the longest length over the median length (1.5 = a limb half as long again as it usually is);
- ``cv``: the coefficient of variation, standard deviation over mean.

The issue-18 targets on the real Pose2Sim multi-person take are ``max_ratio <= 1.5`` and ``cv <= 0.05`` for every
limb that is output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..skeleton.models import Skeleton

LIMBS: tuple[tuple[str, str], ...] = tuple(
    (f"{side}_{a}", f"{side}_{b}")
    for side in ("l", "r")
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))
)
"""The eight limb bones: upper arms, forearms, thighs and shanks, left then right."""


@dataclass(frozen=True)
class LimbStats:
    """One limb of one person over a recording.

    Attributes:
        limb: ``"<joint>-<joint>"``.
        frames: frames where both joints are output.
        median: median length (world units, metres here); NaN when never output.
        max_ratio: longest length over ``median`` (NaN when never output).
        cv: standard deviation of the length over its mean (NaN when never output).
    """

    limb: str
    frames: int
    median: float
    max_ratio: float
    cv: float


def skeleton_limbs(skeleton: Skeleton) -> tuple[tuple[str, str], ...]:
    """Every bone of ``skeleton`` as a pair of joint names (the face and torso bones too)."""
    names = skeleton.joint_names
    return tuple((names[a], names[b]) for a, b in skeleton.bone_array)


def limb_consistency(
    joints: np.ndarray, joint_names: Sequence[str], limbs: Sequence[tuple[str, str]] = LIMBS
) -> list[LimbStats]:
    """Per limb of ``limbs`` that the skeleton has, its length statistics over the frames of ``joints [F, J, 3]``
    (NaN = not output) where both of its joints are finite."""
    index = {name: k for k, name in enumerate(joint_names)}
    stats = []
    for a, b in limbs:
        if a not in index or b not in index:
            continue
        lengths = np.linalg.norm(joints[:, index[a]] - joints[:, index[b]], axis=-1)
        lengths = lengths[np.isfinite(lengths)]
        if len(lengths) == 0:
            stats.append(LimbStats(f"{a}-{b}", 0, np.nan, np.nan, np.nan))
            continue
        median = float(np.median(lengths))
        stats.append(LimbStats(f"{a}-{b}", len(lengths), median, float(lengths.max() / median),
                               float(lengths.std() / lengths.mean())))
    return stats


def people_limb_consistency(
    joints: np.ndarray, track_ids: Sequence[int], joint_names: Sequence[str], limbs: Sequence[tuple[str, str]] = LIMBS
) -> dict[int, list[LimbStats]]:
    """:func:`limb_consistency` of each track of a multi-person result ``joints [F, T, J, 3]``, by track id."""
    return {int(t): limb_consistency(joints[:, k], joint_names, limbs) for k, t in enumerate(track_ids)}


def worst(stats: Sequence[LimbStats]) -> tuple[float, float]:
    """The largest ``max_ratio`` and ``cv`` over limbs that are output (NaN when none is)."""
    output = [s for s in stats if s.frames > 0]
    if not output:
        return np.nan, np.nan
    return max(s.max_ratio for s in output), max(s.cv for s in output)


def limb_table(people: dict[int, list[LimbStats]]) -> str:
    """A markdown table: one row per person and limb (length in mm, frames output, max / median, CV)."""
    lines = ["| person | limb | frames | median mm | max / median | CV |", "|---|---|---|---|---|---|"]
    for person, stats in people.items():
        for s in stats:
            lines.append(f"| {person} | {s.limb} | {s.frames} | {1000 * s.median:.0f} | {s.max_ratio:.2f} | {s.cv:.3f} |")
    return "\n".join(lines)
