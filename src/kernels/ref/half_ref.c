/* Scalar reference for the 16-bit dense products (the specification of half_avx2.c and
 * half_avx512.c): every output accumulated in double in column order, rounded once to float. */
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

void bl_half_to_f32_ref(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = half_value(dt, src + i);
}
