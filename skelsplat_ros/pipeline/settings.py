"""What ``skelsplat fuse`` (and each take of ``skelsplat batch``) is asked to do: :class:`FuseSettings`, and the
callbacks the commands pass. Light on purpose: the process that runs ``skelsplat batch`` reads and checks a study's
settings with it and never loads the fusion itself (its workers do), so the fusion modules load only in
:meth:`FuseSettings.fusion_config`, and only those that check the choices (no scipy, numba or torch unless a choice
needs them)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..fusion.config import FusionConfig

Progress = Callable[[int, int], None]
"""``progress(frames_done, frames)``, called now and then during the fusion."""
Note = Callable[[str], None]
"""Receives one line for the user (the CLI prints it on stderr; a batch take keeps it in its log)."""


def print_note(line: str) -> None:
    """The commands' :data:`Note`: the line on stderr."""
    print(line, file=sys.stderr)


def settings_from(cls: type, namespace: object):
    """An instance of the settings dataclass ``cls`` from the attributes of ``namespace`` with its fields' names (an
    ``argparse`` result); fields it lacks keep their defaults."""
    return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls) if hasattr(namespace, f.name)})


@dataclass(frozen=True)
class FuseSettings:
    """The options of ``skelsplat fuse`` besides its paths (a study's ``[fuse]`` settings are the same keys).

    Attributes:
        skeleton: skeleton name or YAML file; ``None`` = the one the keypoints name.
        mode: ``offline`` (whole recording) or ``streaming`` (causal, what the node publishes).
        method, preset: see :func:`~skelsplat_ros.fusion.preset_config`.
        optimizer, backend, device: ``auto`` or an explicit choice (see ``skelsplat fuse --help``).
        fps: frame rate in Hz for inputs that carry none (JSON folders); ``None`` = the file's, else 30.
        single_view_joints: streaming: also output joints one view sees, placed by the bone lengths.
        depth_filter: streaming at lag 0: along the depth the views barely fix, the causal jerk filters' estimate
            as a prior in a refit of each frame (``FusionConfig.depth_filter`` at ``config.DEPTH_FILTER``; the
            default); ``False``: each frame's fit alone.
        complete: every joint of a person in every frame the person is output (``FusionConfig.complete``).
        lag: streaming: seconds of look-ahead of the fixed-lag smoother (``fusion/fixed_lag.py``); 0 = causal.
        threads: torch CPU threads of the Adam stages (Gauss-Newton and the baselines do not use torch).
        people: JSON folders: the followed ``subject`` (``None``: the default) or ``all`` (tracked); a 5-D NPZ is
            always everyone.
        calibration_units: ``auto`` (told by the people's size or the cameras' field), ``m``, ``cm`` or ``mm``.
    """

    skeleton: str | None = None
    mode: str = "offline"
    method: str = "skelsplat"
    preset: str = "default"
    optimizer: str = "auto"
    backend: str = "auto"
    device: str = "auto"
    fps: float | None = None
    single_view_joints: bool = False
    complete: bool = False
    depth_filter: bool = True
    lag: float = 0.0
    threads: int = 1
    people: str | None = None
    calibration_units: str = "auto"

    @classmethod
    def from_namespace(cls, namespace: object) -> "FuseSettings":
        """The settings among the attributes of ``namespace`` (an ``argparse`` result: same names)."""
        return settings_from(cls, namespace)

    def fusion_config(self) -> FusionConfig:
        """The validated fusion configuration; raises ``ValueError``/``RuntimeError`` (one line) for a choice that
        cannot run here, before any file is read. Sets torch's thread count when a stage uses Adam."""
        from ..fusion.config import DEPTH_FILTER, preset_config
        from ..fusion.refine import check_runtime

        config = preset_config(self.preset, self.method, backend=self.backend, optimizer=self.optimizer,
                               device=self.device, mode=self.mode)
        config = replace(config, single_view_joints=self.single_view_joints, complete=self.complete,
                         depth_filter=DEPTH_FILTER if self.depth_filter else 0.0)
        check_runtime(config, self.mode)
        if self.lag:
            if self.mode != "streaming":
                raise ValueError("--lag is a look-ahead of the streaming mode (offline sees the whole recording)")
            from ..fusion.fixed_lag import check_lag  # the fixed-lag smoother's modules: only when asked for

            check_lag(config, self.lag)
        if any(stage.optimizer == "adam" for stage in config.stages(self.mode)):
            import torch  # only the Adam stages use it; Gauss-Newton and the baselines run in numpy

            torch.set_num_threads(max(1, self.threads))
        return config
