/* AVX-512 VNNI group-quantized (q8_0 / q4_0) products with int8 inputs (BL_TABLES_I8).
 *
 * The f32 kernel (qmat_avx512.c) widens every 16 codes of a row to f32 weights and spends one FMA
 * per 16 weights and token; with several tokens the widening is redone per tile of 2 tokens, so
 * 8 tokens cost ~5× one. Here the inputs are rounded to int8 per group once per call
 * (bl_qmat_i8_prepare), a row's 64 codes of a block are unpacked once per tile of up to 8 tokens
 * (q4_0: one 32-byte load, VSHUFI64X2, a masked VPSRLW, an AND and a subtraction of 8; q8_0: an
 * XOR of the bytes) into signed codes, with the row's −128·Σ(c − 2^(bits−1)) per lane; each token
 * then takes one VPDPBUSD of its unsigned inputs q + 128 with them (64 products summed exactly
 * into 16 int32 lanes, starting from that offset, so the lanes hold Σ (c − 2^(bits−1))·q), one
 * VCVTDQ2PS, one VMULPS (row scale × input scale, per 32-column half) and one FMA per block: 4
 * operations and 2 loads per 64 weights and token.
 *
 * Numerics: those of bl_qmat_matmul_i8_ref (kernels/ref/qmat_ref.c), bit for bit — the same
 * prepared inputs, the same integer per lane, the same f32 product and FMA per lane and block in
 * block order, and the same reduction tree. A token's outputs do not depend on the tile it is
 * computed in, so neither on the batch nor on the thread count. Needs AVX512-VNNI (the driver
 * checks it). */
#include "kernels/qmat_kernels.h"

#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define RT 2          /* rows per tile */
#define TT 8          /* tokens per tile */
#define PF_BYTES 4096 /* decode prefetch distance in a row's codes (as qmat_avx512.c) */

/* A row's signed codes c − 2^(bits−1) of block b as the 64 bytes of the prepared inputs' order
 * (qmat_kernels.h); `full`: every byte of the block is in the row (else a masked load of the
 * rest; the bytes past it meet q = 0). */
ALWAYS_INLINE __m512i block_codes(const uint8_t *row, int bits, int64_t b, int64_t rb, bool full) {
    if (bits == 8) {
        const uint8_t *p = row + 64 * b;
        const int64_t left = rb - 64 * b;
        const __m512i c = full ? _mm512_loadu_si512(p)
                               : _mm512_maskz_loadu_epi8(left >= 64 ? ~0ULL : (1ULL << left) - 1ULL, p);
        return _mm512_xor_si512(c, _mm512_set1_epi8((char)0x80)); /* c − 128 as int8 */
    }
    const uint8_t *p = row + 32 * b;
    __m256i c;
    if (full) c = _mm256_loadu_si256((const __m256i *)(const void *)p);
    else {
        const int64_t left = rb - 32 * b;
        c = _mm256_maskz_loadu_epi8(left >= 32 ? ~0u : (__mmask32)((1u << left) - 1u), p);
    }
    __m512i v = _mm512_castsi256_si512(c);
    v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(1, 1, 0, 0)); /* bytes 0-15, 0-15, 16-31, 16-31 */
    v = _mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4);        /* high nibbles in lanes 1 and 3 */
    return _mm512_sub_epi8(_mm512_and_si512(v, _mm512_set1_epi8(0x0F)), _mm512_set1_epi8(8));
}

/* −128·Σ (c − 2^(bits−1)) per dword lane: what VPDPBUSD of the codes with qu = q + 128 adds
 * beyond Σ (c − 2^(bits−1))·q. */
ALWAYS_INLINE __m512i block_offset(__m512i cs) {
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), cs);
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7));
}

/* The row's scales of block b's two 32-column halves, one per 8 lanes (0 for a half past n). */
ALWAYS_INLINE __m512 block_scales(const float *d, int64_t b, int64_t n, int64_t gs, bool g32) {
    const int64_t j0 = 64 * b, j1 = j0 + 32;
    const float da = g32 ? d[2 * b] : d[j0 / gs];
    const float db = j1 < n ? (g32 ? d[2 * b + 1] : d[j1 / gs]) : 0.0f;
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(da), _mm512_set1_ps(db));
}

/* Lanes k + 8, then k + 4, k + 2, k + 1: the specification's tree. */
ALWAYS_INLINE float reduce16(__m512 a) {
    const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

/* Blocks [b0, b1) of R rows × TN tokens (from t0) into acc. */
ALWAYS_INLINE void blocks(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int TN, bool full,
                          const uint8_t *const rows[RT], const float *const dr[RT], int64_t t0,
                          int64_t b0, int64_t b1, __m512 acc[RT][TT]) {
    const int64_t n = jb->Q->n, gs = jb->Q->group, rb = bl_qmat_row_bytes(n, bits);
    const uint8_t *slot = bl_qmat_i8_slot(jb->work, jb->T, b0, t0);
    const int64_t step = jb->T * BL_QMAT_I8_SLOT; /* to the next block */
    for (int64_t b = b0; b < b1; b++, slot += step) {
        __m512i c[RT], c0[RT];
        __m512 dw[RT];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            _mm_prefetch((const char *)rows[r] + b * bits * 8 + PF_BYTES, _MM_HINT_T0);
            if (!(b & 7)) /* the scales: 64 bytes per 8 blocks when g32 */
                _mm_prefetch((const char *)(dr[r] + 2 * b) + PF_BYTES / 4, _MM_HINT_T0);
            c[r] = block_codes(rows[r], bits, b, rb, full);
            c0[r] = block_offset(c[r]);
            dw[r] = block_scales(dr[r], b, n, gs, g32);
        }
#pragma GCC unroll 8
        for (int t = 0; t < TN; t++) {
            const uint8_t *st = slot + t * BL_QMAT_I8_SLOT;
            const __m512i qv = _mm512_loadu_si512(st);
            const __m512 dxv = _mm512_loadu_ps(BL_QMAT_I8_DX(st));
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                const __m512i s = _mm512_dpbusd_epi32(c0[r], qv, c[r]);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dxv), acc[r][t]);
            }
        }
    }
}

/* Y[t0 + t][i0 + r] for r < R, t < TN (compile-time constants after inlining). */
ALWAYS_INLINE void tile(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int TN, int64_t i0,
                        int64_t t0) {
    const bl_qmat *Q = jb->Q;
    const int64_t n = Q->n, m = Q->m, nb = bl_qmat_i8_blocks(n);
    const int64_t rb = bl_qmat_row_bytes(n, bits), G = (n + Q->group - 1) / Q->group;
    /* blocks whose code bytes all lie in the row */
    const int64_t nfull = bits == 8 ? rb / 64 : rb / 32;
    const uint8_t *rows[RT];
    const float *dr[RT];
    __m512 acc[RT][TT];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        rows[r] = Q->qs + (i0 + r) * rb;
        dr[r] = Q->d + (i0 + r) * G;
#pragma GCC unroll 8
        for (int t = 0; t < TN; t++) acc[r][t] = _mm512_setzero_ps();
    }
    blocks(jb, bits, g32, R, TN, true, rows, dr, t0, 0, nfull < nb ? nfull : nb, acc);
    if (nfull < nb) blocks(jb, bits, g32, R, TN, false, rows, dr, t0, nfull, nb, acc);
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TN; t++) jb->Y[(t0 + t) * m + i0 + r] = reduce16(acc[r][t]);
}

/* Every token of the R rows from i: tiles of TT tokens, then 4, 2 and 1. */
ALWAYS_INLINE void tokens(const bl_qmat_i8_job *jb, int bits, bool g32, int R, int64_t i) {
    const int64_t T = jb->T;
    int64_t t0 = 0;
    for (; t0 + TT <= T; t0 += TT) tile(jb, bits, g32, R, TT, i, t0);
    if (T - t0 >= 4) tile(jb, bits, g32, R, 4, i, t0), t0 += 4;
    if (T - t0 >= 2) tile(jb, bits, g32, R, 2, i, t0), t0 += 2;
    if (T - t0 >= 1) tile(jb, bits, g32, R, 1, i, t0);
}

/* The rows [i, i1): RT at a time, one at a time for a single token (one stream of codes instead
 * of RT interleaved ones: 32000×4096 heads out of cache on Zen 5, alternated in one process, q4_0
 * 3.70 against 4.72 ms on one thread and 1.93 against 2.41 on two, q8_0 7.51 against 11.02 on
 * one; 32000×2048 q4_0 on two 0.98 against 1.18). */
ALWAYS_INLINE void rows_at(const bl_qmat_i8_job *jb, int bits, bool g32, int64_t i, int64_t i1) {
    if (jb->T > 1)
        for (; i + RT <= i1; i += RT) tokens(jb, bits, g32, RT, i);
    for (; i < i1; i++) tokens(jb, bits, g32, 1, i);
}

void bl_qmat_i8_avx512(const bl_qmat_i8_job *j, int64_t u0, int64_t u1) {
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
