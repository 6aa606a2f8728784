"""The Gauss-Newton image terms: the C kernel (``fusion/_image_kernel.c``) against the numpy reference, on the fits'
inputs and on edge cases, and both against finite differences; the kernel releases the GIL; without the extension
the reference runs."""

from __future__ import annotations

from dataclasses import replace

import sys
import threading
import time
import warnings

import numpy as np
import pytest

import skelsplat_ros.fusion.gauss_newton as gauss_newton
import skelsplat_ros.fusion.output as output
from skelsplat_ros.fusion import fuse_streaming, preset_config
from skelsplat_ros.fusion import image_terms as module
from skelsplat_ros.fusion.image_terms import image_terms_c, image_terms_numpy
from skelsplat_ros.sim import make_scenario

# A build without a C compiler has no extension; test/test_packaging.py fails where one should have been built.
extension = pytest.importorskip("skelsplat_ros.fusion._image_kernel")


@pytest.fixture(scope="module")
def evaluation_point():
    """Portrait rig with heavy detector noise (outliers, missing joints), means 3 cm off the truth, one joint put
    behind the first camera, varied weights and heatmap variances."""
    scenario = make_scenario("portrait", num_frames=6, noise="heavy", seed=4)
    rig = scenario.rig
    uv = rig.undistort(scenario.keypoints[..., :2])
    confidence = np.nan_to_num(scenario.keypoints[..., 2])
    rng = np.random.default_rng(0)
    means = scenario.ground_truth + rng.normal(scale=0.03, size=scenario.ground_truth.shape)
    means[2, 5] = rig.centres[0] - 0.2 * rig.R[0][2]  # on the optical axis, behind the camera
    weights = np.where(np.isfinite(uv).all(-1), confidence, 0.0)
    variance = 25.0 * np.clip(confidence, 0.05, None) ** -1.0
    return rig, means, np.nan_to_num(uv), weights, variance


def _arguments(point, sigma=0.03):
    rig, means, uv, weights, variance = point
    return rig.K, rig.R, rig.t, means, uv, weights, variance, sigma


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_the_kernel_equals_the_reference(evaluation_point, sigma):
    reference = image_terms_numpy(*_arguments(evaluation_point, sigma))
    compiled = image_terms_c(*_arguments(evaluation_point, sigma))
    assert (reference.depth[0, 2, 5] < 0) and (compiled.depth[0, 2, 5] < 0)
    _assert_equal_terms(compiled, reference)


def _assert_equal_terms(got, expected):
    """Equal to 1e-9 relative; an information matrix to 1e-9 of its largest entry (a mean within the depth clamp
    has a Jacobian ~1e9 px/m, and its cross terms come out of cancellation, rounded differently in each order)."""
    for name, want, have in zip(expected._fields, expected, got):
        assert have.shape == want.shape and have.dtype == np.float64, name
        if name == "information":
            scale = np.maximum(np.abs(want).max(axis=(-2, -1), keepdims=True), 1e-300)
            np.testing.assert_allclose(have / scale, want / scale, rtol=0, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-12, err_msg=name)


def _random_arguments(rng, views, frames, joints):
    """Cameras looking at the origin from 2-4 m, means within 0.5 m of it, keypoints within ~60 px of the
    projections, random weights (a third of them 0) and heatmap variances (1-400 px^2)."""
    K = np.tile(np.array([[900.0, 0.0, 640.0], [0.0, 900.0, 360.0], [0.0, 0.0, 1.0]]), (views, 1, 1))
    K[:, 0, 0] += rng.uniform(-100, 100, views)
    angles = rng.uniform(-np.pi, np.pi, views)
    R = np.zeros((views, 3, 3))
    R[:, 0, 0], R[:, 0, 2], R[:, 2, 0], R[:, 2, 2] = np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)
    R[:, 1, 1] = 1.0
    t = np.column_stack([np.zeros(views), np.zeros(views), rng.uniform(2, 4, views)])
    means = rng.normal(scale=0.3, size=(frames, joints, 3))
    cam = np.einsum("vab,fjb->vfja", R, means) + t[:, None, None]
    uv = cam[..., :2] / cam[..., 2:] * 900.0 + np.array([640.0, 360.0])
    uv += rng.normal(scale=30, size=uv.shape)
    weights = rng.uniform(size=(views, frames, joints)) * (rng.uniform(size=(views, frames, joints)) > 0.33)
    variance = rng.uniform(1.0, 400.0, size=(views, frames, joints))
    return K, R, t, means, uv, weights, variance


@pytest.mark.parametrize("views, frames, joints", [(1, 1, 1), (4, 1, 17), (3, 30, 17), (8, 5, 26)])
def test_the_kernel_equals_the_reference_on_random_inputs(views, frames, joints):
    rng = np.random.default_rng(views * 100 + frames)
    for sigma in (1e-4, 0.02, 0.3):
        arguments = (*_random_arguments(rng, views, frames, joints), sigma)
        _assert_equal_terms(image_terms_c(*arguments), image_terms_numpy(*arguments))


def test_the_kernel_equals_the_reference_at_the_edges():
    """Means behind a camera, at its centre's depth (0), within the depth clamp (0 < z < 1e-6), keypoints far off
    (the overlap underflows to 0), zero weights, tiny heatmaps: the same terms, none of them NaN."""
    rng = np.random.default_rng(7)
    K, R, t, means, uv, weights, variance = _random_arguments(rng, 3, 2, 6)
    R[0], t[0] = np.eye(3), 0.0  # camera 0 at the origin, looking along +z: a mean's depth there is its z
    means[0, :, 2] = [-1.0, 0.0, 5e-7, 1e-6, -1e-9, 2.0]
    uv[1, 1, :3] += 1e6  # far off: exp(-m / 2) underflows
    weights[2] = 0.0
    variance[1, 0] = 1e-6
    arguments = (K, R, t, means, uv, weights, variance, 0.03)
    got, expected = image_terms_c(*arguments), image_terms_numpy(*arguments)
    _assert_equal_terms(got, expected)
    assert all(np.isfinite(part).all() for part in got)
    assert (got.overlap[1, 1, :3] == 0).all() and (got.depth[0, 0, [0, 1, 4]] <= 0).all()


def test_the_kernel_takes_any_layout_and_checks_sizes():
    """Read-only (a ``CameraRig``'s), Fortran-ordered or float32 inputs give the same terms; buffers whose sizes do
    not match are refused with a ValueError, never read or written out of bounds."""
    rng = np.random.default_rng(3)
    K, R, t, means, uv, weights, variance = _random_arguments(rng, 4, 3, 5)
    expected = image_terms_c(K, R, t, means, uv, weights, variance, 0.03)
    K.flags.writeable = R.flags.writeable = False
    odd = (K, R, np.asfortranarray(t), np.asfortranarray(means), uv.astype(np.float32).astype(np.float64),
           weights.astype(np.float32), variance, 0.03)
    got = image_terms_c(*odd)
    _assert_equal_terms(got, image_terms_numpy(*odd))
    np.testing.assert_array_equal(got.depth, expected.depth)
    out = np.empty((13 + 3 * 4) * 15)
    inputs = [np.ascontiguousarray(a, dtype=np.float64) for a in (K, R, t, means, uv, weights, variance)]
    extension.image_terms(*inputs, 0.03, 1.0, 0.99, out)  # the sizes that agree
    for i, short in ((2, t[:3]), (4, uv[:, :2]), (6, variance[:3])):
        wrong = list(inputs)
        wrong[i] = np.ascontiguousarray(short)
        with pytest.raises(ValueError, match="sizes do not match"):
            extension.image_terms(*wrong, 0.03, 1.0, 0.99, out)
    with pytest.raises(ValueError, match="sizes do not match"):
        extension.image_terms(*inputs, 0.03, 1.0, 0.99, out[:-1])
    with pytest.raises((ValueError, TypeError, BufferError)):
        extension.image_terms(*inputs, 0.03, 1.0, 0.99, out[::2])  # not contiguous


def test_the_kernel_releases_the_gil():
    """While one thread is in the kernel, another runs Python. With the switch interval at 1 s, Python takes the GIL
    from a thread that holds it only after a second: a kernel that kept it would leave the other thread no moment
    inside the call (~30 ms of CPU)."""
    rng = np.random.default_rng(0)
    inputs = [np.ascontiguousarray(a) for a in _random_arguments(rng, 400, 200, 25)]  # 2 million (view, joint) pairs
    out = np.empty((13 + 3 * 400) * 200 * 25)
    inside, ticks, go, done = [], [], threading.Event(), threading.Event()

    def call():
        go.set()  # the main thread wakes and waits for the GIL, which this thread holds until the kernel lets it go
        start = time.perf_counter()
        extension.image_terms(*inputs, 0.03, 1.0, 0.99, out)
        inside.append((start, time.perf_counter()))
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        worker = threading.Thread(target=call)
        worker.start()
        go.wait()
        while not done.is_set():
            ticks.append(time.perf_counter())
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    (start, end), = inside
    assert sum(start < tick < end for tick in ticks) > 10


def test_the_gradient_is_the_derivative_of_the_majoriser(evaluation_point):
    """At the point where it is built, the quadratic majoriser touches the image term, and its slope there is the
    image term's own: d image / d x = gradient along every axis (up to the frozen splat covariance, whose dependence
    on the mean the solver drops: checked with a splat so small that it hardly matters)."""
    rig, means, uv, weights, variance = evaluation_point
    sigma, step = 1e-4, 1e-7
    terms = image_terms_c(*_arguments(evaluation_point, sigma))
    front = (terms.depth > 0).all(axis=0)
    for axis in range(3):
        shifted = means.copy()
        shifted[..., axis] += step
        moved = image_terms_c(rig.K, rig.R, rig.t, shifted, uv, weights, variance, sigma)
        numeric = (moved.image - terms.image) / step
        np.testing.assert_allclose(numeric[front], terms.gradient[..., axis][front], rtol=1e-2, atol=1e-3)


def test_streaming_fusion_is_the_same_with_either_implementation(monkeypatch):
    scenario = make_scenario("portrait", num_frames=30, noise="heavy", seed=5)
    config = preset_config("default")
    args = (scenario.rig, scenario.skeleton, scenario.keypoints, config, scenario.fps)
    compiled = fuse_streaming(*args)
    monkeypatch.setattr(gauss_newton, "image_terms", image_terms_numpy)
    monkeypatch.setattr(gauss_newton, "_compiled_minimise", lambda: None)  # the minimiser's own loop in numpy too
    monkeypatch.setattr(output, "image_terms", image_terms_numpy)  # the views' verdict on held joints
    reference = fuse_streaming(*args)
    np.testing.assert_allclose(compiled.joints, reference.joints, atol=1e-7)
    # Output from the frame the bone lengths are known (fusion/output.py, rule 4).
    assert np.isfinite(compiled.joints[config.bone_warmup:]).mean() > 0.9


def test_offline_prefit_is_the_same_with_either_implementation(monkeypatch):
    scenario = make_scenario("lab", num_frames=40, noise="realistic", seed=5)
    config = replace(preset_config("default"), smoothing=None)
    from skelsplat_ros.fusion import fuse_offline

    args = (scenario.rig, scenario.skeleton, scenario.keypoints, config)
    compiled = fuse_offline(*args)
    monkeypatch.setattr(gauss_newton, "image_terms", image_terms_numpy)
    monkeypatch.setattr(gauss_newton, "_compiled_minimise", lambda: None)
    reference = fuse_offline(*args)
    np.testing.assert_allclose(compiled.joints, reference.joints, atol=1e-7)


def test_without_the_extension_the_reference_runs_and_a_warning_says_so_once(evaluation_point, monkeypatch):
    """Where the package was installed without a C compiler: the fits run the numpy reference, and the process is told
    once."""
    module._compiled_kernel.cache_clear()
    monkeypatch.setitem(sys.modules, "skelsplat_ros.fusion._image_kernel", None)  # its import now raises ImportError
    try:
        calls = []
        monkeypatch.setattr(module, "image_terms_numpy", lambda *a: calls.append(a) or image_terms_numpy(*a))
        with pytest.warns(RuntimeWarning, match="compiled image kernel is missing"):
            terms = module.image_terms(*_arguments(evaluation_point))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module.image_terms(*_arguments(evaluation_point))
        assert len(calls) == 2 and np.isfinite(terms.image).all()
        with pytest.raises(ImportError):
            image_terms_c(*_arguments(evaluation_point))
    finally:
        module._compiled_kernel.cache_clear()


def test_fuse_runs_without_the_extension(tmp_path):
    """``skelsplat fuse`` where the package was installed without a C compiler (the extension's import fails): it
    fuses with the numpy reference, says so once, and writes the same skeletons, to rounding, as with the kernel."""
    import subprocess

    from skelsplat_ros.bench.batch import write_study

    write_study(tmp_path / "study", takes=2, frames=40)
    take = tmp_path / "study" / "take_001"
    outputs, stderr = {}, {}
    for name, block in (("compiled", ""), ("reference", "sys.modules['skelsplat_ros.fusion._image_kernel'] = None\n")):
        code = f"import sys\n{block}from skelsplat_ros.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        run = subprocess.run([sys.executable, "-c", code, "fuse", "--calibration", str(take / "calib.toml"),
                              "--keypoints", str(take / "keypoints.npz"), "--output", str(tmp_path / f"{name}.npz"),
                              "--quiet"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        outputs[name], stderr[name] = np.load(tmp_path / f"{name}.npz"), run.stderr
    assert "kernel is missing" not in stderr["compiled"] and stderr["reference"].count("kernel is missing") == 1
    assert outputs["compiled"].files == outputs["reference"].files
    for key in outputs["compiled"].files:
        compiled, reference = outputs["compiled"][key], outputs["reference"][key]
        if compiled.dtype.kind == "f":
            np.testing.assert_allclose(compiled, reference, atol=1e-7, err_msg=key)
        else:
            np.testing.assert_array_equal(compiled, reference, err_msg=key)
