/* AVX2 sign-matrix kernels: the design of sign_avx512.c on 8-lane vectors.
 *
 * Y = X·Sᵀ with f32 lookup tables and rows in lanes (packed layout of sign_kernels.h, a 16-row
 * block handled as two 8-row halves). AVX2's VPERMPS indexes 8 entries with the low 3 bits of
 * each lane, so inputs go in groups of 3: a 32-bit word of sign bits is 10 groups of 3 columns
 * and one of 2, and each group costs a shift, a permute and an add. Measured against 4-bit
 * groups (two 8-entry permutes and a VBLENDVPS on the nibble's top bit): 235 vs 262 µs for GEMV
 * 4096×4096 and 11.2 vs 14.6 ms at T = 64, one thread.
 *
 * Summation order: per output, group sums ((±x0 ± x1) ± x2) added in column order from +0;
 * the driver gives threads whole 16-row blocks, so results do not depend on the thread count. (Not
 * bit-identical to AVX-512, whose groups have 4 inputs.) Unprepared matrices gather words from
 * the canonical rows (VPGATHERDD) and give the same bits as prepared ones. The mask variant
 * (columns in lanes, bits turned into lane selects with VPSLLVD) is the measured alternative.
 * The int8 tables (BL_TABLES_I8, opt-in, other numerics) are sign_i8_avx2.c. */
#include "kernels/sign_kernels.h"

#include <immintrin.h>
#include <string.h>

#include "bitllm/format.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* Blocking, measured at 4096×4096 on one Zen 5 core: GEMV 4 halves (32 rows) per pass with the
 * group loop fully unrolled, 235 µs (2 halves: 257 µs); batches 4 tokens × 2 halves, group loop
 * unrolled 2×, 11.2 ms at T = 64 (3 halves or 2 tokens × 4 halves: 13-14.6 ms; the 16 ymm
 * registers are the limit). */
#define TB_MAX 4
#define GPW 11                              /* 3-bit groups per 32-bit word: 10 of 3, 1 of 2 */
#define GROUPS (GPW * BL_SB_CHUNK_WORDS)    /* groups per chunk */

/* Table of a group of 3 inputs: entry e = Σ_b (bit b of e ? −x_b : +x_b), added in order b = 0..2. */
ALWAYS_INLINE __m256 group_table(const float v[3]) {
    const int M = INT32_MIN;
    const __m256i s0 = _mm256_setr_epi32(0, M, 0, M, 0, M, 0, M);
    const __m256i s1 = _mm256_setr_epi32(0, 0, M, M, 0, 0, M, M);
    const __m256i s2 = _mm256_setr_epi32(0, 0, 0, 0, M, M, M, M);
#define SIGNED(k, s) _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(_mm256_set1_ps(v[k])), s))
    return _mm256_add_ps(_mm256_add_ps(SIGNED(0, s0), SIGNED(1, s1)), SIGNED(2, s2));
#undef SIGNED
}

/* Tables for `words` words from column col0 of token x: group g of word w covers columns
 * 32w + 3g .. 32w + 3g + 2, except g = 10 which has only columns 30, 31 (its third input is 0,
 * and its index never has bit 2 set). Inputs past n are 0. */
static void build_tables(const float *x, int64_t n, int64_t col0, int64_t words, float *tab) {
    for (int64_t w = 0; w < words; w++)
        for (int g = 0; g < GPW; g++) {
            const int64_t j = col0 + 32 * w + 3 * g;
            const int cnt = g == GPW - 1 ? 2 : 3;
            float v[3] = {0.0f, 0.0f, 0.0f};
            for (int b = 0; b < cnt && j + b < n; b++) v[b] = x[j + b];
            _mm256_store_ps(tab + 8 * (w * GPW + g), group_table(v));
        }
}

typedef struct {
    const uint32_t *packed; /* NULL: gather from bits */
    const uint8_t *bits;
    int64_t m, n, row_bytes;
    bl_sb_geom g;
} src_t;

/* Word gw of the 8 rows from row0 (lane r = row row0 + r), from the canonical rows. */
ALWAYS_INLINE __m256i gather_word(const src_t *s, int64_t row0, int64_t gw) {
    const int64_t left = s->m - row0;
    if (4 * gw + 4 <= s->row_bytes && s->row_bytes < (INT64_C(1) << 27) && left >= 8) {
        const int rb = (int)s->row_bytes;
        const __m256i off = _mm256_setr_epi32(0, rb, 2 * rb, 3 * rb, 4 * rb, 5 * rb, 6 * rb, 7 * rb);
        return _mm256_i32gather_epi32((const int *)(s->bits + row0 * s->row_bytes + 4 * gw), off,
                                      1);
    }
    uint32_t tmp[8] __attribute__((aligned(32)));
    for (int r = 0; r < 8; r++)
        tmp[r] = r < left ? bl_sb_canon_word(s->bits + (row0 + r) * s->row_bytes, s->n, gw) : 0;
    return _mm256_load_si256((const __m256i *)tmp);
}

/* One 3-bit group for TB tokens and H halves; then the next group. */
ALWAYS_INLINE void lut_step(__m256i *W, const float *tg, __m256 *acc, int TB, int H) {
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++) {
        const __m256 tv = _mm256_load_ps(tg + t * GROUPS * 8);
#pragma GCC unroll 4
        for (int k = 0; k < H; k++)
            acc[t * H + k] = _mm256_add_ps(acc[t * H + k], _mm256_permutevar8x32_ps(tv, W[k]));
    }
#pragma GCC unroll 4
    for (int k = 0; k < H; k++) W[k] = _mm256_srli_epi32(W[k], 3);
}

/* Adds chunk c for TB tokens and H consecutive 8-row halves starting at half h into acc[t·H + k]. */
ALWAYS_INLINE void lut_chunk(const src_t *s, int64_t c, int64_t h, const float *tab, __m256 *acc,
                             int TB, int H, bool gather) {
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    for (int64_t w = 0; w < cw; w++) {
        __m256i W[4];
#pragma GCC unroll 4
        for (int k = 0; k < H; k++) {
            const int64_t hk = h + k; /* half index: block hk/2, lanes 8·(hk%2).. */
            W[k] = gather ? gather_word(s, 8 * hk, c * BL_SB_CHUNK_WORDS + w)
                          : _mm256_load_si256((const __m256i *)(s->packed +
                                              bl_sb_offset(&s->g, c, hk / 2, w) + 8 * (hk % 2)));
            /* one prefetch per 64-byte line (two halves share one) */
            if (!gather && (k == 0 || hk % 2 == 0))
                _mm_prefetch((const char *)(s->packed + bl_sb_offset(&s->g, c, hk / 2, w)) +
                                 BL_SB_PREFETCH_BYTES,
                             _MM_HINT_T0);
        }
        const float *tw = tab + w * GPW * 8;
        if (TB == 1) {
#pragma GCC unroll 11
            for (int g = 0; g < GPW; g++) lut_step(W, tw + g * 8, acc, TB, H);
        } else {
#pragma GCC unroll 2
            for (int g = 0; g < GPW; g++) lut_step(W, tw + g * 8, acc, TB, H);
        }
    }
}

ALWAYS_INLINE void lut_pass(const src_t *s, int64_t c, int64_t h, const float *tab, float *Y,
                            int64_t t0, int TB, int H, bool gather) {
    __m256 acc[8];
    __m256i mk[4];
#pragma GCC unroll 4
    for (int k = 0; k < H; k++) {
        int64_t left = s->m - 8 * (h + k);
        mk[k] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left > 8 ? 8 : (int)left),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 4
        for (int k = 0; k < H; k++)
            acc[t * H + k] = c == 0 ? _mm256_setzero_ps()
                                    : _mm256_maskload_ps(Y + (t0 + t) * s->m + 8 * (h + k), mk[k]);
    lut_chunk(s, c, h, tab, acc, TB, H, gather);
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 4
        for (int k = 0; k < H; k++)
            _mm256_maskstore_ps(Y + (t0 + t) * s->m + 8 * (h + k), mk[k], acc[t * H + k]);
}

/* Halves [h0, h1) (8-row groups; half h1-1 may be partial or all padding, which the masks skip). */
#define PASSES(TB, H)                                                                  \
    for (; h + (H) <= h1; h += (H)) lut_pass(s, c, h, tab, Y, t0, (TB), (H), gather); \
    for (; h < h1; h++) lut_pass(s, c, h, tab, Y, t0, (TB), 1, gather)

ALWAYS_INLINE void lut_range(const src_t *s, const float *X, int64_t T, float *Y, int64_t h0,
                             int64_t h1, bool gather) {
    float tab[TB_MAX * GROUPS * 8] __attribute__((aligned(64)));
    for (int64_t c = 0; c < s->g.chunks; c++) {
        const int64_t words = bl_sb_chunk_words(&s->g, c);
        for (int64_t t0 = 0; t0 < T; t0 += TB_MAX) {
            const int tb = T - t0 < TB_MAX ? (int)(T - t0) : TB_MAX;
            for (int t = 0; t < tb; t++)
                build_tables(X + (t0 + t) * s->n, s->n, c * BL_SB_CHUNK_COLS, words,
                             tab + t * GROUPS * 8);
            int64_t h = h0;
            switch (tb) {
            case 1: PASSES(1, 4); break;
            case 2: PASSES(2, 2); break;
            case 3: PASSES(3, 2); break;
            default: PASSES(4, 2); break;
            }
        }
    }
}
#undef PASSES

/* Blocks [b0, b1) = 8-row halves [2·b0, 2·b1), the last ones clipped to the matrix. */
void bl_sign_avx2_lut(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->bits, S->m, S->n, bl_sign_row_bytes(S->n),
                     bl_sb_geometry(S->m, S->n)};
    const int64_t halves = (S->m + 7) / 8, h0 = 2 * b0, h1 = 2 * b1 < halves ? 2 * b1 : halves;
    if (h0 >= h1) return;
    if (j->packed)
        lut_range(&s, j->in, j->T, j->out, h0, h1, false);
    else
        lut_range(&s, j->in, j->T, j->out, h0, h1, true);
}

/* ---- columns in lanes (mask variant and the transposed product) ----
 * Bit k of a 32-bit word u goes to the sign bit of lane k of selector q (columns 8q..8q+7) by a
 * left shift of 31 − (8q + k); VBLENDVPS then takes an input only where that bit is set. */
ALWAYS_INLINE void word_selectors(uint32_t u, __m256 sel[4]) {
    const __m256i ub = _mm256_set1_epi32((int)u);
    const __m256i base = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        sel[q] = _mm256_castsi256_ps(
            _mm256_sllv_epi32(ub, _mm256_sub_epi32(base, _mm256_set1_epi32(8 * q))));
}

/* Lanes summed in a fixed tree: ((a0+a1)+(a2+a3)), then halves, then pairs. */
ALWAYS_INLINE float hsum4(const __m256 a[4]) {
    __m256 s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* y_i = Σx − 2·Σ_{S[i][j] = −1} x_j for rows i..i+R-1; xp is x zero-padded to whole words. */
ALWAYS_INLINE void mask_rows(const uint8_t *bits, int64_t n, const float *x, const float *xtail,
                             float tot, int64_t i, float *y, int R) {
    const int64_t row_bytes = bl_sign_row_bytes(n), words = (n + 31) / 32;
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm256_setzero_ps();
    for (int64_t w = 0; w < words; w++) {
        const bool full = 32 * w + 32 <= n;
        const float *xw = full ? x + 32 * w : xtail;
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const uint8_t *row = bits + (i + r) * row_bytes;
            uint32_t u;
            if (full)
                memcpy(&u, row + 4 * w, 4);
            else
                u = bl_sb_canon_word(row, n, w);
            __m256 sel[4];
            word_selectors(u, sel);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                acc[r][q] = _mm256_add_ps(
                    acc[r][q], _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_loadu_ps(xw + 8 * q),
                                                sel[q]));
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) y[i + r] = tot - 2.0f * hsum4(acc[r]);
}

void bl_sign_avx2_mask(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const int64_t m = S->m, n = S->n, i1 = BL_SB_ROWS * b1 < m ? BL_SB_ROWS * b1 : m;
    for (int64_t t = 0; t < j->T; t++) {
        const float *x = j->in + t * n;
        float xtail[32] = {0};
        for (int64_t c = n & ~(int64_t)31; c < n; c++) xtail[c & 31] = x[c];
        int64_t i = BL_SB_ROWS * b0;
        for (; i + 2 <= i1; i += 2) mask_rows(S->bits, n, x, xtail, j->tot[t], i, j->out + t * m, 2);
        if (i < i1) mask_rows(S->bits, n, x, xtail, j->tot[t], i, j->out + t * m, 1);
    }
}

/* Z = V·S in 32-column blocks (a unit of the driver is two); z_j = Σ_i v_i − 2·Σ_{S[i][j] = −1} v_i with rows in
 * order, two tokens per pass sharing the selectors. */
ALWAYS_INLINE void t_block(const bl_signmat *S, const float *V, float *Z, const float *tot,
                           int64_t cb, int64_t t0, int TB) {
    const int64_t m = S->m, n = S->n, row_bytes = bl_sign_row_bytes(n);
    const bool full = 32 * cb + 32 <= n;
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[t][q] = _mm256_setzero_ps();
    for (int64_t i = 0; i < m; i++) {
        const uint8_t *row = S->bits + i * row_bytes;
        uint32_t u;
        if (full)
            memcpy(&u, row + 4 * cb, 4);
        else
            u = bl_sb_canon_word(row, n, cb);
        __m256 sel[4];
        word_selectors(u, sel);
#pragma GCC unroll 2
        for (int t = 0; t < TB; t++) {
            const __m256 vb = _mm256_set1_ps(V[(t0 + t) * m + i]);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                acc[t][q] = _mm256_add_ps(acc[t][q], _mm256_blendv_ps(_mm256_setzero_ps(), vb, sel[q]));
        }
    }
    /* Fully unrolled so acc[] stays in registers; no FMA in tot − 2·acc (see sign_avx512.c). */
#pragma GCC unroll 2
    for (int t = 0; t < TB; t++) {
        const __m256 tv = _mm256_set1_ps(tot[t]), two = _mm256_set1_ps(2.0f);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const int64_t j = 32 * cb + 8 * q, left = n - j;
            const __m256 z = _mm256_sub_ps(tv, _mm256_mul_ps(two, acc[t][q]));
            const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(left > 8 ? 8 : (int)left),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            _mm256_maskstore_ps(Z + (t0 + t) * n + j, mk, z);
        }
    }
}

void bl_sign_t_avx2_mask(const bl_sign_job *j, int64_t u0, int64_t u1) {
    const int64_t T = j->T, cblocks = (j->S->n + 31) / 32;
    const int64_t c0 = 2 * u0, c1 = 2 * u1 < cblocks ? 2 * u1 : cblocks;
    for (int64_t t0 = 0; t0 < T; t0 += 2)
        for (int64_t cb = c0; cb < c1; cb++) {
            if (T - t0 >= 2)
                t_block(j->S, j->in, j->out, j->tot + t0, cb, t0, 2);
            else
                t_block(j->S, j->in, j->out, j->tot + t0, cb, t0, 1);
        }
}
