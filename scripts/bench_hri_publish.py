#!/usr/bin/env python3
"""CPU of the fusion node's output per frame, ROS4HRI on and off, without DDS (issue 20).

What ``FusionNode._publish`` does after the tracker's step, for 3 simulated people (lab rig, seed 0, 30 Hz, complete
skeletons as the node has them with ``hri`` on): build the frame's messages (``ros/outputs.py``: skeletons, joint TF
frames, and with ``hri`` the body and link frames and the IdsList; no markers), then serialise them as rclpy's publish
does. Prints the median thread CPU per frame (ms) over ``--frames`` frames after the people are tracked, the whole
and the part before the skeletons are out, for each ``--repeats``, on and off alternating; the CPU time is what load
on the machine does not inflate (much). Also the tracker's step per frame, with ``complete`` on (``hri`` on turns it
on) and off: the rest of the fusion thread's work.

Run: ``.venv/bin/python scripts/bench_hri_publish.py``; a baseline: ``PYTHONPATH=<other tree> .venv/bin/python ...``.
"""

from __future__ import annotations

import argparse
import inspect
import time
from dataclasses import replace

import numpy as np
from rclpy.serialization import serialize_message
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

import skelsplat_ros
from skelsplat_ros.fusion import preset_config
from skelsplat_ros.ros import conversions
from skelsplat_ros.ros.conversions import ns_to_stamp
from skelsplat_ros.ros.hri import HriBodies
from skelsplat_ros.ros.outputs import OutputOptions, frame_messages
from skelsplat_ros.sim.scenes import make_multi_person_scenario
from skelsplat_ros.tracking import MultiPersonTracker, TrackerConfig


def tracked_frames(people: int, frames: int, seed: int, complete: bool = True
                   ) -> tuple[list, list, OutputOptions, list[float]]:
    """The tracker's people of each frame (complete skeletons, as with ``hri`` on), the stamps (ns), and the thread
    CPU (s) of each tracker step."""
    scene = make_multi_person_scenario("lab", people, num_frames=frames, fps=30.0, seed=seed, enter_leave=False)
    config = replace(preset_config("default", "skelsplat", mode="streaming"), complete=complete)
    tracker = MultiPersonTracker(scene.rig, scene.skeleton, config, TrackerConfig())
    detections = [scene.detections(f) for f in range(frames)]
    steps, cpu = [], []
    for f in range(frames):
        started = time.thread_time()
        steps.append(tracker.step(detections[f], f / 30.0).people)
        cpu.append(time.thread_time() - started)
    stamps = [int(1e9 * f / 30.0) for f in range(frames)]
    return steps, stamps, OutputOptions(scene.skeleton.name, scene.skeleton.bone_array), cpu


def publish_cpu(steps: list, stamps: list, options: OutputOptions, skeleton, hri: bool, skip: int
                ) -> tuple[float, float]:
    """Median thread CPU (ms) per frame of building and serialising one frame's messages, and of the part before the
    skeletons are serialised (the node publishes them then; a tree without ``skeletons_done``: after the whole
    build, as its node did)."""
    bodies = HriBodies(skeleton)
    parameters = inspect.signature(frame_messages).parameters
    early = "skeletons_done" in parameters
    # As the node: one producer's joint TF messages, updated in place (a tree without them builds new ones).
    kept = {"joint_frames": conversions.JointFrames(options.tf_prefix)} if "joint_frames" in parameters else {}
    total, first = [], []
    for people, stamp in zip(steps, stamps):
        started = time.thread_time()

        def skeletons_out(skeletons) -> None:
            serialize_message(skeletons)
            first.append(time.thread_time() - started)

        out = frame_messages(Header(stamp=ns_to_stamp(stamp), frame_id="world"), people, options, markers=False,
                             bodies=bodies, hri=hri, hri_parent="world",
                             **({"skeletons_done": skeletons_out} if early else {}), **kept)
        if not early:
            skeletons_out(out.skeletons)
        transforms = out.transforms + (out.hri.transforms if out.hri is not None else [])
        serialize_message(TFMessage(transforms=transforms))
        if out.hri is not None:
            serialize_message(out.hri.tracked)
        total.append(time.thread_time() - started)
    return 1e3 * float(np.median(total[skip:])), 1e3 * float(np.median(first[skip:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from skelsplat_ros.skeleton.models import get_skeleton

    skeleton = None
    print(f"code: {skelsplat_ros.__file__}; {args.people} people, {args.frames} frames after 30 to start")
    figures = {True: [], False: []}
    tracker_cpu = {True: [], False: []}
    for _ in range(args.repeats):
        for hri in (True, False):
            # hri turns complete on (the node's rule): the tracker's step is part of what it costs
            steps, stamps, options, cpu = tracked_frames(args.people, args.frames + 30, args.seed, complete=hri)
            skeleton = skeleton or get_skeleton(options.skeleton)
            tracker_cpu[hri].append(1e3 * float(np.median(cpu[30:])))
            figures[hri].append(publish_cpu(steps, stamps, options, skeleton, hri, skip=30))
    for hri in (True, False):
        total, first = np.array(figures[hri]).T
        print(f"hri {'on ' if hri else 'off'}: build + serialise {np.median(total):.3f} ms CPU per frame, "
              f"{np.median(first):.3f} ms of it before the skeletons are out (medians of {args.repeats}: "
              f"{', '.join(f'{v:.3f}' for v in total)}; {', '.join(f'{v:.3f}' for v in first)})")
        step = np.array(tracker_cpu[hri])
        print(f"hri {'on ' if hri else 'off'}: tracker step (complete {'on' if hri else 'off'}) {np.median(step):.3f} ms "
              f"CPU per frame (medians of {args.repeats}: {', '.join(f'{v:.3f}' for v in step)}); step + output "
              f"{np.median(step) + np.median(np.array(figures[hri])[:, 0]):.3f} ms, until the skeletons are out "
              f"{np.median(step) + np.median(np.array(figures[hri])[:, 1]):.3f} ms")
    cost = np.median(np.array(figures[True])[:, 0]) - np.median(np.array(figures[False])[:, 0])
    step_cost = np.median(tracker_cpu[True]) - np.median(tracker_cpu[False])
    print(f"hri costs {cost:.3f} ms CPU per frame in the output, {step_cost:.3f} ms in the tracker step (complete)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
