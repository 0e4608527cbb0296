/* AVX2 group-quantized (q8_0 / q4_0) products with int8 inputs (BL_TABLES_I8): the kernel of
 * qmat_i8_avx512.c without VPDPBUSD. A block's 16 dword lanes are two ymm vectors, one per
 * 32-column half (lanes 8h..8h+7 of the specification in half h), so a half's scale is one
 * broadcast. What changes is how each lane's exact integer s = Σ (c − 2^(bits−1))·q over its 4
 * bytes is formed: VPMADDUBSW sums pairs of u8 × s8 products into int16 with saturation, exact
 * only while a pair stays within ±32767, so
 *   q4_0: the codes c − 8 lie in [−8, 7], and VPMADDUBSW of the unsigned inputs qu = q + 128 with
 *         them is at most 2·255·8 = 4080 per pair: exact. Subtracting 128·(pair of c − 8) (a
 *         row's, VPMADDUBSW of 128 with the codes) leaves the pair's Σ (c − 8)·q ∈ [−2048, 2048]
 *         in int16, and VPMADDWD with ones sums a lane's two pairs into int32. Decoding (one
 *         token, several rows), the row's work is smaller the other way round: the codes c
 *         (0..15) unsigned against q = qu − 128 signed (at most 2·15·128 per pair), minus the
 *         token's 8·(pair of q).
 *   q8_0: c − 128 and q reach −128, so a pair of products can reach 2·128·128 = 32768 and
 *         VPMADDUBSW would saturate. Both are sign-extended to int16 instead, the even bytes of
 *         each word (VPSLLW 8, VPSRAW 8) and the odd ones (VPSRAW 8) apart, and VPMADDWD of
 *         each (int16 × int16 products summed in pairs into int32, exact) gives a lane's bytes
 *         4l + {0, 2} and 4l + {1, 3}; one VPADDD adds them.
 * Any exact route gives the same integer, so the decode and batch routes agree bit for bit. Then
 * per lane, as the specification: VCVTDQ2PS, the f32 product (row scale × input scale) and one
 * FMA per block, blocks in order, and the specification's reduction tree (lanes k + 8, k + 4,
 * k + 2, k + 1). A token's outputs do not depend on the tile it is computed in, so neither on
 * the batch nor on the thread count, and they equal bl_qmat_matmul_i8_ref's bit for bit.
 *
 * Decode (T = 1) goes DR rows at a time, the code streams prefetched as qmat_avx512.c does;
 * batches use tiles of RT rows × TT tokens, a row's codes of a half unpacked once per tile, in
 * blocks of RB rows that take the tokens in chunks of about CHUNK_BYTES of prepared inputs (kept
 * in L2 while the block's rows pass over them).
 *
 * One 32000×2048 head, one thread of a Zen 3 core (CPU time, best of 10-40, the host shared):
 * q4_0 T = 1 2.4-2.9 ms (its codes and scales are 41 MB: ~17 GB/s, what one core streams), T = 8
 * 1.9 ms per token; q8_0 5.4-6.2 and 2.8 ms (the specification: 215 and 152 ms at T = 1). Tiles
 * of 2 rows × 4 tokens hold 16 accumulators, more than the registers, yet beat 1 × 4 (q4_0
 * T = 8 1.9 against 2.1 ms per token, T = 64 1.9 against 2.4; q8_0 T = 64 2.1 against 2.8,
 * though T = 8 2.8 against 2.5); without the decode prefetch q4_0 took 5.4 ms. */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define RT 2          /* rows per batched tile */
#define TT 4          /* tokens per batched tile */
#define DR 2          /* rows per decode tile */
#define PF_BYTES 4096 /* decode prefetch distance in a row's codes (as qmat_avx512.c) */
#define RB 16         /* rows per batch block */
#define CHUNK_BYTES (128 * 1024) /* prepared inputs per token chunk of a batch block */

/* The 32 code bytes of half h of block b in the prepared inputs' order (qmat_kernels.h), as
 * stored (unsigned codes; q4_0: one nibble per byte). `full`: every byte lies in the row (else a
 * zero-padded copy; the bytes past the row meet q = 0). */
ALWAYS_INLINE __m256i half_codes(const uint8_t *row, int bits, int64_t b, int h, int64_t rb,
                                 bool full) {
    if (bits == 8) {
        const int64_t at = 64 * b + 32 * h;
        if (full) return _mm256_loadu_si256((const __m256i *)(const void *)(row + at));
        uint8_t buf[32] = {0};
        if (rb > at) memcpy(buf, row + at, (size_t)(rb - at < 32 ? rb - at : 32));
        return _mm256_loadu_si256((const __m256i *)(const void *)buf);
    }
    const int64_t at = 32 * b + 16 * h;
    __m128i c;
    if (full) c = _mm_loadu_si128((const __m128i *)(const void *)(row + at));
    else {
        uint8_t buf[16] = {0};
        if (rb > at) memcpy(buf, row + at, (size_t)(rb - at < 16 ? rb - at : 16));
        c = _mm_loadu_si128((const __m128i *)(const void *)buf);
    }
    /* [low nibbles of the 16 bytes | their high nibbles]: the dwords of the upper 128 bits shift
     * right by 4, and the AND keeps each byte's own low nibble */
    const __m256i v = _mm256_broadcastsi128_si256(c);
    const __m256i sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    return _mm256_and_si256(_mm256_srlv_epi32(v, sh), _mm256_set1_epi8(0x0F));
}

/* A row's codes of one half, ready for lane_sums: q4_0 batch: a = c − 8, b = 128·(pair of
 * c − 8) in int16; q4_0 decode: a = c; q8_0: a, b = the even and odd bytes of c − 128 as int16. */
typedef struct {
    __m256i a, b;
} rcodes;

/* A token's inputs of one half: q4_0 batch: qu; q4_0 decode: q = qu − 128 and 8·(pair of q) in
 * int16; q8_0: the even and odd bytes of q as int16. */
typedef struct {
    __m256i a, b;
} tinputs;

ALWAYS_INLINE __m256i even_i16(__m256i v) { return _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8); }
ALWAYS_INLINE __m256i odd_i16(__m256i v) { return _mm256_srai_epi16(v, 8); }

ALWAYS_INLINE rcodes row_codes(__m256i c, int bits, bool dec) {
    rcodes r;
    if (bits == 8) {
        const __m256i cs = _mm256_xor_si256(c, _mm256_set1_epi8((char)0x80)); /* c − 128 */
        r.a = even_i16(cs);
        r.b = odd_i16(cs);
    } else if (dec) {
        r.a = c;
        r.b = _mm256_setzero_si256();
    } else {
        r.a = _mm256_sub_epi8(c, _mm256_set1_epi8(8));
        r.b = _mm256_maddubs_epi16(_mm256_set1_epi8((char)0x80), r.a);
    }
    return r;
}

ALWAYS_INLINE tinputs token_inputs(const uint8_t *slot, int h, int bits, bool dec) {
    const __m256i qu = _mm256_loadu_si256((const __m256i *)(const void *)(slot + 32 * h));
    tinputs q;
    if (bits == 8) {
        const __m256i qs = _mm256_xor_si256(qu, _mm256_set1_epi8((char)0x80)); /* q */
        q.a = even_i16(qs);
        q.b = odd_i16(qs);
    } else if (dec) {
        q.a = _mm256_xor_si256(qu, _mm256_set1_epi8((char)0x80));
        q.b = _mm256_maddubs_epi16(_mm256_set1_epi8(8), q.a);
    } else {
        q.a = qu;
        q.b = _mm256_setzero_si256();
    }
    return q;
}

/* s per dword lane: Σ (c − 2^(bits−1))·q over its 4 bytes, exact (above). */
ALWAYS_INLINE __m256i lane_sums(rcodes c, tinputs q, int bits, bool dec) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (bits == 8)
        return _mm256_add_epi32(_mm256_madd_epi16(c.a, q.a), _mm256_madd_epi16(c.b, q.b));
    if (dec) return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(c.a, q.a), q.b), ones);
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q.a, c.a), c.b), ones);
}

/* The row's scale of half h of block b (0 for a half past n). */
ALWAYS_INLINE __m256 half_scale(const float *d, int64_t b, int h, int64_t n, int64_t gs, bool g32) {
    const int64_t j0 = 64 * b + 32 * h;
    if (h == 0) return _mm256_broadcast_ss(g32 ? d + 2 * b : d + j0 / gs);
    return j0 < n ? _mm256_broadcast_ss(g32 ? d + 2 * b + 1 : d + j0 / gs) : _mm256_setzero_ps();
}

/* Lanes k + 8 (the other half), then k + 4, k + 2, k + 1: the specification's tree. */
ALWAYS_INLINE float reduce16(__m256 a0, __m256 a1) {
    const __m256 h8 = _mm256_add_ps(a0, a1);
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

/* Blocks [b0, b1) of R rows × TN tokens (from t0) into acc. */
ALWAYS_INLINE void blocks(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int TN, bool full,
                          const uint8_t *const rows[], const float *const dr[], int64_t t0,
                          int64_t b0, int64_t b1, __m256 acc[][TT][2]) {
    enum { RMAX = DR > RT ? DR : RT };
    const bool dec = TN == 1;
    const int64_t n = jb->Q->n, gs = jb->Q->group, rb = bl_qmat_row_bytes(n, bits);
    const uint8_t *slot = bl_qmat_i8_slot(jb->work, jb->T, b0, t0);
    const int64_t step = jb->T * BL_QMAT_I8_SLOT; /* to the next block */
    for (int64_t b = b0; b < b1; b++, slot += step) {
        if (dec)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)rows[r] + b * bits * 8 + PF_BYTES, _MM_HINT_T0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            rcodes c[RMAX];
            __m256 dw[RMAX];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                c[r] = row_codes(half_codes(rows[r], bits, b, h, rb, full), bits, dec);
                dw[r] = half_scale(dr[r], b, h, n, gs, g32);
            }
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++) {
                const uint8_t *st = slot + t * BL_QMAT_I8_SLOT;
                const tinputs q = token_inputs(st, h, bits, dec);
                const __m256 dx = _mm256_loadu_ps(BL_QMAT_I8_DX(st) + 8 * h);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    const __m256i s = lane_sums(c[r], q, bits, dec);
                    acc[r][t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx),
                                                   acc[r][t][h]);
                }
            }
        }
    }
}

/* Y[t0 + t][i0 + r] for r < R, t < TN (compile-time constants after inlining). */
ALWAYS_INLINE void tile(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int TN, int64_t i0,
                        int64_t t0) {
    enum { RMAX = DR > RT ? DR : RT };
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, nb = bl_qmat_i8_blocks(n);
    const int64_t rb = bl_qmat_row_bytes(n, bits), G = (n + Q->group - 1) / Q->group;
    /* blocks whose code bytes all lie in the row */
    const int64_t nfull = bits == 8 ? rb / 64 : rb / 32;
    const uint8_t *rows[RMAX];
    const float *dr[RMAX];
    __m256 acc[RMAX][TT][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        rows[r] = Q->qs + (i0 + r) * rb;
        dr[r] = Q->d + (i0 + r) * G;
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    }
    blocks(jb, bits, g32, R, TN, true, rows, dr, t0, 0, nfull < nb ? nfull : nb, acc);
    if (nfull < nb) blocks(jb, bits, g32, R, TN, false, rows, dr, t0, nfull, nb, acc);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            jb->Y[(t0 + t) * m + i0 + r] = reduce16(acc[r][t][0], acc[r][t][1]);
}

/* Tokens [t0, t1) of the R rows from i: tiles of TT tokens, then the rest. */
ALWAYS_INLINE void tokens(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int64_t i,
                          int64_t t0, int64_t t1) {
    for (; t0 + TT <= t1; t0 += TT) tile(jb, bits, g32, R, TT, i, t0);
    const int64_t left = t1 - t0;
    if (TT > 3 && left == 3) tile(jb, bits, g32, R, 3, i, t0);
    else if (TT > 2 && left == 2) tile(jb, bits, g32, R, 2, i, t0);
    else if (left == 1) tile(jb, bits, g32, R, 1, i, t0);
}

/* Decode (T = 1): DR rows at a time. Batches: blocks of RB rows, each taking the tokens in chunks
 * whose prepared inputs (about CHUNK_BYTES) stay in L2 while the block's rows pass over them. */
ALWAYS_INLINE void rows_at(const bl_qmat_i8_job *jb, int bits, bool g32, int64_t i, int64_t i1) {
    if (jb->T == 1) {
        for (; i + DR <= i1; i += DR) tile(jb, bits, g32, DR, 1, i, 0);
        for (; i < i1; i++) tile(jb, bits, g32, 1, 1, i, 0);
        return;
    }
    const int64_t T = jb->T;
    const int64_t per = CHUNK_BYTES / (bl_qmat_i8_blocks(jb->Q->n) * BL_QMAT_I8_SLOT) / TT * TT;
    const int64_t tc = per > TT ? per : TT;
    for (; i < i1; i += RB) {
        const int64_t ib1 = i + RB < i1 ? i + RB : i1;
        for (int64_t t0 = 0; t0 < T; t0 += tc) {
            const int64_t t1 = t0 + tc < T ? t0 + tc : T;
            int64_t r = i;
            for (; r + RT <= ib1; r += RT) tokens(jb, bits, g32, RT, r, t0, t1);
            for (; r < ib1; r++) tokens(jb, bits, g32, 1, r, t0, t1);
        }
    }
}

void bl_qmat_i8_avx2(const bl_qmat_i8_job *j, int64_t u0, int64_t u1) {
    const int64_t m = j->Q->m;
    const int64_t i = BL_QMAT_ROWS * u0, i1 = BL_QMAT_ROWS * u1 < m ? BL_QMAT_ROWS * u1 : m;
    const bool g32 = j->Q->group == 32;
    if (j->Q->bits == 8) {
        if (g32) rows_at(j, 8, true, i, i1);
        else rows_at(j, 8, false, i, i1);
    } else {
        if (g32) rows_at(j, 4, true, i, i1);
        else rows_at(j, 4, false, i, i1);
    }
}
