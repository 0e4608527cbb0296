/* Sixteen horizontal sums at once (AVX-512; include only from files built with AVX-512 flags).
 * sum16 adds the 16 lanes of each of 16 vectors with a transposing tree (4 levels of shuffles and
 * adds, 30 instructions, against 16 × 7 for 16 _mm512_reduce_add_ps), pairing the lanes as
 * GCC's _mm512_reduce_add_ps does — lanes e and e+8, then e and e+4, e and e+2, e and e+1 — so
 * each sum has the same bits as hsum16 of its vector (floating-point addition is commutative;
 * only the pairing matters). hsum16 spells that tree out instead of relying on a compiler's
 * _mm512_reduce_add_ps, so the two agree under any compiler. */
#ifndef BITLLM_KERNELS_X86_SUM16_AVX512_H
#define BITLLM_KERNELS_X86_SUM16_AVX512_H

#include <immintrin.h>

/* Lane p of the result = Σ of the lanes of v[SIGMA(p)], SIGMA = (0 2 1 3 8 10 9 11 4 6 5 7 12 14
 * 13 15), an involution: the callers put key p's accumulator in v[SIGMA(p)]. */
static const int SIGMA[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

static inline __attribute__((always_inline)) __m512 sum16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) /* 256-bit halves: lanes 0-1 from v[j], 2-3 from v[j+8] */
        a[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44),
                             _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) /* 128-bit lanes */
        b[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a[j], a[j + 4], 0x88),
                             _mm512_shuffle_f32x4(a[j], a[j + 4], 0xDD));
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) /* pairs within lanes */
        c[j] = _mm512_add_ps(_mm512_shuffle_ps(b[j], b[j + 2], 0x44),
                             _mm512_shuffle_ps(b[j], b[j + 2], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
}

/* The sum of v's 16 lanes, paired as sum16 pairs them. */
static inline __attribute__((always_inline)) float hsum16(__m512 v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

#endif
