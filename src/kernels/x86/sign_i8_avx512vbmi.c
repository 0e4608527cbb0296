/* AVX-512 sign-matrix product with int8 lookup tables (BL_TABLES_I8; T-MAC-style).
 *
 * The f32 kernel (sign_avx512.c) spends one VPERMPS and one add per 16 rows × 4 inputs × token;
 * that is its bound, and batching cannot lower it. Here a table entry is one byte, so one VPERMB
 * looks up 64 entries: with the packed layout's 16 rows in the 16 dword lanes, byte k of a lane
 * holds the nibbles of groups 2k (low) and 2k+1 (high) of that row's 32-column word, so
 *   index_lo = (word & 0x0F0F0F0F) | 0x30201000   (entry 16k + nibble of table_lo)
 *   index_hi = ((word >> 4) & 0x0F0F0F0F) | 0x30201000
 * pick, for every row, the 8 group codes of the word from two 64-byte tables (4 groups each),
 * and two VPDPBUSD add each lane's 4 bytes, times the word's multiplier (the unsigned operand,
 * the same in every byte), into the row's int32 sum — exactly. That sum spans the whole
 * 512-column chunk (one block of the specification) and meets the f32 output once per chunk: one
 * VCVTDQ2PS and one FMA by the block's unit. Per word and token: 2 VPERMB + 2 VPDPBUSD for 512
 * sign·input products (the f32 tables: 8 permutes and 8 adds); the index arithmetic is shared by
 * every token of a pass. With one scale per word (the numerics before 2026-12-06) a conversion
 * and an FMA per word and token came on top: on the 7B-dims step of bench_step, batch 8, the
 * block sums made the products 11-16 % faster (one thread 59-61 → 51-54 ms, two 34-36 → 31-32).
 *
 * Numerics: those of bl_sign_matmul_i8_ref (kernels/ref/sign_ref.c), bit for bit; the
 * quantization of the tables is done here with the same f32 operations in the same order
 * (entries ((±x0 ± x1) ± x2) ± x3 as in lut_avx512.h; maxima, unit, multipliers, inverse and
 * rounding as the reference).
 * Needs AVX512-VBMI (VPERMB) and AVX512-VNNI (VPDPBUSD); the driver checks both. */
#include "kernels/sign_kernels.h"
#include "kernels/x86/lut_avx512.h"

#include <immintrin.h>
#include <math.h>

#define TB_MAX 8                    /* tokens per pass: 8 × 2 KiB of tables per chunk */
#define WORDS BL_SB_CHUNK_WORDS     /* words per chunk */
#define TAB_BYTES 128               /* per word and token: table_lo then table_hi */
#define PREFETCH_BYTES 6144         /* as sign_avx512.c */
_Static_assert(32 * WORDS == BL_SIGN_I8_BLOCK, "a chunk is one block of the specification");

/* Tables of one token for the cw words of chunk c (one block of the specification): codes in
 * tab[w·128 ..] (lo, hi), the word's multiplier in mult[w], the block's unit in *unit. The f32
 * group tables are lut_avx512.h's; a group's largest |entry| is its all-signs-aligned entry
 * ((|v0| + |v1|) + |v2|) + |v3|, bit for bit (negation is exact), so max_w is taken from them. */
static inline void build_i8(const float *x, const float *xs, int64_t n, int64_t c, int64_t cw,
                            int8_t *tab, uint32_t *mult, float *unit) {
    float f[WORDS][8 * 16] __attribute__((aligned(64)));
    float maxw[WORDS], M = 0.0f;
    for (int64_t w = 0; w < cw; w++) {
        build_tables(x, xs, n, c * BL_SB_CHUNK_COLS + 32 * w, 8, f[w]);
        __m512 mx = _mm512_setzero_ps();
        for (int q = 0; q < 8; q++) /* the NaN-dropping max of the specification */
            mx = _mm512_max_ps(_mm512_abs_ps(_mm512_load_ps(f[w] + 16 * q)), mx);
        maxw[w] = _mm512_reduce_max_ps(mx);
        M = maxw[w] > M ? maxw[w] : M;
    }
    if (M < 0x1p-100f) M = 0.0f; /* a block this small counts as zero (the specification) */
    const float k = M > 0.0f ? 255.0f / M : 0.0f, k127 = 127.0f * k;
    *unit = M / 32385.0f;
    for (int64_t w = 0; w < cw; w++) {
        const float r = ceilf(maxw[w] * k);
        const int mw = r >= 255.0f ? 255 : r >= 1.0f ? (int)r : 1;
        mult[w] = 0x01010101u * (uint32_t)mw; /* in every byte */
        const __m512 inv = _mm512_set1_ps(k127 / (float)mw);
        int8_t *t = tab + w * TAB_BYTES;
        for (int q = 0; q < 8; q++) /* group 2k -> lo[16k..], 2k+1 -> hi[16k..] */
            _mm_store_si128((__m128i *)(t + (q & 1) * 64 + (q >> 1) * 16),
                            _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(
                                _mm512_mul_ps(_mm512_load_ps(f[w] + 16 * q), inv))));
    }
}

typedef struct {
    const uint32_t *packed;
    int64_t m;
    bl_sb_geom g;
} src_t;

/* One pass: R row blocks from b, TB tokens from t0, chunk c (partial sums live in Y between
 * chunks; chunk 0 starts from +0). tab/mult/unit: TB tokens' tables, strides WORDS·128 / WORDS /
 * 1. The block's sum of every row and token stays in int32 over all its words — each word's two
 * lookups enter it through VPDPBUSD with the word's multiplier as the unsigned operand — and
 * meets the f32 output once, with one FMA by the unit. */
static inline __attribute__((always_inline)) void
pass_i8(const src_t *s, int64_t c, int64_t b, const int8_t *tab, const uint32_t *mult,
        const float *unit, float *Y, const float *h, int64_t t0, int TB, int R) {
    __m512i isum[16]; /* TB·R <= 16 */
#pragma GCC unroll 16
    for (int k = 0; k < TB * R; k++) isum[k] = _mm512_setzero_si512();
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = s->packed + bl_sb_offset(&s->g, c, b, 0);
    const __m512i nib = _mm512_set1_epi32(0x0F0F0F0F), sel = _mm512_set1_epi32(0x30201000);
    for (int64_t w = 0; w < cw; w++) {
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint32_t *p = P + (r * cw + w) * BL_SB_ROWS;
            const __m512i W = _mm512_load_si512(p);
            _mm_prefetch((const char *)p + PREFETCH_BYTES, _MM_HINT_T0);
            lo[r] = _mm512_ternarylogic_epi32(W, nib, sel, 0xEA); /* (W & nib) | sel */
            hi[r] = _mm512_ternarylogic_epi32(_mm512_srli_epi32(W, 4), nib, sel, 0xEA);
        }
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) {
            const int8_t *tw = tab + (int64_t)t * WORDS * TAB_BYTES + w * TAB_BYTES;
            const __m512i tl = _mm512_load_si512(tw), th = _mm512_load_si512(tw + 64);
            const __m512i mv = _mm512_set1_epi32((int)mult[t * WORDS + w]); /* a load, no shuffle */
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i a = _mm512_dpbusd_epi32(isum[t * R + r], mv,
                                                _mm512_permutexvar_epi8(lo[r], tl));
                isum[t * R + r] = _mm512_dpbusd_epi32(a, mv, _mm512_permutexvar_epi8(hi[r], th));
            }
        }
    }
    __m512 acc[16];
    __mmask16 mk[4];
    pass_masks(s->m, b, R, mk);
    pass_load(Y, s->m, c, b, t0, TB, R, mk, acc);
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) {
        const __m512 u = _mm512_set1_ps(unit[t]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            acc[t * R + r] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t * R + r]), u, acc[t * R + r]);
    }
    pass_store(Y, s->m, b, t0, TB, R, mk, acc, h);
}

/* Register blocking: up to 4 tokens × 4 row blocks (8 index vectors, 16 sums), 5 to 8 tokens ×
 * 1 row block, so a batch of up to 8 reads each chunk's signs once. With the block sums, 8 × 2
 * (16 int32 sums, 4 index vectors, the tables and the multiplier) no longer fits GCC's register
 * allocation (it spills sums to the stack every word): bench_step, 7B dims, batch 8, 8 × 1
 * 51-54 ms on one thread and 31-32 on two against 66-67 and 38 for 8 × 2; with the per-word
 * scales before them the two blockings timed the same (59-61 / 34-36 ms). It only groups
 * independent accumulations, so it changes no result. */
#define PASSES(TB, R)                                                                     \
    for (; b + (R) <= b1; b += (R)) pass_i8(&s, c, b, tab, mult, unit, Y, h, t0, (TB), (R));  \
    for (; b < b1; b++) pass_i8(&s, c, b, tab, mult, unit, Y, h, t0, (TB), 1)

void bl_sign_avx512_lut_i8(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->m, bl_sb_geometry(S->m, S->n)};
    int8_t tab[TB_MAX * WORDS * TAB_BYTES] __attribute__((aligned(64)));
    uint32_t mult[TB_MAX * WORDS];
    float unit[TB_MAX];
    const float *X = j->in;
    float *Y = j->out;
    for (int64_t c = 0; c < s.g.chunks; c++) {
        const int64_t cw = bl_sb_chunk_words(&s.g, c);
        const float *h = c == s.g.chunks - 1 ? j->out_scale : NULL; /* after the last chunk */
        for (int64_t t0 = 0; t0 < j->T; t0 += TB_MAX) {
            const int tb = j->T - t0 < TB_MAX ? (int)(j->T - t0) : TB_MAX;
            for (int t = 0; t < tb; t++)
                build_i8(X + (t0 + t) * S->n, j->in_scale, S->n, c, cw,
                         tab + t * WORDS * TAB_BYTES, mult + t * WORDS, unit + t);
            int64_t b = b0;
            switch (tb) {
            case 1: PASSES(1, 4); break;
            case 2: PASSES(2, 4); break;
            case 3: PASSES(3, 4); break;
            case 4: PASSES(4, 4); break;
            case 5: PASSES(5, 1); break;
            case 6: PASSES(6, 1); break;
            case 7: PASSES(7, 1); break;
            default: PASSES(8, 1); break;
            }
        }
    }
}
#undef PASSES
