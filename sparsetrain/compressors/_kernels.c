/* One-pass CPU kernel for threshold selectors (sparsetrain.compressors.kernels).
 *
 * torch needs several passes (and d-sized temporaries) for what a threshold selector does in
 * one: error feedback's a += g is one pass, |a| >= t a compare pass writing a d-byte mask, then a
 * count pass and a compaction (torch.nonzero) reading the mask again, and Gaussian-k's moments
 * two more reads. scan() does all of it in one read of the float32 buffer (and of g when it adds
 * g), writing only a (when adding) and the indices and values it returns.
 *
 * The parts of a buffer run in parallel on OpenMP threads. Built with -fopenmp, the extension
 * links libgomp.so.1, which on Linux is the OpenMP runtime torch has already loaded (same soname),
 * so the scan runs on torch's own intra-op threads. Threads of our own would compete for the cores
 * with torch's OpenMP workers, which spin for a while after each parallel op: measured here, d =
 * 11.17M on 2 cores, a fused scan right after a torch op took 3.4 ms on two Python threads, 1.8 ms
 * on the same threads with OMP_WAIT_POLICY=PASSIVE (no spinning), and about the time of torch's
 * own e += g on torch's threads.
 *
 * Built as an optional extension: where no C compiler (or no OpenMP) is available the torch path
 * runs instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Entries per SIMD step, and per block whose float partial sums are added into double. */
#define RUN 16
#define BLOCK 256

/* GCC/Clang vector extensions: portable SIMD, lowered to whatever registers the target has. */
typedef float vfloat __attribute__((vector_size(RUN * 4)));
typedef int32_t vint __attribute__((vector_size(RUN * 4)));
typedef uint64_t vmask __attribute__((vector_size(RUN * 4)));

/* On x86-64 one build carries AVX-512, AVX2 and baseline versions of the loop and picks one at
 * load time (GCC/Clang function multiversioning), so a wheel built anywhere runs everywhere. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__APPLE__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

typedef struct {
    int64_t count;
    double sum, sumsq;
} scan_result;

/* Indices base + i and values a[i] of the entries of a[begin..end) with |a[i]| > t: written while
 * fewer than cap are found, counted always. Where the run fits below cap, every entry is written
 * and the count advances only past hits: no branch to mispredict at a few percent density. */
static inline void collect(const float *restrict a, int64_t begin, int64_t end, float t, int64_t base,
                           int64_t *restrict out, float *restrict out_values, int64_t cap, int64_t *count) {
    int64_t c = *count;
    if (c + (end - begin) <= cap) {
        for (int64_t i = begin; i < end; i++) {
            out[c] = base + i;
            out_values[c] = a[i];
            c += fabsf(a[i]) > t;
        }
    } else {
        for (int64_t i = begin; i < end; i++)
            if (fabsf(a[i]) > t) {
                if (c < cap) {
                    out[c] = base + i;
                    out_values[c] = a[i];
                }
                c++;
            }
    }
    *count = c;
}

/* The loop, specialised at compile time on whether it adds g and whether it sums moments. A run
 * of RUN entries is tested in SIMD and scanned one by one only when it holds an entry above t
 * (a few percent of runs at the densities selectors use). */
static inline __attribute__((always_inline)) scan_result scan_loop(float *restrict a, const float *restrict g, int64_t n,
                                                                   float t, int64_t base, int64_t *restrict out,
                                                                   float *restrict out_values, int64_t cap,
                                                                   const int add, const int moments) {
    scan_result r = {0, 0.0, 0.0};
    const vint magnitude = (vint){0} + 0x7fffffff;
    const vfloat threshold = (vfloat){0} + t;
    int64_t i = 0;
    while (i + RUN <= n) {
        int64_t block_end = i + BLOCK <= n ? i + BLOCK : n;
        vfloat s = {0}, q = {0};
        for (; i + RUN <= block_end; i += RUN) {
            vfloat x, y;
            memcpy(&x, a + i, sizeof x);
            if (add) {
                memcpy(&y, g + i, sizeof y);
                x += y;
                memcpy(a + i, &x, sizeof x);
            }
            if (moments) {
                s += x;
                q += x * x;
            }
            vfloat magnitudes = (vfloat)((vint)x & magnitude);
            vmask hit = (vmask)(magnitudes > threshold);
            uint64_t any = 0;
            for (int l = 0; l < (int)(sizeof hit / sizeof hit[0]); l++) any |= hit[l];
            if (any) collect(a, i, i + RUN, t, base, out, out_values, cap, &r.count);
        }
        if (moments)
            for (int l = 0; l < RUN; l++) {
                r.sum += s[l];
                r.sumsq += q[l];
            }
    }
    for (; i < n; i++) {
        if (add) a[i] += g[i];
        if (moments) {
            r.sum += a[i];
            r.sumsq += (double)a[i] * a[i];
        }
    }
    collect(a, n - n % RUN, n, t, base, out, out_values, cap, &r.count);
    return r;
}

MULTIVERSION
static scan_result scan_impl(float *a, const float *g, int64_t n, float t, int64_t base, int64_t *out,
                             float *out_values, int64_t cap, int moments) {
    if (g)
        return moments ? scan_loop(a, g, n, t, base, out, out_values, cap, 1, 1)
                       : scan_loop(a, g, n, t, base, out, out_values, cap, 1, 0);
    return moments ? scan_loop(a, NULL, n, t, base, out, out_values, cap, 0, 1)
                   : scan_loop(a, NULL, n, t, base, out, out_values, cap, 0, 0);
}

#define MAX_PARTS 256

static PyObject *scan(PyObject *self, PyObject *args) {
    unsigned long long address, add, out, out_values;
    long long n, cap;
    float threshold;
    int inclusive, moments, parts;
    if (!PyArg_ParseTuple(args, "KKLfpKKLpi", &address, &add, &n, &threshold, &inclusive, &out, &out_values, &cap,
                          &moments, &parts))
        return NULL;
    if (parts < 1 || parts > MAX_PARTS) {
        PyErr_Format(PyExc_ValueError, "parts must be in [1, %d], got %d", MAX_PARTS, parts);
        return NULL;
    }
    /* |a| >= t  <=>  |a| > the largest float below t */
    if (inclusive) threshold = nextafterf(threshold, -INFINITY);
    float *a = (float *)(uintptr_t)address;
    const float *g = (const float *)(uintptr_t)add;
    int64_t *indices = (int64_t *)(uintptr_t)out;
    float *values = (float *)(uintptr_t)out_values;
    scan_result results[MAX_PARTS];
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int64_t begin = n * p / parts, end = n * (p + 1) / parts;
        results[p] = scan_impl(a + begin, g ? g + begin : NULL, end - begin, threshold, begin, indices + p * cap,
                               values + p * cap, cap, moments);
    }
    Py_END_ALLOW_THREADS
    PyObject *counts = PyTuple_New(parts);
    if (!counts) return NULL;
    double sum = 0.0, sumsq = 0.0;
    for (int p = 0; p < parts; p++) {
        PyTuple_SET_ITEM(counts, p, PyLong_FromLongLong(results[p].count));
        sum += results[p].sum;
        sumsq += results[p].sumsq;
    }
    return Py_BuildValue("Ndd", counts, sum, sumsq);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(a, g, n, t, inclusive, out, out_values, cap, moments, parts) -> (counts, sum, sum of squares).\n"
     "For the n float32 at address a, split into `parts` contiguous parts run in parallel (OpenMP): first "
     "a += g when g (an address) is not 0; then, per part p, count the entries with |a| > t (>= t if "
     "inclusive) and write the indices of the first cap of them, ascending, as int64 at out + p * cap, "
     "and their values a[i] as float32 at out_values + p * cap; sum and sum of squares of a when moments, "
     "else 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
#ifdef _OPENMP
    const int openmp = 1;
#else
    const int openmp = 0;
#endif
    if (m && PyModule_AddIntConstant(m, "OPENMP", openmp) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
