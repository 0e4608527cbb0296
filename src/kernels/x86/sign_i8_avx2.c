/* AVX2 sign-matrix product with int8 lookup tables (BL_TABLES_I8), for CPUs without the VBMI and
 * VNNI of sign_i8_avx512vbmi.c: the same numerics (bl_sign_matmul_i8_ref, bit for bit) on 32-byte
 * vectors and the packed layout of sign_kernels.h.
 *
 * VPSHUFB looks up 16 bytes per 128-bit lane: exactly one group's 16 codes. A lane can hold one
 * table only, so the 16 bytes of a lane must be 16 rows' nibbles of the same group: a pass takes
 * two 16-row blocks (32 rows) and turns each word's four 32-byte row vectors into four vectors
 * Z_k = byte k of the 32 rows' words (word_index: an in-lane 4×4 byte transposition, then
 * VPUNPCK of dwords and qwords; lane L, byte 4u + i holds row 8u + 4L + i). The low and high
 * nibbles of Z_k index groups 2k and 2k + 1, whose table (16 bytes, broadcast to both lanes) one
 * VPSHUFB reads for all 32 rows.
 *
 * Summation, exact in integers: a code is at most 127 in magnitude (−128 for a NaN entry), a
 * word's multiplier up to 255, so VPMADDUBSW by the multiplier would saturate int16
 * (2·255·127 > 32767). Instead each row's 8 codes of a word are summed first (|Σ| ≤ 1024 fits
 * int16), then multiplied and widened by VPMADDWD. Both sums take adjacent elements together,
 * and adjacent bytes of a lookup are different rows; so Z_1 and Z_3 are built with the rows of
 * each byte pair swapped (bytes 2s and 2s+1 hold the rows Z_0 has at 2s+1 and 2s), and a VPBLENDVB of groups g (rows in order) and
 * g + 2 (swapped) puts one row's two codes side by side (the other blend the next row's): one
 * VPMADDUBSW by 1s adds them into int16. Four such pairs give, per word, E (the even rows' sums)
 * and O (the odd rows'). VPMADDWD then takes two words at once: VPUNPCKL/HWD of E_w and E_{w+1}
 * against the pair (mult_w, mult_{w+1}), into int32 sums that span the 512-column chunk (one block
 * of the specification) and meet the f32 output once per chunk, with one FMA by the unit.
 *
 * Per word, token and 32 rows: 8 VPSHUFB + 8 VPBLENDVB + 8 VPMADDUBSW + 6 VPADDW, and half of
 * (4 VPUNPCK + 4 VPMADDWD + 4 VPADDD): 36 instructions for 1024 sign·input products, with 8
 * table broadcasts and (batches) 8 index loads. The f32 AVX2 tables (sign_avx2.c) spend 44
 * VPERMPS + 44 VADDPS on the same. Shared by every token of a pass: the index vectors, 4 loads,
 * 12 shuffles and 12 nibble operations per word and 32 rows; a batch stores them once per pass
 * (4 KiB) and reads them as VPSHUFB operands, one token reuses them in registers. A range with
 * an odd number of blocks ends with one block paired with zero bits (its 16 extra rows are not
 * stored). On one Zen 3 core (no AVX-512), 5632×2048: 80-93 µs at T = 1 against 269 for the f32
 * tables, 410 µs at T = 8 against 1604 (docs/performance.md, "Int8 sign tables on AVX2").
 *
 * Numerics: the tables are quantized here with the same f32 operations in the same order as the
 * specification (entries ((±x0 ± x1) ± x2) ± x3, maxima, unit, multipliers, inverse, rounding by
 * VCVTPS2DQ under the default rounding mode as nearbyintf, saturation by VPACKSS, which gives −128
 * for NaN as the specification does). No product feeds an addition directly (the scaled inputs go
 * through the group transposition first, the scalar steps are single operations), so contraction
 * into FMA, which the -std=c11 build does not do anyway, could not change a bit; the one FMA is
 * the specification's y = fma(sum, unit, y). */
#include "kernels/sign_kernels.h"

#include <immintrin.h>
#include <math.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define TB_MAX 8                /* tokens per pass: 8 × 2 KiB of tables per chunk, as AVX-512 */
#define WORDS BL_SB_CHUNK_WORDS /* words per chunk */
#define TAB_BYTES 128           /* per word and token: the 8 groups' 16 codes, group-major */
_Static_assert(32 * WORDS == BL_SIGN_I8_BLOCK, "a chunk is one block of the specification");
_Static_assert(WORDS % 2 == 0, "VPMADDWD takes a chunk's words in pairs");

/* ---- tables ---- */

/* x[j..j+7] (times s[·] when s is not NULL, the product rounded to f32 as a separate pass would),
 * 0 past n. */
ALWAYS_INLINE __m256 load_scaled8(const float *x, const float *s, int64_t n, int64_t j) {
    const int64_t left = n - j;
    if (left <= 0) return _mm256_setzero_ps();
    if (left >= 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        return s ? _mm256_mul_ps(v, _mm256_loadu_ps(s + j)) : v;
    }
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 v = _mm256_maskload_ps(x + j, mk);
    return s ? _mm256_mul_ps(v, _mm256_maskload_ps(s + j, mk)) : v;
}

/* The 8 groups of one word from column col0, one group per lane: xb[b] = input b of groups
 * 0, 2, 4, 6 (lanes 0-3) and 1, 3, 5, 7 (lanes 4-7), by a 4×4 transposition in each 128-bit lane
 * (inputs 8p..8p+7 are groups 2p and 2p+1). */
ALWAYS_INLINE void word_groups(const float *x, const float *s, int64_t n, int64_t col0,
                               __m256 xb[4]) {
    __m256 v[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) v[q] = load_scaled8(x, s, n, col0 + 8 * q);
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    xb[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    xb[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    xb[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    xb[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
}

/* Largest lane of a (no NaN lanes: any order gives the same value). */
ALWAYS_INLINE float hmax8(__m256 a) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Tables of one token for the cw words of chunk c (one block of the specification): group g of
 * word w has its 16 codes at tab[w·128 + 16g + e]; the multipliers of words 2p and 2p+1 in
 * mpair[p] (low and high int16, 0 for the word past an odd cw); the block's unit in *unit.
 *
 * One word (8 groups, one per lane) at a time. A group's largest |entry| is its all-signs-aligned
 * entry ((|x0| + |x1|) + |x2|) + |x3|, bit for bit (negation is exact and rounding monotone; with
 * a NaN input every entry is NaN and the max drops it as the specification's does). The 16
 * entries come from the butterfly of lut_avx512.h's group_entries16 (the specification's
 * additions, in its order), the codes from VCVTPS2DQ of entry·inv_w packed with signed
 * saturation (int32 → int16 → int8, the same as one int32 → int8 saturation); VPACKSS leaves
 * lane L holding code(4q + j, group 2p + L) at byte 4j + p, which an in-lane 4×4 byte
 * transposition and a 4×4 dword transposition turn group-major. */
static inline void build_i8(const float *x, const float *xs, int64_t n, int64_t c, int64_t cw,
                            int8_t *tab, uint32_t *mpair, float *unit) {
    __m256 xg[WORDS][4];
    float maxw[WORDS], M = 0.0f;
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t w = 0; w < cw; w++) {
        word_groups(x, xs, n, c * BL_SB_CHUNK_COLS + 32 * w, xg[w]);
        __m256 a = _mm256_add_ps(_mm256_and_ps(xg[w][0], absm), _mm256_and_ps(xg[w][1], absm));
        a = _mm256_add_ps(a, _mm256_and_ps(xg[w][2], absm));
        a = _mm256_add_ps(a, _mm256_and_ps(xg[w][3], absm));
        /* the NaN-dropping max of the specification: a NaN lane gives way to +0 */
        maxw[w] = hmax8(_mm256_max_ps(a, _mm256_setzero_ps()));
        M = maxw[w] > M ? maxw[w] : M;
    }
    if (M < 0x1p-100f) M = 0.0f; /* a block this small counts as zero (the specification) */
    const float k = M > 0.0f ? 255.0f / M : 0.0f, k127 = 127.0f * k;
    *unit = M / 32385.0f;
    int mw[WORDS + 1];
    float inv[WORDS];
    for (int64_t w = 0; w < cw; w++) {
        const float r = ceilf(maxw[w] * k);
        mw[w] = r >= 255.0f ? 255 : r >= 1.0f ? (int)r : 1;
        inv[w] = k127 / (float)mw[w];
    }
    mw[cw] = 0;
    for (int64_t p = 0; 2 * p < cw; p++)
        mpair[p] = (uint32_t)mw[2 * p] | (uint32_t)mw[2 * p + 1] << 16;
    const __m256 neg = _mm256_set1_ps(-0.0f);
    const __m256i tr4 = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0,
                                         4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int64_t w = 0; w < cw; w++) {
        const __m256 *xb = xg[w];
        const __m256 iv = _mm256_set1_ps(inv[w]);
        const __m256 nx0 = _mm256_xor_ps(xb[0], neg), nx1 = _mm256_xor_ps(xb[1], neg);
        const __m256 nx2 = _mm256_xor_ps(xb[2], neg), nx3 = _mm256_xor_ps(xb[3], neg);
        const __m256 q[4] = {_mm256_add_ps(xb[0], xb[1]), _mm256_add_ps(nx0, xb[1]),
                             _mm256_add_ps(xb[0], nx1), _mm256_add_ps(nx0, nx1)};
        __m256i code[16];
#pragma GCC unroll 4
        for (int e = 0; e < 4; e++) { /* entry e: bit b set, input b negated */
            const __m256 r0 = _mm256_add_ps(q[e], xb[2]), r1 = _mm256_add_ps(q[e], nx2);
            code[e] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(r0, xb[3]), iv));
            code[e + 4] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(r1, xb[3]), iv));
            code[e + 8] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(r0, nx3), iv));
            code[e + 12] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_add_ps(r1, nx3), iv));
        }
        __m256i R[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) /* entries 4j..4j+3, then group-major within each dword */
            R[j] = _mm256_shuffle_epi8(
                _mm256_packs_epi16(_mm256_packs_epi32(code[4 * j], code[4 * j + 1]),
                                   _mm256_packs_epi32(code[4 * j + 2], code[4 * j + 3])),
                tr4);
        const __m256i u0 = _mm256_unpacklo_epi32(R[0], R[1]), u1 = _mm256_unpackhi_epi32(R[0], R[1]);
        const __m256i u2 = _mm256_unpacklo_epi32(R[2], R[3]), u3 = _mm256_unpackhi_epi32(R[2], R[3]);
        __m256i *t = (__m256i *)(tab + w * TAB_BYTES); /* groups 2p | 2p+1 per 32 bytes */
        _mm256_store_si256(t, _mm256_unpacklo_epi64(u0, u2));
        _mm256_store_si256(t + 1, _mm256_unpackhi_epi64(u0, u2));
        _mm256_store_si256(t + 2, _mm256_unpacklo_epi64(u1, u3));
        _mm256_store_si256(t + 3, _mm256_unpackhi_epi64(u1, u3));
    }
}

/* ---- products ---- */

typedef struct {
    const uint32_t *packed;
    int64_t m;
    bl_sb_geom g;
} src_t;

/* Byte k of the 32 rows' words w of blocks b (p: the word of its 16 rows) and b+1 (p + next;
 * rows of zero bits when !two), Z[k] lane L byte 4u + i = row 8u + 4L + i, except that Z[1] and Z[3] swap the
 * rows of each byte pair (byte 4u + i holds row 8u + 4L + (i ^ 1)). */
ALWAYS_INLINE void word_index(const uint32_t *p, int64_t next, bool two, __m256i Z[4]) {
    /* lane bytes 4k + i <- byte k of lane row i (k even) or i ^ 1 (k odd) */
    const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 5, 1, 13, 9, 2, 6, 10, 14, 7, 3, 15, 11, 0, 4,
                                        8, 12, 5, 1, 13, 9, 2, 6, 10, 14, 7, 3, 15, 11);
    const __m256i a = _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)p), tr);
    const __m256i b = _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(p + 8)), tr);
    _mm_prefetch((const char *)p + BL_SB_PREFETCH_BYTES, _MM_HINT_T0);
    __m256i c = _mm256_setzero_si256(), d = _mm256_setzero_si256();
    if (two) {
        c = _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(p + next)), tr);
        d = _mm256_shuffle_epi8(_mm256_load_si256((const __m256i *)(p + next + 8)), tr);
        _mm_prefetch((const char *)(p + next) + BL_SB_PREFETCH_BYTES, _MM_HINT_T0);
    }
    const __m256i ab_lo = _mm256_unpacklo_epi32(a, b), ab_hi = _mm256_unpackhi_epi32(a, b);
    const __m256i cd_lo = _mm256_unpacklo_epi32(c, d), cd_hi = _mm256_unpackhi_epi32(c, d);
    Z[0] = _mm256_unpacklo_epi64(ab_lo, cd_lo);
    Z[1] = _mm256_unpackhi_epi64(ab_lo, cd_lo);
    Z[2] = _mm256_unpacklo_epi64(ab_hi, cd_hi);
    Z[3] = _mm256_unpackhi_epi64(ab_hi, cd_hi);
}

/* VPSHUFB indices of the 8 groups: group 2k from the low nibbles of Z[k], 2k+1 from the high. */
ALWAYS_INLINE void word_nibbles(const __m256i Z[4], __m256i idx[8]) {
    const __m256i nib = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        idx[2 * k] = _mm256_and_si256(Z[k], nib);
        idx[2 * k + 1] = _mm256_and_si256(_mm256_srli_epi16(Z[k], 4), nib);
    }
}

ALWAYS_INLINE __m256i table16(const int8_t *t) {
    return _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t));
}

/* One word of one token: *E (int16 lane L slot s) = Σ of the 8 codes of row 2s's position, i.e.
 * row 8(s>>1) + 4L + 2(s&1), and *O the same for the row after it. Groups g (rows in order) and
 * g + 2 (pairs swapped) are blended so that each int16 holds one row's two codes. */
ALWAYS_INLINE void word_sums(const __m256i *idx, const int8_t *tw, __m256i *E, __m256i *O) {
    const __m256i ones = _mm256_set1_epi8(1), odd = _mm256_set1_epi16((short)0x8000);
    __m256i e = _mm256_setzero_si256(), o = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        const int g = q < 2 ? q : q + 2; /* 0, 1, 4, 5 with 2, 3, 6, 7 */
        const __m256i a = _mm256_shuffle_epi8(table16(tw + 16 * g), idx[g]);
        const __m256i b = _mm256_shuffle_epi8(table16(tw + 16 * (g + 2)), idx[g + 2]);
        const __m256i se = _mm256_maddubs_epi16(ones, _mm256_blendv_epi8(a, b, odd));
        const __m256i so = _mm256_maddubs_epi16(ones, _mm256_blendv_epi8(b, a, odd));
        e = q ? _mm256_add_epi16(e, se) : se;
        o = q ? _mm256_add_epi16(o, so) : so;
    }
    *E = e;
    *O = o;
}

/* acc += two words' sums times their multipliers (mp: mult_w | mult_{w+1} << 16), in int32:
 * acc[0] rows 4L + {0, 2, 8, 10}, acc[1] 4L + {16, 18, 24, 26}, acc[2] and acc[3] the rows
 * after those. */
ALWAYS_INLINE void pair_acc(__m256i acc[4], __m256i E0, __m256i O0, __m256i E1, __m256i O1,
                            __m256i mp) {
    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_unpacklo_epi16(E0, E1), mp));
    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_unpackhi_epi16(E0, E1), mp));
    acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(_mm256_unpacklo_epi16(O0, O1), mp));
    acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(_mm256_unpackhi_epi16(O0, O1), mp));
}

/* The chunk's sums into token row y (Y + t·m) for rows row0.. (16 or 32 of them, clipped to m):
 * y = fma(sum, unit, y), from +0 in chunk 0; times h[i] after the last chunk (h not NULL). */
ALWAYS_INLINE void pass_out(const __m256i acc[4], float *y, int64_t m, int64_t row0, int64_t c,
                            float unit, const float *h, bool two) {
    const __m256i r[4] = {_mm256_unpacklo_epi32(acc[0], acc[2]),  /* rows 0-7 */
                          _mm256_unpackhi_epi32(acc[0], acc[2]),  /* 8-15 */
                          _mm256_unpacklo_epi32(acc[1], acc[3]),  /* 16-23 */
                          _mm256_unpackhi_epi32(acc[1], acc[3])}; /* 24-31 */
    const __m256 u = _mm256_set1_ps(unit);
    for (int q = 0; q < (two ? 4 : 2); q++) {
        const int64_t i0 = row0 + 8 * q, left = m - i0;
        if (left <= 0) break;
        const __m256 s = _mm256_cvtepi32_ps(r[q]);
        if (left >= 8) {
            __m256 v = _mm256_fmadd_ps(s, u, c == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(y + i0));
            if (h) v = _mm256_mul_ps(v, _mm256_loadu_ps(h + i0));
            _mm256_storeu_ps(y + i0, v);
        } else {
            const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256 v = _mm256_fmadd_ps(s, u, c == 0 ? _mm256_setzero_ps()
                                                    : _mm256_maskload_ps(y + i0, mk));
            if (h) v = _mm256_mul_ps(v, _mm256_maskload_ps(h + i0, mk));
            _mm256_maskstore_ps(y + i0, mk, v);
        }
    }
}

/* *E, *O of word w of one token (tw: its tables), from ib (the index vectors, 8 per word) or,
 * ib NULL, from the packed words at P. */
ALWAYS_INLINE void word_step(const uint32_t *P, int64_t cw, bool two, const __m256i *ib,
                             const int8_t *tab, int64_t w, __m256i *E, __m256i *O) {
    if (ib) {
        word_sums(ib + 8 * w, tab + w * TAB_BYTES, E, O);
    } else {
        __m256i Z[4], idx[8];
        word_index(P + w * BL_SB_ROWS, cw * BL_SB_ROWS, two, Z);
        word_nibbles(Z, idx);
        word_sums(idx, tab + w * TAB_BYTES, E, O);
    }
}

/* One token (its chunk tables tab, multipliers mpair, unit) over chunk c of blocks b and b+1
 * (b only when !two); ib as word_step's. */
ALWAYS_INLINE void pass_token(const src_t *s, int64_t c, int64_t b, bool two, const __m256i *ib,
                              const int8_t *tab, const uint32_t *mpair, float unit, float *y,
                              const float *h) {
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = s->packed + bl_sb_offset(&s->g, c, b, 0);
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    __m256i E0, O0, E1, O1;
    int64_t w = 0;
    for (; w + 2 <= cw; w += 2) {
        word_step(P, cw, two, ib, tab, w, &E0, &O0);
        word_step(P, cw, two, ib, tab, w + 1, &E1, &O1);
        pair_acc(acc, E0, O0, E1, O1, _mm256_set1_epi32((int)mpair[w / 2]));
    }
    if (w < cw) { /* an odd last word: paired with itself, the second multiplier 0 */
        word_step(P, cw, two, ib, tab, w, &E0, &O0);
        pair_acc(acc, E0, O0, E0, O0, _mm256_set1_epi32((int)mpair[w / 2]));
    }
    pass_out(acc, y, s->m, b * BL_SB_ROWS, c, unit, h, two);
}

/* tb tokens over chunk c of blocks b, b+1: one token builds its indices as it goes, a batch builds
 * them once into ib (chunk words × 8 vectors) and each token reads them. */
ALWAYS_INLINE void pass_blocks(const src_t *s, int64_t c, int64_t b, bool two, int tb,
                               __m256i *ib, const int8_t *tab, const uint32_t *mpair,
                               const float *unit, float *Y, const float *h, int64_t t0) {
    if (tb == 1) {
        pass_token(s, c, b, two, NULL, tab, mpair, unit[0], Y + t0 * s->m, h);
        return;
    }
    const int64_t cw = bl_sb_chunk_words(&s->g, c);
    const uint32_t *P = s->packed + bl_sb_offset(&s->g, c, b, 0);
    for (int64_t w = 0; w < cw; w++) {
        __m256i Z[4];
        word_index(P + w * BL_SB_ROWS, cw * BL_SB_ROWS, two, Z);
        word_nibbles(Z, ib + 8 * w);
    }
    for (int t = 0; t < tb; t++)
        pass_token(s, c, b, two, ib, tab + t * WORDS * TAB_BYTES, mpair + t * (WORDS / 2),
                   unit[t], Y + (t0 + t) * s->m, h);
}

void bl_sign_avx2_lut_i8(const bl_sign_job *j, int64_t b0, int64_t b1) {
    const bl_signmat *S = j->S;
    const src_t s = {j->packed, S->m, bl_sb_geometry(S->m, S->n)};
    int8_t tab[TB_MAX * WORDS * TAB_BYTES] __attribute__((aligned(32)));
    __m256i ib[WORDS * 8];
    uint32_t mpair[TB_MAX * (WORDS / 2)];
    float unit[TB_MAX];
    for (int64_t c = 0; c < s.g.chunks; c++) {
        const int64_t cw = bl_sb_chunk_words(&s.g, c);
        const float *h = c == s.g.chunks - 1 ? j->out_scale : NULL; /* after the last chunk */
        for (int64_t t0 = 0; t0 < j->T; t0 += TB_MAX) {
            const int tb = j->T - t0 < TB_MAX ? (int)(j->T - t0) : TB_MAX;
            for (int t = 0; t < tb; t++)
                build_i8(j->in + (t0 + t) * S->n, j->in_scale, S->n, c, cw,
                         tab + t * WORDS * TAB_BYTES, mpair + t * (WORDS / 2), unit + t);
            int64_t b = b0;
            for (; b + 2 <= b1; b += 2)
                pass_blocks(&s, c, b, true, tb, ib, tab, mpair, unit, j->out, h, t0);
            if (b < b1) pass_blocks(&s, c, b, false, tb, ib, tab, mpair, unit, j->out, h, t0);
        }
    }
}
