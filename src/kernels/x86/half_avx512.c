/* AVX-512 dense products: F16 rows widened with VCVTPH2PS, BF16 rows with a zero-extend and a
 * 16-bit shift, F32 rows loaded as they are, then FMA against f32 activations. No converted copy
 * of W is made, so at T = 1 the kernel reads 2 bytes per 16-bit weight and runs at memory speed.
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
 * A software prefetch PF_BYTES ahead in that stream (continuing into the next rows) lifted F16
 * decode at TinyLlama dims from 12.6-13.7 to 14.5-16.0 tok/s on one thread of a quiet Zen 5
 * (1 KiB ahead: 13.1; 2 KiB: 14.0-14.8; 4-8 KiB: 14.5-16.0).
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
#define PF_BYTES 4096 /* decode prefetch distance (above) */

ALWAYS_INLINE __m512 widen(int bf16, __m256i h) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
}

/* 16 weights from element `at` of W (those in mask k unless full), as f32. */
ALWAYS_INLINE __m512 load_w(int kind, const void *W, int64_t at, __mmask16 k, bool full) {
    if (kind == BL_WK_F32)
        return full ? _mm512_loadu_ps((const float *)W + at)
                    : _mm512_maskz_loadu_ps(k, (const float *)W + at);
    const uint16_t *h = (const uint16_t *)W + at;
    return widen(kind == BL_WK_BF16, full ? _mm256_loadu_si256((const __m256i *)h)
                                          : _mm256_maskz_loadu_epi16(k, h));
}

/* Columns [j, j+16) of R rows into acc[·][·][u] for T tokens; k masks the columns past n. */
ALWAYS_INLINE void step(int kind, int R, int T, const void *W, int64_t i0, int64_t n,
                        const float *x0, int64_t j, __mmask16 k, bool full,
                        __m512 acc[RT][TT][U], int u) {
    __m512 w[RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w[r] = load_w(kind, W, (i0 + r) * n + j, k, full);
#pragma GCC unroll 3
    for (int t = 0; t < T; t++) {
        const __m512 x =
            full ? _mm512_loadu_ps(x0 + t * n + j) : _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm512_fmadd_ps(w[r], x, acc[r][t][u]);
    }
}

/* Y[t0+t][i0+r] for r < R, t < T (compile-time constants after inlining). */
ALWAYS_INLINE void tile(int kind, int R, int T, const void *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y) {
    __m512 acc[RT][TT][U];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
#pragma GCC unroll 4
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm512_setzero_ps();
    const float *x0 = X + t0 * n;
    int64_t j = 0;
    const size_t es = kind == BL_WK_F32 ? 4 : 2;
    for (; j + 16 * U <= n; j += 16 * U) {
        if (R == 1 && T == 1) /* decode: one stream, fetched PF_BYTES ahead (into the next rows) */
            _mm_prefetch((const char *)W + ((size_t)(i0 * n + j)) * es + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) step(kind, R, T, W, i0, n, x0, j + 16 * u, 0, true, acc, u);
    }
    /* the last < 32 columns: masked blocks into the accumulators their columns belong to */
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
        const int64_t c = j + 16 * u, left = n - c;
        if (left <= 0) break;
        const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        step(kind, R, T, W, i0, n, x0, c, k, false, acc, u);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            const __m512 s = _mm512_add_ps(acc[r][t][0], acc[r][t][1]);
            Y[(t0 + t) * m + i0 + r] = _mm512_reduce_add_ps(s);
        }
}

#include "kernels/x86/half_rows.h"

void bl_half_avx512(const bl_half_job *j, int64_t u0, int64_t u1) { run_units(j, u0, u1); }

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
