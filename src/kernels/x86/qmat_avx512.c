/* AVX-512 group-quantized (qsym q8_0 / q4_0) products: each 16 codes of a row are widened to
 * int32, re-centred, converted and multiplied by their group's scale — d·(c − 2^(b−1)), exact in
 * f32, the reference's dequantized weight — once per row and step, then one FMA per token.
 * No dequantized copy of the matrix is made: at T = 1 the kernel reads 8.5 (q8_0) or 4.5 (q4_0)
 * bits per weight where an F16 head reads 16.
 *
 * Summation order of every output, the same in every path: one 16-lane accumulator summing (by
 * FMA, in column order) the columns c with c mod 16 = lane, then a fixed-order horizontal add.
 * It depends neither on the tiling, nor on the batch size, nor on the thread count, so a token's
 * logits are bit-identical alone or batched. Tiles: up to 4 rows × 4 tokens (16 accumulators),
 * each widened weight vector feeding up to 4 FMAs. */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define TT 4 /* tokens per tile */

/* 16 dequantized weights of row i from column j (the first `left` of them when left < 16; the
 * others 0). */
ALWAYS_INLINE __m512 widen(const bl_qmat *Q, int64_t i, int64_t j, int64_t left, int64_t rb,
                           int64_t G) {
    const uint8_t *row = Q->qs + i * rb;
    const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    __m128i b;
    if (Q->bits == 8) {
        b = left >= 16 ? _mm_loadu_si128((const __m128i *)(row + j))
                       : _mm_maskz_loadu_epi8(k, row + j);
    } else { /* two codes per byte, low nibble first */
        const int64_t nb = left >= 16 ? 8 : (left + 1) / 2;
        const __m128i p = _mm_maskz_loadu_epi8((__mmask16)((1u << nb) - 1u), row + j / 2);
        const __m128i lo = _mm_and_si128(p, _mm_set1_epi8(0x0F));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(0x0F));
        b = _mm_unpacklo_epi8(lo, hi);
    }
    const __m512i c = _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), _mm512_set1_epi32(1 << (Q->bits - 1)));
    const __m512 d = _mm512_set1_ps(Q->d[i * G + j / Q->group]);
    return _mm512_maskz_mul_ps(k, _mm512_cvtepi32_ps(c), d);
}

/* Y[t0+t][i0+r] for r < R, t < TN (compile-time constants after inlining). */
ALWAYS_INLINE void tile(const bl_qmat_job *jb, int R, int TN, int64_t i0, int64_t t0) {
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, rb = bl_qmat_row_bytes(n, Q->bits);
    const int64_t G = (n + Q->group - 1) / Q->group;
    __m512 acc[4][TT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++) acc[r][t] = _mm512_setzero_ps();
    const float *x0 = jb->X + t0 * n;
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t left = n - j;
        const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        __m512 w[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) w[r] = widen(Q, i0 + r, j, left, rb, G);
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++) {
            const __m512 x = _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++) jb->Y[(t0 + t) * m + i0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

#define TOKENS(R)                                                    \
    do {                                                             \
        int64_t t0 = 0;                                              \
        for (; t0 + TT <= T; t0 += TT) tile(j, (R), TT, i, t0);      \
        switch (T - t0) {                                            \
        case 3: tile(j, (R), 3, i, t0); break;                       \
        case 2: tile(j, (R), 2, i, t0); break;                       \
        case 1: tile(j, (R), 1, i, t0); break;                       \
        default: break;                                              \
        }                                                            \
    } while (0)

void bl_qmat_avx512(const bl_qmat_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->Q->m, T = j->T;
    int64_t i = BL_QMAT_ROWS * u0;
    const int64_t i1 = BL_QMAT_ROWS * u1 < m ? BL_QMAT_ROWS * u1 : m;
    if (T == 1) { /* decode: one row at a time, a single sequential stream */
        for (; i < i1; i++) tile(j, 1, 1, i, 0);
        return;
    }
    for (; i + 4 <= i1; i += 4) TOKENS(4);
    for (; i < i1; i++) TOKENS(1);
}
