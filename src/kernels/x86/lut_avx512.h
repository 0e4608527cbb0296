/* Lookup tables shared by the AVX-512 sign kernels (sign_avx512.c, sign_t_avx512.c); include
 * only from files built with AVX-512 flags. A table holds, for 4 consecutive inputs, the 16 signed
 * sums selected by a 4-bit nibble of sign bits (bit b set: input b enters negated). */
#ifndef BITLLM_KERNELS_X86_LUT_AVX512_H
#define BITLLM_KERNELS_X86_LUT_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Table of one 4-input group: lane e = Σ_b (bit b of e ? −x_b : +x_b), added in order b = 0..3. */
ALWAYS_INLINE __m512 group_table(const float v[4]) {
    const int M = INT32_MIN;
    const __m512i s0 = _mm512_setr_epi32(0, M, 0, M, 0, M, 0, M, 0, M, 0, M, 0, M, 0, M);
    const __m512i s1 = _mm512_setr_epi32(0, 0, M, M, 0, 0, M, M, 0, 0, M, M, 0, 0, M, M);
    const __m512i s2 = _mm512_setr_epi32(0, 0, 0, 0, M, M, M, M, 0, 0, 0, 0, M, M, M, M);
    const __m512i s3 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, M, M, M, M, M, M, M, M);
#define SIGNED(k, s) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_set1_ps(v[k])), s))
    __m512 t = _mm512_add_ps(SIGNED(0, s0), SIGNED(1, s1));
    t = _mm512_add_ps(t, SIGNED(2, s2));
    return _mm512_add_ps(t, SIGNED(3, s3));
#undef SIGNED
}

/* Tables for the `groups` groups starting at column col0 of one token x (inputs past n are 0),
 * of x[j]·s[j] when s is not NULL (the product rounded to f32 first, as a separate pass would). */
static inline void build_tables(const float *x, const float *s, int64_t n, int64_t col0,
                                int64_t groups, float *tab) {
    for (int64_t g = 0; g < groups; g++) {
        int64_t j = col0 + 4 * g;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (j + 4 <= n)
            memcpy(v, x + j, sizeof v);
        else
            for (int b = 0; b < 4 && j + b < n; b++) v[b] = x[j + b];
        if (s)
            for (int b = 0; b < 4 && j + b < n; b++) v[b] *= s[j + b];
        _mm512_store_ps(tab + 16 * g, group_table(v));
    }
}

/* The partial sums of a pass over R 16-row blocks from b for TB tokens from t0 (Y is T×m; rows past
 * m are masked off): loaded before a chunk (+0 for chunk 0) and stored after it, so every output
 * accumulates its chunks in column order. The row blocking only groups independent sums. */
ALWAYS_INLINE void pass_masks(int64_t m, int64_t b, int R, __mmask16 *mk) {
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        const int64_t left = m - (b + r) * 16;
        mk[r] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    }
}

ALWAYS_INLINE void pass_load(const float *Y, int64_t m, int64_t c, int64_t b, int64_t t0, int TB,
                             int R, const __mmask16 *mk, __m512 *acc) {
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            acc[t * R + r] = c == 0 ? _mm512_setzero_ps()
                                    : _mm512_maskz_loadu_ps(mk[r], Y + (t0 + t) * m + (b + r) * 16);
}

/* h: NULL, or (after the last chunk) the output scaling: each sum times h[i], one rounding. */
ALWAYS_INLINE void pass_store(float *Y, int64_t m, int64_t b, int64_t t0, int TB, int R,
                              const __mmask16 *mk, const __m512 *acc, const float *h) {
    __m512 hv[8];
    if (h)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) hv[r] = _mm512_maskz_loadu_ps(mk[r], h + (b + r) * 16);
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(Y + (t0 + t) * m + (b + r) * 16, mk[r],
                                  h ? _mm512_mul_ps(acc[t * R + r], hv[r]) : acc[t * R + r]);
}

#endif
