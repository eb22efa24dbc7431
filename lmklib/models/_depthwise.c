/* 3x3 convolutions for batch-1 inference: the compiled kernels of lmklib.models.layers.
 *
 * depthwise3x3(x, w, bias, out, N, C, H, W, stride, Ho, Wo, act)
 *   x     float32 [N, C, H, W] (contiguous): the input.
 *   w     float32 [C, 3, 3] (contiguous): one 3x3 kernel per channel.
 *   bias  None or float32 [C].
 *   out   float32 [N, C, Ho, Wo] (contiguous, written), Ho = (H - 1) / stride + 1 (and Wo).
 *   act   0: none; 1: ReLU (max(a, 0)); 2: ReLU6 (min(max(a, 0), 6)). NaN stays NaN.
 *
 * conv3x3(x, w, bias, out, N, C, H, W, O, stride, Ho, Wo, act)
 *   A dense 3x3 convolution (groups 1), C -> O channels, for the few input channels of a stem:
 *   w float32 [O, C, 3, 3]; bias None, float32 [O] or float32 [O, Ho, Wo] (a map added to each
 *   image's output: Fast DHM's stem adds its fixed prior's share this way); out [N, O, Ho, Wo].
 *
 * Zero padding 1, dilation 1, any stride: out[n, o, y, x] = bias + sum over the input
 * channels (in order) of the 9 taps w[o, c, i, j] * x[n, c, y * stride - 1 + i, ...], summed in
 * row-major order, each a float32 operation (built with -ffp-contract=off, so the vector
 * variants below give the same bits as the plain one). The result equals torch's convolution up
 * to the order of the float sums.
 *
 * Why: on a CPU, ATen's depthwise convolution (oneDNN) costs 40-70 us per call at batch 1 on
 * maps of 4x4 to 32x32, whatever their size; this loop takes 5-25 us there (both printed by
 * benchmarks/bench_inference.py). oneDNN's dense convolution with 3 input channels ran a 64 px
 * stem in ~50 us for ~1 MFLOP. Each input plane is copied once into a zero-bordered scratch plane
 * so that the inner loop has no bounds checks (at stride 2 with its even and odd columns apart,
 * so that it vectorises); the loops are compiled for AVX-512, AVX2 and plain x86-64 and chosen
 * at run time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_buffers.h"
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* The activation over a plane, apart from the sums so that both loops vectorise. */
INLINE void activate(float *o, Py_ssize_t n, int act) {
    if (act >= 1)
        for (Py_ssize_t i = 0; i < n; i++) o[i] = o[i] < 0.0f ? 0.0f : o[i];
    if (act == 2)
        for (Py_ssize_t i = 0; i < n; i++) o[i] = o[i] > 6.0f ? 6.0f : o[i];
}

/* Row length of a padded plane: W + 2; at stride 2, E even then E odd columns. */
static Py_ssize_t padded_width(Py_ssize_t W, Py_ssize_t s) { return s == 2 ? (W + 3) / 2 * 2 : W + 2; }

/* Copies plane x (H x W) into the interior of pad ((H + 2) rows of padded_width), whose border
 * stays zero. Stride 2: padded column c (input column c - 1) goes to c / 2 of the even half or
 * of the odd half, so that the taps of consecutive outputs are contiguous. */
INLINE void pad_plane(const float *restrict x, Py_ssize_t H, Py_ssize_t W, Py_ssize_t s,
                      float *restrict pad) {
    const Py_ssize_t P = padded_width(W, s), E = P / 2;
    for (Py_ssize_t y = 0; y < H; y++) {
        float *row = pad + (y + 1) * P;
        const float *xr = x + y * W;
        if (s == 2)
            for (Py_ssize_t c = 1; c <= W; c++) row[(c & 1) * E + (c >> 1)] = xr[c - 1];
        else
            for (Py_ssize_t c = 0; c < W; c++) row[c + 1] = xr[c];   /* (tiny rows: no call) */
    }
}

/* o (Ho x Wo) += the 9 taps of kernel k over the padded plane pad, row by row. */
INLINE void taps(const float *restrict pad, const float *restrict k, float *restrict o,
                 Py_ssize_t W, Py_ssize_t s, Py_ssize_t Ho, Py_ssize_t Wo) {
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6],
                k7 = k[7], k8 = k[8];
    const Py_ssize_t P = padded_width(W, s);
    for (Py_ssize_t oy = 0; oy < Ho; oy++) {
        const float *r0 = pad + oy * s * P, *r1 = r0 + P, *r2 = r1 + P;
        float *row = o + oy * Wo;
        if (s == 2) {
            const Py_ssize_t E = P / 2;
            const float *d0 = r0 + E, *d1 = r1 + E, *d2 = r2 + E;
            for (Py_ssize_t ox = 0; ox < Wo; ox++)
                row[ox] = row[ox] + k0 * r0[ox] + k1 * d0[ox] + k2 * r0[ox + 1] +
                          k3 * r1[ox] + k4 * d1[ox] + k5 * r1[ox + 1] +
                          k6 * r2[ox] + k7 * d2[ox] + k8 * r2[ox + 1];
        } else if (s == 1) {   /* contiguous taps: the compiler vectorises this loop */
            for (Py_ssize_t ox = 0; ox < Wo; ox++)
                row[ox] = row[ox] + k0 * r0[ox] + k1 * r0[ox + 1] + k2 * r0[ox + 2] +
                          k3 * r1[ox] + k4 * r1[ox + 1] + k5 * r1[ox + 2] +
                          k6 * r2[ox] + k7 * r2[ox + 1] + k8 * r2[ox + 2];
        } else {
            for (Py_ssize_t ox = 0; ox < Wo; ox++) {
                const Py_ssize_t c = ox * s;
                row[ox] = row[ox] + k0 * r0[c] + k1 * r0[c + 1] + k2 * r0[c + 2] +
                          k3 * r1[c] + k4 * r1[c + 1] + k5 * r1[c + 2] +
                          k6 * r2[c] + k7 * r2[c + 1] + k8 * r2[c + 2];
            }
        }
    }
}

/* Each loop below is compiled three times, for plain x86-64, AVX2 and AVX-512 (the same float
 * operations, with no FMA contraction: the same bits), and DISPATCH calls the widest one whose
 * vectors the loop's inner length fills (on rows of 4, AVX-512 code runs its scalar remainder
 * loop: 128 x 4 x 4 took 7.2 us against 6.1 us in SSE). */
#if defined(__x86_64__) && defined(__GNUC__)
#define VARIANTS(name, args, body)                                                            \
    static void name##_plain(args) { body }                                                   \
    __attribute__((target("avx2"))) static void name##_avx2(args) { body }                    \
    __attribute__((target("avx512f"))) static void name##_avx512(args) { body }
#define DISPATCH(name, width, ...)                                                            \
    if ((width) >= 16 && __builtin_cpu_supports("avx512f")) name##_avx512(__VA_ARGS__);       \
    else if ((width) >= 8 && __builtin_cpu_supports("avx2")) name##_avx2(__VA_ARGS__);        \
    else name##_plain(__VA_ARGS__)
#else
#define VARIANTS(name, args, body) static void name##_plain(args) { body }
#define DISPATCH(name, width, ...) name##_plain(__VA_ARGS__)
#endif

/* Fills plane o (n values) with the bias: a constant (map NULL) or a map. */
INLINE void fill(float *restrict o, Py_ssize_t n, float b, const float *restrict map) {
    if (map) for (Py_ssize_t i = 0; i < n; i++) o[i] = map[i];
    else for (Py_ssize_t i = 0; i < n; i++) o[i] = b;
}

/* One convolution, both kinds: depthwise (O == C, kernel c on plane c) or dense (each output
 * plane sums over all C input planes). bias: NULL, [O] (bias_map 0) or [O, Ho, Wo] (1).
 * pad: scratch for one padded plane (depthwise) or C of them (dense), zeroed. */
#define CONV_ARGS                                                                             \
    const float *x, const float *w, const float *bias, int bias_map, float *out,            \
        Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t O, Py_ssize_t s,   \
        Py_ssize_t Ho, Py_ssize_t Wo, int act, int depthwise, float *pad
#define CONV_BODY                                                                             \
    const Py_ssize_t plane = (H + 2) * padded_width(W, s), in = H * W, on = Ho * Wo;          \
    for (Py_ssize_t n = 0; n < N; n++) {                                                      \
        const float *xn = x + n * C * in;                                                     \
        if (!depthwise)                                                                       \
            for (Py_ssize_t c = 0; c < C; c++) pad_plane(xn + c * in, H, W, s, pad + c * plane); \
        for (Py_ssize_t o = 0; o < O; o++) {                                                  \
            float *dst = out + (n * O + o) * on;                                              \
            fill(dst, on, bias && !bias_map ? bias[o] : 0.0f,                                 \
                 bias && bias_map ? bias + o * on : NULL);                                    \
            if (depthwise) {                                                                  \
                pad_plane(xn + o * in, H, W, s, pad);                                         \
                taps(pad, w + o * 9, dst, W, s, Ho, Wo);                                      \
            } else                                                                            \
                for (Py_ssize_t c = 0; c < C; c++)                                            \
                    taps(pad + c * plane, w + (o * C + c) * 9, dst, W, s, Ho, Wo);            \
            activate(dst, on, act);                                                           \
        }                                                                                     \
    }

VARIANTS(conv, CONV_ARGS, CONV_BODY)

/* Two depthwise 3x3 convolutions summed, channels-last: out[n, p, c] = bias[c] + the 9 taps of
 * wa[., c] over a[n, ., c] + the 9 taps of wb[., c] over b[n, ., c] (zero padding 1, stride 1,
 * taps in row-major order, a's then b's). Maps [N, H, W, C], kernels tap-major [9, C]. On tiny
 * maps (Fast DHM's recurrent module runs on 4 x 4 x 128) the vectors run along the channels. */
#define PAIR_ARGS                                                                             \
    const float *a, const float *b, const float *wa, const float *wb, const float *bias,     \
        float *out, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C
#define PAIR_BODY                                                                             \
    for (Py_ssize_t n = 0; n < N; n++)                                                        \
        for (Py_ssize_t y = 0; y < H; y++)                                                    \
            for (Py_ssize_t x = 0; x < W; x++) {                                              \
                float *restrict o = out + ((n * H + y) * W + x) * C;                          \
                for (Py_ssize_t c = 0; c < C; c++) o[c] = bias[c];                            \
                for (int src = 0; src < 2; src++)                                             \
                    for (int t = 0; t < 9; t++) {                                             \
                        const Py_ssize_t yy = y + t / 3 - 1, xx = x + t % 3 - 1;              \
                        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;                \
                        const float *restrict v = (src ? b : a) + ((n * H + yy) * W + xx) * C;\
                        const float *restrict k = (src ? wb : wa) + t * C;                    \
                        for (Py_ssize_t c = 0; c < C; c++) o[c] = o[c] + k[c] * v[c];         \
                    }                                                                         \
            }

VARIANTS(pair, PAIR_ARGS, PAIR_BODY)

static PyObject *depthwise3x3_pair_hwc(PyObject *self, PyObject *args) {
    Py_buffer ab, bb, wab, wbb, biasb, ob;
    Py_ssize_t N, H, W, C;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*nnnn", &ab, &bb, &wab, &wbb, &biasb, &ob, &N, &H,
                          &W, &C))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t map = N * H * W * C * (Py_ssize_t)sizeof(float),
                     kernel = 9 * C * (Py_ssize_t)sizeof(float);
    const char *fn = "depthwise3x3_pair_hwc";
    if (need_bytes(fn, &ab, map, "a") && need_bytes(fn, &bb, map, "b") &&
        need_bytes(fn, &wab, kernel, "wa") && need_bytes(fn, &wbb, kernel, "wb") &&
        need_bytes(fn, &biasb, C * (Py_ssize_t)sizeof(float), "bias") &&
        need_bytes(fn, &ob, map, "out")) {
        const float *a = ab.buf, *b = bb.buf, *wa = wab.buf, *wb = wbb.buf, *bias = biasb.buf;
        float *out = ob.buf;
        Py_BEGIN_ALLOW_THREADS
        DISPATCH(pair, C, a, b, wa, wb, bias, out, N, H, W, C);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&ab);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&wab);
    PyBuffer_Release(&wbb);
    PyBuffer_Release(&biasb);
    PyBuffer_Release(&ob);
    return result;
}

/* The Python entry of both kernels (depthwise: O == C). */
static PyObject *call(const char *fn, PyObject *args, int depthwise) {
    Py_buffer xb, wb, ob, bb = {0};
    Py_ssize_t N, C, H, W, O, s, Ho, Wo;
    int act;
    PyObject *bias_obj, *result = NULL;
    float *pad = NULL;
    int ok = depthwise
        ? PyArg_ParseTuple(args, "y*y*Ow*nnnnnnni", &xb, &wb, &bias_obj, &ob, &N, &C, &H, &W,
                           &s, &Ho, &Wo, &act)
        : PyArg_ParseTuple(args, "y*y*Ow*nnnnnnnni", &xb, &wb, &bias_obj, &ob, &N, &C, &H, &W,
                           &O, &s, &Ho, &Wo, &act);
    if (!ok) return NULL;
    if (depthwise) O = C;
    int has_bias = bias_obj != Py_None, bias_map = 0;
    if (has_bias && PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) {
        has_bias = 0;
        goto done;
    }
    if (s < 1 || act < 0 || act > 2 || Ho != (H - 1) / s + 1 || Wo != (W - 1) / s + 1) {
        PyErr_Format(PyExc_ValueError, "%s: stride %zd, act %d, output %zd x %zd do not fit an "
                     "input of %zd x %zd", fn, s, act, Ho, Wo, H, W);
        goto done;
    }
    bias_map = !depthwise && has_bias && bb.len == O * Ho * Wo * (Py_ssize_t)sizeof(float);
    if (!need_bytes(fn, &xb, N * C * H * W * (Py_ssize_t)sizeof(float), "x") ||
        !need_bytes(fn, &wb, (depthwise ? 1 : O) * C * 9 * (Py_ssize_t)sizeof(float), "w") ||
        !need_bytes(fn, &ob, N * O * Ho * Wo * (Py_ssize_t)sizeof(float), "out") ||
        (has_bias && !bias_map && !need_bytes(fn, &bb, O * (Py_ssize_t)sizeof(float), "bias")))
        goto done;
    pad = calloc((size_t)((depthwise ? 1 : C) * (H + 2) * padded_width(W, s)), sizeof(float));
    if (!pad) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    DISPATCH(conv, Wo, xb.buf, wb.buf, has_bias ? bb.buf : NULL, bias_map, ob.buf, N, C, H, W, O,
             s, Ho, Wo, act, depthwise, pad);
    Py_END_ALLOW_THREADS
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

static PyObject *depthwise3x3(PyObject *self, PyObject *args) {
    return call("depthwise3x3", args, 1);
}

static PyObject *conv3x3(PyObject *self, PyObject *args) { return call("conv3x3", args, 0); }

static PyMethodDef methods[] = {
    {"depthwise3x3", depthwise3x3, METH_VARARGS,
     "depthwise3x3(x, w, bias, out, N, C, H, W, stride, Ho, Wo, act): lmklib.models.layers' "
     "depthwise 3x3 convolution (see the C source's header)."},
    {"conv3x3", conv3x3, METH_VARARGS,
     "conv3x3(x, w, bias, out, N, C, H, W, O, stride, Ho, Wo, act): lmklib.models.layers' "
     "dense 3x3 convolution for few input channels (see the C source's header)."},
    {"depthwise3x3_pair_hwc", depthwise3x3_pair_hwc, METH_VARARGS,
     "depthwise3x3_pair_hwc(a, b, wa, wb, bias, out, N, H, W, C): two depthwise 3x3 "
     "convolutions summed, channels-last (see the C source)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_depthwise",
                                    "Compiled 3x3 convolutions (depthwise; dense, few channels).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__depthwise(void) { return PyModule_Create(&module); }
