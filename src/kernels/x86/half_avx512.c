/* AVX-512 dense products: F16 rows widened with VCVTPH2PS, BF16 rows with a zero-extend and a
 * 16-bit shift, F32 rows loaded as they are, then FMA against f32 activations. No converted copy
 * of W is made, so at T = 1 the kernel reads 2 bytes per 16-bit weight and runs at memory speed.
 *
 * Tiles of 4 rows × 4 tokens keep 16 accumulators in registers; one thread sweeps all tokens of
 * its rows before moving on, so W leaves DRAM once whatever T is (the 4 rows stay in L2). Each
 * output is its own accumulator (lane k sums columns ≡ k mod 16, in order, then a fixed-order
 * horizontal add), so results depend neither on the tiling nor on the thread count. */
#include "kernels/half_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define RB BL_HALF_ROW_GROUP
#define TB 4

ALWAYS_INLINE __m512 widen(int bf16, __m256i h) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

/* 16 weights from element `at` of W (all 16, or those in mask k), as f32. */
ALWAYS_INLINE __m512 load_w(int kind, const void *W, int64_t at) {
    if (kind == BL_WK_F32) return _mm512_loadu_ps((const float *)W + at);
    return widen(kind == BL_WK_BF16, _mm256_loadu_si256((const __m256i *)((const uint16_t *)W + at)));
}
ALWAYS_INLINE __m512 load_w_tail(int kind, const void *W, int64_t at, __mmask16 k) {
    if (kind == BL_WK_F32) return _mm512_maskz_loadu_ps(k, (const float *)W + at);
    return widen(kind == BL_WK_BF16, _mm256_maskz_loadu_epi16(k, (const uint16_t *)W + at));
}

/* Y[t0+t][i0+r] for r < R, t < TT (compile-time constants after inlining). */
ALWAYS_INLINE void tile(int kind, int R, int TT, const void *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m512 acc[RB][TB];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            w[r] = load_w(kind, W, (i0 + r) * n + j);
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) {
            const __m512 x = _mm512_loadu_ps(x0 + t * n + j);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        __m512 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) w[r] = load_w_tail(kind, W, (i0 + r) * n + j, k);
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) {
            const __m512 x = _mm512_maskz_loadu_ps(k, x0 + t * n + j);
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) Y[(t0 + t) * m + i0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* All tokens of rows i0 .. i0+R−1. */
ALWAYS_INLINE void row_group(int kind, int R, const void *W, int64_t m, int64_t n,
                             const float *X, int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TB <= T; t0 += TB) tile(kind, R, TB, W, m, n, X, i0, t0, Y);
    switch (T - t0) {
    case 3: tile(kind, R, 3, W, m, n, X, i0, t0, Y); break;
    case 2: tile(kind, R, 2, W, m, n, X, i0, t0, Y); break;
    case 1: tile(kind, R, 1, W, m, n, X, i0, t0, Y); break;
    default: break;
    }
}

#include "kernels/x86/half_rows.h"

void bl_half_matmul_avx512(bl_dtype dt, const uint16_t *W, int64_t m, int64_t n, const float *X,
                           int64_t T, float *Y) {
    matmul(dt == BL_DT_BF16 ? BL_WK_BF16 : BL_WK_F16, W, m, n, X, T, Y);
}

void bl_f32_matmul_avx512(const float *W, int64_t m, int64_t n, const float *X, int64_t T,
                          float *Y) {
    matmul(BL_WK_F32, W, m, n, X, T, Y);
}

void bl_half_to_f32_avx512(bl_dtype dt, const uint16_t *src, float *dst, size_t count) {
    const int bf16 = dt == BL_DT_BF16;
    size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(dst + i, widen(bf16, _mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < count) {
        const __mmask16 k = (__mmask16)((1u << (count - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, k, widen(bf16, _mm256_maskz_loadu_epi16(k, src + i)));
    }
}
