/* AVX-512 16-bit dense products: F16 rows widened with VCVTPH2PS, BF16 rows with a zero-extend
 * and a 16-bit shift, then FMA against f32 activations. No converted copy of W is made, so at
 * T = 1 the kernel reads 2 bytes per weight and runs at memory speed.
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

/* Y[t0+t][i0+r] for r < R, t < TT (compile-time constants after inlining). */
ALWAYS_INLINE void tile(int bf16, int R, int TT, const uint16_t *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m512 acc[RB][TB];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
    const uint16_t *w0 = W + i0 * n;
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 w[RB];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            w[r] = widen(bf16, _mm256_loadu_si256((const __m256i *)(w0 + r * n + j)));
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
        for (int r = 0; r < R; r++) w[r] = widen(bf16, _mm256_maskz_loadu_epi16(k, w0 + r * n + j));
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
ALWAYS_INLINE void row_group(int bf16, int R, const uint16_t *W, int64_t m, int64_t n,
                             const float *X, int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TB <= T; t0 += TB) tile(bf16, R, TB, W, m, n, X, i0, t0, Y);
    switch (T - t0) {
    case 3: tile(bf16, R, 3, W, m, n, X, i0, t0, Y); break;
    case 2: tile(bf16, R, 2, W, m, n, X, i0, t0, Y); break;
    case 1: tile(bf16, R, 1, W, m, n, X, i0, t0, Y); break;
    default: break;
    }
}

void bl_half_avx512(const bl_half_job *j, int64_t u0, int64_t u1) {
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
