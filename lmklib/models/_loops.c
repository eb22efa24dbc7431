/* Compiled loops for batch-1 inference on a CPU: the kernels of lmklib.models.layers.
 *
 * depthwise3x3(x, w, bias, out, N, C, H, W, stride, Ho, Wo, act)
 *   x     float32 [N, C, H, W] (contiguous): the input.
 *   w     float32 [C, 3, 3] (contiguous): one 3x3 kernel per channel.
 *   bias  None or float32 [C].
 *   out   float32 [N, C, Ho, Wo] (contiguous, written), Ho = (H - 1) / stride + 1 (and Wo).
 *   act   0: none; 1: ReLU (max(a, 0)); 2: ReLU6 (min(max(a, 0), 6)). NaN stays NaN.
 *
 * conv3x3(x, w, bias, out, N, C, H, W, O, groups, stride, padding, Ho, Wo, act)
 *   A grouped 3x3 convolution, C -> O channels, for few input channels per group (a stem; the
 *   Kaggle models' one-channel layers): w float32 [O, C / groups, 3, 3]; bias None, float32 [O]
 *   or float32 [O, Ho, Wo] (a map added to each image's output: Fast DHM's stem adds its fixed
 *   prior's share this way); padding 1 (any stride) or 0 (stride 1, Ho = H - 2); out
 *   [N, O, Ho, Wo].
 *
 * Dilation 1: out[n, o, y, x] = bias + sum over the input channels of o's group (in order) of
 * the 9 taps w[o, c, i, j] * x[n, c, y * stride - padding + i, ...], summed in row-major order,
 * each a float32 operation (built with -ffp-contract=off, so the vector variants below give the
 * same bits as the plain one). The result equals torch's convolution up to the order of the
 * float sums.
 *
 * Why: on a CPU, ATen's depthwise convolution (oneDNN) costs 40-70 us per call at batch 1 on
 * maps of 4x4 to 32x32, whatever their size; this loop takes 5-25 us there (both printed by
 * benchmarks/bench_inference.py). oneDNN's dense convolution with 3 input channels ran a 64 px
 * stem in ~50 us for ~1 MFLOP, and ATen sends a convolution with one input channel per group
 * to its im2col path (the Kaggle refiner's first layer: 130 us, the loop 50 us). With padding,
 * each input plane is copied once into a zero-bordered scratch plane so that the inner loop has
 * no bounds checks (at stride 2 with its even and odd columns apart, so that it vectorises); at
 * stride 1 the sums run over whole planes in one loop. The loops are compiled for AVX-512, AVX2
 * and plain x86-64 and chosen at run time.
 *
 * Below them: 2x2 max-pooling (maxpool2x2), bilinear windows (patches) and groups of fully
 * connected layers (group_linear), each described where it is defined.
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
static Py_ssize_t padded_width(Py_ssize_t W, Py_ssize_t s) {
    return s == 2 ? (W + 3) / 2 * 2 : W + 2;
}

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

/* o += the 9 taps of kernel k over plane pad (rows of P values: a padded plane, or at stride 1
 * an unpadded one). At stride 1 o has rows of P values too, and one flat loop runs over all of
 * them (its last P - Wo sums of each row are not outputs: a row of 94 in AVX-512 is five
 * vectors and 14 scalar steps, a plane of 94 rows one loop); otherwise o is Ho x Wo. */
INLINE void taps(const float *restrict pad, const float *restrict k, float *restrict o,
                 Py_ssize_t P, Py_ssize_t s, Py_ssize_t Ho, Py_ssize_t Wo) {
    const float k0 = k[0], k1 = k[1], k2 = k[2], k3 = k[3], k4 = k[4], k5 = k[5], k6 = k[6],
                k7 = k[7], k8 = k[8];
    if (s == 1) {   /* contiguous taps: the compiler vectorises this loop */
        const float *r0 = pad, *r1 = r0 + P, *r2 = r1 + P;
        for (Py_ssize_t t = 0; t < (Ho - 1) * P + Wo; t++)
            o[t] = o[t] + k0 * r0[t] + k1 * r0[t + 1] + k2 * r0[t + 2] +
                   k3 * r1[t] + k4 * r1[t + 1] + k5 * r1[t + 2] +
                   k6 * r2[t] + k7 * r2[t + 1] + k8 * r2[t + 2];
        return;
    }
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

/* Four outputs at once at stride 1: planes o, o + L1, o + 2 L1, o + 3 L1 (rows of P values)
 * += the taps of kernels k, k + ks, k + 2 ks, k + 3 ks over plane pad, each sum in taps()'s
 * order (the same bits), the nine loads of each position shared by the four. */
INLINE void taps4(const float *restrict pad, const float *restrict k, Py_ssize_t ks,
                  float *restrict o, Py_ssize_t L1, Py_ssize_t P, Py_ssize_t Ho, Py_ssize_t Wo) {
    float kk[4][9];
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 9; j++) kk[b][j] = k[b * ks + j];
    const float *r0 = pad, *r1 = r0 + P, *r2 = r1 + P;
    for (Py_ssize_t t = 0; t < (Ho - 1) * P + Wo; t++) {
        const float a0 = r0[t], a1 = r0[t + 1], a2 = r0[t + 2], b0 = r1[t], b1 = r1[t + 1],
                    b2 = r1[t + 2], c0 = r2[t], c1 = r2[t + 1], c2 = r2[t + 2];
        for (int b = 0; b < 4; b++) {
            const float *q = kk[b];
            o[b * L1 + t] = o[b * L1 + t] + q[0] * a0 + q[1] * a1 + q[2] * a2 + q[3] * b0 +
                            q[4] * b1 + q[5] * b2 + q[6] * c0 + q[7] * c1 + q[8] * c2;
        }
    }
}

/* Each loop below is compiled three times, for plain x86-64, AVX2 (with FMA) and AVX-512 (the
 * same float operations, with no FMA contraction: the same bits; an explicit fmaf is one
 * rounding in all three), and DISPATCH calls the widest one whose vectors the loop's inner
 * length fills (on rows of 4, AVX-512 code runs its scalar remainder loop: 128 x 4 x 4 took
 * 7.2 us against 6.1 us in SSE). */
#if defined(__x86_64__) && defined(__GNUC__)
#define VARIANTS(name, args, body)                                                            \
    static void name##_plain(args) { body }                                                   \
    __attribute__((target("avx2,fma"))) static void name##_avx2(args) { body }                \
    __attribute__((target("avx512f"))) static void name##_avx512(args) { body }
#define DISPATCH(name, width, ...)                                                            \
    if ((width) >= 16 && __builtin_cpu_supports("avx512f")) name##_avx512(__VA_ARGS__);       \
    else if ((width) >= 8 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))  \
        name##_avx2(__VA_ARGS__);                                                             \
    else name##_plain(__VA_ARGS__)
#else
#define VARIANTS(name, args, body) static void name##_plain(args) { body }
#define DISPATCH(name, width, ...) name##_plain(__VA_ARGS__)
#endif

/* Fills the Ho x Wo sums of plane o (rows of q values) with the bias: a constant (map NULL)
 * or a map (Ho x Wo). */
INLINE void fill(float *restrict o, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t q, float b,
                 const float *restrict map) {
    if (map)
        for (Py_ssize_t y = 0; y < Ho; y++) memcpy(o + y * q, map + y * Wo, Wo * sizeof(float));
    else for (Py_ssize_t i = 0; i < (Ho - 1) * q + Wo; i++) o[i] = b;
}

/* One grouped 3x3 convolution: C input and O output channels in G groups; output o (of group
 * g = o / (O / G)) sums the taps over the C / G input channels of its group, in order.
 * Depthwise: G = C = O; dense: G = 1. Padding p = 1 (zero border; any stride) or 0 (valid;
 * stride 1, read in place). bias: NULL, [O] (bias_map 0) or [O, Ho, Wo] (1). pad: scratch for
 * the C / G padded planes of one group, zeroed (unused when p = 0); acc: at stride 1, the
 * sums of one pass's outputs (rows of P values), zeroed. */
#define CONV_ARGS                                                                             \
    const float *x, const float *w, const float *bias, int bias_map, float *out,            \
        Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t O, Py_ssize_t G,   \
        Py_ssize_t s, Py_ssize_t p, Py_ssize_t Ho, Py_ssize_t Wo, int act, float *pad,        \
        float *acc
#define CONV_BODY                                                                             \
    const Py_ssize_t Cg = C / G, M = O / G, P = p ? padded_width(W, s) : W,                   \
                     plane = (H + 2 * p) * P, in = H * W, on = Ho * Wo, q = s == 1 ? P : Wo,  \
                     L1 = Ho * q;                                                             \
    for (Py_ssize_t n = 0; n < N; n++)                                                        \
        for (Py_ssize_t g = 0; g < G; g++) {                                                  \
            const float *xg = x + (n * C + g * Cg) * in;                                      \
            if (p)                                                                            \
                for (Py_ssize_t c = 0; c < Cg; c++)                                           \
                    pad_plane(xg + c * in, H, W, s, pad + c * plane);                         \
            const float *src = p ? pad : xg;                                                  \
            for (Py_ssize_t o = g * M, B; o < (g + 1) * M; o += B) {                          \
                B = s == 1 && o + 4 <= (g + 1) * M ? 4 : 1; /* outputs in this pass */        \
                float *sum = s == 1 ? acc : out + (n * O + o) * on;                           \
                for (Py_ssize_t b = 0; b < B; b++)                                            \
                    fill(sum + b * L1, Ho, Wo, q, bias && !bias_map ? bias[o + b] : 0.0f,     \
                         bias && bias_map ? bias + (o + b) * on : NULL);                      \
                for (Py_ssize_t c = 0; c < Cg; c++) {                                         \
                    const float *k = w + (o * Cg + c) * 9;                                    \
                    if (B == 4) taps4(src + c * plane, k, Cg * 9, sum, L1, P, Ho, Wo);        \
                    else taps(src + c * plane, k, sum, P, s, Ho, Wo);                         \
                }                                                                             \
                for (Py_ssize_t b = 0; b < B; b++) {                                          \
                    float *dst = out + (n * O + o + b) * on;                                  \
                    if (s == 1)                                                               \
                        for (Py_ssize_t y = 0; y < Ho; y++)                                   \
                            memcpy(dst + y * Wo, sum + b * L1 + y * q, Wo * sizeof(float));   \
                    activate(dst, on, act);                                                   \
                }                                                                             \
            }                                                                                 \
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

/* The Python entry of both convolution kernels (depthwise: G = O = C, padding 1). */
static PyObject *call(const char *fn, PyObject *args, int depthwise) {
    Py_buffer xb, wb, ob, bb = {0};
    Py_ssize_t N, C, H, W, O, G, s, p = 1, Ho, Wo;
    int act;
    PyObject *bias_obj, *result = NULL;
    float *pad = NULL, *acc = NULL;
    int ok = depthwise
        ? PyArg_ParseTuple(args, "y*y*Ow*nnnnnnni", &xb, &wb, &bias_obj, &ob, &N, &C, &H, &W,
                           &s, &Ho, &Wo, &act)
        : PyArg_ParseTuple(args, "y*y*Ow*nnnnnnnnnni", &xb, &wb, &bias_obj, &ob, &N, &C, &H,
                           &W, &O, &G, &s, &p, &Ho, &Wo, &act);
    if (!ok) return NULL;
    if (depthwise) O = G = C;
    int has_bias = bias_obj != Py_None, bias_map = 0;
    if (has_bias && PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) {
        has_bias = 0;
        goto done;
    }
    if (s < 1 || act < 0 || act > 2 || G < 1 || C % G || O % G || p < 0 || p > 1 ||
        (p == 0 && s != 1) || Ho != (p ? (H - 1) / s + 1 : H - 2) ||
        Wo != (p ? (W - 1) / s + 1 : W - 2) || Ho < 1 || Wo < 1) {
        PyErr_Format(PyExc_ValueError, "%s: %zd -> %zd channels in %zd groups, stride %zd, "
                     "padding %zd, act %d, output %zd x %zd do not fit an input of %zd x %zd",
                     fn, C, O, G, s, p, act, Ho, Wo, H, W);
        goto done;
    }
    bias_map = !depthwise && has_bias && bb.len == O * Ho * Wo * (Py_ssize_t)sizeof(float);
    if (!need_bytes(fn, &xb, N * C * H * W * (Py_ssize_t)sizeof(float), "x") ||
        !need_bytes(fn, &wb, O * (C / G) * 9 * (Py_ssize_t)sizeof(float), "w") ||
        !need_bytes(fn, &ob, N * O * Ho * Wo * (Py_ssize_t)sizeof(float), "out") ||
        (has_bias && !bias_map && !need_bytes(fn, &bb, O * (Py_ssize_t)sizeof(float), "bias")))
        goto done;
    /* scratch: the padded planes of one group; at stride 1 the sums of one pass (4 outputs
     * when a group has 4 or more, else 1), rows of the source's length */
    pad = calloc((size_t)(p ? (C / G) * (H + 2) * padded_width(W, s) : 1), sizeof(float));
    acc = calloc((size_t)(s == 1 ? (O / G >= 4 ? 4 : 1) * Ho * (p ? W + 2 : W) : 1),
                 sizeof(float));
    if (!pad || !acc) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    DISPATCH(conv, Wo, xb.buf, wb.buf, has_bias ? bb.buf : NULL, bias_map, ob.buf, N, C, H, W, O,
             G, s, p, Ho, Wo, act, pad, acc);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(pad);
    free(acc);
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

/* 2x2 max-pooling (stride 2; an odd last row or column dropped), then act, of P planes of H x W
 * pixels of K values each (K = 1: channels-first planes; K = C: one channels-last image), into
 * Ho x Wo = H / 2 x W / 2. Rows first (whole contiguous rows, so that the loop vectorises),
 * then the column pairs; max(a, b) = a > b || a != a ? a : b, so that a NaN wins: the values of
 * F.max_pool2d (the max of four numbers does not depend on their order), NaN included. */
#define MAX(a, b) ((a) > (b) || (a) != (a) ? (a) : (b))
#define POOL_ARGS                                                                             \
    const float *x, float *out, Py_ssize_t P, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,      \
        int act, float *row
#define POOL_BODY                                                                             \
    const Py_ssize_t Ho = H / 2, Wo = W / 2;                                                  \
    for (Py_ssize_t p = 0; p < P; p++)                                                        \
        for (Py_ssize_t y = 0; y < Ho; y++) {                                                 \
            const float *restrict r0 = x + (p * H + 2 * y) * W * K, *restrict r1 = r0 + W * K;\
            float *restrict o = out + (p * Ho + y) * Wo * K;                                  \
            for (Py_ssize_t i = 0; i < 2 * Wo * K; i++) row[i] = MAX(r0[i], r1[i]);           \
            if (K == 1)                                                                       \
                for (Py_ssize_t i = 0; i < Wo; i++) o[i] = MAX(row[2 * i], row[2 * i + 1]);   \
            else                                                                              \
                for (Py_ssize_t i = 0; i < Wo; i++)                                           \
                    for (Py_ssize_t c = 0; c < K; c++)                                        \
                        o[i * K + c] = MAX(row[2 * i * K + c], row[(2 * i + 1) * K + c]);     \
            activate(o, Wo * K, act);                                                         \
        }

VARIANTS(pool, POOL_ARGS, POOL_BODY)

static PyObject *maxpool2x2(PyObject *self, PyObject *args) {
    Py_buffer xb, ob;
    Py_ssize_t P, H, W, K;
    int act;
    if (!PyArg_ParseTuple(args, "y*w*nnnni", &xb, &ob, &P, &H, &W, &K, &act)) return NULL;
    PyObject *result = NULL;
    const char *fn = "maxpool2x2";
    float *row = NULL;
    if (act < 0 || act > 2 || H < 2 || W < 2 || K < 1)
        PyErr_Format(PyExc_ValueError, "%s: act %d, plane %zd x %zd x %zd (needs >= 2 x 2 x 1)",
                     fn, act, H, W, K);
    else if (need_bytes(fn, &xb, P * H * W * K * (Py_ssize_t)sizeof(float), "x") &&
             need_bytes(fn, &ob, P * (H / 2) * (W / 2) * K * (Py_ssize_t)sizeof(float), "out")) {
        if (!(row = malloc((size_t)(W * K) * sizeof(float)))) PyErr_NoMemory();
        else {
            const float *x = xb.buf;
            float *out = ob.buf;
            Py_BEGIN_ALLOW_THREADS
            DISPATCH(pool, K == 1 ? W / 2 : K, x, out, P, H, W, K, act, row);
            Py_END_ALLOW_THREADS
            result = Py_None;
            Py_INCREF(result);
        }
    }
    free(row);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    return result;
}

/* Bilinear windows: out[n, k, i, j] samples image n (H x W) at (x, y) = centre[n, k] + (j, i) -
 * (P - 1) / 2, pixel centres at integers, a NaN centre coordinate read as (W - 1) / 2: what
 * F.grid_sample (bilinear, padding "border", align_corners=True) gives on the grid that
 * lmklib.models.layers.extract_patches builds, bit for bit where ATen's kernel uses FMA (its
 * AVX2 and AVX-512 builds): the same float operations in the same order. The coordinate goes to
 * the normalised grid (x * 2 / (W - 1) - 1) and back ((g + 1) * ((W - 1) / 2)), is clamped to
 * the image, and the four neighbours' weights are ATen's (a neighbour outside has value 0).
 * A window's columns are the same in each of its rows: their positions and weights are
 * computed once per window, into cols (3 P values: x0, w, e). */
#define PATCH_ARGS                                                                            \
    const float *img, const float *centre, float *out, Py_ssize_t N, Py_ssize_t H,           \
        Py_ssize_t W, Py_ssize_t K, Py_ssize_t P, float *cols
#define PATCH_BODY                                                                            \
    const float half = (float)(P - 1) / 2.0f, mid = (float)(W - 1) / 2.0f;                   \
    const float dx = (float)(W - 1), dy = (float)(H - 1), sx = dx / 2.0f, sy = dy / 2.0f;     \
    for (Py_ssize_t n = 0; n < N; n++) {                                                      \
        const float *restrict im = img + n * H * W;                                           \
        for (Py_ssize_t k = 0; k < K; k++) {                                                  \
            float cx = centre[(n * K + k) * 2], cy = centre[(n * K + k) * 2 + 1];             \
            cx = cx != cx ? mid : cx;                                                         \
            cy = cy != cy ? mid : cy;                                                         \
            float *restrict o = out + (n * K + k) * P * P;                                    \
            for (Py_ssize_t j = 0; j < P; j++) {                                              \
                float ix = ((cx + ((float)j - half)) * 2.0f / dx - 1.0f + 1.0f) * sx;         \
                ix = ix < 0.0f ? 0.0f : ix > dx ? dx : ix;                                    \
                const float x0 = (float)(Py_ssize_t)ix;                                       \
                cols[j] = x0;                                                                 \
                cols[P + j] = ix - x0;                                                        \
                cols[2 * P + j] = 1.0f - (ix - x0);                                           \
            }                                                                                 \
            for (Py_ssize_t i = 0; i < P; i++) {                                              \
                float iy = ((cy + ((float)i - half)) * 2.0f / dy - 1.0f + 1.0f) * sy;         \
                iy = iy < 0.0f ? 0.0f : iy > dy ? dy : iy;                                    \
                const Py_ssize_t y0 = (Py_ssize_t)iy;                                         \
                const float nn = iy - (float)y0, ss = 1.0f - nn;                              \
                const float *r0 = im + y0 * W, *r1 = y0 + 1 < H ? r0 + W : NULL;              \
                for (Py_ssize_t j = 0; j < P; j++) {                                          \
                    const Py_ssize_t x0 = (Py_ssize_t)cols[j];                                \
                    const float w = cols[P + j], e = cols[2 * P + j];                         \
                    const int east = x0 + 1 < W;                                              \
                    const float vnw = r0[x0], vne = east ? r0[x0 + 1] : 0.0f,                 \
                                vsw = r1 ? r1[x0] : 0.0f, vse = r1 && east ? r1[x0 + 1] : 0.0f; \
                    o[i * P + j] = __builtin_fmaf(vse, nn * w, __builtin_fmaf(vsw, nn * e,    \
                                   __builtin_fmaf(vne, ss * w, vnw * (ss * e))));             \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

VARIANTS(patch, PATCH_ARGS, PATCH_BODY)

static PyObject *patches(PyObject *self, PyObject *args) {
    Py_buffer ib, cb, ob;
    Py_ssize_t N, H, W, K, P;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnnn", &ib, &cb, &ob, &N, &H, &W, &K, &P)) return NULL;
    PyObject *result = NULL;
    const char *fn = "patches";
    float *cols = NULL;
    if (H < 1 || W < 1 || P < 1)
        PyErr_Format(PyExc_ValueError, "%s: image %zd x %zd, window %zd", fn, H, W, P);
    else if (need_bytes(fn, &ib, N * H * W * (Py_ssize_t)sizeof(float), "image") &&
             need_bytes(fn, &cb, N * K * 2 * (Py_ssize_t)sizeof(float), "centres") &&
             need_bytes(fn, &ob, N * K * P * P * (Py_ssize_t)sizeof(float), "out")) {
        if (!(cols = malloc((size_t)(3 * P) * sizeof(float)))) PyErr_NoMemory();
        else {
            Py_BEGIN_ALLOW_THREADS
            DISPATCH(patch, 16, (const float *)ib.buf, (const float *)cb.buf, (float *)ob.buf,
                     N, H, W, K, P, cols);
            Py_END_ALLOW_THREADS
            result = Py_None;
            Py_INCREF(result);
        }
    }
    free(cols);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&ob);
    return result;
}

/* G independent fully connected layers: out[n, g, o] = sum over i (in order) of
 * x[n, g, i] * w[g, i, o], then + bias[g, o]; x [N, G, I], w [G, I, O] (GroupLinear's layout),
 * the vectors along o. Why: the Kaggle refiner's head (15 groups, 256 -> 64) took 36 us in
 * einsum's batched product at batch 1 on this AMD core, this loop 29 us. */
#define GROUPED_ARGS                                                                          \
    const float *x, const float *w, const float *bias, float *out, Py_ssize_t N,             \
        Py_ssize_t G, Py_ssize_t I, Py_ssize_t O
#define GROUPED_BODY                                                                          \
    for (Py_ssize_t n = 0; n < N; n++)                                                        \
        for (Py_ssize_t g = 0; g < G; g++) {                                                  \
            const float *restrict xg = x + (n * G + g) * I, *restrict wg = w + g * I * O;     \
            float *restrict o = out + (n * G + g) * O;                                        \
            for (Py_ssize_t j = 0; j < O; j++) o[j] = 0.0f;                                   \
            for (Py_ssize_t i = 0; i < I; i++) {                                              \
                const float a = xg[i], *restrict wr = wg + i * O;                             \
                for (Py_ssize_t j = 0; j < O; j++) o[j] = o[j] + a * wr[j];                   \
            }                                                                                 \
            if (bias)                                                                         \
                for (Py_ssize_t j = 0; j < O; j++) o[j] = o[j] + bias[g * O + j];             \
        }

VARIANTS(grouped, GROUPED_ARGS, GROUPED_BODY)

static PyObject *group_linear(PyObject *self, PyObject *args) {
    Py_buffer xb, wb, ob, bb = {0};
    Py_ssize_t N, G, I, O;
    PyObject *bias_obj, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*Ow*nnnn", &xb, &wb, &bias_obj, &ob, &N, &G, &I, &O))
        return NULL;
    int has_bias = bias_obj != Py_None;
    const char *fn = "group_linear";
    if (has_bias && PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) has_bias = 0;
    else if (need_bytes(fn, &xb, N * G * I * (Py_ssize_t)sizeof(float), "x") &&
             need_bytes(fn, &wb, G * I * O * (Py_ssize_t)sizeof(float), "w") &&
             need_bytes(fn, &ob, N * G * O * (Py_ssize_t)sizeof(float), "out") &&
             (!has_bias || need_bytes(fn, &bb, G * O * (Py_ssize_t)sizeof(float), "bias"))) {
        const float *x = xb.buf, *w = wb.buf, *bias = has_bias ? bb.buf : NULL;
        float *out = ob.buf;
        Py_BEGIN_ALLOW_THREADS
        DISPATCH(grouped, O, x, w, bias, out, N, G, I, O);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
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
    {"conv3x3", conv3x3, METH_VARARGS,
     "conv3x3(x, w, bias, out, N, C, H, W, O, groups, stride, padding, Ho, Wo, act): "
     "lmklib.models.layers' grouped 3x3 convolution for few input channels per group (see the "
     "C source's header)."},
    {"depthwise3x3_pair_hwc", depthwise3x3_pair_hwc, METH_VARARGS,
     "depthwise3x3_pair_hwc(a, b, wa, wb, bias, out, N, H, W, C): two depthwise 3x3 "
     "convolutions summed, channels-last (see the C source)."},
    {"maxpool2x2", maxpool2x2, METH_VARARGS,
     "maxpool2x2(x, out, P, H, W, K, act): 2x2 max-pooling of P planes of K values per "
     "pixel, then act (see the C source)."},
    {"patches", patches, METH_VARARGS,
     "patches(image, centres, out, N, H, W, K, P): bilinear P x P windows around K points per "
     "image (see the C source)."},
    {"group_linear", group_linear, METH_VARARGS,
     "group_linear(x, w, bias, out, N, G, I, O): G independent fully connected layers (see the "
     "C source)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_loops",
                                    "Compiled 3x3 convolutions (depthwise; dense, few channels).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__loops(void) { return PyModule_Create(&module); }
