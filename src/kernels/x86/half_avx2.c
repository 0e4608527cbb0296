/* AVX2 16-bit dense products: the design of half_avx512.c on 8-lane vectors (F16 widened with
 * F16C's VCVTPH2PS). Tiles of 4 rows × 2 tokens (8 accumulators, within the 16 ymm registers);
 * a thread sweeps all tokens of its rows. The last partial 8 columns are copied into zero-padded
 * buffers (AVX2 has no masked 16-bit load). Lane k sums columns ≡ k mod 8 in order, then a
 * fixed-order horizontal add: results do not depend on tiling or thread count. */
#include "kernels/half_kernels.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define RB BL_HALF_ROW_GROUP
#define TB 2

ALWAYS_INLINE __m256 widen(int bf16, __m128i h) {
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                : _mm256_cvtph_ps(h);
}

ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE void tile(int bf16, int R, int TT, const uint16_t *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m256 acc[RB][TB];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
    const uint16_t *w0 = W + i0 * n;
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            w[r] = widen(bf16, _mm_loadu_si128((const __m128i *)(w0 + r * n + j)));
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) {
            const __m256 x = _mm256_loadu_ps(x0 + t * n + j);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    if (j < n) {
        const size_t left = (size_t)(n - j);
        __m256 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            uint16_t buf[8] = {0};
            memcpy(buf, w0 + r * n + j, left * sizeof(uint16_t));
            w[r] = widen(bf16, _mm_loadu_si128((const __m128i *)buf));
        }
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) {
            float xb[8] = {0};
            memcpy(xb, x0 + t * n + j, left * sizeof(float));
            const __m256 x = _mm256_loadu_ps(xb);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) Y[(t0 + t) * m + i0 + r] = hsum(acc[r][t]);
}

ALWAYS_INLINE void row_group(int bf16, int R, const uint16_t *W, int64_t m, int64_t n,
                             const float *X, int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TB <= T; t0 += TB) tile(bf16, R, TB, W, m, n, X, i0, t0, Y);
    if (t0 < T) tile(bf16, R, 1, W, m, n, X, i0, t0, Y);
}

void bl_half_avx2(const bl_half_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->m, n = j->n, T = j->T;
    for (int64_t g = u0; g < u1; g++) {
        const int64_t i0 = g * RB;
        if (i0 + RB <= m) {
            if (j->bf16) row_group(1, RB, j->W, m, n, j->X, T, i0, j->Y);
            else row_group(0, RB, j->W, m, n, j->X, T, i0, j->Y);
        } else {
            for (int64_t i = i0; i < m; i++) {
                if (j->bf16) row_group(1, 1, j->W, m, n, j->X, T, i, j->Y);
                else row_group(0, 1, j->W, m, n, j->X, T, i, j->Y);
            }
        }
    }
}

void bl_half_to_f32_avx2(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    const int bf16 = dt == BL_DT_BF16;
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, widen(bf16, _mm_loadu_si128((const __m128i *)(src + i))));
    if (i < count) {
        uint16_t buf[8] = {0};
        float out[8];
        memcpy(buf, src + i, (count - i) * sizeof(uint16_t));
        _mm256_storeu_ps(out, widen(bf16, _mm_loadu_si128((const __m128i *)buf)));
        memcpy(dst + i, out, (count - i) * sizeof(float));
    }
}
