/* The compiled twins of image_terms_numpy (fusion/image_terms.py): the Gauss-Newton image terms of every
 * (view, frame, joint) in one loop; and of minimise_numpy (fusion/gauss_newton.py): each frame's iterations, with the
 * bone and prior terms, the normal equations' solve and the line search, in one loop. Both in the extension module
 * skelsplat_ros.fusion._image_kernel.
 *
 * A CPython extension rather than a plain C library called through ctypes: the streaming fuser and the node call it
 * on one frame (4 views x 17 joints, a few microseconds of arithmetic) several times a frame, and ctypes' conversion
 * of 13 array pointers made that call cost 18 to 22 us against numba's 10 (measured; this module: 7.8). It needs
 * Python.h, as the message modules that rosidl_generator_py builds for this package do. It reads the arrays
 * through the buffer protocol (no numpy headers) and releases the GIL while it runs, so that the ROS node's
 * executor thread runs meanwhile. Sizes and indices are checked before anything is read.
 *
 * Built without fast-math and with -ffp-contract=off (setup.py, CMakeLists.txt): every operation rounds as written,
 * whatever fused multiply-adds the target offers, so that a build's results do not depend on the compiler's choices.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A view's projection rows: K[:2] R, so that the Jacobian of the projection is (K[:2] R - uv R[2]) / z. */
static void projection_rows(const double *k, const double *r, double kr[2][3])
{
    for (int row = 0; row < 2; ++row)
        for (int a = 0; a < 3; ++a)
            kr[row][a] = k[3 * row] * r[a] + k[3 * row + 1] * r[3 + a] + k[3 * row + 2] * r[6 + a];
}

/* One view's terms of one mean ``x [3]``: adds its image term to ``*image`` and, where ``info`` is not NULL, its
 * information to ``info [3, 3]`` and its gradient to ``grad [3]``; writes distance, overlap and depth where those are
 * not NULL. ``k``, ``r``, ``tv``, ``kr``: the view's K, R, t and projection rows; ``observed [2]`` the keypoint. */
static inline void view_terms(const double *k, const double *r, const double *tv, const double kr[2][3],
                              const double *x, const double *observed, double weight_in, double heatmap,
                              double splat_variance, double eps2d, double max_alpha, double *image, double *info,
                              double *grad, double *distance, double *overlap, double *depth)
{
    const double cx = r[0] * x[0] + r[1] * x[1] + r[2] * x[2] + tv[0];
    const double cy = r[3] * x[0] + r[4] * x[1] + r[5] * x[2] + tv[1];
    const double cz = r[6] * x[0] + r[7] * x[1] + r[8] * x[2] + tv[2];
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
    const double sa = ra + heatmap, sc = rc + heatmap;
    const double det_s = sa * sc - rb * rb;
    const double ia = sc / det_s, ib = -rb / det_s, ic = sa / det_s;
    const double du = pu - observed[0], dv = pv - observed[1];
    const double agreement = exp(-0.5 * (ia * du * du + 2.0 * ib * du * dv + ic * dv * dv));
    const double coupling = 4.0 * max_alpha * sqrt(det_r / det_s);
    const double weight = front ? weight_in : 0.0;
    *image += weight * (max_alpha * max_alpha * sqrt(det_r) / heatmap - coupling * agreement + 1.0);
    if (distance) {
        *distance = sqrt(du * du + dv * dv);
        *overlap = agreement;
        *depth = cz;
    }
    if (!info)
        return;
    const double omega = weight * coupling * agreement;
    double au[3], av[3];
    for (int a = 0; a < 3; ++a) {
        au[a] = omega * (ia * ju[a] + ib * jv[a]);
        av[a] = omega * (ib * ju[a] + ic * jv[a]);
    }
    for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b)
            info[3 * a + b] += ju[a] * au[b] + jv[a] * av[b];
        grad[a] += au[a] * du + av[a] * dv;
    }
}

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
        double kr[2][3];
        projection_rows(k, r, kr);
        for (ptrdiff_t p = 0; p < points; ++p) {
            const ptrdiff_t vp = v * points + p;
            view_terms(k, r, tv, kr, means + 3 * p, uv + 2 * vp, weights[vp], variance[vp], splat_variance, eps2d,
                       max_alpha, image + p, information + 9 * p, gradient + 3 * p, distance + vp, overlap + vp,
                       depth + vp);
        }
    }
}

/* The Gauss-Newton objective of a batch of frames, as gauss_newton.GaussNewtonObjective holds it, for the minimiser
 * below. V views, F frames, J joints, B bones; every array C-contiguous. A prior whose arrays are NULL is absent. */
typedef struct {
    ptrdiff_t views, frames, joints, bones;
    const double *K, *R, *t;                    /* [V, 3, 3], [V, 3, 3], [V, 3] */
    const double (*kr)[2][3];                   /* [V] projection rows */
    const double *uv, *weights, *variance;      /* [V, F, J, 2], [V, F, J], [V, F, J] */
    const int64_t *bone_joints;                 /* [B, 2] */
    const double *bone_mask, *bone_lengths, *bone_factor;  /* [F, B] (mask: 0 or 1) */
    const double *temporal_factor, *prediction; /* [F, J], [F, J, 3] */
    const double *anchor, *anchor_information;  /* [F, J, 3], [F, J, 3, 3] */
    const double *active;                       /* [F, J] (0 or 1) */
    const int64_t *position;                    /* [J] each joint's place in the elimination order */
    double eps2d, max_alpha;
} Objective;

/* One frame's scratch: information [J, 3, 3], gradient [J, 3], bone unit vectors [B, 3] and residuals [B], the
 * normal matrix [3J, 3J], the step and a trial [J, 3], right-hand side [3J], a column's nonzero rows [3J]. */
typedef struct {
    double *info, *grad, *unit, *residual, *hessian, *delta, *trial, *rhs;
    ptrdiff_t *nonzero;
} Workspace;

/* The objective of frame f at ``x [J, 3]`` for splats of standard deviation sigma; with ``info`` and ``grad``
 * (else NULL), the image terms' information and gradient of each joint. Leaves each bone's unit vector and residual
 * in the workspace. */
static double frame_energy(const Objective *o, ptrdiff_t f, const double *x, double sigma, double *info,
                           double *grad, Workspace *w)
{
    const ptrdiff_t J = o->joints, F = o->frames;
    const double splat_variance = sigma * sigma;
    double total_joints = 0.0, total_bones = 0.0;
    for (ptrdiff_t j = 0; j < J; ++j) {
        const double *xj = x + 3 * j;
        double term = 0.0, *ij = NULL, *gj = NULL;
        if (info) {
            ij = info + 9 * j;
            gj = grad + 3 * j;
            memset(ij, 0, 9 * sizeof(double));
            memset(gj, 0, 3 * sizeof(double));
        }
        for (ptrdiff_t v = 0; v < o->views; ++v) {
            const ptrdiff_t vfj = (v * F + f) * J + j;
            view_terms(o->K + 9 * v, o->R + 9 * v, o->t + 3 * v, o->kr[v], xj, o->uv + 2 * vfj, o->weights[vfj],
                       o->variance[vfj], splat_variance, o->eps2d, o->max_alpha, &term, ij, gj, NULL, NULL, NULL);
        }
        const ptrdiff_t fj = f * J + j;
        if (o->temporal_factor) {
            const double *p = o->prediction + 3 * fj;
            const double d0 = xj[0] - p[0], d1 = xj[1] - p[1], d2 = xj[2] - p[2];
            term += o->temporal_factor[fj] * (d0 * d0 + d1 * d1 + d2 * d2);
        }
        if (o->anchor) {
            const double *a = o->anchor + 3 * fj, *m = o->anchor_information + 9 * fj;
            const double d[3] = {xj[0] - a[0], xj[1] - a[1], xj[2] - a[2]};
            for (int r = 0; r < 3; ++r)
                term += d[r] * (m[3 * r] * d[0] + m[3 * r + 1] * d[1] + m[3 * r + 2] * d[2]);
        }
        total_joints += term;
    }
    for (ptrdiff_t b = 0; b < o->bones; ++b) {
        const double *first = x + 3 * o->bone_joints[2 * b], *second = x + 3 * o->bone_joints[2 * b + 1];
        const double vec[3] = {first[0] - second[0], first[1] - second[1], first[2] - second[2]};
        const double length = sqrt(vec[0] * vec[0] + vec[1] * vec[1] + vec[2] * vec[2]);
        const ptrdiff_t fb = f * o->bones + b;
        const double residual = o->bone_mask[fb] != 0.0 ? length - o->bone_lengths[fb] : 0.0;
        const double scale = length > 1e-9 ? length : 1e-9;
        for (int a = 0; a < 3; ++a)
            w->unit[3 * b + a] = vec[a] / scale;
        w->residual[b] = residual;
        total_bones += o->bone_factor[fb] * residual * residual;
    }
    return total_joints + total_bones;
}

/* In place: the Cholesky factor (lower triangle) of the symmetric positive definite ``a [n, n]``, then the solution
 * of a x = b into b [n]. Zeros below the diagonal are skipped, so an elimination order that keeps them (the
 * skeleton's tree, leaves first) factors in O(n). Returns 0, or -1 where a pivot is not positive. */
static int cholesky_solve(double *a, ptrdiff_t n, double *b, ptrdiff_t *nonzero)
{
    for (ptrdiff_t k = 0; k < n; ++k) {
        const double pivot = a[k * n + k];
        if (!(pivot > 0.0))
            return -1;
        const double root = sqrt(pivot);
        a[k * n + k] = root;
        ptrdiff_t count = 0;
        for (ptrdiff_t i = k + 1; i < n; ++i)
            if (a[i * n + k] != 0.0) {
                a[i * n + k] /= root;
                nonzero[count++] = i;
            }
        for (ptrdiff_t p = 0; p < count; ++p) {
            const ptrdiff_t i = nonzero[p];
            const double lik = a[i * n + k];
            for (ptrdiff_t q = 0; q <= p; ++q)
                a[i * n + nonzero[q]] -= lik * a[nonzero[q] * n + k];
        }
    }
    for (ptrdiff_t i = 0; i < n; ++i) {  /* L y = b */
        double sum = b[i];
        for (ptrdiff_t j = 0; j < i; ++j)
            sum -= a[i * n + j] * b[j];
        b[i] = sum / a[i * n + i];
    }
    for (ptrdiff_t i = n - 1; i >= 0; --i) {  /* L^T x = y */
        double sum = b[i];
        for (ptrdiff_t j = i + 1; j < n; ++j)
            sum -= a[j * n + i] * b[j];
        b[i] = sum / a[i * n + i];
    }
    return 0;
}

/* GaussNewtonObjective.step for frame f: the objective at ``x [J, 3]`` and the update into w->delta [J, 3] (NaN where
 * the normal matrix is not positive definite). */
static double frame_step(const Objective *o, ptrdiff_t f, const double *x, double sigma, Workspace *w)
{
    const ptrdiff_t J = o->joints, n = 3 * J;
    const double energy = frame_energy(o, f, x, sigma, w->info, w->grad, w);
    for (ptrdiff_t j = 0; j < J; ++j) {
        const ptrdiff_t fj = f * J + j;
        double *ij = w->info + 9 * j, *gj = w->grad + 3 * j;
        const double *xj = x + 3 * j;
        if (o->temporal_factor) {
            const double stiffness = 2.0 * o->temporal_factor[fj];
            const double *p = o->prediction + 3 * fj;
            for (int a = 0; a < 3; ++a) {
                ij[4 * a] += stiffness;
                gj[a] += stiffness * (xj[a] - p[a]);
            }
        }
        if (o->anchor) {
            const double *m = o->anchor_information + 9 * fj, *c = o->anchor + 3 * fj;
            const double d[3] = {xj[0] - c[0], xj[1] - c[1], xj[2] - c[2]};
            for (int a = 0; a < 3; ++a) {
                for (int b = 0; b < 3; ++b)
                    ij[3 * a + b] += 2.0 * m[3 * a + b];
                gj[a] += 2.0 * (m[3 * a] * d[0] + m[3 * a + 1] * d[1] + m[3 * a + 2] * d[2]);
            }
        }
    }
    double *h = w->hessian;
    memset(h, 0, (size_t)(n * n) * sizeof(double));
    for (ptrdiff_t b = 0; b < o->bones; ++b) {
        const ptrdiff_t fb = f * o->bones + b, first = o->bone_joints[2 * b], second = o->bone_joints[2 * b + 1];
        const double stiffness = 2.0 * o->bone_factor[fb] * o->bone_mask[fb], *u = w->unit + 3 * b;
        const double pull = stiffness * w->residual[b];
        const ptrdiff_t row = 3 * o->position[first], col = 3 * o->position[second];
        for (int a = 0; a < 3; ++a) {
            for (int c = 0; c < 3; ++c) {
                const double entry = stiffness * u[a] * u[c];
                w->info[9 * first + 3 * a + c] += entry;
                w->info[9 * second + 3 * a + c] += entry;
                h[(row + a) * n + col + c] = -entry;
                h[(col + a) * n + row + c] = -entry;
            }
            w->grad[3 * first + a] += pull * u[a];
            w->grad[3 * second + a] -= pull * u[a];
        }
    }
    double largest = -INFINITY;
    for (ptrdiff_t j = 0; j < J; ++j) {
        const ptrdiff_t at = 3 * o->position[j];
        const int frozen = o->active[f * J + j] == 0.0;
        for (int a = 0; a < 3; ++a) {
            for (int c = 0; c < 3; ++c)
                h[(at + a) * n + at + c] = frozen ? (a == c ? 1.0 : 0.0) : w->info[9 * j + 3 * a + c];
            w->rhs[at + a] = frozen ? 0.0 : -w->grad[3 * j + a];
            const double diagonal = h[(at + a) * n + at + a];
            if (!isnan(largest) && !(diagonal <= largest))  /* NaN wins, as in numpy's max */
                largest = diagonal;
        }
    }
    const double damping = 1e-6 * largest + 1e-9;
    for (ptrdiff_t i = 0; i < n; ++i)
        h[i * n + i] += damping;
    const int failed = cholesky_solve(h, n, w->rhs, w->nonzero);
    for (ptrdiff_t j = 0; j < J; ++j)
        for (int a = 0; a < 3; ++a)
            w->delta[3 * j + a] = failed ? NAN : w->rhs[3 * o->position[j] + a];
    return energy;
}

/* gauss_newton.minimise_numpy on the frames of ``o``, each on its own: one step per splat size of ``sigmas [S]``,
 * backtracked by halvings until the objective goes down. ``means [F, J, 3]`` in and out; ``stopped [F]`` receives -1,
 * or the iteration whose whole step failed every halving (the means are then those before it: the caller takes it
 * joint by joint and goes on from the next iteration). */
static void minimise(const Objective *o, const double *sigmas, ptrdiff_t num_sigmas, double tolerance, int halvings,
                     double *means, int64_t *stopped, Workspace *w)
{
    const ptrdiff_t J = o->joints;
    for (ptrdiff_t f = 0; f < o->frames; ++f) {
        double *x = means + 3 * J * f;
        stopped[f] = -1;
        for (ptrdiff_t s = 0; s < num_sigmas; ++s) {
            const double current = frame_step(o, f, x, sigmas[s], w);
            if (tolerance > 0) {
                int converged = 1;
                for (ptrdiff_t i = 0; i < 3 * J; ++i)
                    converged = converged && fabs(w->delta[i]) < tolerance;
                if (converged)
                    break;
            }
            int accepted = 0;
            double scale = 1.0;
            for (int h = 0; h <= halvings && !accepted; ++h, scale *= 0.5) {
                for (ptrdiff_t i = 0; i < 3 * J; ++i)
                    w->trial[i] = x[i] + scale * w->delta[i];
                const double energy = frame_energy(o, f, w->trial, sigmas[s], NULL, NULL, w);
                accepted = isfinite(energy) && energy <= current;
            }
            if (!accepted) {
                stopped[f] = s;
                break;
            }
            memcpy(x, w->trial, (size_t)(3 * J) * sizeof(double));
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

enum { K_, R_, T_, UV_, WEIGHTS_, VARIANCE_, BONES_, BONE_MASK_, BONE_LENGTHS_, BONE_FACTOR_, TEMPORAL_FACTOR_,
       PREDICTION_, ANCHOR_, ANCHOR_INFORMATION_, ACTIVE_, POSITION_, SIGMAS_, NUM_MINIMISE_INPUTS };

/* minimise(K, R, t, uv, weights, variance, bones, bone_mask, bone_lengths, bone_factor, temporal_factor, prediction,
 * anchor, anchor_information, active, position, sigmas, tolerance, halvings, eps2d, max_alpha, means, stopped)
 * -> None: the inputs C-contiguous buffers of float64 (bones [B, 2] and position [J]: int64) with the sizes of
 * Objective; temporal_factor with prediction, and anchor with anchor_information, empty where that prior is absent;
 * sigmas [S]. ``means [F, J, 3]`` float64 (in and out) and ``stopped [F]`` int64 as in minimise(). Sizes and indices
 * are checked (a ValueError, never a read or write out of bounds). */
static PyObject *py_minimise(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer in[NUM_MINIMISE_INPUTS], means, stopped;
    double tolerance, eps2d, max_alpha;
    int halvings;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*diddw*w*:minimise", &in[0], &in[1], &in[2], &in[3],
                          &in[4], &in[5], &in[6], &in[7], &in[8], &in[9], &in[10], &in[11], &in[12], &in[13], &in[14],
                          &in[15], &in[16], &tolerance, &halvings, &eps2d, &max_alpha, &means, &stopped))
        return NULL;
    const Py_ssize_t d = (Py_ssize_t)sizeof(double), i64 = (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t V = in[K_].len / (9 * d), J = in[POSITION_].len / i64, B = in[BONES_].len / (2 * i64);
    const Py_ssize_t F = J > 0 ? in[ACTIVE_].len / (J * d) : 0, S = in[SIGMAS_].len / d;
    const int temporal = in[TEMPORAL_FACTOR_].len > 0, anchored = in[ANCHOR_].len > 0;
    const Py_ssize_t expected[NUM_MINIMISE_INPUTS] = {
        9 * V * d, 9 * V * d, 3 * V * d, 2 * V * F * J * d, V * F * J * d, V * F * J * d, 2 * B * i64, F * B * d,
        F * B * d, F * B * d, temporal ? F * J * d : 0, temporal ? 3 * F * J * d : 0, anchored ? 3 * F * J * d : 0,
        anchored ? 9 * F * J * d : 0, F * J * d, J * i64, S * d};
    int valid = J > 0 && in[K_].len % (9 * d) == 0 && means.len == 3 * F * J * d && stopped.len == F * i64;
    for (int i = 0; i < NUM_MINIMISE_INPUTS; ++i)
        valid = valid && in[i].len == expected[i];
    const int64_t *bones = in[BONES_].buf, *position = in[POSITION_].buf;
    for (Py_ssize_t i = 0; valid && i < 2 * B; ++i)
        valid = bones[i] >= 0 && bones[i] < J;
    char *placed = valid ? calloc((size_t)J, 1) : NULL;  /* position must be a permutation of 0 .. J - 1 */
    for (Py_ssize_t j = 0; valid && j < J; ++j) {
        valid = position[j] >= 0 && position[j] < J && !placed[position[j]];
        if (valid)
            placed[position[j]] = 1;
    }
    free(placed);
    double (*kr)[2][3] = NULL, *scratch = NULL;
    ptrdiff_t *nonzero = NULL;
    const Py_ssize_t n = 3 * J;
    if (valid) {
        kr = malloc((size_t)(V > 0 ? V : 1) * sizeof *kr);
        scratch = malloc((size_t)(9 * J + 3 * J + 3 * B + B + n * n + 3 * J + 3 * J + n + 1) * sizeof(double));
        nonzero = malloc((size_t)n * sizeof(ptrdiff_t));
    }
    const int allocated = valid && kr && scratch && nonzero;
    if (allocated) {
        for (Py_ssize_t v = 0; v < V; ++v)
            projection_rows((const double *)in[K_].buf + 9 * v, (const double *)in[R_].buf + 9 * v, kr[v]);
        const Objective objective = {
            V, F, J, B, in[K_].buf, in[R_].buf, in[T_].buf, (const double (*)[2][3])kr, in[UV_].buf,
            in[WEIGHTS_].buf, in[VARIANCE_].buf, bones, in[BONE_MASK_].buf, in[BONE_LENGTHS_].buf,
            in[BONE_FACTOR_].buf, temporal ? in[TEMPORAL_FACTOR_].buf : NULL, temporal ? in[PREDICTION_].buf : NULL,
            anchored ? in[ANCHOR_].buf : NULL, anchored ? in[ANCHOR_INFORMATION_].buf : NULL, in[ACTIVE_].buf,
            position, eps2d, max_alpha};
        Workspace work = {scratch, scratch + 9 * J, scratch + 12 * J, scratch + 12 * J + 3 * B,
                          scratch + 12 * J + 4 * B, scratch + 12 * J + 4 * B + n * n,
                          scratch + 15 * J + 4 * B + n * n, scratch + 18 * J + 4 * B + n * n, nonzero};
        Py_BEGIN_ALLOW_THREADS
        minimise(&objective, in[SIGMAS_].buf, S, tolerance, halvings, means.buf, stopped.buf, &work);
        Py_END_ALLOW_THREADS
    } else if (valid) {
        PyErr_NoMemory();
    } else {
        PyErr_SetString(PyExc_ValueError, "minimise: the buffers' sizes do not match the objective's (see "
                                          "_image_kernel.c), or a bone or position is out of range");
    }
    free(kr);
    free(scratch);
    free(nonzero);
    for (int i = 0; i < NUM_MINIMISE_INPUTS; ++i)
        PyBuffer_Release(&in[i]);
    PyBuffer_Release(&means);
    PyBuffer_Release(&stopped);
    if (!allocated)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"image_terms", py_image_terms, METH_VARARGS,
     "image_terms(K, R, t, means, uv, weights, variance, sigma, eps2d, max_alpha, out): see _image_kernel.c."},
    {"minimise", py_minimise, METH_VARARGS,
     "minimise(K, R, t, uv, weights, variance, bones, bone_mask, bone_lengths, bone_factor, temporal_factor, "
     "prediction, anchor, anchor_information, active, position, sigmas, tolerance, halvings, eps2d, max_alpha, means, "
     "stopped): see _image_kernel.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_image_kernel",
    "The Gauss-Newton image terms and minimiser, compiled (see skelsplat_ros/fusion/image_terms.py and gauss_newton.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__image_kernel(void) { return PyModule_Create(&module); }
