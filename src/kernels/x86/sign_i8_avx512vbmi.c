/* AVX-512 sign-matrix product with int8 lookup tables (BL_TABLES_I8; T-MAC-style).
 *
 * The f32 kernel (sign_avx512.c) spends one VPERMPS and one add per 16 rows × 4 inputs × token;
 * that is its bound, and batching cannot lower it. Here a table entry is one byte, so one VPERMB
 * looks up 64 entries: with the packed layout's 16 rows in the 16 dword lanes, byte k of a lane
 * holds the nibbles of groups 2k (low) and 2k+1 (high) of that row's 32-column word, so
 *   index_lo = (word & 0x0F0F0F0F) | 0x30201000   (entry 16k + nibble of table_lo)
 *   index_hi = ((word >> 4) & 0x0F0F0F0F) | 0x30201000
 * pick, for every row, the 8 group sums of the word from two 64-byte tables (4 groups each), and
 * two VPDPBUSD with a vector of ones add each lane's 4 bytes into an int32 — exactly. The word's
 * int32 sum is then converted and scaled into the f32 output with one FMA. Per word and token:
 * 2 VPERMB + 2 VPDPBUSD + VCVTDQ2PS + VFMADD for 512 sign·input products (the f32 tables: 8
 * permutes and 8 adds); the index arithmetic is shared by every token of a pass.
 *
 * Numerics: those of bl_sign_matmul_i8_ref (kernels/ref/sign_ref.c), bit for bit; the
 * quantization of the tables is done here with the same f32 operations in the same order
 * (entries ((±x0 ± x1) ± x2) ± x3 as in lut_avx512.h, scale and rounding as the reference).
 * Needs AVX512-VBMI (VPERMB) and AVX512-VNNI (VPDPBUSD); the driver checks both. */
#include "kernels/sign_kernels.h"
#include "kernels/x86/lut_avx512.h"

#include <immintrin.h>

#define TB_MAX 8                    /* tokens per pass: 8 × 2 KiB of tables per chunk */
#define WORDS BL_SB_CHUNK_WORDS     /* words per chunk */
#define TAB_BYTES 128               /* per word and token: table_lo then table_hi */
#define PREFETCH_BYTES 6144         /* as sign_avx512.c */

/* Tables of one token for the cw words of chunk c: tab[w·128 ..] (lo, hi), scale[w]. The f32
 * group tables are lut_avx512.h's; a group's largest |entry| is its all-signs-aligned entry
 * ((|v0| + |v1|) + |v2|) + |v3|, bit for bit (negation is exact), so max_w is taken from them. */
static inline void build_i8(const float *x, const float *xs, int64_t n, int64_t c, int64_t cw,
                            int8_t *tab, float *scale) {
    float f[8 * 16] __attribute__((aligned(64)));
    for (int64_t w = 0; w < cw; w++) {
        build_tables(x, xs, n, c * BL_SB_CHUNK_COLS + 32 * w, 8, f);
        __m512 mx = _mm512_setzero_ps();
        for (int q = 0; q < 8; q++) /* the NaN-dropping max of the specification */
            mx = _mm512_max_ps(_mm512_abs_ps(_mm512_load_ps(f + 16 * q)), mx);
        const float maxw = _mm512_reduce_max_ps(mx);
        const __m512 inv = _mm512_set1_ps(maxw > 0.0f ? 127.0f / maxw : 0.0f);
        scale[w] = maxw / 127.0f;
        int8_t *t = tab + w * TAB_BYTES;
        for (int q = 0; q < 8; q++) /* group 2k -> lo[16k..], 2k+1 -> hi[16k..] */
            _mm_store_si128((__m128i *)(t + (q & 1) * 64 + (q >> 1) * 16),
                            _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(
                                _mm512_mul_ps(_mm512_load_ps(f + 16 * q), inv))));
    }
}

typedef struct {
    const uint32_t *packed;
    int64_t m;
    bl_sb_geom g;
} src_t;

/* One pass: R row blocks from b, TB tokens from t0, chunk c (partial sums live in Y between
 * chunks; chunk 0 starts from +0). tab/scale: TB tokens' tables, strides WORDS·128 / WORDS. */
static inline __attribute__((always_inline)) void
pass_i8(const src_t *s, int64_t c, int64_t b, const int8_t *tab, const float *scale, float *Y,
        const float *h, int64_t t0, int TB, int R) {
    __m512 acc[16]; /* TB·R <= 16 */
    __mmask16 mk[4];
    pass_masks(s->m, b, R, mk);
    pass_load(Y, s->m, c, b, t0, TB, R, mk, acc);
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = s->packed + bl_sb_offset(&s->g, c, b, 0);
    const __m512i nib = _mm512_set1_epi32(0x0F0F0F0F), sel = _mm512_set1_epi32(0x30201000);
    const __m512i ones = _mm512_set1_epi8(1);
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
            const __m512 sc = _mm512_set1_ps(scale[t * WORDS + w]);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                                _mm512_permutexvar_epi8(lo[r], tl));
                a = _mm512_dpbusd_epi32(a, ones, _mm512_permutexvar_epi8(hi[r], th));
                acc[t * R + r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), sc, acc[t * R + r]);
            }
        }
    }
    pass_store(Y, s->m, b, t0, TB, R, mk, acc, h);
}

/* Register blocking: up to 4 tokens × 4 row blocks (8 index vectors, 16 sums), 5 to 8 tokens ×
 * 2 row blocks, so a batch of up to 8 reads each chunk's signs once. On one 4096×4096 matrix
 * repeated (L3-resident), batch 8 on one Zen 5 core, 8 × 2 measured 194-236 µs against 180-186
 * µs for two passes of 4 × 4 once (each table load serves 2 blocks instead of 4), and the same
 * within noise later (180-212 against 195-204 µs); in a model,
 * where every product is a different matrix streamed from memory, it is the faster: a 7B-dims
 * batch-8 decode step's split products took 12-14 % less time (interleaved token by token in
 * one process: 377 → 325 µs per product on 2 threads, 577 → 507 on 1; TinyLlama dims 136 →
 * 123). It only groups independent accumulations, so it changes no result. */
#define PASSES(TB, R)                                                                     \
    for (; b + (R) <= b1; b += (R)) pass_i8(&s, c, b, tab, scale, Y, h, t0, (TB), (R));  \
    for (; b < b1; b++) pass_i8(&s, c, b, tab, scale, Y, h, t0, (TB), 1)

void bl_sign_avx512_lut_i8(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->m, bl_sb_geometry(S->m, S->n)};
    int8_t tab[TB_MAX * WORDS * TAB_BYTES] __attribute__((aligned(64)));
    float scale[TB_MAX * WORDS];
    const float *X = j->in;
    float *Y = j->out;
    for (int64_t c = 0; c < s.g.chunks; c++) {
        const int64_t cw = bl_sb_chunk_words(&s.g, c);
        const float *h = c == s.g.chunks - 1 ? j->out_scale : NULL; /* after the last chunk */
        for (int64_t t0 = 0; t0 < j->T; t0 += TB_MAX) {
            const int tb = j->T - t0 < TB_MAX ? (int)(j->T - t0) : TB_MAX;
            for (int t = 0; t < tb; t++)
                build_i8(X + (t0 + t) * S->n, j->in_scale, S->n, c, cw,
                         tab + t * WORDS * TAB_BYTES, scale + t * WORDS);
            int64_t b = b0;
            switch (tb) {
            case 1: PASSES(1, 4); break;
            case 2: PASSES(2, 4); break;
            case 3: PASSES(3, 4); break;
            case 4: PASSES(4, 4); break;
            case 5: PASSES(5, 2); break;
            case 6: PASSES(6, 2); break;
            case 7: PASSES(7, 2); break;
            default: PASSES(8, 2); break;
            }
        }
    }
}
#undef PASSES
