/* AVX2 group-quantized (qsym q8_0 / q4_0) products: the design of qmat_avx512.c on 8-lane
 * vectors. Each 8 codes of a row become their dequantized weights d·(c − 2^(b−1)), exact in f32
 * and so equal to the reference's however they are formed: the code zero-extended to a dword
 * (q8_0: VPMOVZXBD from memory; q4_0: the row's 4 code bytes broadcast to every dword, VPSRLVD by
 * 4·k in lane k and an AND with 15, so lane k holds code k in column order), VCVTDQ2PS, then one
 * FMA with the group's scale and offset, c·d − 2^(b−1)·d (c·d and the sum are exact: c has at
 * most 8 bits, d an FP16 significand, so the FMA's one rounding changes nothing). 16-entry
 * tables (the AVX-512 kernel's q4_0 route) do not fit an 8-lane VPERMPS. The scale and offset
 * are set up once per row and group, the weights once per row and step, then one FMA per token.
 * No dequantized copy of the matrix is made: at T = 1 the kernel reads 8.5 (q8_0) or 4.5 (q4_0)
 * bits per weight.
 *
 * Summation order of every output, the same in every path: two accumulators, lane k of
 * accumulator u summing (by FMA, in column order) the columns c with c mod 16 = 8u + k; then
 * a0 + a1 and a fixed-order horizontal add (lanes k + 4, k + 2, k + 1: hsum). The order depends
 * neither on the tiling, nor on the batch size, nor on the thread count, so a token's logits are
 * bit-identical alone or batched. It is not the AVX-512 kernel's order (16 lanes), so the two
 * levels can differ in the last bits, as the dense kernels do.
 *
 * Decode (T = 1) goes DR rows at a time (4 accumulator chains), each row's codes a stream
 * prefetched PF_BYTES ahead (one prefetch per 64 code bytes). Batches use tiles of RT rows × TT
 * tokens: the weights are formed once per tile and step, then each token costs one FMA (x from
 * memory) per 8 weights; 1 row × 4 tokens keeps the 8 accumulators, the weights and the row's
 * scale and offset within the 16 ymm registers. Batch rows go in blocks of RB, each taking the
 * tokens in chunks of about CHUNK_BYTES of inputs, so that a chunk stays in L2 while the block's
 * rows pass over it (a row reads every token's inputs: at T = 64 and n = 2048 that is 512 KiB).
 * Groups (a multiple of 16) start at an even step, so a group's steps go in (u = 0, u = 1) pairs
 * and only the row's last < 16 columns need care; the last < 8 are read through a zero-padded
 * copy of the codes and a masked load of x (AVX2 has no masked byte load), their weights zeroed.
 *
 * One 32000×2048 head, one thread of a Zen 3 core (CPU time, best of 10-60, the host shared):
 * q4_0 T = 1 4.9-5.1 ms, T = 8 2.9-3.0 ms per token; q8_0 5.0-6.2 and 3.1-3.2 ms (the scalar
 * reference: 149 and 206 ms). Tried: decode tiles of 4 rows (6.0 ms q4_0: spills), no prefetch
 * (7.3-7.6 ms), batch tiles of 2 rows × 4 tokens (3.35 ms per token), 1 × 6 and 1 × 8 (4.6,
 * 5.0: spills); without the row blocks T = 64 took 3.5-3.6 ms per token, with them 3.2-3.3. */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define U 2           /* accumulators per output */
#define RT 1          /* rows per batched tile */
#define TT 4          /* tokens per batched tile */
#define DR 2          /* rows per decode tile */
#define PF_BYTES 4096 /* decode prefetch distance in the code stream (as qmat_avx512.c) */
#define RB 16         /* rows per batch block */
#define CHUNK_BYTES (128 * 1024) /* inputs per token chunk of a batch block */

/* The group's scale and offset: d and −2^(bits−1)·d (exact: a power of two times d). */
typedef struct {
    __m256 d, off;
} gscale;

ALWAYS_INLINE gscale group_scale(const float *dp, int bits) {
    gscale g;
    g.d = _mm256_broadcast_ss(dp);
    g.off = _mm256_mul_ps(g.d, _mm256_set1_ps(bits == 8 ? -128.0f : -8.0f));
    return g;
}

/* Lanes below `left` set (0 ≤ left ≤ 8). */
ALWAYS_INLINE __m256i lane_mask(int64_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 dequantized weights of a row from column j (a multiple of 8); past `left` columns 0 unless
 * full. */
ALWAYS_INLINE __m256 widen(const uint8_t *row, int bits, const gscale *g, int64_t j, int64_t left,
                           bool full) {
    __m256i c;
    if (bits == 8) {
        __m128i b;
        if (full) b = _mm_loadl_epi64((const __m128i *)(const void *)(row + j));
        else {
            uint64_t v = 0;
            memcpy(&v, row + j, (size_t)left);
            b = _mm_cvtsi64_si128((long long)v);
        }
        c = _mm256_cvtepu8_epi32(b);
    } else {
        uint32_t b = 0;
        memcpy(&b, row + (j >> 1), full ? 4 : (size_t)(left + 1) / 2);
        /* two codes per byte, low nibble first: lane k takes the dword's nibble k */
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)b), sh),
                             _mm256_set1_epi32(0x0F));
    }
    const __m256 w = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), g->d, g->off);
    return full ? w : _mm256_and_ps(w, _mm256_castsi256_ps(lane_mask(left)));
}

/* Columns [j, j+8) of R rows into acc[·][·][u] for TN tokens. */
ALWAYS_INLINE void step(const uint8_t *const rows[], int bits, const gscale g[], int R, int TN,
                        const float *x0, int64_t n, int64_t j, int64_t left, bool full,
                        __m256 acc[][TT][U], int u) {
    __m256 w[DR > RT ? DR : RT];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w[r] = widen(rows[r], bits, &g[r], j, left, full);
#pragma GCC unroll 4
    for (int t = 0; t < TN; t++) {
        const float *x = x0 + t * n + j;
        const __m256 xv = full ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lane_mask(left));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t][u] = _mm256_fmadd_ps(w[r], xv, acc[r][t][u]);
    }
}

/* Columns [j, j+16) (j a multiple of 16): the (u = 0, u = 1) pair of steps; decoding, the code
 * streams prefetched PF_BYTES ahead once per 64 code bytes. */
ALWAYS_INLINE void pair(const uint8_t *const rows[], int bits, const gscale g[], int R, int TN,
                        const float *x0, int64_t n, int64_t j, __m256 acc[][TT][U]) {
    if (TN == 1 && !(j & (512 / bits - 1)))
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            _mm_prefetch((const char *)rows[r] + j * bits / 8 + PF_BYTES, _MM_HINT_T0);
    step(rows, bits, g, R, TN, x0, n, j, 8, true, acc, 0);
    step(rows, bits, g, R, TN, x0, n, j + 8, 8, true, acc, 1);
}

ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Y[t0+t][i0+r] for r < R, t < TN (compile-time constants after inlining). Columns go group by
 * group; a step's accumulator is its column's, (j / 8) mod 2. */
ALWAYS_INLINE void tile(const bl_qmat_job *jb, int bits, int R, int TN, int64_t i0, int64_t t0) {
    enum { RMAX = DR > RT ? DR : RT };
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, rb = bl_qmat_row_bytes(n, bits), gs = Q->group;
    const int64_t G = (n + gs - 1) / gs;
    __m256 acc[RMAX][TT][U];
    const uint8_t *rows[RMAX];
    const float *dr[RMAX];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        rows[r] = Q->qs + (i0 + r) * rb;
        dr[r] = Q->d + (i0 + r) * G;
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
#pragma GCC unroll 2
            for (int u = 0; u < U; u++) acc[r][t][u] = _mm256_setzero_ps();
    }
    const float *x0 = jb->X + t0 * n;
    int64_t g = 0, j = 0;
    if (gs == 32) /* the q8_0 / q4_0 default: two pairs of steps per group */
        for (; j + 32 <= n; j += 32, g++) {
            gscale sc[RMAX];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) sc[r] = group_scale(dr[r] + g, bits);
            pair(rows, bits, sc, R, TN, x0, n, j, acc);
            pair(rows, bits, sc, R, TN, x0, n, j + 16, acc);
        }
    for (; g < G; g++) {
        gscale sc[RMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) sc[r] = group_scale(dr[r] + g, bits);
        const int64_t end = j + gs < n ? j + gs : n;
        for (; j + 16 <= end; j += 16) pair(rows, bits, sc, R, TN, x0, n, j, acc);
        if (j < end) { /* the row's last < 16 columns (j is a multiple of 16) */
            if (j + 8 <= end) {
                step(rows, bits, sc, R, TN, x0, n, j, 8, true, acc, 0);
                j += 8;
                if (j < end) step(rows, bits, sc, R, TN, x0, n, j, end - j, false, acc, 1);
            } else {
                step(rows, bits, sc, R, TN, x0, n, j, end - j, false, acc, 0);
            }
            j = end;
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            jb->Y[(t0 + t) * m + i0 + r] = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
}

/* Tokens [t0, t1) of the R rows from i: tiles of TT tokens, then the rest. */
ALWAYS_INLINE void tokens(const bl_qmat_job *jb, int bits, int R, int64_t i, int64_t t0,
                          int64_t t1) {
    for (; t0 + TT <= t1; t0 += TT) tile(jb, bits, R, TT, i, t0);
    const int64_t left = t1 - t0;
    if (TT > 3 && left == 3) tile(jb, bits, R, 3, i, t0);
    else if (TT > 2 && left == 2) tile(jb, bits, R, 2, i, t0);
    else if (left == 1) tile(jb, bits, R, 1, i, t0);
}

/* The rows [i, i1) for every token, at a code width known at compile time. Decode (T = 1) goes
 * DR rows at a time. Batches go in blocks of RB rows, each taking the tokens in chunks whose
 * inputs (about CHUNK_BYTES) stay in L2 while the block's rows pass over them, instead of every
 * row streaming all T tokens' inputs from L3. */
ALWAYS_INLINE void rows_at(const bl_qmat_job *jb, int bits, int64_t i, int64_t i1) {
    if (jb->T == 1) {
        for (; i + DR <= i1; i += DR) tile(jb, bits, DR, 1, i, 0);
        for (; i < i1; i++) tile(jb, bits, 1, 1, i, 0);
        return;
    }
    const int64_t T = jb->T, per = CHUNK_BYTES / (4 * jb->Q->n) / TT * TT;
    const int64_t tc = per > TT ? per : TT;
    for (; i < i1; i += RB) {
        const int64_t ib1 = i + RB < i1 ? i + RB : i1;
        for (int64_t t0 = 0; t0 < T; t0 += tc) {
            const int64_t t1 = t0 + tc < T ? t0 + tc : T;
            int64_t r = i;
            for (; r + RT <= ib1; r += RT) tokens(jb, bits, RT, r, t0, t1);
            for (; r < ib1; r++) tokens(jb, bits, 1, r, t0, t1);
        }
    }
}

void bl_qmat_avx2(const bl_qmat_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->Q->m;
    const int64_t i = BL_QMAT_ROWS * u0, i1 = BL_QMAT_ROWS * u1 < m ? BL_QMAT_ROWS * u1 : m;
    if (j->Q->bits == 8) rows_at(j, 8, i, i1);
    else rows_at(j, 4, i, i1);
}
