/* AVX-512 transposed product Z = V·S (T×n from T×m), the backward pass of Y = X·Sᵀ.
 *
 * Default (lut4_t): the lookup tables of the forward kernel with the roles of rows and columns
 * swapped — tables over groups of 4 rows' v values, columns in lanes. A nibble must now hold the
 * bits of 4 rows at one column, a bit transpose of the packed layout, done per 16-row × 32-column
 * tile with one in-lane byte shuffle and one GF2P8AFFINEQB (each 8×8 bit block multiplied by a
 * selector matrix yields its transpose), then zero-extended bytes serve as indices directly (low
 * nibble) and shifted (high nibble). The lane order this produces — columns 8..15, 24..31 from
 * low nibbles, 0..7, 16..23 from high ones — is undone with two 128-bit shuffles when partial sums
 * go to memory. Summation order per output: row groups in order (block, then 4-row group), from
 * +0; the driver splits 64-column units (two words) across threads. Needs GFNI and a prepared
 * matrix (the driver falls back to the mask variant below otherwise: different summation order,
 * same tolerance). */
#include "kernels/sign_kernels.h"
#include "kernels/x86/lut_avx512.h"

#include <immintrin.h>
#include <string.h>

#include "bitllm/format.h"

#define TT_MAX 4                            /* tokens per pass */
#define ROW_CHUNK_BLOCKS 32                 /* 512 rows per table chunk: 8 KiB of tables/token */
#define TGROUPS (4 * ROW_CHUNK_BLOCKS)      /* 4-row groups per chunk */
#define TARGET_GFNI __attribute__((target("gfni")))

typedef struct {
    const uint32_t *packed;
    int64_t m, n;
    bl_sb_geom g;
} tsrc_t;

/* Adds blocks [b0, b0+nb) to the partial sums of NW words from w for TB tokens from t0. */
TARGET_GFNI ALWAYS_INLINE void t_pass(const tsrc_t *s, int64_t b0, int64_t nb, int64_t w,
                                      const float *tab, float *Z, int64_t t0, bool first, int TB,
                                      int NW) {
    /* byte p of each 128-bit lane (4 rows × 4 column bytes) <- 4×4 transpose, rows reversed, so
     * that GF2P8AFFINEQB with the selectors below puts rows 0..3 of column c in the low nibble of
     * byte c of the first qword for column 8 + c, in the high nibble for column c (second qword:
     * columns 24 + c and 16 + c). */
    const __m512i shuf = _mm512_broadcast_i32x4(
        _mm_setr_epi8(12, 8, 4, 0, 13, 9, 5, 1, 14, 10, 6, 2, 15, 11, 7, 3));
    const __m512i sel = _mm512_set1_epi64((long long)0x8040201008040201ull);
    __m512 acc[2 * TT_MAX * 2]; /* [t][k][0: low-nibble columns, 1: high-nibble columns] */
    __mmask16 mlo[2], mhi[2];
#pragma GCC unroll 2
    for (int k = 0; k < NW; k++) {
        int64_t left = s->n - 32 * (w + k);
        mlo[k] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        mhi[k] = left >= 32 ? (__mmask16)0xFFFF
                 : left <= 16 ? (__mmask16)0
                              : (__mmask16)((1u << (left - 16)) - 1u);
    }
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 2
        for (int k = 0; k < NW; k++) {
            const float *zp = Z + (t0 + t) * s->n + 32 * (w + k);
            __m512 zlo = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mlo[k], zp);
            __m512 zhi = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mhi[k], zp + 16);
            acc[(t * NW + k) * 2 + 0] = _mm512_shuffle_f32x4(zlo, zhi, 0xEE); /* 8..15, 24..31 */
            acc[(t * NW + k) * 2 + 1] = _mm512_shuffle_f32x4(zlo, zhi, 0x44); /* 0..7, 16..23 */
        }
    for (int64_t bb = 0; bb < nb; bb++) {
#pragma GCC unroll 2
        for (int k = 0; k < NW; k++) {
            const int64_t gw = w + k, c = gw / BL_SB_CHUNK_WORDS;
            const __m512i W = _mm512_load_si512(
                s->packed + bl_sb_offset(&s->g, c, b0 + bb, gw - c * BL_SB_CHUNK_WORDS));
            const __m512i R = _mm512_gf2p8affine_epi64_epi8(sel, _mm512_shuffle_epi8(W, shuf), 0);
            __m512i lo[4];
            lo[0] = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(R));
            lo[1] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(R, 1));
            lo[2] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(R, 2));
            lo[3] = _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(R, 3));
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m512i hi = _mm512_srli_epi32(lo[g], 4);
#pragma GCC unroll 4
                for (int t = 0; t < TB; t++) {
                    const __m512 tv = _mm512_load_ps(tab + t * TGROUPS * 16 + (bb * 4 + g) * 16);
                    __m512 *a = acc + (t * NW + k) * 2;
                    a[0] = _mm512_add_ps(a[0], _mm512_permutexvar_ps(lo[g], tv));
                    a[1] = _mm512_add_ps(a[1], _mm512_permutexvar_ps(hi, tv));
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++)
#pragma GCC unroll 2
        for (int k = 0; k < NW; k++) {
            float *zp = Z + (t0 + t) * s->n + 32 * (w + k);
            const __m512 a = acc[(t * NW + k) * 2 + 0], b = acc[(t * NW + k) * 2 + 1];
            _mm512_mask_storeu_ps(zp, mlo[k], _mm512_shuffle_f32x4(b, a, 0x44));
            _mm512_mask_storeu_ps(zp + 16, mhi[k], _mm512_shuffle_f32x4(b, a, 0xEE));
        }
}

#define TPASSES(TB, NW)                                                                 \
    for (; w + (NW) <= w1; w += (NW)) t_pass(s, b0, nb, w, tab, Z, t0, first, (TB), (NW)); \
    for (; w < w1; w++) t_pass(s, b0, nb, w, tab, Z, t0, first, (TB), 1)

/* Words [w0, w1) of every token, one chunk of rows at a time. */
TARGET_GFNI static void t_range(const tsrc_t *s, const float *V, int64_t T, float *Z, int64_t w0,
                                int64_t w1) {
    float tab[TT_MAX * TGROUPS * 16] __attribute__((aligned(64)));
    for (int64_t b0 = 0; b0 < s->g.blocks; b0 += ROW_CHUNK_BLOCKS) {
        const int64_t nb = s->g.blocks - b0 < ROW_CHUNK_BLOCKS ? s->g.blocks - b0 : ROW_CHUNK_BLOCKS;
        const bool first = b0 == 0;
        for (int64_t t0 = 0; t0 < T; t0 += TT_MAX) {
            const int tb = T - t0 < TT_MAX ? (int)(T - t0) : TT_MAX;
            for (int t = 0; t < tb; t++)
                build_tables(V + (t0 + t) * s->m, NULL, s->m, 16 * b0, 4 * nb, tab + t * TGROUPS * 16);
            int64_t w = w0;
            switch (tb) {
            case 1: TPASSES(1, 2); break;
            case 2: TPASSES(2, 2); break;
            case 3: TPASSES(3, 1); break;
            default: TPASSES(4, 1); break;
            }
        }
    }
}
#undef TPASSES

/* Units [u0, u1) of 64 columns = words [2·u0, 2·u1). */
TARGET_GFNI void bl_sign_t_avx512_lut(const bl_sign_job *j, int64_t u0, int64_t u1) {
    const bl_signmat *S = j->S;
    const tsrc_t s = {j->packed, S->m, S->n, bl_sb_geometry(S->m, S->n)};
    const int64_t w0 = 2 * u0, w1 = 2 * u1 < s.g.words ? 2 * u1 : s.g.words;
    if (w0 < w1) t_range(&s, j->in, j->T, j->out, w0, w1);
}

/* ---- mask variant: canonical layout, columns in lanes ----
 * z_j = Σ_i v_i − 2·Σ_{i: S[i][j] = −1} v_i, rows visited in order i = 0..m-1, each row's
 * 64-column slice giving four k-masks shared by up to 4 tokens. Threads split 64-column blocks. */
ALWAYS_INLINE void t_block(const bl_signmat *S, const float *V, int64_t T, float *Z,
                           const float *tot, int64_t cb, int64_t t0, int TB) {
    const int64_t m = S->m, n = S->n, row_bytes = bl_sign_row_bytes(n);
    const int64_t byte0 = 8 * cb, nb = row_bytes - byte0 < 8 ? row_bytes - byte0 : 8;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int k = 0; k < 4 * TB; k++) acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < m; i++) {
        uint64_t u = 0;
        if (nb == 8)
            memcpy(&u, S->bits + i * row_bytes + byte0, 8);
        else
            memcpy(&u, S->bits + i * row_bytes + byte0, (size_t)nb);
#pragma GCC unroll 4
        for (int t = 0; t < TB; t++) {
            const __m512 vb = _mm512_set1_ps(V[(t0 + t) * m + i]);
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                acc[4 * t + q] = _mm512_mask_add_ps(acc[4 * t + q], (__mmask16)(u >> (16 * q)),
                                                    acc[4 * t + q], vb);
        }
    }
    /* Fully unrolled, like the loop above, so acc[] stays in registers. */
#pragma GCC unroll 4
    for (int t = 0; t < TB; t++) {
        const __m512 tv = _mm512_set1_ps(tot[t]), two = _mm512_set1_ps(2.0f);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const int64_t j = 64 * cb + 16 * q, left = n - j;
            const __mmask16 k = left >= 16 ? (__mmask16)0xFFFF
                                : left <= 0 ? (__mmask16)0
                                            : (__mmask16)((1u << left) - 1u);
            /* tot − 2·acc: a separate multiply and subtract (no FMA), so results are exact
             * functions of the sums whatever the compiler flags */
            __m512 z = _mm512_sub_ps(tv, _mm512_mul_ps(two, acc[4 * t + q]));
            _mm512_mask_storeu_ps(Z + (t0 + t) * n + j, k, z);
        }
    }
}

void bl_sign_t_avx512_mask(const bl_sign_job *j, int64_t u0, int64_t u1) {
    const int64_t T = j->T;
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const int tb = T - t0 < 4 ? (int)(T - t0) : 4;
        for (int64_t cb = u0; cb < u1; cb++) {
            switch (tb) {
            case 1: t_block(j->S, j->in, T, j->out, j->tot + t0, cb, t0, 1); break;
            case 2: t_block(j->S, j->in, T, j->out, j->tot + t0, cb, t0, 2); break;
            case 3: t_block(j->S, j->in, T, j->out, j->tot + t0, cb, t0, 3); break;
            default: t_block(j->S, j->in, T, j->out, j->tot + t0, cb, t0, 4); break;
            }
        }
    }
}
