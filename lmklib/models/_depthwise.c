/* Depthwise 3x3 convolution for batch-1 inference: the compiled kernel of
 * lmklib.models.layers.depthwise3x3.
 *
 * depthwise3x3(x, w, bias, out, N, C, H, W, stride, Ho, Wo, act)
 *
 *   x     float32 [N, C, H, W] (contiguous): the input.
 *   w     float32 [C, 3, 3] (contiguous): one 3x3 kernel per channel.
 *   bias  None or float32 [C].
 *   out   float32 [N, C, Ho, Wo] (contiguous, written), Ho = (H - 1) / stride + 1 (and Wo).
 *   act   0: none; 1: ReLU (max(a, 0)); 2: ReLU6 (min(max(a, 0), 6)). NaN stays NaN.
 *
 * Zero padding 1, dilation 1: out[n, c, y, x] = bias[c] + sum_ij w[c, i, j] *
 * x[n, c, y * stride - 1 + i, x * stride - 1 + j], the taps summed in row-major order after the
 * bias, each a float32 operation (built with -ffp-contract=off). The result equals torch's
 * convolution up to the order of the float sums.
 *
 * Why: on a CPU, ATen's depthwise convolution (oneDNN) costs 40-70 us per call at batch 1 on
 * maps of 4x4 to 32x32, whatever their size; this loop takes 5-25 us there (both printed by
 * benchmarks/bench_inference.py). Each plane is copied into a zero-bordered scratch plane so
 * that the inner loop has no bounds checks (at stride 2 with its even and odd columns apart,
 * so that it vectorises).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_buffers.h"
#include <stdlib.h>
#include <string.h>

/* The activation over a row, apart from the sums so that both loops vectorise. */
static inline void activate(float *row, Py_ssize_t n, int act) {
    if (act >= 1)
        for (Py_ssize_t i = 0; i < n; i++) row[i] = row[i] < 0.0f ? 0.0f : row[i];
    if (act == 2)
        for (Py_ssize_t i = 0; i < n; i++) row[i] = row[i] > 6.0f ? 6.0f : row[i];
}

static void plane(const float *restrict x, const float *restrict k, float b, float *restrict o,
                  Py_ssize_t H, Py_ssize_t W,
                  Py_ssize_t s, Py_ssize_t Ho, Py_ssize_t Wo, int act, float *restrict pad) {
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6],
                k7 = k[7], k8 = k[8];
    if (s == 2) {
        /* Each padded row split into its even and odd columns, so that the taps of consecutive
         * outputs are contiguous (even[ox], odd[ox], even[ox + 1]) and the loop vectorises. */
        const Py_ssize_t E = (W + 3) / 2, P = 2 * E;     /* row: E even, then E odd columns */
        for (Py_ssize_t y = 0; y < H; y++) {
            float *ev = pad + (y + 1) * P, *od = ev + E;
            const float *xr = x + y * W;
            for (Py_ssize_t c = 1; c <= W; c++) {          /* padded column c = input c - 1 */
                if (c & 1) od[c >> 1] = xr[c - 1];
                else ev[c >> 1] = xr[c - 1];
            }
        }
        for (Py_ssize_t oy = 0; oy < Ho; oy++) {
            const float *e0 = pad + 2 * oy * P, *e1 = e0 + P, *e2 = e1 + P;
            const float *d0 = e0 + E, *d1 = e1 + E, *d2 = e2 + E;
            float *row = o + oy * Wo;
            for (Py_ssize_t ox = 0; ox < Wo; ox++)
                row[ox] = b + k0 * e0[ox] + k1 * d0[ox] + k2 * e0[ox + 1] +
                          k3 * e1[ox] + k4 * d1[ox] + k5 * e1[ox + 1] +
                          k6 * e2[ox] + k7 * d2[ox] + k8 * e2[ox + 1];
            activate(row, Wo, act);
        }
        return;
    }
    const Py_ssize_t P = W + 2;
    for (Py_ssize_t y = 0; y < H; y++) memcpy(pad + (y + 1) * P + 1, x + y * W, W * sizeof(float));
    for (Py_ssize_t oy = 0; oy < Ho; oy++) {
        const float *r0 = pad + oy * s * P, *r1 = r0 + P, *r2 = r1 + P;
        float *row = o + oy * Wo;
        if (s == 1) {   /* contiguous taps: the compiler vectorises this loop */
            for (Py_ssize_t ox = 0; ox < Wo; ox++)
                row[ox] = b + k0 * r0[ox] + k1 * r0[ox + 1] + k2 * r0[ox + 2] +
                          k3 * r1[ox] + k4 * r1[ox + 1] + k5 * r1[ox + 2] +
                          k6 * r2[ox] + k7 * r2[ox + 1] + k8 * r2[ox + 2];
        } else {
            for (Py_ssize_t ox = 0; ox < Wo; ox++) {
                const Py_ssize_t c = ox * s;
                row[ox] = b + k0 * r0[c] + k1 * r0[c + 1] + k2 * r0[c + 2] +
                          k3 * r1[c] + k4 * r1[c + 1] + k5 * r1[c + 2] +
                          k6 * r2[c] + k7 * r2[c + 1] + k8 * r2[c + 2];
            }
        }
        activate(row, Wo, act);
    }
}

static PyObject *depthwise3x3(PyObject *self, PyObject *args) {
    Py_buffer xb, wb, ob, bb = {0};
    Py_ssize_t N, C, H, W, s, Ho, Wo;
    int act;
    PyObject *bias_obj, *result = NULL;
    float *pad = NULL;
    if (!PyArg_ParseTuple(args, "y*y*Ow*nnnnnnni", &xb, &wb, &bias_obj, &ob, &N, &C, &H, &W, &s,
                          &Ho, &Wo, &act))
        return NULL;
    int has_bias = bias_obj != Py_None;
    if (has_bias && PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) {
        has_bias = 0;
        goto done;
    }
    if (s < 1 || act < 0 || act > 2 || Ho != (H - 1) / s + 1 || Wo != (W - 1) / s + 1) {
        PyErr_Format(PyExc_ValueError, "depthwise3x3: stride %zd, act %d, output %zd x %zd do not "
                     "fit an input of %zd x %zd", s, act, Ho, Wo, H, W);
        goto done;
    }
    if (!need_bytes("depthwise3x3", &xb, N * C * H * W * (Py_ssize_t)sizeof(float), "x") ||
        !need_bytes("depthwise3x3", &wb, C * 9 * (Py_ssize_t)sizeof(float), "w") ||
        !need_bytes("depthwise3x3", &ob, N * C * Ho * Wo * (Py_ssize_t)sizeof(float), "out") ||
        (has_bias && !need_bytes("depthwise3x3", &bb, C * (Py_ssize_t)sizeof(float), "bias")))
        goto done;
    pad = calloc((size_t)((H + 2) * (W + 4)), sizeof(float));   /* (W + 3) / 2 * 2 <= W + 4 */
    if (!pad) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const float *x = xb.buf, *w = wb.buf, *b = has_bias ? bb.buf : NULL;
        float *o = ob.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t n = 0; n < N; n++)
            for (Py_ssize_t c = 0; c < C; c++)
                plane(x + (n * C + c) * H * W, w + c * 9, b ? b[c] : 0.0f,
                      o + (n * C + c) * Ho * Wo, H, W, s, Ho, Wo, act, pad);
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(pad);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&ob);
    if (has_bias) PyBuffer_Release(&bb);
    return result;
}

static PyMethodDef methods[] = {
    {"depthwise3x3", depthwise3x3, METH_VARARGS,
     "depthwise3x3(x, w, bias, out, N, C, H, W, stride, Ho, Wo, act): lmklib.models.layers' "
     "depthwise 3x3 convolution (see the C source's header)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depthwise",
                                    "Compiled depthwise 3x3 convolution.", -1, methods};

PyMODINIT_FUNC PyInit__depthwise(void) { return PyModule_Create(&module); }
