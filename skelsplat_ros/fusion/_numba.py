"""Whether numba is installed: the switch between the numba kernels of the filter bank (``_jerk_kernel.py``) and the
tracker (``tracking/_association_kernel.py``) and their numpy references. Asking imports numba (0.2 s), so only
code that is about to call one of those kernels asks."""

import functools


@functools.cache
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
