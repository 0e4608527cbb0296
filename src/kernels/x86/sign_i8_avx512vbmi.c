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
_Static_assert(32 * WORDS == BL_SIGN_I8_BLOCK, "a chunk is one block of the specification");

/* Byte shuffles that turn the packed codes of two words into their four 64-byte tables (see
 * build_i8): R_q (from entries 4q..4q+3) holds code(e, g) at byte 16·(g>>2) + 4·(e&3) + (g&3) for
 * the 16 groups g of the pair; U_{w,x} = entries 8x..8x+7 of word w's 8 groups, byte 8·(g&7) +
 * (e&7), from R_{2x} (index bit 6 clear) and R_{2x+1}; table h (lo 0, hi 1) of word w = groups
 * 8w + 2k + h, byte 16k + e, from U_{w,0} and U_{w,1}. */
typedef struct {
    uint8_t u[2][64]; /* word w */
    uint8_t t[2][64]; /* half h */
} shuffles_t;

/* (u[w][8·gg + ee] = (ee>>2)<<6 | 16·(2w + gg>>2) + 4·(ee&3) + (gg&3); t[h][16k + e] =
 * (e>>3)<<6 | 8·(2k + h) + (e&7).) */
static const shuffles_t shuffles __attribute__((aligned(64))) = {
    {{
           0,   4,   8,  12,  64,  68,  72,  76,   1,   5,   9,  13,  65,  69,  73,  77,
           2,   6,  10,  14,  66,  70,  74,  78,   3,   7,  11,  15,  67,  71,  75,  79,
          16,  20,  24,  28,  80,  84,  88,  92,  17,  21,  25,  29,  81,  85,  89,  93,
          18,  22,  26,  30,  82,  86,  90,  94,  19,  23,  27,  31,  83,  87,  91,  95,
     },
     {
          32,  36,  40,  44,  96, 100, 104, 108,  33,  37,  41,  45,  97, 101, 105, 109,
          34,  38,  42,  46,  98, 102, 106, 110,  35,  39,  43,  47,  99, 103, 107, 111,
          48,  52,  56,  60, 112, 116, 120, 124,  49,  53,  57,  61, 113, 117, 121, 125,
          50,  54,  58,  62, 114, 118, 122, 126,  51,  55,  59,  63, 115, 119, 123, 127,
     }},
    {{
           0,   1,   2,   3,   4,   5,   6,   7,  64,  65,  66,  67,  68,  69,  70,  71,
          16,  17,  18,  19,  20,  21,  22,  23,  80,  81,  82,  83,  84,  85,  86,  87,
          32,  33,  34,  35,  36,  37,  38,  39,  96,  97,  98,  99, 100, 101, 102, 103,
          48,  49,  50,  51,  52,  53,  54,  55, 112, 113, 114, 115, 116, 117, 118, 119,
     },
     {
           8,   9,  10,  11,  12,  13,  14,  15,  72,  73,  74,  75,  76,  77,  78,  79,
          24,  25,  26,  27,  28,  29,  30,  31,  88,  89,  90,  91,  92,  93,  94,  95,
          40,  41,  42,  43,  44,  45,  46,  47, 104, 105, 106, 107, 108, 109, 110, 111,
          56,  57,  58,  59,  60,  61,  62,  63, 120, 121, 122, 123, 124, 125, 126, 127,
     }}};

/* Tables of one token for the cw words of chunk c (one block of the specification): codes in
 * tab[w·128 ..] (lo, hi), the word's multiplier in mult[w], the block's unit in *unit.
 *
 * Two words (16 groups) at a time, one group per lane: the 16 entries are those of the f32
 * tables (lut_avx512.h's group_entries16, bit for bit the entries of the specification). A group's
 * largest |entry| is its all-signs-aligned entry ((|x0| + |x1|) + |x2|) + |x3|, bit for bit
 * (negation is exact, and rounding is monotone: no other entry is larger; with a NaN input every
 * entry is NaN and the max drops them as the specification's does). The codes
 * sat8(rint(E[e]·inv_w)) of the 16 entries are packed with signed saturation (int32 → int16 →
 * int8, the same as one int32 → int8 saturation) and moved into the tables by two rounds of
 * VPERMT2B (shuffles_t). Per word and token about 65 instructions, against ~250 building one
 * 16-entry vector per group and converting it: at T = 8 and 2048 columns the tables took 12.3 µs
 * per product and thread (now 4.7), a quarter of a 2048-row product's time on one thread. */
static inline void build_i8(const float *x, const float *xs, int64_t n, int64_t c, int64_t cw,
                            int8_t *tab, uint32_t *mult, float *unit) {
    __m512 xg[WORDS / 2][4];
    float maxw[WORDS], M = 0.0f;
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const int64_t pairs = (cw + 1) / 2;
    for (int64_t p = 0; p < pairs; p++) {
        load_groups16(x, xs, n, c * BL_SB_CHUNK_COLS + 64 * p, xg[p]);
        __m512 a = _mm512_add_ps(_mm512_and_ps(xg[p][0], absm), _mm512_and_ps(xg[p][1], absm));
        a = _mm512_add_ps(a, _mm512_and_ps(xg[p][2], absm));
        a = _mm512_add_ps(a, _mm512_and_ps(xg[p][3], absm));
        /* the NaN-dropping max of the specification: a NaN lane gives way to +0 */
        a = _mm512_max_ps(a, _mm512_setzero_ps());
        maxw[2 * p] = _mm512_mask_reduce_max_ps((__mmask16)0x00FF, a); /* word 2p: lanes 0-7 */
        maxw[2 * p + 1] = _mm512_mask_reduce_max_ps((__mmask16)0xFF00, a);
        M = maxw[2 * p] > M ? maxw[2 * p] : M;
        if (2 * p + 1 < cw) M = maxw[2 * p + 1] > M ? maxw[2 * p + 1] : M;
    }
    if (M < 0x1p-100f) M = 0.0f; /* a block this small counts as zero (the specification) */
    const float k = M > 0.0f ? 255.0f / M : 0.0f, k127 = 127.0f * k;
    *unit = M / 32385.0f;
    float inv[WORDS];
    for (int64_t w = 0; w < 2 * pairs; w++) {
        const float r = ceilf(maxw[w] * k);
        const int mw = r >= 255.0f ? 255 : r >= 1.0f ? (int)r : 1;
        if (w < cw) mult[w] = 0x01010101u * (uint32_t)mw; /* in every byte */
        inv[w] = k127 / (float)mw;
    }
    const __m512i su0 = _mm512_load_si512(shuffles.u[0]), su1 = _mm512_load_si512(shuffles.u[1]);
    const __m512i st0 = _mm512_load_si512(shuffles.t[0]), st1 = _mm512_load_si512(shuffles.t[1]);
    for (int64_t p = 0; p < pairs; p++) {
        __m512 E[16];
        group_entries16(xg[p], E);
        const __m512 iv = _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(inv[2 * p]),
                                               _mm512_set1_ps(inv[2 * p + 1]));
        __m512i code[16];
#pragma GCC unroll 16
        for (int e = 0; e < 16; e++) code[e] = _mm512_cvtps_epi32(_mm512_mul_ps(E[e], iv));
        __m512i R[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
            R[q] = _mm512_packs_epi16(_mm512_packs_epi32(code[4 * q], code[4 * q + 1]),
                                      _mm512_packs_epi32(code[4 * q + 2], code[4 * q + 3]));
        for (int w = 0; w < 2 && 2 * p + w < cw; w++) {
            const __m512i su = w ? su1 : su0;
            const __m512i u0 = _mm512_permutex2var_epi8(R[0], su, R[1]);
            const __m512i u1 = _mm512_permutex2var_epi8(R[2], su, R[3]);
            int8_t *t = tab + (2 * p + w) * TAB_BYTES;
            _mm512_store_si512(t, _mm512_permutex2var_epi8(u0, st0, u1));
            _mm512_store_si512(t + 64, _mm512_permutex2var_epi8(u0, st1, u1));
        }
    }
}

typedef struct {
    const uint32_t *packed;
    int64_t m;
    bl_sb_geom g;
    bool far; /* prefetch far ahead too (lut_avx512.h) */
} src_t;

/* One pass: row block b, TB tokens from t0, chunk c (partial sums live in Y between chunks;
 * chunk 0 starts from +0). tab/mult/unit: TB tokens' tables, strides WORDS·128 / WORDS / 1. The
 * block's sum of every row and token stays in int32 over all its words — each word's two lookups
 * enter it through VPDPBUSD with the word's multiplier as the unsigned operand — and meets the f32
 * output once, with one FMA by the unit.
 *
 * One row block per pass, at every batch size: a single sequential stream of signs. Blocking
 * several row blocks per pass (their index vectors shared by each table load) made the stream
 * 4 interleaved ones and, from 2 tokens up, spilled sums to the stack: a Llama-2-7B-dims layer's
 * products (4 × 4096², 2 × 11008×4096, 4096×11008, 8 layers out of cache) on Zen 5, variants
 * alternated in one process, one thread, ms per layer, 1 row block against 4 (and 2): 1 token
 * 0.98 against 1.34 (1.45), 2 tokens 1.15 against 1.46 (1.65), 3 1.34 / 1.60 (1.80), 4 1.60 /
 * 1.72 (1.92); two threads 0.59 / 0.73, 0.63 / 0.79, 0.71 / 0.85, 0.73 / 0.75. For 5-8 tokens
 * one row block was already the choice (8 × 2 spilled; written in assembly without spills it
 * was 3-5 % faster at 8 tokens, not kept). The f32-table kernel (sign_avx512.c) keeps 4 row
 * blocks: there one block per pass was 15-45 % slower. */
static inline __attribute__((always_inline)) void
pass_i8(const src_t *s, int64_t c, int64_t b, const int8_t *tab, const uint32_t *mult,
        const float *unit, float *Y, const float *h, int64_t t0, int TB) {
    __m512i isum[TB_MAX];
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++) isum[t] = _mm512_setzero_si512();
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = s->packed + bl_sb_offset(&s->g, c, b, 0);
    const __m512i nib = _mm512_set1_epi32(0x0F0F0F0F), sel = _mm512_set1_epi32(0x30201000);
    for (int64_t w = 0; w < cw; w++) {
        const uint32_t *p = P + w * BL_SB_ROWS;
        const __m512i W = _mm512_load_si512(p);
        prefetch_packed(p, s->far);
        const __m512i lo = _mm512_ternarylogic_epi32(W, nib, sel, 0xEA); /* (W & nib) | sel */
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi32(W, 4), nib, sel, 0xEA);
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) {
            const int8_t *tw = tab + (int64_t)t * WORDS * TAB_BYTES + w * TAB_BYTES;
            const __m512i tl = _mm512_load_si512(tw), th = _mm512_load_si512(tw + 64);
            const __m512i mv = _mm512_set1_epi32((int)mult[t * WORDS + w]); /* a load, no shuffle */
            const __m512i a = _mm512_dpbusd_epi32(isum[t], mv, _mm512_permutexvar_epi8(lo, tl));
            isum[t] = _mm512_dpbusd_epi32(a, mv, _mm512_permutexvar_epi8(hi, th));
        }
    }
    __m512 acc[TB_MAX];
    __mmask16 mk[1];
    pass_masks(s->m, b, 1, mk);
    pass_load(Y, s->m, c, b, t0, TB, 1, mk, acc);
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(unit[t]), acc[t]);
    pass_store(Y, s->m, b, t0, TB, 1, mk, acc, h);
}

/* Row blocks [b0, b1) of tb tokens from t0 (a compile-time tb after inlining). It only groups
 * independent accumulations, so it changes no result. */
#define PASSES(TB)                                                                            \
    for (int64_t b = b0; b < b1; b++) pass_i8(&s, c, b, tab, mult, unit, Y, h, t0, (TB))

void bl_sign_avx512_lut_i8(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->m, bl_sb_geometry(S->m, S->n), bl_cpu_is_intel()};
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
            switch (tb) {
            case 1: PASSES(1); break;
            case 2: PASSES(2); break;
            case 3: PASSES(3); break;
            case 4: PASSES(4); break;
            case 5: PASSES(5); break;
            case 6: PASSES(6); break;
            case 7: PASSES(7); break;
            default: PASSES(8); break;
            }
        }
    }
}
#undef PASSES
