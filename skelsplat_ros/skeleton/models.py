"""Skeletons as data: joint names, bones, left/right pairs, root.

Built-in skeletons live in ``data/skeletons.yaml``; users add their own with a YAML file of the same form
(``load_skeleton_file``). Left/right pairs are derived from the ``l_``/``r_`` joint-name prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

_LEFT, _RIGHT = "l_", "r_"


def _mirror(name: str) -> str | None:
    if name.startswith(_LEFT):
        return _RIGHT + name[len(_LEFT):]
    if name.startswith(_RIGHT):
        return _LEFT + name[len(_RIGHT):]
    return None


@dataclass(frozen=True)
class Skeleton:
    """A joint layout.

    Attributes:
        name: identifier (``coco17``, ``h36m17``, ...).
        joint_names: ``J`` names in keypoint order.
        bones: ``[B, 2]`` joint-index pairs (parent-ish, child-ish).
        root: joint indices whose mean is the body origin.
        distal: joint indices of the distal joints (ankles, elbows, wrists).
    """

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    root: tuple[int, ...]
    distal: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint: str) -> int:
        try:
            return self.joint_names.index(joint)
        except ValueError:
            raise KeyError(f"skeleton {self.name!r} has no joint {joint!r}") from None

    @property
    def bone_array(self) -> np.ndarray:
        """Bones as an int array ``[B, 2]``."""
        return np.array(self.bones, dtype=np.int64).reshape(-1, 2)

    @property
    def left_right_pairs(self) -> np.ndarray:
        """Joint index pairs ``[P, 2]`` (left, right) mirrored by name."""
        pairs = []
        for i, name in enumerate(self.joint_names):
            if name.startswith(_LEFT) and _mirror(name) in self.joint_names:
                pairs.append((i, self.joint_names.index(_mirror(name))))
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index permutation ``[J]`` that swaps every left joint with its right twin."""
        perm = np.arange(self.num_joints)
        for left, right in self.left_right_pairs:
            perm[left], perm[right] = right, left
        return perm

    @property
    def symmetric_bones(self) -> np.ndarray:
        """Bone index pairs ``[S, 2]``: bone ``a`` (left) and its mirror bone ``b`` (right)."""
        lookup = {tuple(sorted(b)): k for k, b in enumerate(self.bones)}
        pairs = []
        for k, (a, b) in enumerate(self.bones):
            na, nb = self.joint_names[a], self.joint_names[b]
            if not (na.startswith(_LEFT) or nb.startswith(_LEFT)):
                continue
            ma, mb = _mirror(na) or na, _mirror(nb) or nb
            if ma in self.joint_names and mb in self.joint_names:
                twin = lookup.get(tuple(sorted((self.joint_names.index(ma), self.joint_names.index(mb)))))
                if twin is not None and twin != k:
                    pairs.append((k, twin))
        return np.array(pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def limb_end_symmetric_bones(self) -> np.ndarray:
        """The paper's bone-symmetry pairs ``[S, 2]``: forearms and lower legs (bones ending at wrists/ankles)."""
        ends = ("_wrist", "_ankle")
        keep = [
            (a, b) for a, b in self.symmetric_bones
            if any(self.joint_names[j].endswith(ends) for j in self.bones[a])
            and not any(self.joint_names[j].endswith(("_toe", "_heel", "_big_toe", "_small_toe")) for j in self.bones[a])
        ]
        return np.array(keep, dtype=np.int64).reshape(-1, 2)


def skeleton_from_dict(name: str, spec: dict) -> Skeleton:
    """Build and validate a skeleton from its YAML mapping (``joints``, ``bones``, optional ``root``, ``distal``)."""
    if not isinstance(spec, dict) or "joints" not in spec:
        raise ValueError(f"skeleton {name!r}: needs a 'joints' list")
    joints = tuple(str(j) for j in spec["joints"])
    if len(set(joints)) != len(joints):
        raise ValueError(f"skeleton {name!r}: duplicate joint names")

    def idx(joint: str) -> int:
        if joint not in joints:
            raise ValueError(f"skeleton {name!r}: unknown joint {joint!r}")
        return joints.index(joint)

    bones = tuple((idx(a), idx(b)) for a, b in spec.get("bones", []))
    root = tuple(idx(j) for j in spec.get("root", [joints[0]]))
    distal = tuple(idx(j) for j in spec.get("distal", []))
    return Skeleton(name=name, joint_names=joints, bones=bones, root=root, distal=distal)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: the built-in skeletons parse in about 1 ms instead of 13 (paid once per
process, e.g. by each batch worker's first take)."""


def load_skeleton_file(path: str | Path) -> dict[str, Skeleton]:
    """All skeletons of a YAML file, by name."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_YAML_LOADER)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of skeleton names to definitions")
    return {name: skeleton_from_dict(name, spec) for name, spec in data.items()}


@lru_cache(maxsize=None)
def builtin_skeletons() -> dict[str, Skeleton]:
    """The built-in skeletons by name."""
    with resources.files("skelsplat_ros.skeleton").joinpath("data/skeletons.yaml").open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_YAML_LOADER)
    return {name: skeleton_from_dict(name, spec) for name, spec in data.items()}


def get_skeleton(name_or_path: str) -> Skeleton:
    """A built-in skeleton by name, or the single skeleton of a YAML file (``path.yaml`` or ``path.yaml:name``)."""
    builtins = builtin_skeletons()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path, _, wanted = name_or_path.partition(":") if not Path(name_or_path).exists() else (name_or_path, "", "")
    if Path(path).suffix in (".yaml", ".yml") and Path(path).exists():
        found = load_skeleton_file(path)
        if wanted:
            if wanted not in found:
                raise KeyError(f"{path} has no skeleton {wanted!r}; it has {sorted(found)}")
            return found[wanted]
        if len(found) != 1:
            raise KeyError(f"{path} defines {sorted(found)}; pick one with {path}:NAME")
        return next(iter(found.values()))
    raise KeyError(f"unknown skeleton {name_or_path!r}; built-in: {sorted(builtins)}, or a YAML file")


def track_rgb(track_id: int) -> tuple[float, float, float]:
    """A fixed, saturated colour per track id, (r, g, b) in [0, 1], for every picture of a person (rviz markers,
    rendered videos): hues spaced by the golden angle, so that ids close together (people who appeared one after the
    other) look clearly different and an id keeps its colour for life."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    # HSV -> RGB at full saturation and value.
    r, g, b = (float(np.clip(abs((hue * 6.0 + shift) % 6.0 - 3.0) - 1.0, 0.0, 1.0)) for shift in (0.0, 4.0, 2.0))
    return r, g, b
