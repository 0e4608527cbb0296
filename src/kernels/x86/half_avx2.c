/* AVX2 dense products: the design of half_avx512.c on 8-lane vectors (F16 widened with F16C's
 * VCVTPH2PS; F32 loaded as is). Tiles of 4 rows × 2 tokens (8 accumulators, within the 16 ymm registers);
 * a thread sweeps all tokens of its rows. The last partial 8 columns are copied into zero-padded
 * buffers (AVX2 has no masked 16-bit load; F32 uses the same path). Lane k sums columns ≡ k mod 8 in order, then a
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

/* 8 weights from element `at` of W as f32; the tail variant reads only `left` < 8 of them. */
ALWAYS_INLINE __m256 load_w(int kind, const void *W, int64_t at) {
    if (kind == BL_WK_F32) return _mm256_loadu_ps((const float *)W + at);
    return widen(kind == BL_WK_BF16, _mm_loadu_si128((const __m128i *)((const uint16_t *)W + at)));
}
ALWAYS_INLINE __m256 load_w_tail(int kind, const void *W, int64_t at, size_t left) {
    if (kind == BL_WK_F32) {
        float buf[8] = {0};
        memcpy(buf, (const float *)W + at, left * sizeof(float));
        return _mm256_loadu_ps(buf);
    }
    uint16_t buf[8] = {0};
    memcpy(buf, (const uint16_t *)W + at, left * sizeof(uint16_t));
    return widen(kind == BL_WK_BF16, _mm_loadu_si128((const __m128i *)buf));
}

ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE void tile(int kind, int R, int TT, const void *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m256 acc[RB][TB];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            w[r] = load_w(kind, W, (i0 + r) * n + j);
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
        for (int r = 0; r < R; r++) w[r] = load_w_tail(kind, W, (i0 + r) * n + j, left);
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

ALWAYS_INLINE void row_group(int kind, int R, const void *W, int64_t m, int64_t n,
                             const float *X, int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TB <= T; t0 += TB) tile(kind, R, TB, W, m, n, X, i0, t0, Y);
    if (t0 < T) tile(kind, R, 1, W, m, n, X, i0, t0, Y);
}

#include "kernels/x86/half_rows.h"

void bl_half_matmul_avx2(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                         int64_t T, float *Y) {
    matmul(dt == BL_DT_BF16 ? BL_WK_BF16 : BL_WK_F16, W, m, n, X, T, Y);
}

void bl_f32_matmul_avx2(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                        float *Y) {
    matmul(BL_WK_F32, W, m, n, X, T, Y);
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
