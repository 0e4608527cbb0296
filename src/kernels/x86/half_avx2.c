/* AVX2 dense products over F16, BF16 and F32 weights: the design of half_avx512.c on 8-lane
 * vectors (F16 widened with F16C's VCVTPH2PS).
 *
 * Summation order of every output, the same in every path: the columns in blocks of
 * BL_HALF_KBLOCK (half_rows.h); within a block two accumulators, lane k of accumulator u summing
 * (by FMA, in column order) the columns c with c mod 16 = 8u + k, then a0 + a1 and a fixed-order
 * horizontal add; the blocks' sums added in block order. Results depend neither on the tiling,
 * nor on the batch size, nor on the thread count.
 *
 * Decode (T = 1) reads one row at a time (one sequential stream per thread, see half_avx512.c);
 * batches use tiles of 3 rows × 2 tokens (12 accumulators, within the 16 ymm registers): on one
 * Zen 3 core, 5632×2048 F16, 63-64 GFLOP/s at T = 64-512 against 40-42 for 2 rows × 3 tokens
 * (1 row × 6 tokens: 25), 46-47 against 30-35 at T = 5-8 — the widenings of the third row cost
 * less than the input loads of the third token. The last partial 8 columns are copied into
 * zero-padded buffers (AVX2 has no masked 16-bit load). */
#include "kernels/half_kernels.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define U 2  /* accumulators per output */
#define RT 3 /* rows per batched tile */
#define TT 2 /* tokens per batched tile */

ALWAYS_INLINE __m256 widen(int bf16, __m128i h) {
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                : _mm256_cvtph_ps(h);
}

/* 8 weights from element `at` of W as f32; `left` < 8 columns are zero-padded. */
ALWAYS_INLINE __m256 load_w(int kind, const void *W, int64_t at, int64_t left) {
    if (kind == BL_WK_F32) {
        const float *f = (const float *)W + at;
        if (left >= 8) return _mm256_loadu_ps(f);
        float buf[8] = {0};
        memcpy(buf, f, (size_t)left * sizeof(float));
        return _mm256_loadu_ps(buf);
    }
    const uint16_t *h = (const uint16_t *)W + at;
    if (left >= 8) return widen(kind == BL_WK_BF16, _mm_loadu_si128((const __m128i *)h));
    uint16_t buf[8] = {0};
    memcpy(buf, h, (size_t)left * sizeof(uint16_t));
    return widen(kind == BL_WK_BF16, _mm_loadu_si128((const __m128i *)buf));
}

ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Columns [j, j+8) of R rows into acc[·][·][u] for T tokens; `left` < 8 columns are
 * zero-padded. */
ALWAYS_INLINE void step(int kind, int R, int T, const void *W, int64_t i0, int64_t n,
                        const float *x0, int64_t j, int64_t left, __m256 acc[RT][TT][U], int u) {
    __m256 w[RT];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) w[r] = load_w(kind, W, (i0 + r) * n + j, left);
#pragma GCC unroll 3
    for (int t = 0; t < T; t++) {
        __m256 x;
        if (left >= 8) {
            x = _mm256_loadu_ps(x0 + t * n + j);
        } else {
            float xb[8] = {0};
            memcpy(xb, x0 + t * n + j, (size_t)left * sizeof(float));
            x = _mm256_loadu_ps(xb);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm256_fmadd_ps(w[r], x, acc[r][t][u]);
    }
}

/* Columns [c0, c1) of Y[t0+t][i0+r] for r < R, t < T (compile-time constants after inlining):
 * stored when c0 = 0, added to what earlier column blocks left otherwise. */
ALWAYS_INLINE void tile(int kind, int R, int T, const void *W, int64_t m, int64_t n,
                        const float *X, int64_t i0, int64_t t0, float *Y, int64_t c0,
                        int64_t c1) {
    __m256 acc[RT][TT][U];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
#pragma GCC unroll 2
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm256_setzero_ps();
    const float *x0 = X + t0 * n;
    int64_t j = c0;
    for (; j + 8 * U <= c1; j += 8 * U)
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) step(kind, R, T, W, i0, n, x0, j + 8 * u, 8, acc, u);
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) {
        const int64_t c = j + 8 * u;
        if (c >= c1) break;
        step(kind, R, T, W, i0, n, x0, c, c1 - c, acc, u);
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            const float s = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
            float *y = &Y[(t0 + t) * m + i0 + r];
            *y = c0 == 0 ? s : *y + s;
        }
}

#include "kernels/x86/half_rows.h"

void bl_half_avx2(const bl_half_job *j, int64_t u0, int64_t u1) { run_units(j, u0, u1); }

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

/* F16C's VCVTPS2PH with round-to-nearest-even: bl_f32_to_f16's rounding, NaNs kept NaN. */
void bl_f32_to_f16_n_avx2(const float *src, uint16_t *dst, size_t count) {
    enum { RNE = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC };
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), RNE));
    if (i < count) {
        float buf[8] = {0};
        uint16_t out[8];
        memcpy(buf, src + i, (count - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)out, _mm256_cvtps_ph(_mm256_loadu_ps(buf), RNE));
        memcpy(dst + i, out, (count - i) * sizeof(uint16_t));
    }
}
