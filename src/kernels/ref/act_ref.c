/* Scalar references of the element-wise and attention steps (bitllm/kernels.h): f32 with libm's
 * expf, as the forward pass computed them before it had SIMD versions. The `omp simd` requests
 * let GCC sum a dot product in vector lanes: a fixed order for one build. */
#include <math.h>

#include "bitllm/kernels.h"
#include "core/simd.h"

void bl_silu_mul_ref(float *h, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = h[i];
        h[i] = g / (1.0f + expf(-g)) * u[i];
    }
}

void bl_softmax_ref(float *x, int64_t n) {
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t k = 0; k < n; k++) mx = x[k] > mx ? x[k] : mx;
    for (int64_t k = 0; k < n; k++) sum += (x[k] = expf(x[k] - mx));
    const float inv = 1.0f / sum;
    for (int64_t k = 0; k < n; k++) x[k] *= inv;
}

static void attend_one(const float *q, const float *K, const float *V, int64_t ld, int hd, int n,
                       float scale, float *P, float *out) {
    for (int k = 0; k < n; k++) {
        const float *kr = K + (int64_t)k * ld;
        float d = 0.0f;
        BL_SIMD_SUM(d)
        for (int i = 0; i < hd; i++) d += q[i] * kr[i];
        P[k] = scale * d;
    }
    bl_softmax_ref(P, n);
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int k = 0; k < n; k++) {
        const float *vr = V + (int64_t)k * ld, p = P[k];
        BL_SIMD
        for (int i = 0; i < hd; i++) out[i] += p * vr[i];
    }
}

void bl_attend_ref(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                   int64_t ld, int hd, int n, float scale, float *P, float *out,
                   int64_t out_stride) {
    for (int g = 0; g < G; g++)
        attend_one(q + g * q_stride, K, V, ld, hd, n, scale, P + (int64_t)g * n,
                   out + g * out_stride);
}

/* The int8 KV cache's rows (bitllm/kernels.h). Rounding by adding and subtracting 1.5·2^23 (round
 * to nearest even for |v| < 2^22; here |v| ≤ 127 and a bit): IEEE additions, so the same codes on
 * every CPU, and a loop the compiler vectorizes, where nearbyintf is a library call on the
 * baseline target. */
void bl_kv_q8_quantize_ref(const float *x, int n, int8_t *codes, float *scales) {
    for (int b = 0; b < n; b += BL_KV_Q8_BLOCK) {
        const int len = n - b < BL_KV_Q8_BLOCK ? n - b : BL_KV_Q8_BLOCK;
        const float *xb = x + b;
        float amax = 0.0f;
        int finite = 1;
        for (int j = 0; j < len; j++) {
            const float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
            finite &= a <= 3.402823466e38f; /* false for Inf and NaN */
        }
        int8_t *cb = codes + b;
        if (!finite) {
            for (int j = 0; j < len; j++) cb[j] = 0;
            scales[b / BL_KV_Q8_BLOCK] = NAN;
            continue;
        }
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        scales[b / BL_KV_Q8_BLOCK] = amax / 127.0f;
        for (int j = 0; j < len; j++) {
            float v = (xb[j] * inv + 0x1.8p23f) - 0x1.8p23f;
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            cb[j] = (int8_t)v;
        }
    }
}

void bl_kv_q8_dequantize(const int8_t *codes, const float *scales, int n, float *x) {
    for (int j = 0; j < n; j++) x[j] = (float)codes[j] * scales[j / BL_KV_Q8_BLOCK];
}
