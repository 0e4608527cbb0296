/* Lookup tables shared by the AVX-512 sign kernels (sign_avx512.c, sign_t_avx512.c,
 * sign_i8_avx512vbmi.c) and the prefetch of their packed stream; include
 * only from files built with AVX-512 flags. A table holds, for 4 consecutive inputs, the 16 signed
 * sums selected by a 4-bit nibble of sign bits (bit b set: input b enters negated). */
#ifndef BITLLM_KERNELS_X86_LUT_AVX512_H
#define BITLLM_KERNELS_X86_LUT_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/sign_kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Software prefetch of the packed sign stream, BL_SB_PREFETCH_BYTES ahead into L1
 * (sign_kernels.h), and with `far` PREFETCH_FAR ahead into L2, once per 64-byte word. The
 * second prefetch (PREFETCHT1; half_avx512.c: more of the stream in flight than the L1 fill
 * buffers hold) made one-thread decode of a TinyLlama-dims 1-bit model (q4_0 head) on an Intel
 * Xeon (Emerald Rapids) 67.9-71.5 → 72.1-74.1 tok/s with the f32 tables (sign_avx512.c) and
 * 80.8-94.6 → 90.7-101.0 with the int8 ones (sign_i8_avx512vbmi.c), four alternations; at two
 * threads and at batch 8 no change there. On AMD Zen 5 it costs: the int8-table products of a
 * Llama-2-7B-dims layer (4 × 4096², 2 × 11008×4096, 4096×11008 over 8 layers, out of cache),
 * two threads, the variants alternated in one process, 0.773 / 1.589 / 1.062 ms per layer
 * without it against 0.840 / 1.729 / 1.170 with it at 1 / 8 / 4 tokens (8-9 %), one thread at
 * 8 tokens 2.60 against 2.76, at 1 token the same (1.37 / 1.39). So the kernels issue it on
 * Intel CPUs only (`far` = bl_cpu_is_intel(), asked once per call), as the F16 decode loop does. */
#define PREFETCH_FAR 32768
ALWAYS_INLINE void prefetch_packed(const void *word, bool far) {
    _mm_prefetch((const char *)word + BL_SB_PREFETCH_BYTES, _MM_HINT_T0);
    if (far) _mm_prefetch((const char *)word + PREFETCH_FAR, _MM_HINT_T1);
}

/* x[j..j+15] (times s[·] when s is not NULL, the product rounded to f32 as a separate pass
 * would), 0 past n. */
ALWAYS_INLINE __m512 load_scaled16(const float *x, const float *s, int64_t n, int64_t j) {
    const int64_t left = n - j;
    if (left <= 0) return _mm512_setzero_ps();
    const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(mk, x + j);
    return s ? _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, s + j)) : v;
}

/* Inputs of 16 consecutive groups (64 columns) from column col0 of one token, one group per lane:
 * xb[b][j] = x[col0 + 4j + b] (times s[·] when s is not NULL, the product rounded to f32 as a
 * separate pass would), 0 past n. */
ALWAYS_INLINE void load_groups16(const float *x, const float *s, int64_t n, int64_t col0,
                                 __m512 xb[4]) {
    __m512 v[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) v[q] = load_scaled16(x, s, n, col0 + 16 * q);
    /* lanes 0-7 from v0:v1 (elements 4j + b), lanes 8-15 from v2:v3 */
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        const __m512i idx = _mm512_setr_epi32(b, 4 + b, 8 + b, 12 + b, 16 + b, 20 + b, 24 + b,
                                              28 + b, b, 4 + b, 8 + b, 12 + b, 16 + b, 20 + b,
                                              24 + b, 28 + b);
        xb[b] = _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_permutex2var_ps(v[0], idx, v[1]),
                                     _mm512_permutex2var_ps(v[2], idx, v[3]));
    }
}

/* The 16 signed sums of 16 groups, one group per lane: E[e] = ((±x0 ± x1) ± x2) ± x3, bit b of e
 * set: x_b enters negated (an exact sign flip), added in order b = 0..3 — every table entry the
 * kernels have ever used, computed as a butterfly (28 additions for 16 groups). */
ALWAYS_INLINE void group_entries16(const __m512 xb[4], __m512 E[16]) {
    const __m512 neg = _mm512_set1_ps(-0.0f);
    const __m512 nx0 = _mm512_xor_ps(xb[0], neg), nx1 = _mm512_xor_ps(xb[1], neg);
    const __m512 nx2 = _mm512_xor_ps(xb[2], neg), nx3 = _mm512_xor_ps(xb[3], neg);
    const __m512 q[4] = {_mm512_add_ps(xb[0], xb[1]), _mm512_add_ps(nx0, xb[1]),
                         _mm512_add_ps(xb[0], nx1), _mm512_add_ps(nx0, nx1)};
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        const __m512 r0 = _mm512_add_ps(q[e], xb[2]), r1 = _mm512_add_ps(q[e], nx2);
        E[e] = _mm512_add_ps(r0, xb[3]);
        E[e + 4] = _mm512_add_ps(r1, xb[3]);
        E[e + 8] = _mm512_add_ps(r0, nx3);
        E[e + 12] = _mm512_add_ps(r1, nx3);
    }
}

/* Tables for the `groups` groups starting at column col0 of one token x (inputs past n are 0),
 * of x[j]·s[j] when s is not NULL (the product rounded to f32 first, as a separate pass would):
 * table g (16 floats at tab + 16g) holds group g's 16 entries, lane e, the same values as
 * group_entries16. The inputs are scaled 64 at a time into a buffer; each table is then
 * ±x0 (a multiplication by ±1, exact) and three FMAs by ±1 with the inputs broadcast from memory
 * (x·(±1) is exact, so each FMA rounds once, as the addition of ±x_b does): five instructions per
 * group, against twelve plus scalar scaling before (1.0 µs for one token's 2048 columns). */
static inline void build_tables(const float *x, const float *s, int64_t n, int64_t col0,
                                int64_t groups, float *tab) {
    const __m512 one = _mm512_set1_ps(1.0f), m1 = _mm512_set1_ps(-1.0f);
    const __m512 s0 = _mm512_mask_blend_ps((__mmask16)0xAAAA, one, m1); /* lane e: bit 0 of e */
    const __m512 s1 = _mm512_mask_blend_ps((__mmask16)0xCCCC, one, m1);
    const __m512 s2 = _mm512_mask_blend_ps((__mmask16)0xF0F0, one, m1);
    const __m512 s3 = _mm512_mask_blend_ps((__mmask16)0xFF00, one, m1);
    float v[64] __attribute__((aligned(64)));
    for (int64_t g0 = 0; g0 < groups; g0 += 16) {
        const int64_t c0 = col0 + 4 * g0;
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) _mm512_store_ps(v + 16 * q, load_scaled16(x, s, n, c0 + 16 * q));
        const int64_t ng = groups - g0 < 16 ? groups - g0 : 16;
        for (int64_t g = 0; g < ng; g++) {
            const float *w = v + 4 * g;
            __m512 t = _mm512_mul_ps(_mm512_set1_ps(w[0]), s0);
            t = _mm512_fmadd_ps(_mm512_set1_ps(w[1]), s1, t);
            t = _mm512_fmadd_ps(_mm512_set1_ps(w[2]), s2, t);
            t = _mm512_fmadd_ps(_mm512_set1_ps(w[3]), s3, t);
            _mm512_store_ps(tab + 16 * (g0 + g), t);
        }
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
