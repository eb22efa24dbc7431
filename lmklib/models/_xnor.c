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
 *   top, left: zero padding before the first row / column (stride 1, dilation 1).
 *   scale, bias: None, or the ACN inference factor (a float32 value) and None / float32 [O]:
 *        out = dot * scale (+ bias[o]), each a float32 operation as torch does them.
 *
 * For an output pixel the dot product of +-1 values over the taps that fall inside the image is
 *     sum over valid taps of (C - 2 * popcount(a XOR w))
 * an exact integer, as the float convolution of +-1 values is (|sum| < 2^24), and padding adds
 * nothing (a zero-padded input times +-1 is 0): the two agree bit for bit.
 *
 * The input's signs are packed once per call (a pixel's C channels into Cw = ceil(C / 64)
 * words); each output pixel's receptive field is then gathered into K words and run against
 * every filter's, the pixels innermost. Built with
 * -ffp-contract=off so that "dot * scale + bias" is never fused into one rounding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_buffers.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* OR the low nb bits (nb <= 64) of val into a bit string at bit offset at, whose word w lives
 * at dst[w * stride]. */
static inline void put_bits(uint64_t *dst, Py_ssize_t stride, Py_ssize_t at, uint64_t val,
                            Py_ssize_t nb) {
    const Py_ssize_t word = at >> 6, shift = at & 63;
    dst[word * stride] |= val << shift;
    if (shift && shift + nb > 64) dst[(word + 1) * stride] |= val >> (64 - shift);
}

/* Every output pixel against every filter: the kernel body, compiled three times below (with
 * AVX-512 VPOPCNTQ, with the popcnt instruction, plain) and picked at run time. Per image, each
 * output pixel p's receptive field is gathered into K = ceil(kh * kw * C / 64) words, tap t's C
 * channel bits at bit t * C as the kernels are packed, stored word-major (field[k * P + p]),
 * with a mask of the bits whose tap lies inside the image (padding counts nothing). Then, filter
 * by filter, the loop over the pixels runs on contiguous words, which vectorises. */
#define CONV_BODY                                                                             \
    const Py_ssize_t P = Ho * Wo;                                                             \
    for (Py_ssize_t k = 0; k < K; k++) { /* the mask of a pixel whose taps are all inside */  \
        const Py_ssize_t left_bits = kh * kw * C - 64 * k;                                    \
        whole[k] = left_bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << left_bits) - 1;           \
    }                                                                                         \
    for (Py_ssize_t n = 0; n < N; n++) {                                                      \
        memset(field, 0, (size_t)(2 * K * P) * sizeof(uint64_t));                             \
        for (Py_ssize_t oy = 0; oy < Ho; oy++)                                                \
            for (Py_ssize_t ox = 0; ox < Wo; ox++) {                                          \
                const Py_ssize_t p = oy * Wo + ox;                                            \
                const int inside = oy >= top && oy - top + kh <= H && ox >= left &&           \
                                   ox - left + kw <= W;                                       \
                Py_ssize_t valid = 0;                                                         \
                for (Py_ssize_t i = 0; i < kh; i++) {                                         \
                    const Py_ssize_t iy = oy - top + i;                                       \
                    for (Py_ssize_t j = 0; j < kw; j++) {                                     \
                        const Py_ssize_t ix = ox - left + j;                                  \
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;                 \
                        const uint64_t *px = bits + ((n * H + iy) * W + ix) * Cw;             \
                        const Py_ssize_t at = (i * kw + j) * C;                               \
                        for (Py_ssize_t c = 0; c < Cw; c++) {                                 \
                            const Py_ssize_t nb = c < Cw - 1 ? 64 : C - 64 * (Cw - 1);        \
                            const uint64_t ones =                                             \
                                nb == 64 ? ~(uint64_t)0 : ((uint64_t)1 << nb) - 1;            \
                            put_bits(field + p, P, at + 64 * c, px[c], nb);                   \
                            if (!inside)                                                      \
                                put_bits(field + K * P + p, P, at + 64 * c, ones, nb);        \
                        }                                                                     \
                        valid++;                                                              \
                    }                                                                         \
                }                                                                             \
                if (inside) /* every tap in the image: the whole bit string counts */         \
                    for (Py_ssize_t k = 0; k < K; k++) field[(K + k) * P + p] = whole[k];     \
                full[p] = (int64_t)valid * C;                                                 \
            }                                                                                 \
        const uint64_t *mask = field + K * P;                                                 \
        for (Py_ssize_t o = 0; o < O; o++) {                                                  \
            memset(acc, 0, (size_t)P * sizeof(uint64_t));                                     \
            for (Py_ssize_t k = 0; k < K; k++) {                                              \
                const uint64_t wk = w[k * O + o], *fk = field + k * P, *mk = mask + k * P;    \
                for (Py_ssize_t q = 0; q < P; q++)                                            \
                    acc[q] += (uint64_t)__builtin_popcountll((fk[q] ^ wk) & mk[q]);           \
            }                                                                                 \
            float *dst = out + (n * O + o) * P;                                               \
            const float b = bias ? bias[o] : 0.0f;                                            \
            for (Py_ssize_t q = 0; q < P; q++) {                                              \
                float v = (float)(full[q] - 2 * (int64_t)acc[q]);                             \
                if (has_scale) {                                                              \
                    v = v * scale;                                                            \
                    if (bias) v = v + b;                                                      \
                }                                                                             \
                dst[q] = v;                                                                   \
            }                                                                                 \
        }                                                                                     \
    }

#define CONV_ARGS                                                                             \
    const uint64_t *bits, const uint64_t *w, float *out, Py_ssize_t N, Py_ssize_t C,         \
        Py_ssize_t H, Py_ssize_t W, Py_ssize_t O, Py_ssize_t kh, Py_ssize_t kw,               \
        Py_ssize_t top, Py_ssize_t left, Py_ssize_t Ho, Py_ssize_t Wo, Py_ssize_t Cw,         \
        Py_ssize_t K, int has_scale, float scale, const float *bias, uint64_t *field,         \
        uint64_t *acc, int64_t *full, uint64_t *whole

static void conv_plain(CONV_ARGS) { CONV_BODY }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt"))) static void conv_popcnt(CONV_ARGS) { CONV_BODY }
/* AVX-512 with VPOPCNTQ: the loop over the filters becomes 8 popcounts per instruction */
__attribute__((target("avx512f,avx512vl,avx512vpopcntdq,popcnt"))) static void conv_avx512(
    CONV_ARGS) { CONV_BODY }
#endif

/* Signs of x [N, C, H, W] -> bits [N, H, W, Cw]. */
static void pack_signs(const float *x, uint64_t *bits, Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                       Py_ssize_t W, Py_ssize_t Cw) {
    memset(bits, 0, (size_t)(N * H * W * Cw) * sizeof(uint64_t));
    for (Py_ssize_t n = 0; n < N; n++)
        for (Py_ssize_t c = 0; c < C; c++) {
            const float *plane = x + (n * C + c) * H * W;
            const int shift = (int)(c & 63);
            uint64_t *dst = bits + n * H * W * Cw + (c >> 6);
            /* branch-free: the signs of activations are a coin toss to the branch predictor */
            for (Py_ssize_t p = 0; p < H * W; p++)
                dst[p * Cw] |= (uint64_t)(plane[p] >= 0.0f) << shift;
        }
}

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
    uint64_t *bits = NULL;
    uint64_t *field = NULL, *acc = NULL, *whole = NULL;
    int64_t *full = NULL;
    Py_ssize_t K = (kh * kw * C + 63) / 64;
    if (has_scale && PyErr_Occurred()) goto done;
    if (bias_obj != Py_None) {
        if (PyObject_GetBuffer(bias_obj, &bb, PyBUF_SIMPLE) < 0) goto done;
        has_bias = 1;
        if (!need_bytes("binary_conv", &bb, O * (Py_ssize_t)sizeof(float), "bias")) goto done;
    }
    if (!need_bytes("binary_conv", &xb, N * C * H * W * (Py_ssize_t)sizeof(float), "x") ||
        !need_bytes("binary_conv", &wb, K * O * (Py_ssize_t)sizeof(uint64_t), "w") ||
        !need_bytes("binary_conv", &ob, N * O * Ho * Wo * (Py_ssize_t)sizeof(float), "out"))
        goto done;
    bits = malloc((size_t)(N * H * W * Cw + 1) * sizeof(uint64_t));
    field = malloc((size_t)(2 * K * Ho * Wo + 1) * sizeof(uint64_t));
    acc = malloc((size_t)(Ho * Wo + 1) * sizeof(uint64_t));
    full = malloc((size_t)(Ho * Wo + 1) * sizeof(int64_t));
    whole = malloc((size_t)(K + 1) * sizeof(uint64_t));
    if (!bits || !field || !acc || !full || !whole) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    pack_signs((const float *)xb.buf, bits, N, C, H, W, Cw);
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vpopcntdq"))
        conv_avx512(bits, (const uint64_t *)wb.buf, (float *)ob.buf, N, C, H, W, O, kh, kw, top,
                    left, Ho, Wo, Cw, K, has_scale, scale, has_bias ? (const float *)bb.buf : NULL,
                    field, acc, full, whole);
    else if (__builtin_cpu_supports("popcnt"))
        conv_popcnt(bits, (const uint64_t *)wb.buf, (float *)ob.buf, N, C, H, W, O, kh, kw, top,
                    left, Ho, Wo, Cw, K, has_scale, scale, has_bias ? (const float *)bb.buf : NULL,
                    field, acc, full, whole);
    else
#endif
        conv_plain(bits, (const uint64_t *)wb.buf, (float *)ob.buf, N, C, H, W, O, kh, kw, top,
                   left, Ho, Wo, Cw, K, has_scale, scale, has_bias ? (const float *)bb.buf : NULL,
                   field, acc, full, whole);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(bits);
    free(field);
    free(acc);
    free(full);
    free(whole);
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
