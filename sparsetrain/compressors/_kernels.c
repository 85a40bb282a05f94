/* One-pass CPU kernels for threshold selectors (sparsetrain.compressors.kernels).
 *
 * torch needs several passes (and d-sized temporaries) for what a threshold selector does in
 * one: |a| > t is a compare pass writing a d-byte mask, a count pass and a compaction pass
 * (torch.nonzero) that reads it again. These loops read the float32 buffer once and write only
 * what they return. Each call covers one contiguous chunk and releases the GIL, so Python threads
 * run the chunks of one buffer in parallel (see kernels.py).
 *
 * Built as an optional extension: where no C compiler is available the torch path runs instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 256
#define SCAN 32

/* GCC/Clang vector extensions: portable SIMD (two SSE registers on a baseline x86-64 build). */
typedef float vfloat __attribute__((vector_size(32)));

/* sum and sum of squares of a[0..n): float partial sums over blocks of BLOCK entries in 16 SIMD
 * lanes, block totals added in double. */
static void moments_impl(const float *restrict a, int64_t n, double *sum, double *sumsq) {
    double s = 0.0, q = 0.0;
    int64_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        vfloat s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0}, x0, x1;
        for (int j = 0; j < BLOCK; j += 16) {
            memcpy(&x0, a + i + j, sizeof x0);
            memcpy(&x1, a + i + j + 8, sizeof x1);
            s0 += x0;
            s1 += x1;
            q0 += x0 * x0;
            q1 += x1 * x1;
        }
        for (int l = 0; l < 8; l++) {
            s += (double)s0[l] + s1[l];
            q += (double)q0[l] + q1[l];
        }
    }
    for (; i < n; i++) {
        s += a[i];
        q += (double)a[i] * a[i];
    }
    *sum = s;
    *sumsq = q;
}

/* Indices (base + i) of the entries with |a[i]| > t, ascending; writes at most cap of them and
 * returns how many there are. Each run of SCAN entries is first counted in SIMD and scanned one
 * by one only when it holds a hit (a few percent of runs at the densities selectors use); once
 * more than cap have been found, the rest is only counted. */
static int64_t collect_impl(const float *restrict a, int64_t n, float t, int64_t base, int64_t *restrict out,
                            int64_t cap) {
    int64_t count = 0, i = 0;
    for (; i + SCAN <= n; i += SCAN) {
        int hits = 0;
        for (int j = 0; j < SCAN; j++) hits += fabsf(a[i + j]) > t;
        if (!hits) continue;
        if (count > cap) {
            count += hits;
            continue;
        }
        for (int j = 0; j < SCAN; j++)
            if (fabsf(a[i + j]) > t) {
                if (count < cap) out[count] = base + i + j;
                count++;
            }
    }
    for (; i < n; i++)
        if (fabsf(a[i]) > t) {
            if (count < cap) out[count] = base + i;
            count++;
        }
    return count;
}

static PyObject *moments(PyObject *self, PyObject *args) {
    unsigned long long address;
    long long n;
    if (!PyArg_ParseTuple(args, "KL", &address, &n)) return NULL;
    double sum, sumsq;
    Py_BEGIN_ALLOW_THREADS
    moments_impl((const float *)(uintptr_t)address, n, &sum, &sumsq);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("dd", sum, sumsq);
}

static PyObject *collect_abs_above(PyObject *self, PyObject *args) {
    unsigned long long address, out;
    long long n, base, cap;
    float threshold;
    int inclusive;
    if (!PyArg_ParseTuple(args, "KLfpLKL", &address, &n, &threshold, &inclusive, &base, &out, &cap)) return NULL;
    /* |a| >= t  <=>  |a| > the largest float below t */
    if (inclusive) threshold = nextafterf(threshold, -INFINITY);
    int64_t count;
    Py_BEGIN_ALLOW_THREADS
    count = collect_impl((const float *)(uintptr_t)address, n, threshold, base, (int64_t *)(uintptr_t)out, cap);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(count);
}

static PyMethodDef methods[] = {
    {"moments", moments, METH_VARARGS, "moments(address, n) -> (sum, sum of squares) of n float32 at address"},
    {"collect_abs_above", collect_abs_above, METH_VARARGS,
     "collect_abs_above(address, n, t, inclusive, base, out, cap) -> count of |a| > t (>= t if inclusive); "
     "writes base + i of the first cap of them, ascending, as int64 at out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
