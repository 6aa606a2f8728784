/* The compiled twin of image_terms_numpy (fusion/image_terms.py): the Gauss-Newton image terms of every
 * (view, frame, joint) in one loop, as the extension module skelsplat_ros.fusion._image_kernel.
 *
 * A CPython extension rather than a plain C library called through ctypes: the streaming fuser and the node call it
 * on one frame (4 views x 17 joints, a few microseconds of arithmetic) several times a frame, and ctypes' conversion
 * of 13 array pointers made that call cost 18 to 22 us against numba's 10 (measured; this module: 7.8). It needs
 * Python.h, as the message modules that rosidl_generator_py builds for this package do. It reads the arrays
 * through the buffer protocol (no numpy headers) and releases the GIL while it runs, so that the ROS node's
 * executor thread runs meanwhile.
 *
 * Built without fast-math and with -ffp-contract=off (setup.py, CMakeLists.txt): every operation rounds as written,
 * whatever fused multiply-adds the target offers, so that a build's results do not depend on the compiler's choices.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Arrays are C-contiguous float64: K, R [V, 3, 3], t [V, 3], means [P, 3] (P = frames x joints), uv [V, P, 2],
 * weights and variance [V, P]; outputs image [P], information [P, 3, 3], gradient [P, 3] (all three set here,
 * whatever they held), distance, overlap, depth [V, P]. */
static void image_terms(ptrdiff_t num_views, ptrdiff_t points, const double *K, const double *R, const double *t,
                        const double *means, const double *uv, const double *weights, const double *variance,
                        double sigma, double eps2d, double max_alpha, double *image, double *information,
                        double *gradient, double *distance, double *overlap, double *depth)
{
    const double splat_variance = sigma * sigma;
    memset(image, 0, (size_t)points * sizeof(double));
    memset(information, 0, (size_t)points * 9 * sizeof(double));
    memset(gradient, 0, (size_t)points * 3 * sizeof(double));
    for (ptrdiff_t v = 0; v < num_views; ++v) {
        const double *k = K + 9 * v, *r = R + 9 * v, *tv = t + 3 * v;
        /* Rows of K[:2] R: the Jacobian is (K[:2] R - uv R[2]) / z. */
        double kr[2][3];
        for (int row = 0; row < 2; ++row)
            for (int a = 0; a < 3; ++a)
                kr[row][a] = k[3 * row] * r[a] + k[3 * row + 1] * r[3 + a] + k[3 * row + 2] * r[6 + a];
        for (ptrdiff_t p = 0; p < points; ++p) {
            const ptrdiff_t vp = v * points + p;
            const double x = means[3 * p], y = means[3 * p + 1], z = means[3 * p + 2];
            const double cx = r[0] * x + r[1] * y + r[2] * z + tv[0];
            const double cy = r[3] * x + r[4] * y + r[5] * z + tv[1];
            const double cz = r[6] * x + r[7] * y + r[8] * z + tv[2];
            const double inv_z = 1.0 / (cz > 1e-6 ? cz : 1e-6);
            const double pu = (k[0] * cx + k[1] * cy + k[2] * cz) * inv_z;
            const double pv = (k[3] * cx + k[4] * cy + k[5] * cz) * inv_z;
            /* Behind the camera: no Jacobian and no weight (see the reference). */
            const int front = cz > 0;
            double ju[3], jv[3];
            for (int a = 0; a < 3; ++a) {
                ju[a] = front ? (kr[0][a] - pu * r[6 + a]) * inv_z : 0.0;
                jv[a] = front ? (kr[1][a] - pv * r[6 + a]) * inv_z : 0.0;
            }
            const double ra = splat_variance * (ju[0] * ju[0] + ju[1] * ju[1] + ju[2] * ju[2]) + eps2d;
            const double rb = splat_variance * (ju[0] * jv[0] + ju[1] * jv[1] + ju[2] * jv[2]);
            const double rc = splat_variance * (jv[0] * jv[0] + jv[1] * jv[1] + jv[2] * jv[2]) + eps2d;
            const double det_r = ra * rc - rb * rb;
            const double heatmap = variance[vp];
            const double sa = ra + heatmap, sc = rc + heatmap;
            const double det_s = sa * sc - rb * rb;
            const double ia = sc / det_s, ib = -rb / det_s, ic = sa / det_s;
            const double du = pu - uv[2 * vp], dv = pv - uv[2 * vp + 1];
            const double agreement = exp(-0.5 * (ia * du * du + 2.0 * ib * du * dv + ic * dv * dv));
            const double coupling = 4.0 * max_alpha * sqrt(det_r / det_s);
            const double weight = front ? weights[vp] : 0.0;
            image[p] += weight * (max_alpha * max_alpha * sqrt(det_r) / heatmap - coupling * agreement + 1.0);
            distance[vp] = sqrt(du * du + dv * dv);
            overlap[vp] = agreement;
            depth[vp] = cz;
            const double omega = weight * coupling * agreement;
            double au[3], av[3];
            for (int a = 0; a < 3; ++a) {
                au[a] = omega * (ia * ju[a] + ib * jv[a]);
                av[a] = omega * (ib * ju[a] + ic * jv[a]);
            }
            double *info = information + 9 * p, *grad = gradient + 3 * p;
            for (int a = 0; a < 3; ++a) {
                for (int b = 0; b < 3; ++b)
                    info[3 * a + b] += ju[a] * au[b] + jv[a] * av[b];
                grad[a] += au[a] * du + av[a] * dv;
            }
        }
    }
}

#define NUM_INPUTS 7

/* image_terms(K, R, t, means, uv, weights, variance, sigma, eps2d, max_alpha, out) -> None: the inputs any
 * C-contiguous buffers of float64 (read-only ones too), ``out`` a writable one of 13 P + 3 V P float64 that receives
 * image, information, gradient, distance, overlap and depth one after another. V and P come from the sizes of K and
 * means; every other size is checked against them (a ValueError, never a write out of bounds). */
static PyObject *py_image_terms(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer in[NUM_INPUTS], out;
    double sigma, eps2d, max_alpha;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*dddw*:image_terms", &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                          &in[6], &sigma, &eps2d, &max_alpha, &out))
        return NULL;  /* PyArg_ParseTuple released the buffers it had taken */
    const Py_ssize_t unit = (Py_ssize_t)sizeof(double);
    const Py_ssize_t views = in[0].len / (9 * unit), points = in[3].len / (3 * unit);
    const Py_ssize_t expected[NUM_INPUTS] = {9 * views, 9 * views, 3 * views, 3 * points, 2 * views * points,
                                             views * points, views * points};
    int sizes_agree = in[0].len % (9 * unit) == 0 && in[3].len % (3 * unit) == 0
                      && out.len == (13 + 3 * views) * points * unit;
    for (int i = 0; i < NUM_INPUTS; ++i)
        sizes_agree = sizes_agree && in[i].len == expected[i] * unit;
    if (sizes_agree) {
        double *o = out.buf;
        const Py_ssize_t block = views * points;
        Py_BEGIN_ALLOW_THREADS
        image_terms(views, points, in[0].buf, in[1].buf, in[2].buf, in[3].buf, in[4].buf, in[5].buf, in[6].buf,
                    sigma, eps2d, max_alpha, o, o + points, o + 10 * points, o + 13 * points,
                    o + 13 * points + block, o + 13 * points + 2 * block);
        Py_END_ALLOW_THREADS
    } else {
        PyErr_SetString(PyExc_ValueError, "image_terms: the buffers' sizes do not match [V, 3, 3], [V, 3, 3], "
                                          "[V, 3], [P, 3], [V, P, 2], [V, P], [V, P] and out [13 P + 3 V P] float64");
    }
    for (int i = 0; i < NUM_INPUTS; ++i)
        PyBuffer_Release(&in[i]);
    PyBuffer_Release(&out);
    if (!sizes_agree)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"image_terms", py_image_terms, METH_VARARGS,
     "image_terms(K, R, t, means, uv, weights, variance, sigma, eps2d, max_alpha, out): see _image_kernel.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_image_kernel",
    "The Gauss-Newton image terms, compiled (see skelsplat_ros/fusion/image_terms.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__image_kernel(void) { return PyModule_Create(&module); }
