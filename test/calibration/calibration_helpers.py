"""What the calibration tests share: simulated scenes with ground truth (cached: several tests read the same one)."""

from __future__ import annotations

import functools

from skelsplat_ros.sim.scenes import MultiPersonScenario, make_multi_person_scenario


@functools.lru_cache(maxsize=8)
def scene(people: int, frames: int = 300, seed: int = 0, rig: str = "lab") -> MultiPersonScenario:
    """A seeded multi-person scene with realistic detector noise."""
    return make_multi_person_scenario(rig, people, num_frames=frames, seed=seed, noise="realistic")
