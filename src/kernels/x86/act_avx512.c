/* AVX-512 element-wise and attention kernels of the forward pass (specification: the references
 * in ref/act_ref.c, bitllm/kernels.h).
 *
 * exp: e^x = 2^n·e^r with n = round(x·log2 e) and r = x − n·ln 2 (ln 2 in two parts, so r is
 * exact to ~1e-10), |r| ≤ ln2/2; e^r = 1 + r + r²·P(r) with a degree-5 minimax P (the classic
 * single-precision coefficients), then VSCALEFPS applies 2^n with IEEE overflow to inf and
 * underflow to 0. x is first clamped to [−104, 89] (beyond both, the result is already 0 or inf)
 * with the operand order that lets a NaN through. Over 10^7 points of [−104, 89] with a normal
 * result: at most 1 ulp from the correctly rounded value, as glibc's expf; the tests bound the
 * SwiGLU gate and softmax built on it (tests/test_act_kernels.c).
 *
 * Attention of a group of queries that share their keys and values (the query heads of one KV
 * head under GQA, in a decode step): scores in blocks of 16 keys — each key's dot product in the
 * 16 lanes of one accumulator (the head dimension in 16-column slices, the last masked), then the
 * 16 accumulators reduced to one vector of 16 sums by a transposing tree (4 levels of shuffles
 * and adds, instead of 16 horizontal sums), every query of the group on a block while its keys
 * are in L1; e^(s − max) with the vector exp; the values in blocks of 64 positions, each block
 * used by every query while it is in L1, accumulated per query into two sets of registers (even
 * and odd positions) added to the output; the output scaled by 1/Σ at the end. A query's order
 * depends on n and hd only, so its result is the same in any group, alone included. Without the
 * sharing (one query at a time) the keys and values of a 512-position TinyLlama head came from L2
 * for each of the 8 query heads of the group: ~6 ns per position and head. */
#include <immintrin.h>
#include <math.h>

#include "kernels/act_kernels.h"
#include "kernels/x86/sum16_avx512.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m512 exp_ps(__m512 x) {
    /* max(lo, x) and min(hi, ·) return their second operand when either is NaN */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

ALWAYS_INLINE __mmask16 head_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

void bl_silu_mul_avx512(float *h, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = head_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(k, h + i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(h + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

/* x ← e^(x − mx) over n values; returns Σ (lanes, then one horizontal sum). */
static float exp_sub_sum(float *x, int64_t n, float mx) {
    const __m512 m = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = head_mask(n - i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m));
        _mm512_mask_storeu_ps(x + i, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

static float max_of(const float *x, int64_t n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = head_mask(n - i);
        mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, x + i));
    }
    return _mm512_reduce_max_ps(mx);
}

/* x[0..n) ← x·f */
static void scale_by(float *x, int64_t n, float f) {
    const __m512 s = _mm512_set1_ps(f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = head_mask(n - i);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s));
    }
}

void bl_softmax_avx512(float *x, int64_t n) {
    scale_by(x, n, 1.0f / exp_sub_sum(x, n, max_of(x, n)));
}

/* 16 (masked) cached values of row r of K or V from column c (a multiple of 16, so inside one
 * scale block of an int8 row): f32, FP16 widened exactly, or int8 codes times their block's scale
 * (the product rounded as bl_kv_q8_dequantize's; the lanes outside m 0 whatever the scale). */
ALWAYS_INLINE __m512 load_kv(bl_kv_view a, int64_t r, int c, __mmask16 m) {
    const int64_t i = r * a.ld + c;
    if (a.type == BL_KV_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)a.v + i));
    if (a.type == BL_KV_Q8) {
        const __m128i b = _mm_maskz_loadu_epi8(m, (const int8_t *)a.v + i);
        return _mm512_maskz_mul_ps(m, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)),
                                   _mm512_set1_ps(a.s[r * a.lds + c / BL_KV_Q8_BLOCK]));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)a.v + i);
}

/* Rows [r0, r1) of K or V, columns [c0, c0 + cols), into L1 ahead of use (an int8 row's scales
 * with its first columns). Where a head's rows are far apart (the model's cache held every head
 * of a position side by side before it went head-major: 8 or 16 KiB at 7B dims) every row starts
 * a new 4 KiB page, where the hardware's stream prefetchers stop: without this a row's lines were
 * demand misses, and the FP16 cache (half the bytes, as many rows) ran no faster than f32. On the
 * model's head-major cache (rows hd apart) it keeps a few rows in flight ahead of the stream. */
ALWAYS_INLINE void prefetch_rows(bl_kv_view a, int r0, int r1, int c0, int cols) {
    const int64_t esz = bl_kv_value_bytes(a.type);
    for (int r = r0; r < r1; r++) {
        const char *row = (const char *)a.v + ((int64_t)r * a.ld + c0) * esz;
        for (int64_t b = 0; b < cols * esz; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
        if (a.type == BL_KV_Q8 && c0 == 0)
            _mm_prefetch((const char *)(a.s + r * a.lds), _MM_HINT_T0);
    }
}

/* Rows [r0, r1) of a, widened to f32 as load_kv reads them, into dst (rows of hd). */
ALWAYS_INLINE void widen_rows(bl_kv_view a, int r0, int r1, int hd, float *dst) {
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < hd; c += 16) {
            const __mmask16 m = head_mask(hd - c);
            _mm512_mask_storeu_ps(dst + (int64_t)(r - r0) * hd + c, m, load_kv(a, r, c, m));
        }
}

/* How far ahead the rows are fetched: 2 blocks of 16 keys; 16 positions of values. */
#define KEY_AHEAD 32
#define VALUE_AHEAD 16

/* Scores of keys k0 .. k0+nk−1 (nk ≤ 16; full: nk = 16; rows kr .. of K) into P, scaled. */
ALWAYS_INLINE void score_block(const float *q, bl_kv_view K, int hd, int kr, int k0, int nk,
                               __m512 scale, float *P, bool full) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (int c = 0; c < hd; c += 16) {
        const __mmask16 mc = head_mask(hd - c);
        const __m512 qv = _mm512_maskz_loadu_ps(mc, q + c);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            const int key = SIGMA[j];
            if (full || key < nk)
                acc[j] = _mm512_fmadd_ps(qv, load_kv(K, kr + key, c, mc), acc[j]);
        }
    }
    _mm512_mask_storeu_ps(P + k0, head_mask(nk), _mm512_mul_ps(sum16(acc), scale));
}

/* Keys [k0, k1) (rows k − vr of V) of one query's weighted values over the columns
 * [c, c + 16·nv) (nv ≤ 8 slices of 16) added to out (first block: out set), in two chains (even
 * and odd positions). */
ALWAYS_INLINE void weigh_block(bl_kv_view V, int vr, int hd, int k0, int k1, int n,
                               const float *P, float *out, int c, int nv, bool first, bool pf) {
    __m512 e[8], o[8];
    __mmask16 mk[8];
#pragma GCC unroll 8
    for (int s = 0; s < nv; s++) {
        e[s] = o[s] = _mm512_setzero_ps();
        mk[s] = head_mask(hd - (c + 16 * s));
    }
    int k = k0;
    for (; k + 2 <= k1; k += 2) {
        if (pf && k + VALUE_AHEAD + 2 <= n)
            prefetch_rows(V, k + VALUE_AHEAD, k + VALUE_AHEAD + 2, c, 16 * nv);
        const __m512 p0 = _mm512_set1_ps(P[k]), p1 = _mm512_set1_ps(P[k + 1]);
#pragma GCC unroll 8
        for (int s = 0; s < nv; s++) {
            e[s] = _mm512_fmadd_ps(p0, load_kv(V, k - vr, c + 16 * s, mk[s]), e[s]);
            o[s] = _mm512_fmadd_ps(p1, load_kv(V, k + 1 - vr, c + 16 * s, mk[s]), o[s]);
        }
    }
    if (k < k1) {
        const __m512 p0 = _mm512_set1_ps(P[k]);
#pragma GCC unroll 8
        for (int s = 0; s < nv; s++)
            e[s] = _mm512_fmadd_ps(p0, load_kv(V, k - vr, c + 16 * s, mk[s]), e[s]);
    }
#pragma GCC unroll 8
    for (int s = 0; s < nv; s++) {
        __m512 b = _mm512_add_ps(e[s], o[s]);
        if (!first) b = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[s], out + c + 16 * s), b);
        _mm512_mask_storeu_ps(out + c + 16 * s, mk[s], b);
    }
}

/* One query's keys [k0, k1) (rows k − vr of V) over all hd columns, in slice groups of 8, 4, 2
 * and 1 (constant counts, so that each group's accumulators stay in registers). */
ALWAYS_INLINE void weigh_keys(bl_kv_view V, int vr, int hd, int k0, int k1, int n,
                              const float *P, float *out, bool first, bool pf) {
    const int slices = (hd + 15) / 16;
    int s = 0;
    for (; s + 8 <= slices; s += 8) weigh_block(V, vr, hd, k0, k1, n, P, out, 16 * s, 8, first, pf);
    if (s + 4 <= slices) weigh_block(V, vr, hd, k0, k1, n, P, out, 16 * s, 4, first, pf), s += 4;
    if (s + 2 <= slices) weigh_block(V, vr, hd, k0, k1, n, P, out, 16 * s, 2, first, pf), s += 2;
    if (s < slices) weigh_block(V, vr, hd, k0, k1, n, P, out, 16 * s, 1, first, pf);
}

#define KEY_BLOCK 16
#define ATTEND_VEC __m512
#define ATTEND_SET1 _mm512_set1_ps
#include "kernels/x86/attend_chunks.h"

void bl_attend_avx512(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                      int64_t ld, int hd, int n, float scale, float *P, float *out,
                      int64_t out_stride) {
    attend_groups(q, q_stride, G, (bl_kv_view){K, NULL, ld, 0, BL_KV_F32},
                  (bl_kv_view){V, NULL, ld, 0, BL_KV_F32}, hd, n, scale, P, out, out_stride);
}

/* The same on an FP16 cache: every value widened exactly as it is loaded, so the results are
 * bl_attend_avx512's on the widened values, bit for bit. */
void bl_attend_f16_avx512(const float *q, int64_t q_stride, int G, const uint16_t *K,
                          const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                          float *out, int64_t out_stride) {
    attend_groups(q, q_stride, G, (bl_kv_view){K, NULL, ld, 0, BL_KV_F16},
                  (bl_kv_view){V, NULL, ld, 0, BL_KV_F16}, hd, n, scale, P, out, out_stride);
}

/* And on an int8 cache: every value the f32 product of its code and its block's scale, as
 * bl_kv_q8_dequantize computes it, so the results are bl_attend_avx512's on those values. */
void bl_attend_q8_avx512(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,
                         int hd, int n, float scale, float *P, float *out, int64_t out_stride) {
    attend_groups(q, q_stride, G, K, V, hd, n, scale, P, out, out_stride);
}

/* The int8 KV cache's rows (bl_kv_q8_quantize_ref, bit for bit): per block the largest |x| (an
 * exact maximum, any order), the scale and the inverse by the same two IEEE divisions, the codes
 * by one multiplication and VCVTPS2DQ, which rounds to nearest even as the reference's 1.5·2^23
 * addition does for |v| < 2^22; the clamp to ±127 then the narrowing. A block holding an Inf or
 * NaN (|x| ≤ FLT_MAX false in some lane) gets scale NaN and codes 0. */
void bl_kv_q8_quantize_avx512(const float *x, int n, int8_t *codes, float *scales) {
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const __m512 fmax = _mm512_set1_ps(3.402823466e38f);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n; b += BL_KV_Q8_BLOCK) {
        const int len = n - b < BL_KV_Q8_BLOCK ? n - b : BL_KV_Q8_BLOCK;
        const __mmask16 m0 = head_mask(len), m1 = len > 16 ? head_mask(len - 16) : 0;
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + b);
        const __m512 x1 = _mm512_maskz_loadu_ps(m1, x + b + 16);
        const __m512 a0 = _mm512_and_ps(x0, absm), a1 = _mm512_and_ps(x1, absm);
        const __mmask16 f0 = _mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ);
        const __mmask16 f1 = _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ);
        if ((f0 & m0) != m0 || (f1 & m1) != m1) {
            _mm_mask_storeu_epi8(codes + b, m0, _mm_setzero_si128());
            _mm_mask_storeu_epi8(codes + b + 16, m1, _mm_setzero_si128());
            scales[b / BL_KV_Q8_BLOCK] = NAN;
            continue;
        }
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        scales[b / BL_KV_Q8_BLOCK] = amax / 127.0f;
        __m512i c0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv));
        __m512i c1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
        c0 = _mm512_min_epi32(_mm512_max_epi32(c0, lo), hi);
        c1 = _mm512_min_epi32(_mm512_max_epi32(c1, lo), hi);
        _mm_mask_storeu_epi8(codes + b, m0, _mm512_cvtepi32_epi8(c0));
        _mm_mask_storeu_epi8(codes + b + 16, m1, _mm512_cvtepi32_epi8(c1));
    }
}
