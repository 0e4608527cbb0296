/* Scalar reference for the dense products over 16-bit and f32 weights (the specification of
 * half_avx2.c and half_avx512.c): every output accumulated in double in column order, rounded
 * once to float. */
#include "bitllm/kernels.h"

#include <string.h>

/* Read with memcpy: a tensor in a safetensors file need not be 2-byte aligned. */
static inline float half_value(bl_dtype dt, const uint16_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return dt == BL_DT_BF16 ? bl_bf16_to_f32(h) : bl_f16_to_f32(h);
}

void bl_half_matmul_ref(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                        int64_t T, float *Y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++) {
            const uint16_t *w = W + i * n;
            const float *x = X + t * n;
            double acc = 0.0;
            for (int64_t j = 0; j < n; j++) acc += (double)half_value(dt, w + j) * (double)x[j];
            Y[t * m + i] = (float)acc;
        }
}

void bl_f32_matmul_ref(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                       float *Y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < m; i++) {
            const float *w = W + i * n, *x = X + t * n;
            double acc = 0.0;
            for (int64_t j = 0; j < n; j++) {
                float wj; /* memcpy: checkpoint tensors need not be 4-byte aligned */
                memcpy(&wj, w + j, sizeof wj);
                acc += (double)wj * (double)x[j];
            }
            Y[t * m + i] = (float)acc;
        }
}

void bl_f32_to_f16_n_ref(const float *src, uint16_t *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = bl_f32_to_f16(src[i]);
}

void bl_half_to_f32_ref(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = half_value(dt, src + i);
}
