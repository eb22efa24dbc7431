/* Binary convolution by XNOR and popcount: the compiled kernel of lmklib.models.acn_bitpacked.
 *
 * binary_conv(x, w, out, N, C, H, W, O, kh, kw, top, left, Ho, Wo, scale, bias)
 *
 *   x    float32 [N, C, H, W] (contiguous): the layer input; its signs are the binary
 *        activations (x >= 0 -> +1, as lmklib.models.acn.binarize).
 *   w    uint64 [K, O], K = ceil(kh * kw * C / 64): each kernel's signs as one bit string,
 *        tap (i, j) channel c at bit (i * kw + j) * C + c (bit b is bit b % 64 of word b / 64;
 *        unused high bits 0).
 *   out  float32 [N, O, Ho, Wo] (contiguous, written).
 *   top, left: zero padding before the first row / column (stride 1, dilation 1); the padding
 *        after the last is Ho + kh - 1 - top - H rows and Wo + kw - 1 - left - W columns (>= 0).
 *   scale, bias: None, or the ACN inference factor (a float32 value) and None / float32 [O]:
 *        out = dot * scale (+ bias[o]), each a float32 operation as torch does them.
 *
 * For an output pixel the dot product of +-1 values over the taps that fall inside the image is
 *     sum over valid taps of (C - 2 * popcount(a XOR w))
 * an exact integer, as the float convolution of +-1 values is (|sum| < 2^24), and padding adds
 * nothing (a zero-padded input times +-1 is 0): the two agree bit for bit.
 *
 * Per image, the input's signs are packed into zero-padded planes of 64 channels each; each
 * output pixel's receptive field is then gathered into K words, tap by tap over whole rows, and
 * run against every filter's, the pixels innermost. Built with
 * -ffp-contract=off so that "dot * scale + bias" is never fused into one rounding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_buffers.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* OR the receptive fields of the zero-padded sign planes pl[Cw][Hp][Wp] into the bit field
 * dst[K][P] (zeroed by the caller): output pixel p's tap (i, j), channels 64 c .. 64 c + 63, at
 * bit (i * kw + j) * C + 64 c of its K words, as the kernels are packed. Tap by tap, a shift
 * and OR over contiguous rows, which vectorises. */
#define GATHER(dst, pl)                                                                       \
    for (Py_ssize_t i = 0; i < kh; i++)                                                       \
        for (Py_ssize_t j = 0; j < kw; j++)                                                   \
            for (Py_ssize_t c = 0; c < Cw; c++) {                                             \
                const Py_ssize_t nb = c < Cw - 1 ? 64 : C - 64 * (Cw - 1);                    \
                const Py_ssize_t at = (i * kw + j) * C + 64 * c;                              \
                const int shift = (int)(at & 63), spill = shift && shift + nb > 64;           \
                uint64_t *f0 = (dst) + (at >> 6) * P;                                         \
                const uint64_t *src = (pl) + c * plane + i * Wp + j;                          \
                for (Py_ssize_t oy = 0; oy < Ho; oy++) {                                      \
                    const uint64_t *s = src + oy * Wp;                                        \
                    uint64_t *f = f0 + oy * Wo;                                               \
                    for (Py_ssize_t ox = 0; ox < Wo; ox++) f[ox] |= s[ox] << shift;           \
                    if (spill) /* the bits past the word's end start the next one */          \
                        for (Py_ssize_t ox = 0; ox < Wo; ox++)                                \
                            f[P + ox] |= s[ox] >> (64 - shift);                               \
                }                                                                             \
            }

/* Every output pixel against every filter: the kernel body, compiled three times below (with
 * AVX-512 VPOPCNTQ, with the popcnt instruction, plain) and picked at run time. The signs lie in
 * zero-padded planes, one per 64 channels (pb[c][Hp][Wp], Hp = Ho + kh - 1). Once per call, the
 * mask of the bits whose tap lies inside the image (padding counts nothing) is the field of an
 * image of +1 signs, and full[p] its bit count; then per image, each output pixel's receptive
 * field is gathered (GATHER) into K = ceil(kh * kw * C / 64) words, stored word-major
 * (field[k * P + p]), and filter by filter the loop over the pixels runs on contiguous words. */
#define CONV_BODY                                                                             \
    const Py_ssize_t P = Ho * Wo, Hp = Ho + kh - 1, Wp = Wo + kw - 1, plane = Hp * Wp;        \
    uint64_t *mask = field + K * P;                                                           \
    memset(pb, 0, (size_t)(Cw * plane) * sizeof(uint64_t));                                   \
    for (Py_ssize_t c = 0; c < Cw; c++) { /* every sign +1 inside the image */                \
        const Py_ssize_t nb = c < Cw - 1 ? 64 : C - 64 * (Cw - 1);                            \
        const uint64_t ones = nb == 64 ? ~(uint64_t)0 : ((uint64_t)1 << nb) - 1;              \
        for (Py_ssize_t y = 0; y < H; y++)                                                    \
            for (Py_ssize_t xx = 0; xx < W; xx++)                                             \
                pb[c * plane + (y + top) * Wp + left + xx] = ones;                            \
    }                                                                                         \
    memset(mask, 0, (size_t)(K * P) * sizeof(uint64_t));                                      \
    GATHER(mask, pb)                                                                          \
    memset(full, 0, (size_t)P * sizeof(int64_t));                                             \
    for (Py_ssize_t k = 0; k < K; k++) /* the bits inside the image: the +-1 count */         \
        for (Py_ssize_t q = 0; q < P; q++)                                                    \
            full[q] += (int64_t)__builtin_popcountll(mask[k * P + q]);                        \
    for (Py_ssize_t n = 0; n < N; n++) {                                                      \
        memset(pb, 0, (size_t)(Cw * plane) * sizeof(uint64_t));                               \
        for (Py_ssize_t c = 0; c < C; c++) { /* the signs, branch-free (a coin toss) */       \
            const float *src = x + (n * C + c) * H * W;                                       \
            const int shift = (int)(c & 63);                                                  \
            uint64_t *dst = pb + (c >> 6) * plane + top * Wp + left;                          \
            for (Py_ssize_t y = 0; y < H; y++)                                                \
                for (Py_ssize_t xx = 0; xx < W; xx++)                                         \
                    dst[y * Wp + xx] |= (uint64_t)(src[y * W + xx] >= 0.0f) << shift;         \
        }                                                                                     \
        memset(field, 0, (size_t)(K * P) * sizeof(uint64_t));                                 \
        GATHER(field, pb)                                                                     \
        for (Py_ssize_t o = 0; o < O; o++) {                                                  \
            memset(acc, 0, (size_t)P * sizeof(int64_t));                                      \
            for (Py_ssize_t k = 0; k < K; k++) {                                              \
                const uint64_t wk = w[k * O + o], *fk = field + k * P, *mk = mask + k * P;    \
                for (Py_ssize_t q = 0; q < P; q++)                                            \
                    acc[q] += (int64_t)__builtin_popcountll((fk[q] ^ wk) & mk[q]);            \
            }                                                                                 \
            float *dst = out + (n * O + o) * P;                                               \
            const float b = bias ? bias[o] : 0.0f;                                            \
            for (Py_ssize_t q = 0; q < P; q++) {                                              \
                float v = (float)(full[q] - 2 * acc[q]);                                      \
                if (has_scale) {                                                              \
                    v = v * scale;                                                            \
                    if (bias) v = v + b;                                                      \
                }                                                                             \
                dst[q] = v;                                                                   \
            }                                                                                 \
        }                                                                                     \
    }

#define CONV_ARGS                                                                             \
    const float *x, const uint64_t *w, float *out, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,  \
        Py_ssize_t W, Py_ssize_t O, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t top,             \
        Py_ssize_t left, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t Cw, Py_ssize_t K,           \
        int has_scale, float scale, const float *bias, uint64_t *pb, uint64_t *field,       \
        int64_t *acc, int64_t *full

static void conv_plain(CONV_ARGS) { CONV_BODY }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt"))) static void conv_popcnt(CONV_ARGS) { CONV_BODY }
/* AVX-512 with VPOPCNTQ: 8 popcounts per instruction, and (DQ) the int64 -> float conversion */
__attribute__((target("avx512f,avx512vl,avx512dq,avx512vpopcntdq,popcnt"))) static void
conv_avx512(CONV_ARGS) { CONV_BODY }
#endif

static PyObject *binary_conv(PyObject *self, PyObject *args) {
    Py_buffer xb, wb, ob, bb = {0};
    Py_ssize_t N, C, H, W, O, kh, kw, top, left, Ho, Wo;
    PyObject *scale_obj, *bias_obj;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnnnnnnnnnOO", &xb, &wb, &ob, &N, &C, &H, &W, &O, &kh,
                          &kw, &top, &left, &Ho, &Wo, &scale_obj, &bias_obj))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t Cw = (C + 63) / 64;
    int has_scale = scale_obj != Py_None, has_bias = 0;
    float scale = has_scale ? (float)PyFloat_AsDouble(scale_obj) : 0.0f;
    uint64_t *pb = NULL, *field = NULL;
    int64_t *acc = NULL, *full = NULL;
    Py_ssize_t K = (kh * kw * C + 63) / 64, Hp = Ho + kh - 1, Wp = Wo + kw - 1;
    if (has_scale && PyErr_Occurred()) goto done;
    if (N < 0 || C < 1 || H < 1 || W < 1 || O < 1 || kh < 1 || kw < 1 || top < 0 || left < 0 ||
        Ho < 1 || Wo < 1 || Hp < top + H || Wp < left + W) {
        PyErr_Format(PyExc_ValueError,
                     "binary_conv: expected a stride-1 convolution with non-negative padding "
                     "on each side, got input %zdx%zd, kernel %zdx%zd, top %zd, left %zd, "
                     "output %zdx%zd", H, W, kh, kw, top, left, Ho, Wo);
        goto done;
    }
    if (bias_obj != Py_None) {
        if (PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) goto done;
        has_bias = 1;
        if (!need_bytes("binary_conv", &bb, O * (Py_ssize_t)sizeof(float), "bias")) goto done;
    }
    if (!need_bytes("binary_conv", &xb, N * C * H * W * (Py_ssize_t)sizeof(float), "x") ||
        !need_bytes("binary_conv", &wb, K * O * (Py_ssize_t)sizeof(uint64_t), "w") ||
        !need_bytes("binary_conv", &ob, N * O * Ho * Wo * (Py_ssize_t)sizeof(float), "out"))
        goto done;
    pb = malloc((size_t)(Cw * Hp * Wp + 1) * sizeof(uint64_t));
    field = malloc((size_t)(2 * K * Ho * Wo + 1) * sizeof(uint64_t));
    acc = malloc((size_t)(Ho * Wo + 1) * sizeof(int64_t));
    full = malloc((size_t)(Ho * Wo + 1) * sizeof(int64_t));
    if (!pb || !field || !acc || !full) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    const float *x = (const float *)xb.buf, *bias = has_bias ? (const float *)bb.buf : NULL;
    const uint64_t *w = (const uint64_t *)wb.buf;
    float *out = (float *)ob.buf;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vpopcntdq"))
        conv_avx512(x, w, out, N, C, H, W, O, kh, kw, top, left, Ho, Wo, Cw, K, has_scale, scale,
                    bias, pb, field, acc, full);
    else if (__builtin_cpu_supports("popcnt"))
        conv_popcnt(x, w, out, N, C, H, W, O, kh, kw, top, left, Ho, Wo, Cw, K, has_scale, scale,
                    bias, pb, field, acc, full);
    else
#endif
        conv_plain(x, w, out, N, C, H, W, O, kh, kw, top, left, Ho, Wo, Cw, K, has_scale, scale,
                   bias, pb, field, acc, full);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(pb);
    free(field);
    free(acc);
    free(full);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&ob);
    if (has_bias) PyBuffer_Release(&bb);
    return result;
}

static PyMethodDef methods[] = {
    {"binary_conv", binary_conv, METH_VARARGS,
     "binary_conv(x, w, out, N, C, H, W, O, kh, kw, top, left, Ho, Wo, scale, bias): the "
     "XNOR/popcount convolution of lmklib.models.acn_bitpacked (see the C source's header)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_xnor",
                                    "Compiled XNOR/popcount binary convolution.", -1, methods};

PyMODINIT_FUNC PyInit__xnor(void) { return PyModule_Create(&module); }
