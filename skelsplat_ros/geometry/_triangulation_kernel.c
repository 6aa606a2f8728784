/* The compiled twin of triangulate_robust_numpy (geometry/triangulation.py): confidence-weighted DLT of each point's
 * usable views, and where that misses the reprojection threshold, of the smaller view subsets in the same order,
 * keeping the largest passing subset and, among those, the lowest mean reprojection error (the first of equal ones),
 * as the extension module skelsplat_ros.geometry._triangulation_kernel.
 *
 * Why: every live frame triangulates each person's joints (the fit's start and its bone lengths); the numpy
 * reference's cost there is that of its some forty array calls (about 0.5 ms a frame at 3 people), this loop's a
 * few microseconds a point. The smallest eigenvector of each 4x4 normal matrix comes from cyclic Jacobi rotations
 * where numpy calls LAPACK: the points agree to rounding (tests hold them equal).
 *
 * Read through the buffer protocol (no numpy headers), the GIL released while it runs, every size checked before a
 * read; built with the same flags as fusion/_image_kernel.c (setup.py, CMakeLists.txt).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_VIEWS 64 /* a point's view subsets are bit masks */
#define JACOBI_SWEEPS 50

/* The unit eigenvector ``vector [4]`` of the smallest eigenvalue of the symmetric ``a [4][4]`` (overwritten), by
 * cyclic Jacobi rotations; of equal eigenvalues, the first (numpy's eigh gives the identity's columns in order for
 * a matrix of zeros). */
static void smallest_eigenvector(double a[4][4], double vector[4])
{
    double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    for (int sweep = 0; sweep < JACOBI_SWEEPS; ++sweep) {
        double off = 0.0;
        for (int p = 0; p < 3; ++p)
            for (int q = p + 1; q < 4; ++q)
                off += a[p][q] * a[p][q];
        if (!(off > 0.0))
            break;
        for (int p = 0; p < 3; ++p)
            for (int q = p + 1; q < 4; ++q) {
                const double apq = a[p][q];
                if (apq == 0.0)
                    continue;
                const double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                /* tan of the rotation angle, the smaller root (stable; 1 / (2 theta) where theta^2 would overflow) */
                const double t = fabs(theta) > 1e150 ? 0.5 / theta
                                                     : (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 4; ++k) { /* columns p and q */
                    const double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 4; ++k) { /* rows p and q */
                    const double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                a[p][q] = a[q][p] = 0.0;
                for (int k = 0; k < 4; ++k) {
                    const double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
    }
    int smallest = 0;
    for (int k = 1; k < 4; ++k)
        if (a[k][k] < a[smallest][smallest])
            smallest = k;
    for (int k = 0; k < 4; ++k)
        vector[k] = v[k][smallest];
}

/* The point ``point [3]`` of the DLT rows ``rows [V, 2, 4]`` of the views in ``mask`` (NaN where its homogeneous
 * coordinate vanishes), and its mean reprojection error (px) over those views of ``uv``: ``stride`` apart per view,
 * projected by ``P [V, 3, 4]``; returns INFINITY where the point or the error is not finite. */
static double fit_views(const double *rows, uint64_t mask, ptrdiff_t views, const double *P, const double *uv,
                        ptrdiff_t stride, double point[3])
{
    double normal[4][4] = {{0}};
    for (ptrdiff_t v = 0; v < views; ++v) {
        if (!(mask >> v & 1))
            continue;
        for (int r = 0; r < 2; ++r) {
            const double *row = rows + 8 * v + 4 * r;
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b)
                    normal[a][b] += row[a] * row[b];
        }
    }
    double scale = 0.0;
    for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b)
            scale = fabs(normal[a][b]) > scale ? fabs(normal[a][b]) : scale;
    scale = scale > 1e-300 ? scale : 1e-300; /* the eigen-decomposition is well conditioned whatever the weights */
    for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b)
            normal[a][b] /= scale;
    double homogeneous[4];
    smallest_eigenvector(normal, homogeneous);
    const double w = fabs(homogeneous[3]) < 1e-12 ? NAN : homogeneous[3];
    for (int a = 0; a < 3; ++a)
        point[a] = homogeneous[a] / w;
    double total = 0.0;
    int used = 0;
    for (ptrdiff_t v = 0; v < views; ++v) {
        if (!(mask >> v & 1))
            continue;
        const double *p = P + 12 * v, *observed = uv + 2 * v * stride;
        double projected[3];
        for (int r = 0; r < 3; ++r)
            projected[r] = p[4 * r] * point[0] + p[4 * r + 1] * point[1] + p[4 * r + 2] * point[2] + p[4 * r + 3];
        const double depth = projected[2];
        const double du = (depth > 1e-9 ? projected[0] / depth : NAN) - observed[0];
        const double dv = (depth > 1e-9 ? projected[1] / depth : NAN) - observed[1];
        total += sqrt(du * du + dv * dv);
        ++used;
    }
    const double mean = total / (used > 1 ? used : 1);
    return isfinite(mean) && isfinite(point[0]) && isfinite(point[1]) && isfinite(point[2]) ? mean : INFINITY;
}

/* Per point n of N (arrays C-contiguous: K_inv, extrinsics and P [V, 3, 3|4], uv [V, N, 2], confidence [V, N]):
 * the usable views (finite pixel, confidence >= min_confidence and > 0), their weighted DLT rows, then the whole
 * set and, where it fails and more than min_views views see the point, its smaller subsets (sizes down to
 * min_views, lexicographic within a size; max_subsets subsets in all, the whole set included). Writes points [N, 3],
 * views_used [V, N] (0/1 bytes) and error [N] (NaN where no subset passed). */
static void triangulate_robust(ptrdiff_t views, ptrdiff_t count, const double *K_inv, const double *extrinsics,
                               const double *P, const double *uv, const double *confidence, double threshold,
                               double min_confidence, int min_views, long max_subsets, double *points,
                               uint8_t *views_used, double *error)
{
    double rows[MAX_VIEWS * 8];
    for (ptrdiff_t n = 0; n < count; ++n) {
        uint64_t usable = 0;
        int seen_by = 0;
        for (ptrdiff_t v = 0; v < views; ++v) {
            const double c = confidence[v * count + n], u = uv[2 * (v * count + n)], w = uv[2 * (v * count + n) + 1];
            const double weight = isfinite(c) && c >= min_confidence ? c : 0.0;
            double *row = rows + 8 * v;
            if (!(weight > 0.0 && isfinite(u) && isfinite(w))) {
                memset(row, 0, 8 * sizeof(double));
                continue;
            }
            usable |= (uint64_t)1 << v;
            ++seen_by;
            const double *k = K_inv + 9 * v, *e = extrinsics + 12 * v;
            const double scale = u * k[6] + w * k[7] + k[8];
            const double xy[2] = {(u * k[0] + w * k[1] + k[2]) / scale, (u * k[3] + w * k[4] + k[5]) / scale};
            for (int r = 0; r < 2; ++r)
                for (int a = 0; a < 4; ++a)
                    row[4 * r + a] = (xy[r] * e[8 + a] - e[4 * r + a]) * weight;
        }
        for (ptrdiff_t v = 0; v < views; ++v)
            views_used[v * count + n] = 0;
        double *point = points + 3 * n;
        point[0] = point[1] = point[2] = error[n] = NAN;
        if (seen_by < min_views || max_subsets <= 0)
            continue;
        double candidate[3];
        const double whole = fit_views(rows, usable, views, P, uv + 2 * n, count, candidate);
        uint64_t best = 0;
        double best_error = INFINITY;
        if (whole < threshold) {
            best = usable;
            best_error = whole;
            memcpy(point, candidate, sizeof candidate);
        } else if (seen_by > min_views) {
            int local[MAX_VIEWS], index[MAX_VIEWS], best_size = 0;
            for (ptrdiff_t v = 0, k = 0; v < views; ++v)
                if (usable >> v & 1)
                    local[k++] = (int)v;
            long tried = 1; /* the whole set */
            for (int size = seen_by; size >= min_views && tried < max_subsets; --size) {
                for (int i = 0; i < size; ++i)
                    index[i] = i;
                for (;;) {
                    if (size < seen_by) { /* the whole set was the first */
                        if (tried++ >= max_subsets)
                            break;
                        uint64_t mask = 0;
                        for (int i = 0; i < size; ++i)
                            mask |= (uint64_t)1 << local[index[i]];
                        const double e = fit_views(rows, mask, views, P, uv + 2 * n, count, candidate);
                        if (e < threshold && (size > best_size || (size == best_size && e < best_error))) {
                            best = mask;
                            best_size = size;
                            best_error = e;
                            memcpy(point, candidate, sizeof candidate);
                        }
                    }
                    int i = size - 1; /* the next combination in lexicographic order */
                    while (i >= 0 && index[i] == seen_by - size + i)
                        --i;
                    if (i < 0)
                        break;
                    ++index[i];
                    for (int j = i + 1; j < size; ++j)
                        index[j] = index[j - 1] + 1;
                }
            }
        }
        if (!best)
            continue;
        error[n] = best_error;
        for (ptrdiff_t v = 0; v < views; ++v)
            views_used[v * count + n] = (uint8_t)(best >> v & 1);
    }
}

enum { K_INV_, EXTRINSICS_, P_, UV_, CONFIDENCE_, NUM_INPUTS };

/* triangulate_robust(K_inv, extrinsics, P, uv, confidence, threshold, min_confidence, min_views, max_subsets,
 * points, views_used, error) -> None: the inputs C-contiguous float64 buffers [V, 3, 3], [V, 3, 4], [V, 3, 4],
 * [V, N, 2], [V, N]; the outputs writable C-contiguous float64 [N, 3], bytes [V, N] and float64 [N]. V is at most
 * 64. Sizes are checked (a ValueError, never a read or write out of bounds). */
static PyObject *py_triangulate_robust(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer in[NUM_INPUTS], points, used, error;
    double threshold, min_confidence;
    int min_views;
    long max_subsets;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*ddilw*w*w*:triangulate_robust", &in[0], &in[1], &in[2], &in[3], &in[4],
                          &threshold, &min_confidence, &min_views, &max_subsets, &points, &used, &error))
        return NULL;
    const Py_ssize_t d = (Py_ssize_t)sizeof(double);
    const Py_ssize_t V = in[K_INV_].len / (9 * d), N = in[CONFIDENCE_].len / (V > 0 ? V * d : 1);
    const Py_ssize_t expected[NUM_INPUTS] = {9 * V * d, 12 * V * d, 12 * V * d, 2 * V * N * d, V * N * d};
    int valid = V > 0 && V <= MAX_VIEWS && in[K_INV_].len % (9 * d) == 0 && points.len == 3 * N * d
                && used.len == V * N && error.len == N * d;
    for (int i = 0; i < NUM_INPUTS; ++i)
        valid = valid && in[i].len == expected[i];
    if (valid) {
        Py_BEGIN_ALLOW_THREADS
        triangulate_robust(V, N, in[K_INV_].buf, in[EXTRINSICS_].buf, in[P_].buf, in[UV_].buf, in[CONFIDENCE_].buf,
                           threshold, min_confidence, min_views, max_subsets, points.buf, used.buf, error.buf);
        Py_END_ALLOW_THREADS
    } else {
        PyErr_SetString(PyExc_ValueError, "triangulate_robust: the buffers' sizes do not match [V, 3, 3], [V, 3, 4], "
                                          "[V, 3, 4], [V, N, 2], [V, N] and out [N, 3], [V, N] bytes, [N] (V <= 64)");
    }
    for (int i = 0; i < NUM_INPUTS; ++i)
        PyBuffer_Release(&in[i]);
    PyBuffer_Release(&points);
    PyBuffer_Release(&used);
    PyBuffer_Release(&error);
    if (!valid)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"triangulate_robust", py_triangulate_robust, METH_VARARGS,
     "triangulate_robust(K_inv, extrinsics, P, uv, confidence, threshold, min_confidence, min_views, max_subsets, "
     "points, views_used, error): see _triangulation_kernel.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_triangulation_kernel",
    "Robust triangulation, compiled (see skelsplat_ros/geometry/triangulation.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__triangulation_kernel(void) { return PyModule_Create(&module); }
