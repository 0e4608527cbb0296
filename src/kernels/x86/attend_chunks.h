/* The attention driver shared by act_avx2.c and act_avx512.c, included by each after its own
 * vector primitives (as half_rows.h is by the dense kernels), so it is compiled once per ISA:
 * scores in blocks of KEY_BLOCK keys, every query of a group on a block while its keys are in L1;
 * e^(s − max) and Σ; the values in blocks of VBLOCK positions, each used by every query of the
 * group; the outputs scaled by 1/Σ at the end.
 *
 * The including file defines KEY_BLOCK (keys per score block: its vector's lanes), KEY_AHEAD and
 * VALUE_AHEAD (prefetch distances), ATTEND_VEC and ATTEND_SET1 (its vector type and broadcast),
 * and score_block, weigh_keys, widen_rows, exp_sub_sum, max_of, scale_by and prefetch_rows. */
#ifndef BITLLM_KERNELS_X86_ATTEND_CHUNKS_H
#define BITLLM_KERNELS_X86_ATTEND_CHUNKS_H

/* Positions per block of the value pass: the block's values (64 × hd floats, 16 KiB at hd = 64)
 * stay in L1 while every query of the group uses them. */
#define VBLOCK 64

/* At most QCHUNK queries at a time (the inverses of their sums on the stack). */
#define QCHUNK 16

/* Scores of keys k0 .. k0+nk−1 for the G queries; with w, the keys widened into w first. */
ALWAYS_INLINE void score_keys(const float *q, int64_t q_stride, int G, bl_kv_view K, int hd,
                              int k0, int nk, ATTEND_VEC sc, float *P, int n, bool full, float *w) {
    if (w) {
        widen_rows(K, k0, k0 + nk, hd, w);
        const bl_kv_view W = {w, NULL, hd, 0, BL_KV_F32};
        for (int g = 0; g < G; g++)
            score_block(q + g * q_stride, W, hd, 0, k0, nk, sc, P + (int64_t)g * n, full);
    } else
        for (int g = 0; g < G; g++)
            score_block(q + g * q_stride, K, hd, k0, k0, nk, sc, P + (int64_t)g * n, full);
}

/* w (a constant NULL, or scratch for VBLOCK rows of hd floats): FP16 or int8 rows shared by a
 * group of queries widened to f32 once per block, every query's products then on those rows. */
ALWAYS_INLINE void attend_chunk(const float *q, int64_t q_stride, int G, bl_kv_view K,
                                bl_kv_view V, int hd, int n, float scale, float *P, float *out,
                                int64_t out_stride, float *w) {
    const ATTEND_VEC sc = ATTEND_SET1(scale);
    /* scores, key block by key block, every query of the group on the block while it is in L1 */
    int k0 = 0;
    if (n > KEY_BLOCK) prefetch_rows(K, KEY_BLOCK, n < KEY_AHEAD ? n : KEY_AHEAD, 0, hd);
    for (; k0 + KEY_BLOCK <= n; k0 += KEY_BLOCK) {
        if (k0 + KEY_AHEAD < n) /* the block after next */
            prefetch_rows(K, k0 + KEY_AHEAD,
                          k0 + KEY_AHEAD + KEY_BLOCK < n ? k0 + KEY_AHEAD + KEY_BLOCK : n, 0, hd);
        score_keys(q, q_stride, G, K, hd, k0, KEY_BLOCK, sc, P, n, true, w);
    }
    if (k0 < n) score_keys(q, q_stride, G, K, hd, k0, n - k0, sc, P, n, false, w);
    /* unnormalised probabilities e^(s − max); 1/Σ scales the outputs at the end */
    float inv[QCHUNK];
    for (int g = 0; g < G; g++) {
        float *Pg = P + (int64_t)g * n;
        inv[g] = 1.0f / exp_sub_sum(Pg, n, max_of(Pg, n));
    }
    prefetch_rows(V, 0, n < VALUE_AHEAD ? n : VALUE_AHEAD, 0, hd);
    for (int b = 0; b < n; b += VBLOCK) {
        const int b1 = n - b < VBLOCK ? n : b + VBLOCK;
        if (w) {
            widen_rows(V, b, b1, hd, w);
            if (b1 < n) prefetch_rows(V, b1, n - b1 < VALUE_AHEAD ? n : b1 + VALUE_AHEAD, 0, hd);
            const bl_kv_view W = {w, NULL, hd, 0, BL_KV_F32};
            for (int g = 0; g < G; g++)
                weigh_keys(W, b, hd, b, b1, n, P + (int64_t)g * n, out + g * out_stride, b == 0,
                           false);
        } else
            for (int g = 0; g < G; g++) /* the first query of the group fetches ahead */
                weigh_keys(V, 0, hd, b, b1, n, P + (int64_t)g * n, out + g * out_stride, b == 0,
                           g == 0);
    }
    for (int g = 0; g < G; g++) scale_by(out + g * out_stride, hd, inv[g]);
}

/* The int8 cache's attend_chunk for a group of queries (GQA): each block of keys and of values
 * widened once (the same values as load_kv's, in the same order: the same bits) instead of being
 * sign-extended, converted and scaled again for each query. Head dims up to WIDEN_HD. On the FP16
 * cache the widening is a single VCVTPH2PS, which the extra stores and loads cost more than
 * (measured), so it reads its rows directly. */
#define WIDEN_HD 256
static void attend_chunk_widened(const float *q, int64_t q_stride, int G, bl_kv_view K,
                                 bl_kv_view V, int hd, int n, float scale, float *P, float *out,
                                 int64_t out_stride) {
    float w[VBLOCK * WIDEN_HD] __attribute__((aligned(64)));
    K.type = V.type = BL_KV_Q8;
    attend_chunk(q, q_stride, G, K, V, hd, n, scale, P, out, out_stride, w);
}

/* attend_chunk compiled once per cache type (the type a constant inside each). */
#define ATTEND_CHUNK_FOR(name, TYPE)                                                              \
    static void name(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,       \
                     int hd, int n, float scale, float *P, float *out, int64_t out_stride) {    \
        K.type = V.type = (TYPE);                                                                 \
        attend_chunk(q, q_stride, G, K, V, hd, n, scale, P, out, out_stride, NULL);               \
    }
ATTEND_CHUNK_FOR(attend_chunk_f32, BL_KV_F32)
ATTEND_CHUNK_FOR(attend_chunk_f16, BL_KV_F16)
ATTEND_CHUNK_FOR(attend_chunk_q8, BL_KV_Q8)
#undef ATTEND_CHUNK_FOR

/* The G queries in chunks of at most QCHUNK, on keys and values of K's cache type. */
typedef void (*attend_chunk_fn)(const float *q, int64_t q_stride, int G, bl_kv_view K,
                                bl_kv_view V, int hd, int n, float scale, float *P, float *out,
                                int64_t out_stride);
static void attend_groups(const float *q, int64_t q_stride, int G, bl_kv_view K, bl_kv_view V,
                          int hd, int n, float scale, float *P, float *out, int64_t out_stride) {
    for (int g = 0; g < G; g += QCHUNK) {
        const int c = G - g < QCHUNK ? G - g : QCHUNK;
        const attend_chunk_fn chunk = K.type == BL_KV_F16        ? attend_chunk_f16
                                      : K.type != BL_KV_Q8       ? attend_chunk_f32
                                      : c > 1 && hd <= WIDEN_HD ? attend_chunk_widened
                                                                 : attend_chunk_q8;
        chunk(q + g * q_stride, q_stride, c, K, V, hd, n, scale, P + (int64_t)g * n,
              out + g * out_stride, out_stride);
    }
}

#endif
