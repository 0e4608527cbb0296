/* AVX-512 16-bit dense products: F16 rows widened with VCVTPH2PS, BF16 rows with a zero-extend
 * and a 16-bit shift, then FMA against f32 activations. No converted copy of W is made, so at
 * T = 1 the kernel reads 2 bytes per weight and runs at memory speed.
 *
 * Summation order of every output, the same in every path: two accumulators, lane k of
 * accumulator u summing (by FMA, in column order) the columns c with c mod 32 = 16u + k; then
 * a0 + a1 and a fixed-order horizontal add. So results depend neither on the tiling, nor on the
 * batch size, nor on the thread count.
 *
 * Decode (T = 1) reads one row at a time, 32 columns per step: a single sequential stream per
 * thread. Measured on Zen 5 with the weights in DRAM (4096×4096 and 11008×4096 F16, one
 * thread), one row at a time streams at 75-98 % of the read bandwidth, where the earlier tiles
 * of 4 rows read side by side (four interleaved streams) reached 60-70 % and two rows 45-55 %.
 * Batches (T > 1) are compute-bound and use tiles of 4 rows × 3 tokens (24 accumulators), each
 * loaded input vector feeding four FMAs; a thread sweeps all tokens of its 4 rows before moving
 * on, so W leaves DRAM once whatever T is. At T = 64 this runs at 2× the earlier 4 × 4 tiles
 * with one accumulator (66 against 32 GFLOP/s, 4096×4096, one thread); 2 × 6 and 3 × 4 tiles
 * were slower (33 GFLOP/s: fewer FMAs per input load). */
#include "kernels/half_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define U 2  /* accumulators per output */
#define RT 4 /* rows per batched tile */
#define TT 3 /* tokens per batched tile */

ALWAYS_INLINE __m512 widen(int bf16, __m256i h) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

/* Columns [j, j+16) of R rows into acc[·][·][u] for T tokens; k masks the columns past n. */
ALWAYS_INLINE void step(int bf16, int R, int T, const uint16_t *w0, int64_t n, const float *x0,
                        int64_t j, __mmask16 k, bool full, __m512 acc[RT][TT][U], int u) {
    __m512 w[RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        w[r] = widen(bf16, full ? _mm256_loadu_si256((const __m256i *)(w0 + r * n + j))
                                : _mm256_maskz_loadu_epi16(k, w0 + r * n + j));
#pragma GCC unroll 3
    for (int t = 0; t < T; t++) {
        const __m512 x =
            full ? _mm512_loadu_ps(x0 + t * n + j) : _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm512_fmadd_ps(w[r], x, acc[r][t][u]);
    }
}

/* Y[t0+t][i0+r] for r < R, t < T (compile-time constants after inlining). */
ALWAYS_INLINE void tile(int bf16, int R, int T, const uint16_t *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m512 acc[RT][TT][U];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
#pragma GCC unroll 4
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm512_setzero_ps();
    const uint16_t *w0 = W + i0 * n;
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    for (; j + 16 * U <= n; j += 16 * U)
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) step(bf16, R, T, w0, n, x0, j + 16 * u, 0, true, acc, u);
    /* the last < 32 columns: masked blocks into the accumulators their columns belong to */
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
        const int64_t c = j + 16 * u, left = n - c;
        if (left <= 0) break;
        const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        step(bf16, R, T, w0, n, x0, c, k, false, acc, u);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            const __m512 s = _mm512_add_ps(acc[r][t][0], acc[r][t][1]);
            Y[(t0 + t) * m + i0 + r] = _mm512_reduce_add_ps(s);
        }
}

/* All tokens of rows i0 .. i0+R−1. */
ALWAYS_INLINE void rows(int bf16, int R, const uint16_t *W, int64_t m, int64_t n, const float *X,
                        int64_t T, int64_t i0, float *Y) {
    int64_t t0 = 0;
    for (; t0 + TT <= T; t0 += TT) tile(bf16, R, TT, W, m, n, X, i0, t0, Y);
    if (T - t0 == 2) tile(bf16, R, 2, W, m, n, X, i0, t0, Y);
    if (T - t0 == 1) tile(bf16, R, 1, W, m, n, X, i0, t0, Y);
}

ALWAYS_INLINE void run(int bf16, const bl_half_job *j, int64_t i0, int64_t i1) {
    if (j->T == 1) { /* decode: one row at a time, one stream */
        for (int64_t i = i0; i < i1; i++) tile(bf16, 1, 1, j->W, j->m, j->n, j->X, i, 0, j->Y);
        return;
    }
    int64_t i = i0;
    for (; i + RT <= i1; i += RT) rows(bf16, RT, j->W, j->m, j->n, j->X, j->T, i, j->Y);
    for (; i < i1; i++) rows(bf16, 1, j->W, j->m, j->n, j->X, j->T, i, j->Y);
}

void bl_half_avx512(const bl_half_job *j, int64_t u0, int64_t u1) {
    const int64_t i0 = u0 * BL_HALF_ROW_GROUP;
    const int64_t i1 = u1 * BL_HALF_ROW_GROUP < j->m ? u1 * BL_HALF_ROW_GROUP : j->m;
    if (j->bf16) run(1, j, i0, i1);
    else run(0, j, i0, i1);
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
