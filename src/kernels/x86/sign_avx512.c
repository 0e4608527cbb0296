/* AVX-512 sign-matrix kernels.
 *
 * Y = X·Sᵀ (the inference product) uses lookup tables, in the spirit of the T-MAC / bitnet TL
 * kernels but kept in f32 so no accuracy is lost: for every group of 4 consecutive inputs the 16
 * possible signed sums ±x0±x1±x2±x3 are computed once per token and held in one zmm; a 4-bit
 * nibble of sign bits then picks the group's contribution with one VPERMPS. With the 16 rows of a
 * block in the 16 lanes (the packed layout of sign_kernels.h), a nibble per lane is just the packed
 * word shifted right, so 64 sign·input products cost a shift, a permute and an add, and no
 * horizontal sums are needed. Tables are built per column chunk (512 columns, 8 KiB per token) so
 * they stay in L1 and on the stack; a pass over a chunk serves up to TB tokens at once so that
 * batched inputs read each sign word once per TB tokens.
 *
 * Summation order, identical in every path and at every thread count: each output accumulates
 * its group sums in column order (group 0, 1, 2, ...), starting from +0; a group sum is
 * ((±x0 ± x1) ± x2) ± x3. The driver (dispatch.c) gives each thread a contiguous range of
 * 16-row blocks, which changes which thread computes a row but never how.
 *
 * Unprepared matrices use the same tables, gathering each block's words from the canonical rows
 * (VPGATHERDD), so they give bit-identical results, only slower (~3x for GEMV). The mask variant
 * (sums of the inputs selected by 16-bit k-masks, columns in lanes, no repacking) is kept as the
 * measured alternative: 4096×4096 GEMV 346 µs vs 86 µs for the tables, T = 64 24 ms vs 4.3 ms.
 * int8 tables (BL_TABLES_I8, T-MAC style) are the separate, opt-in sign_i8_avx512vbmi.c (and
 * sign_i8_avx2.c for CPUs without VBMI/VNNI): their error, up to ~4/127 of the largest group sum
 * per 32 inputs (and a little more), is far outside the 1e-5·Σ|x| these kernels keep, so they
 * never replace them silently. The transposed product is in sign_t_avx512.c. */
#include "kernels/sign_kernels.h"
#include "kernels/x86/lut_avx512.h"

#include <immintrin.h>
#include <string.h>

#include "bitllm/format.h"

/* Blocking, measured at 4096×4096 on one Zen 5 core (see tools/cmd_bench.c):
 * - GEMV: 4 row blocks per pass and the nibble loop fully unrolled: 86 µs (2 blocks: 104 µs,
 *   8 blocks: 99 µs; splitting each row's sum into two chains did not help, 88-90 µs).
 * - batches: 4 tokens × 2 row blocks per pass (3 blocks: same within noise), nibble loop unrolled
 *   4×: 4.2 ms at T = 64. Fully unrolled, GCC hoists the permutes far ahead of their adds and
 *   spills them (6.4 ms); 6 or 8 tokens per pass with 256-column chunks: 8.6 ms. */
#define TB_MAX 4                        /* tokens per pass: 4 tables of 8 KiB on the stack */
#define GROUPS (8 * BL_SB_CHUNK_WORDS)  /* 4-input groups per chunk */

/* Where a pass reads its sign words from: the packed buffer, or the canonical rows. */
typedef struct {
    const uint32_t *packed; /* NULL: gather from bits */
    const uint8_t *bits;
    int64_t m, n, row_bytes;
    bl_sb_geom g;
    bool far; /* prefetch far ahead too (lut_avx512.h) */
} src_t;

/* Word gw of the 16 rows of block b, row r in lane r, gathered from canonical rows. Rows past m
 * read as 0; the row's last word, which may be shorter than 4 bytes, is assembled bytewise so
 * nothing past the matrix is read. */
ALWAYS_INLINE __m512i gather_word(const src_t *s, int64_t b, int64_t gw) {
    const int64_t row0 = b * BL_SB_ROWS, left = s->m - row0;
    const __mmask16 rows = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    if (4 * gw + 4 <= s->row_bytes && s->row_bytes < (INT64_C(1) << 26)) {
        const int rb = (int)s->row_bytes;
        const __m512i off = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(rb));
        const uint8_t *base = s->bits + row0 * s->row_bytes + 4 * gw;
        return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, off, base, 1);
    }
    uint32_t tmp[BL_SB_ROWS] __attribute__((aligned(64)));
    for (int r = 0; r < BL_SB_ROWS; r++)
        tmp[r] = r < left ? bl_sb_canon_word(s->bits + (row0 + r) * s->row_bytes, s->n, gw) : 0;
    return _mm512_load_si512(tmp);
}

/* acc + g, rounded once. Half the accumulators use VFMADD (g·1 + acc, the same single rounding
 * of the same exact sum, so bit-identical to VADDPS) to spread the adds over the FMA pipes as
 * well as the FADD pipes: on Zen 5 the permute + add stream of the batched passes is bound by
 * the two FADD pipes, and alternating the two forms ran a 4-token × 4-block inner loop 22-25 %
 * faster in isolation (0.24 against 0.19 ns per permute + accumulate). */
ALWAYS_INLINE __m512 acc_add(__m512 acc, __m512 g, int k) {
    return (k & 1) ? _mm512_fmadd_ps(g, _mm512_set1_ps(1.0f), acc) : _mm512_add_ps(acc, g);
}

/* One nibble step: group q of word w for TB tokens and R row blocks; then the next nibble. */
ALWAYS_INLINE void lut_step(__m512i *W, const float *tq, __m512 *acc, int TB, int R) {
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++) {
        const __m512 tv = _mm512_load_ps(tq + t * GROUPS * 16);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            acc[t * R + r] = acc_add(acc[t * R + r], _mm512_permutexvar_ps(W[r], tv), t + r);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) W[r] = _mm512_srli_epi32(W[r], 4);
}

/* Adds chunk c's contribution for TB tokens and R consecutive row blocks from b into
 * acc[t·R + r]. tab holds TB tables of GROUPS·16 floats. */
ALWAYS_INLINE void lut_chunk(const src_t *s, int64_t c, int64_t b, const float *tab, __m512 *acc,
                             int TB, int R, bool gather) {
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = gather ? NULL : s->packed + bl_sb_offset(&s->g, c, b, 0);
    for (int64_t w = 0; w < cw; w++) {
        __m512i W[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            W[r] = gather ? gather_word(s, b + r, c * BL_SB_CHUNK_WORDS + w)
                          : _mm512_load_si512(P + (r * cw + w) * BL_SB_ROWS);
        if (!gather)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) prefetch_packed(P + (r * cw + w) * BL_SB_ROWS, s->far);
        const float *tw = tab + w * 8 * 16;
        if (TB == 1) {
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) lut_step(W, tw + q * 16, acc, TB, R);
        } else {
#pragma GCC unroll 4
            for (int q = 0; q < 8; q++) lut_step(W, tw + q * 16, acc, TB, R);
        }
    }
}

/* One pass: R row blocks from b, TB tokens from t0, chunk c; partial sums live in Y between
 * chunks (chunk 0 starts from +0). */
ALWAYS_INLINE void lut_pass(const src_t *s, int64_t c, int64_t b, const float *tab, float *Y,
                            const float *h, int64_t t0, int TB, int R, bool gather) {
    __m512 acc[16];
    __mmask16 mk[8];
    pass_masks(s->m, b, R, mk);
    pass_load(Y, s->m, c, b, t0, TB, R, mk, acc);
    lut_chunk(s, c, b, tab, acc, TB, R, gather);
    pass_store(Y, s->m, b, t0, TB, R, mk, acc, h);
}

/* Blocks [b0, b1) of every token, chunk by chunk. The register blocking (R row blocks for TB
 * tokens) only groups independent accumulations, so it does not change any result. */
#define PASSES(TB, R)                                                                  \
    for (; b + (R) <= b1; b += (R)) lut_pass(s, c, b, tab, Y, h, t0, (TB), (R), gather); \
    for (; b < b1; b++) lut_pass(s, c, b, tab, Y, h, t0, (TB), 1, gather)

ALWAYS_INLINE void lut_range(const src_t *s, const float *X, const float *g, const float *hs,
                             int64_t T, float *Y, int64_t b0, int64_t b1, bool gather) {
    float own[TB_MAX * GROUPS * 16] __attribute__((aligned(64)));
    for (int64_t c = 0; c < s->g.chunks; c++) {
        const int64_t groups = 8 * bl_sb_chunk_words(&s->g, c);
        const float *h = c == s->g.chunks - 1 ? hs : NULL; /* scaled after the last chunk */
        for (int64_t t0 = 0; t0 < T; t0 += TB_MAX) {
            const int tb = T - t0 < TB_MAX ? (int)(T - t0) : TB_MAX;
            const float *tab = own;
            for (int t = 0; t < tb; t++)
                build_tables(X + (t0 + t) * s->n, g, s->n, c * BL_SB_CHUNK_COLS, groups,
                             own + t * GROUPS * 16);
            int64_t b = b0;
            switch (tb) {
            case 1: PASSES(1, 4); break;
            case 2: PASSES(2, 4); break;
            case 3: PASSES(3, 4); break;
            default: PASSES(4, 4); break;
            }
        }
    }
}
#undef PASSES

void bl_sign_avx512_lut(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->bits, S->m, S->n, bl_sign_row_bytes(S->n),
                     bl_sb_geometry(S->m, S->n), bl_cpu_is_intel()};
    if (j->packed)
        lut_range(&s, j->in, j->in_scale, j->out_scale, j->T, j->out, b0, b1, false);
    else
        lut_range(&s, j->in, j->in_scale, j->out_scale, j->T, j->out, b0, b1, true);
}

/* ---- mask variant (alternative, canonical layout, columns in lanes) ----
 * y_i = Σ_j x_j − 2·Σ_{j: S[i][j] = −1} x_j: each 16-bit slice of a row is a k-mask that adds the
 * selected inputs with one masked VADDPS. Four rows share each load of x. */

/* Up to 16 sign bits of a row starting at column 16·s, bits past column n cleared. */
ALWAYS_INLINE __mmask16 row_mask(const uint8_t *row, int64_t n, int64_t s) {
    int64_t left = n - 16 * s;
    if (left >= 16) {
        uint16_t k;
        memcpy(&k, row + 2 * s, 2);
        return (__mmask16)k;
    }
    uint32_t k = row[2 * s];
    if (left > 8) k |= (uint32_t)row[2 * s + 1] << 8;
    return (__mmask16)(k & ((1u << left) - 1u));
}

ALWAYS_INLINE void mask_rows(const uint8_t *bits, int64_t row_bytes, int64_t n, const float *x,
                             float tot, int64_t i, float *y, int R) {
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    const int64_t steps = (n + 15) / 16;
    for (int64_t s = 0; s < steps; s++) {
        int64_t left = n - 16 * s;
        const __mmask16 valid = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(valid, x + 16 * s);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __mmask16 k = row_mask(bits + (i + r) * row_bytes, n, s);
            acc[r] = _mm512_mask_add_ps(acc[r], k, acc[r], xv);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) y[i + r] = tot - 2.0f * _mm512_reduce_add_ps(acc[r]);
}

void bl_sign_avx512_mask(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const int64_t m = S->m, n = S->n, row_bytes = bl_sign_row_bytes(n);
    const int64_t i1 = BL_SB_ROWS * b1 < m ? BL_SB_ROWS * b1 : m;
    for (int64_t t = 0; t < j->T; t++) {
        const float *x = j->in + t * n;
        float *y = j->out + t * m;
        int64_t i = BL_SB_ROWS * b0;
        for (; i + 4 <= i1; i += 4) mask_rows(S->bits, row_bytes, n, x, j->tot[t], i, y, 4);
        for (; i < i1; i++) mask_rows(S->bits, row_bytes, n, x, j->tot[t], i, y, 1);
    }
}
