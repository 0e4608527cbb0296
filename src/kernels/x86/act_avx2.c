/* AVX2 element-wise and attention kernels of the forward pass (specification: the references in
 * ref/act_ref.c, bitllm/kernels.h): the algorithms of act_avx512.c in 8-lane vectors, for CPUs
 * without AVX-512 (Zen 2/3, client Intel parts), where these steps otherwise ran the scalar
 * references (libm's expf per element, a dot product per key).
 *
 * exp: the same reduction and degree-5 polynomial as act_avx512.c, so the same value before the
 * scaling; AVX2 has no VSCALEFPS, so 2^n (n ∈ [−150, 128] after the clamp to [−104, 89]) is
 * applied as two exact powers of two, 2^⌊n/2⌋ then 2^(n−⌊n/2⌋), each a normal float built in the
 * exponent field: the first product is exact, the second rounds once, to inf above the range and
 * to a subnormal or 0 below it, as VSCALEFPS does. Same error bounds (tests/test_act_kernels.c).
 *
 * Attention: scores in blocks of 8 keys (each key's dot product in the 8 lanes of one
 * accumulator, the head dimension in 8-column slices, the last masked; the 8 accumulators reduced
 * by a transposing tree of VHADDPS), every query of a group on a block while its keys are in L1;
 * e^(s − max); the values in blocks of 64 positions used by every query of the group, in two
 * chains (even and odd positions) over up to 4 slices (8 accumulators: AVX2 has 16 registers);
 * the output scaled by 1/Σ at the end. A query's order depends on n and hd only, so its result is
 * the same in any group, alone included. FP16 caches are widened exactly as they are loaded
 * (VCVTPH2PS), so bl_attend_f16 gives bl_attend's results on the widened values, bit for bit. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/act_kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* 2^k for integer lanes k ∈ [−126, 127]: the exponent field. */
ALWAYS_INLINE __m256 pow2i(__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

ALWAYS_INLINE __m256 exp_ps(__m256 x) {
    /* max(lo, x) and min(hi, ·) return their second operand when either is NaN */
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* NaN lanes: n is NaN, its conversion garbage, p NaN: the product stays NaN */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(h)), pow2i(_mm256_sub_epi32(ni, h)));
}

/* Lanes below `left` set (all from 8 on). */
ALWAYS_INLINE __m256i head_mask(int64_t left) {
    const int k = left >= 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

ALWAYS_INLINE __m256 load_m(const float *p, __m256i m) { return _mm256_maskload_ps(p, m); }

/* The sum of v's 8 lanes: halves, then pairs, then the last two. */
ALWAYS_INLINE float hsum8(__m256 v) {
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

ALWAYS_INLINE float hmax8(__m256 v) {
    const __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 c = _mm_max_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_max_ss(c, _mm_movehdup_ps(c)));
}

/* Lane p of the result: the sum of the lanes of v[p] ((0+1)+(2+3) within each half, then the
 * halves), by a transposing tree of 7 VHADDPS-level steps instead of 8 horizontal sums. */
ALWAYS_INLINE __m256 sum8(const __m256 v[8]) {
    const __m256 a0 = _mm256_hadd_ps(v[0], v[1]), a1 = _mm256_hadd_ps(v[2], v[3]);
    const __m256 a2 = _mm256_hadd_ps(v[4], v[5]), a3 = _mm256_hadd_ps(v[6], v[7]);
    const __m256 b0 = _mm256_hadd_ps(a0, a1), b1 = _mm256_hadd_ps(a2, a3);
    return _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
}

void bl_silu_mul_avx2(float *h, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(h + i);
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    if (i < n) {
        const __m256i k = head_mask(n - i);
        const __m256 g = load_m(h + i, k);
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_maskstore_ps(h + i, k, _mm256_mul_ps(s, load_m(u + i, k)));
    }
}

/* x ← e^(x − mx) over n values; returns Σ (lanes, then one horizontal sum). */
static float exp_sub_sum(float *x, int64_t n, float mx) {
    const __m256 m = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        const __m256i k = head_mask(n - i);
        const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(load_m(x + i, k), m)),
                                       _mm256_castsi256_ps(k));
        _mm256_maskstore_ps(x + i, k, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum8(sum);
}

static float max_of(const float *x, int64_t n) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
    if (i < n) {
        const __m256i k = head_mask(n - i);
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), load_m(x + i, k),
                                                _mm256_castsi256_ps(k)));
    }
    return hmax8(mx);
}

/* x[0..n) ← x·f */
static void scale_by(float *x, int64_t n, float f) {
    const __m256 s = _mm256_set1_ps(f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), s));
    if (i < n) {
        const __m256i k = head_mask(n - i);
        _mm256_maskstore_ps(x + i, k, _mm256_mul_ps(load_m(x + i, k), s));
    }
}

void bl_softmax_avx2(float *x, int64_t n) {
    scale_by(x, n, 1.0f / exp_sub_sum(x, n, max_of(x, n)));
}

/* 8 cached values of row r of K or V from column c (a multiple of 8, so inside one scale block
 * of an int8 row; lanes past `left` 0): f32, FP16 widened exactly, or int8 codes times their
 * block's scale (AVX2 has no masked 8- or 16-bit load, so a short tail goes through a zeroed
 * copy). */
ALWAYS_INLINE __m256 load_kv(bl_kv_view a, int64_t r, int c, int left, __m256i m) {
    const int64_t i = r * a.ld + c;
    if (a.type == BL_KV_F16) {
        const uint16_t *p = (const uint16_t *)a.v + i;
        if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
        uint16_t t[8] = {0};
        memcpy(t, p, sizeof(uint16_t) * (size_t)left);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)t));
    }
    if (a.type == BL_KV_Q8) {
        const int8_t *p = (const int8_t *)a.v + i;
        __m128i b;
        if (left >= 8) b = _mm_loadl_epi64((const __m128i *)(const void *)p);
        else {
            int8_t t[8] = {0};
            memcpy(t, p, (size_t)left);
            b = _mm_loadl_epi64((const __m128i *)(const void *)t);
        }
        const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)),
                                       _mm256_set1_ps(a.s[r * a.lds + c / BL_KV_Q8_BLOCK]));
        return left >= 8 ? v : _mm256_and_ps(v, _mm256_castsi256_ps(m));
    }
    if (left >= 8) return _mm256_loadu_ps((const float *)a.v + i);
    return _mm256_maskload_ps((const float *)a.v + i, m);
}

/* Rows [r0, r1) of K or V, columns [c0, c0 + cols), into L1 ahead of use (an int8 row's scales
 * with its first columns; where rows are far apart each starts a new page, where the stream
 * prefetchers stop; act_avx512.c). */
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
        for (int c = 0; c < hd; c += 8) {
            const int left = hd - c;
            const __m256i m = head_mask(left);
            const __m256 v = load_kv(a, r, c, left, m);
            float *d = dst + (int64_t)(r - r0) * hd + c;
            if (left >= 8) _mm256_storeu_ps(d, v);
            else _mm256_maskstore_ps(d, m, v);
        }
}

#define KEY_AHEAD 16
#define VALUE_AHEAD 16

/* Scores of keys k0 .. k0+nk−1 (nk ≤ 8; full: nk = 8; rows kr .. of K) into P, scaled. */
ALWAYS_INLINE void score_block(const float *q, bl_kv_view K, int hd, int kr, int k0, int nk,
                               __m256 scale, float *P, bool full) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int c = 0; c < hd; c += 8) {
        const int left = hd - c;
        const __m256i mc = head_mask(left);
        const __m256 qv = left >= 8 ? _mm256_loadu_ps(q + c) : load_m(q + c, mc);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            if (full || j < nk)
                acc[j] = _mm256_fmadd_ps(qv, load_kv(K, kr + j, c, left, mc), acc[j]);
    }
    const __m256 s = _mm256_mul_ps(sum8(acc), scale);
    if (full) _mm256_storeu_ps(P + k0, s);
    else _mm256_maskstore_ps(P + k0, head_mask(nk), s);
}

/* Keys [k0, k1) (rows k − vr of V) of one query's weighted values over the columns
 * [c, c + 8·nv) (nv ≤ 4 slices of 8) added to out (first block: out set), in two chains (even
 * and odd positions). */
ALWAYS_INLINE void weigh_block(bl_kv_view V, int vr, int hd, int k0, int k1, int n,
                               const float *P, float *out, int c, int nv, bool first, bool pf) {
    __m256 e[4], o[4];
    __m256i mk[4];
    int left[4];
#pragma GCC unroll 4
    for (int s = 0; s < nv; s++) {
        e[s] = o[s] = _mm256_setzero_ps();
        left[s] = hd - (c + 8 * s);
        mk[s] = head_mask(left[s]);
    }
    int k = k0;
    for (; k + 2 <= k1; k += 2) {
        if (pf && k + VALUE_AHEAD + 2 <= n)
            prefetch_rows(V, k + VALUE_AHEAD, k + VALUE_AHEAD + 2, c, 8 * nv);
        const __m256 p0 = _mm256_set1_ps(P[k]), p1 = _mm256_set1_ps(P[k + 1]);
#pragma GCC unroll 4
        for (int s = 0; s < nv; s++) {
            e[s] = _mm256_fmadd_ps(p0, load_kv(V, k - vr, c + 8 * s, left[s], mk[s]), e[s]);
            o[s] = _mm256_fmadd_ps(p1, load_kv(V, k + 1 - vr, c + 8 * s, left[s], mk[s]), o[s]);
        }
    }
    if (k < k1) {
        const __m256 p0 = _mm256_set1_ps(P[k]);
#pragma GCC unroll 4
        for (int s = 0; s < nv; s++)
            e[s] = _mm256_fmadd_ps(p0, load_kv(V, k - vr, c + 8 * s, left[s], mk[s]), e[s]);
    }
#pragma GCC unroll 4
    for (int s = 0; s < nv; s++) {
        __m256 b = _mm256_add_ps(e[s], o[s]);
        float *dst = out + c + 8 * s;
        if (left[s] >= 8) {
            if (!first) b = _mm256_add_ps(_mm256_loadu_ps(dst), b);
            _mm256_storeu_ps(dst, b);
        } else {
            if (!first) b = _mm256_add_ps(load_m(dst, mk[s]), b);
            _mm256_maskstore_ps(dst, mk[s], b);
        }
    }
}

/* One query's keys [k0, k1) (rows k − vr of V) over all hd columns, in slice groups of 4, 2 and 1. */
ALWAYS_INLINE void weigh_keys(bl_kv_view V, int vr, int hd, int k0, int k1, int n,
                              const float *P, float *out, bool first, bool pf) {
    const int slices = (hd + 7) / 8;
    int s = 0;
    for (; s + 4 <= slices; s += 4) weigh_block(V, vr, hd, k0, k1, n, P, out, 8 * s, 4, first, pf);
    if (s + 2 <= slices) weigh_block(V, vr, hd, k0, k1, n, P, out, 8 * s, 2, first, pf), s += 2;
    if (s < slices) weigh_block(V, vr, hd, k0, k1, n, P, out, 8 * s, 1, first, pf);
}

#define KEY_BLOCK 8
#define ATTEND_VEC __m256
#define ATTEND_SET1 _mm256_set1_ps
#include "kernels/x86/attend_chunks.h"

void bl_attend_avx2(const float *q, int64_t q_stride, int G, const float *K, const float *V,
                    int64_t ld, int hd, int n, float scale, float *P, float *out,
                    int64_t out_stride) {
    attend_groups(q, q_stride, G, (bl_kv_view){K, NULL, ld, 0, BL_KV_F32},
                  (bl_kv_view){V, NULL, ld, 0, BL_KV_F32}, hd, n, scale, P, out, out_stride);
}

void bl_attend_f16_avx2(const float *q, int64_t q_stride, int G, const uint16_t *K,
                        const uint16_t *V, int64_t ld, int hd, int n, float scale, float *P,
                        float *out, int64_t out_stride) {
    attend_groups(q, q_stride, G, (bl_kv_view){K, NULL, ld, 0, BL_KV_F16},
                  (bl_kv_view){V, NULL, ld, 0, BL_KV_F16}, hd, n, scale, P, out, out_stride);
}

void bl_attend_q8_avx2(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,
                       int hd, int n, float scale, float *P, float *out, int64_t out_stride) {
    attend_groups(q, q_stride, G, K, V, hd, n, scale, P, out, out_stride);
}

/* The int8 KV cache's rows (bl_kv_q8_quantize_ref, bit for bit; as the AVX-512 version, in four
 * vectors of 8, a short block through a zeroed copy). */
void bl_kv_q8_quantize_avx2(const float *x, int n, int8_t *codes, float *scales) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 fmax = _mm256_set1_ps(3.402823466e38f);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int b = 0; b < n; b += BL_KV_Q8_BLOCK) {
        const int len = n - b < BL_KV_Q8_BLOCK ? n - b : BL_KV_Q8_BLOCK;
        float t[BL_KV_Q8_BLOCK];
        const float *xb = x + b;
        if (len < BL_KV_Q8_BLOCK) { /* a short block through a zeroed copy */
            memset(t, 0, sizeof t);
            xb = memcpy(t, x + b, sizeof(float) * (size_t)len);
        }
        __m256 v[4], mx = _mm256_setzero_ps();
        int finite = 1;
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            const __m256 a = _mm256_and_ps(v[k], absm);
            finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, fmax, _CMP_LE_OQ)) == 0xFF;
            mx = _mm256_max_ps(mx, a);
        }
        if (!finite) {
            memset(codes + b, 0, (size_t)len);
            scales[b / BL_KV_Q8_BLOCK] = NAN;
            continue;
        }
        const float amax = hmax8(mx);
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        scales[b / BL_KV_Q8_BLOCK] = amax / 127.0f;
        __m256i c[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            c[k] = _mm256_min_epi32(
                _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv)), lo), hi);
        /* int32 → int16 → int8 with saturation (exact after the clamp); the packs work within
         * 128-bit lanes, so the permute puts the 32 bytes back in order */
        const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]),
                                             _mm256_packs_epi32(c[2], c[3]));
        const __m256i o = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        if (len == BL_KV_Q8_BLOCK) _mm256_storeu_si256((__m256i *)(void *)(codes + b), o);
        else {
            int8_t ob[BL_KV_Q8_BLOCK];
            _mm256_storeu_si256((__m256i *)(void *)ob, o);
            memcpy(codes + b, ob, (size_t)len);
        }
    }
}
