/* AVX-512 group-quantized (qsym q8_0 / q4_0) products: each 16 codes of a row are widened to
 * int32 (re-centred as signed bytes first), converted and multiplied by their group's scale —
 * d·(c − 2^(b−1)), exact in f32, the reference's dequantized weight — once per row and step, then
 * one FMA per token. No dequantized copy of the matrix is made: at T = 1 the kernel reads 8.5
 * (q8_0) or 4.5 (q4_0) bits per weight where an F16 head reads 16.
 *
 * Summation order of every output, the same in every path: two accumulators, lane k of
 * accumulator u summing (by FMA, in column order) the columns c with c mod 32 = 16u + k; then
 * a0 + a1 and a fixed-order horizontal add (the order of the dense kernels, half_avx512.c). It
 * depends neither on the tiling, nor on the batch size, nor on the thread count, so a token's
 * logits are bit-identical alone or batched. Tiles: 4 rows (8 independent FMA chains at T = 1,
 * where one row with one accumulator was bound by the FMA latency: 16-25 ms for a 32000×4096
 * head against 10 ms for F16) × up to 3 tokens (24 accumulators, each widened weight vector
 * feeding up to 3 FMAs). */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define U 2  /* accumulators per output */
#define RT 4 /* rows per tile */
#define TT 3 /* tokens per tile */

/* Codes of 16 columns from column j of a row (bytes loaded: all of them when full, else the
 * first `left` columns' bytes), re-centred to signed bytes c − 2^(bits−1). */
ALWAYS_INLINE __m128i codes(const uint8_t *row, int bits, int64_t j, int64_t left, bool full) {
    if (bits == 8) {
        const __m128i b = full ? _mm_loadu_si128((const __m128i *)(row + j))
                               : _mm_maskz_loadu_epi8((__mmask16)((1u << left) - 1u), row + j);
        return _mm_xor_si128(b, _mm_set1_epi8((char)0x80)); /* c − 128 as int8 */
    }
    /* two codes per byte, low nibble first */
    const __m128i p = full ? _mm_loadl_epi64((const __m128i *)(row + j / 2))
                           : _mm_maskz_loadu_epi8((__mmask16)((1u << ((left + 1) / 2)) - 1u),
                                                  row + j / 2);
    const __m128i lo = _mm_and_si128(p, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(0x0F));
    return _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), _mm_set1_epi8(8)); /* c − 8 */
}

/* 16 dequantized weights of row i from column j (past `left` columns: 0 unless full). */
ALWAYS_INLINE __m512 widen(const bl_qmat *Q, int64_t i, int64_t j, int64_t left, bool full,
                           int64_t rb, int64_t G) {
    const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes(Q->qs + i * rb, Q->bits, j, left, full)));
    const __m512 d = _mm512_set1_ps(Q->d[i * G + j / Q->group]);
    if (full) return _mm512_mul_ps(c, d);
    return _mm512_maskz_mul_ps((__mmask16)((1u << left) - 1u), c, d);
}

/* Columns [j, j+16) of R rows into acc[·][·][u] for TN tokens. */
ALWAYS_INLINE void step(const bl_qmat *Q, int R, int TN, int64_t i0, const float *x0, int64_t j,
                        int64_t left, bool full, int64_t rb, int64_t G, __m512 acc[RT][TT][U],
                        int u) {
    const int64_t n = Q->n;
    __m512 w[RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w[r] = widen(Q, i0 + r, j, left, full, rb, G);
    const __mmask16 k = full ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
#pragma GCC unroll 3
    for (int t = 0; t < TN; t++) {
        const __m512 x = full ? _mm512_loadu_ps(x0 + t * n + j) : _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm512_fmadd_ps(w[r], x, acc[r][t][u]);
    }
}

/* Y[t0+t][i0+r] for r < R, t < TN (compile-time constants after inlining). */
ALWAYS_INLINE void tile(const bl_qmat_job *jb, int R, int TN, int64_t i0, int64_t t0) {
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, rb = bl_qmat_row_bytes(n, Q->bits);
    const int64_t G = (n + Q->group - 1) / Q->group;
    __m512 acc[RT][TT][U];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
#pragma GCC unroll 2
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm512_setzero_ps();
    const float *x0 = jb->X + t0 * n;
    int64_t j = 0;
    for (; j + 16 * U <= n; j += 16 * U)
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) step(Q, R, TN, i0, x0, j + 16 * u, 16, true, rb, G, acc, u);
    /* the last < 32 columns: masked blocks into the accumulators their columns belong to */
#pragma GCC unroll 2
    for (int u = 0; u < U; u++) {
        const int64_t c = j + 16 * u, left = n - c;
        if (left <= 0) break;
        if (left >= 16) step(Q, R, TN, i0, x0, c, 16, true, rb, G, acc, u);
        else step(Q, R, TN, i0, x0, c, left, false, rb, G, acc, u);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            jb->Y[(t0 + t) * m + i0 + r] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

#define TOKENS(R)                                                    \
    do {                                                             \
        int64_t t0 = 0;                                              \
        for (; t0 + TT <= T; t0 += TT) tile(j, (R), TT, i, t0);      \
        switch (T - t0) {                                            \
        case 2: tile(j, (R), 2, i, t0); break;                       \
        case 1: tile(j, (R), 1, i, t0); break;                       \
        default: break;                                              \
        }                                                            \
    } while (0)

void bl_qmat_avx512(const bl_qmat_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->Q->m, T = j->T;
    int64_t i = BL_QMAT_ROWS * u0;
    const int64_t i1 = BL_QMAT_ROWS * u1 < m ? BL_QMAT_ROWS * u1 : m;
    for (; i + RT <= i1; i += RT) TOKENS(RT);
    for (; i < i1; i++) TOKENS(1);
}
