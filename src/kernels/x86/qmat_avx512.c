/* AVX-512 group-quantized (qsym q8_0 / q4_0) products. Each 16 codes of a row become their
 * dequantized weights d·(c − 2^(b−1)), exact in f32 and so equal to the reference's however they
 * are formed: q8_0 converts the code and applies the group's scale and offset in one FMA; q4_0
 * looks the weights up (VPERMPS) in a 16-entry table of its group's values. The scale, offset and
 * table are set up once per row and group; the widened weights once per row and step, then one
 * FMA per token. No dequantized copy of the matrix is made: at T = 1 the kernel reads 8.5 (q8_0)
 * or 4.5 (q4_0) bits per weight where an F16 head reads 16.
 *
 * Summation order of every output, the same in every path: two accumulators, lane k of
 * accumulator u summing (by FMA, in column order) the columns c with c mod 32 = 16u + k; then
 * a0 + a1 and a fixed-order horizontal add (the order of the dense kernels, half_avx512.c). It
 * depends neither on the tiling, nor on the batch size, nor on the thread count, so a token's
 * logits are bit-identical alone or batched (and equal to the earlier form of this kernel, which
 * widened and scaled every 16 codes with a per-step division for the group index).
 *
 * Decode (T = 1) goes one row at a time, the row's codes a stream prefetched PF_BYTES ahead (as
 * the F16 decode kernel does); q8_0 / q4_0 with group 32 take one pair of steps per group with
 * no per-step bookkeeping. One 32000×2048 head, one thread, best of 60, bits unchanged: q8_0
 * 4.2-5.1 → 2.7-3.2 ms, q4_0 3.6-4.0 → 1.9-2.1 ms (F16: 3.4-3.9 ms), load 1.0-1.3, with 2 rows
 * side by side. One row (a single stream instead of two interleaved ones) against two, Zen 5,
 * 32000×4096 heads out of cache, alternated in one process: q4_0 5.33 / 6.15 ms on one thread,
 * 2.66 / 2.97 on two; q8_0 7.12 / 11.20 and 3.99 / 6.65 (32000×2048 q4_0 on two threads 1.73 /
 * 1.66, min 1.50 / 1.63). Batches use
 * tiles of 4 rows × 2 tokens (16 accumulators: with 3 tokens the 24 accumulators and the per-row
 * scales no longer fit the 32 registers and spilled; T = 64: q8_0 87-94 → 73-86 ms, q4_0
 * 138-140 → 74-83 ms). */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define U 2  /* accumulators per output */
#define RT 4 /* rows per tile */
#define TT 2 /* tokens per tile */
#define PF_BYTES 4096 /* decode prefetch distance in the code stream (above) */

/* The dequantized weights of one row's group: d·(c − 2^(bits−1)), exact in f32 however it is
 * formed. Decode (one token) sets up per row and group: q8_0 fma(c, d, −128·d) over the
 * zero-extended code (c·d and the sum are exact, so the FMA's one rounding changes nothing);
 * q4_0 a 16-entry table d·(k − 8), k = 0..15, that VPERMPS indexes by the code. Tiles of several
 * tokens hold 16 accumulators and keep no per-row vectors: each step multiplies by the scale
 * broadcast from memory (q8_0: (c − 128)·d; q4_0: the table formed there). */
typedef struct {
    const float *dp; /* the group's scale */
    __m512 d, off;   /* decode, q8_0: d and −128·d */
    __m512 lut;      /* decode, q4_0: d·(k − 8) in lane k */
} gscale;

ALWAYS_INLINE __m512 q4_base(void) {
    return _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
}

ALWAYS_INLINE gscale group_scale(const float *dp, int bits, bool reg) {
    gscale g;
    g.dp = dp;
    g.d = g.off = g.lut = _mm512_setzero_ps();
    if (!reg) return g;
    g.d = _mm512_set1_ps(*dp);
    if (bits == 8) g.off = _mm512_set1_ps(-128.0f * *dp);
    else g.lut = _mm512_mul_ps(g.d, q4_base());
    return g;
}

/* 16 dequantized weights of a row from column j (past `left` columns: 0 unless full). */
ALWAYS_INLINE __m512 widen(const uint8_t *row, int bits, const gscale *g, bool reg, int64_t j,
                           int64_t left, bool full) {
    const __mmask16 k = full ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    if (bits == 8) {
        const __m128i b = full ? _mm_loadu_si128((const __m128i *)(row + j))
                               : _mm_maskz_loadu_epi8(k, row + j);
        if (!reg) {
            const __m512 c = _mm512_cvtepi32_ps(
                _mm512_cvtepi8_epi32(_mm_xor_si128(b, _mm_set1_epi8((char)0x80))));
            return _mm512_maskz_mul_ps(k, c, _mm512_set1_ps(*g->dp));
        }
        const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
        return full ? _mm512_fmadd_ps(c, g->d, g->off) : _mm512_maskz_fmadd_ps(k, c, g->d, g->off);
    }
    const __m512 lut = reg ? g->lut : _mm512_mul_ps(_mm512_set1_ps(*g->dp), q4_base());
    /* two codes per byte, low nibble first: lane k takes byte k/2 (VPSHUFB within each 128-bit
     * lane of the broadcast 8 bytes) shifted right by 4 when k is odd; VPERMPS reads only an
     * index's low 4 bits, so the other nibble above them does not matter */
    if (full) {
        const __m512i b =
            _mm512_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(const void *)(row + j / 2)));
        const __m512i sel = _mm512_set_epi32(
            (int)0x80808007, (int)0x80808007, (int)0x80808006, (int)0x80808006,
            (int)0x80808005, (int)0x80808005, (int)0x80808004, (int)0x80808004,
            (int)0x80808003, (int)0x80808003, (int)0x80808002, (int)0x80808002,
            (int)0x80808001, (int)0x80808001, (int)0x80808000, (int)0x80808000);
        const __m512i sh = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        const __m512i idx = _mm512_srlv_epi32(_mm512_shuffle_epi8(b, sel), sh);
        return _mm512_permutexvar_ps(idx, lut);
    }
    const __m128i p = _mm_maskz_loadu_epi8((__mmask16)((1u << ((left + 1) / 2)) - 1u), row + j / 2);
    const __m128i lo = _mm_and_si128(p, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(0x0F));
    const __m512i idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    return _mm512_maskz_permutexvar_ps(k, idx, lut);
}

/* Columns [j, j+16) of R rows into acc[·][·][u] for TN tokens. */
ALWAYS_INLINE void step(const uint8_t *const rows[RT], int bits, const gscale g[RT], int R, int TN,
                        const float *x0, int64_t n, int64_t j, int64_t left, bool full,
                        __m512 acc[RT][TT][U], int u) {
    __m512 w[RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w[r] = widen(rows[r], bits, &g[r], TN == 1, j, left, full);
    const __mmask16 k = full ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
#pragma GCC unroll 3
    for (int t = 0; t < TN; t++) {
        const __m512 x = full ? _mm512_loadu_ps(x0 + t * n + j) : _mm512_maskz_loadu_ps(k, x0 + t * n + j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm512_fmadd_ps(w[r], x, acc[r][t][u]);
    }
}

/* Columns [j, j+32) from a 32-column boundary: the (u = 0, u = 1) pair of steps, the code streams
 * prefetched PF_BYTES ahead when decoding. */
ALWAYS_INLINE void pair(const uint8_t *const rows[RT], int bits, const gscale g[RT], int R, int TN,
                        const float *x0, int64_t n, int64_t j, __m512 acc[RT][TT][U]) {
    if (TN == 1)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            _mm_prefetch((const char *)rows[r] + j * bits / 8 + PF_BYTES, _MM_HINT_T0);
    step(rows, bits, g, R, TN, x0, n, j, 16, true, acc, 0);
    step(rows, bits, g, R, TN, x0, n, j + 16, 16, true, acc, 1);
}

/* Y[t0+t][i0+r] for r < R, t < TN (compile-time constants after inlining). Columns go group by
 * group (the group is a multiple of 16, so a 16-column step never straddles two); a step's
 * accumulator is its column's, (j / 16) mod 2, as the order above requires. */
ALWAYS_INLINE void tile(const bl_qmat_job *jb, int bits, int R, int TN, int64_t i0, int64_t t0) {
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, rb = bl_qmat_row_bytes(n, bits), gs = Q->group;
    const int64_t G = (n + gs - 1) / gs;
    __m512 acc[RT][TT][U];
    const uint8_t *rows[RT];
    const float *dr[RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        rows[r] = Q->qs + (i0 + r) * rb;
        dr[r] = Q->d + (i0 + r) * G;
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
#pragma GCC unroll 2
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm512_setzero_ps();
    }
    const float *x0 = jb->X + t0 * n;
    int64_t g = 0, j = 0;
    if (gs == 32) /* the q8_0 / q4_0 default: one pair of steps per group */
        for (; j + 32 <= n; j += 32, g++) {
            gscale sc[RT];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) sc[r] = group_scale(dr[r] + g, bits, TN == 1);
            pair(rows, bits, sc, R, TN, x0, n, j, acc);
        }
    for (; g < G; g++) {
        gscale sc[RT];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) sc[r] = group_scale(dr[r] + g, bits, TN == 1);
        const int64_t end = j + gs < n ? j + gs : n;
        /* the accumulator index stays a compile-time constant: steps go in (u = 0, u = 1) pairs
         * from a 32-column boundary */
        if ((j & 16) && j + 16 <= end) {
            step(rows, bits, sc, R, TN, x0, n, j, 16, true, acc, 1);
            j += 16;
        }
        for (; j + 32 <= end; j += 32) pair(rows, bits, sc, R, TN, x0, n, j, acc);
        if (j + 16 <= end) {
            step(rows, bits, sc, R, TN, x0, n, j, 16, true, acc, 0);
            j += 16;
        }
        if (j < end) { /* the row's last < 16 columns */
            if (j & 16) step(rows, bits, sc, R, TN, x0, n, j, end - j, false, acc, 1);
            else step(rows, bits, sc, R, TN, x0, n, j, end - j, false, acc, 0);
            j = end;
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            jb->Y[(t0 + t) * m + i0 + r] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}

/* Every token of the R rows from i: tiles of TT tokens, then the rest. */
ALWAYS_INLINE void tokens(const bl_qmat_job *jb, int bits, int R, int64_t i) {
    const int64_t T = jb->T;
    int64_t t0 = 0;
    for (; t0 + TT <= T; t0 += TT) tile(jb, bits, R, TT, i, t0);
    if (T - t0 == 2) tile(jb, bits, R, 2, i, t0);
    else if (T - t0 == 1) tile(jb, bits, R, 1, i, t0);
}

/* The rows [i, i1) for every token, at a code width known at compile time. Decode (T = 1) goes
 * one row at a time, a stream prefetched ahead; batches in tiles of RT rows × TT tokens. */
ALWAYS_INLINE void rows_at(const bl_qmat_job *jb, int bits, int64_t i, int64_t i1) {
    if (jb->T == 1) {
        for (; i < i1; i++) tile(jb, bits, 1, 1, i, 0);
        return;
    }
    for (; i + RT <= i1; i += RT) tokens(jb, bits, RT, i);
    for (; i < i1; i++) tokens(jb, bits, 1, i);
}

void bl_qmat_avx512(const bl_qmat_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->Q->m;
    const int64_t i = BL_QMAT_ROWS * u0, i1 = BL_QMAT_ROWS * u1 < m ? BL_QMAT_ROWS * u1 : m;
    if (j->Q->bits == 8) rows_at(j, 8, i, i1);
    else rows_at(j, 4, i, i1);
}
