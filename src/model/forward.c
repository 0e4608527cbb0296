/* The decoder forward pass in f32 with a KV cache. A batch of T tokens goes through every
 * projection as one T-row matrix product; attention is computed per (sequence, head) pair in
 * parallel, each pair summing in a fixed order, so results do not depend on the thread count.
 * Every parallel step runs on the state's own thread pool (bitllm/pool.h), never on OpenMP.
 *
 * A state may hold several sequences, each in its own KV-cache slot. One call then stacks the new
 * tokens of several sequences as the rows of one batch: the projections, norms and MLP run once
 * over all rows, attention runs per sequence over its own slot. The single-sequence calls are
 * the same code with one sequence in slot 0. Every step is row-wise (the linear-layer kernels
 * give each row the same result whatever else is in the batch, format.h) or per sequence with the
 * same arguments as when the sequence runs alone, so a sequence's results do not depend on what
 * it was batched with.
 *
 * The cache holds f32 values, FP16 or int8 codes with a scale per 32 values (bl_model.kv_cache,
 * bitllm/kernels.h's bl_kv_type: half or ~0.28 of the memory and of the attention's reads at
 * long contexts or many sequences): keys and values are rounded as they are stored; decode
 * attention reads them as they are (bl_attend_f16 / bl_attend_q8, widening each value as it
 * loads it), and prompts and levels without those kernels widen a head's visible rows into the
 * thread's scratch before the same kernels run. Either way the results are those of an f32 cache
 * holding the rounded values, independent of batch and threads as before. */
#include "bitllm/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/parallel.h"
#include "core/simd.h"
#include <stdlib.h>
#include <string.h>

/* One sequence of a call: its slot, its rows in the batch and the position of the first. */
typedef struct {
    int slot, row0, n, pos0;
} seq_span;

struct bl_state {
    const bl_model *m;
    int n_slots, max_seq, max_batch;
    int *pos; /* [n_slots]: tokens in each slot's cache */
    int q_dim, kv_dim;
    /* [slot][layer][kv head][max_seq][head_dim] of f32, FP16 or int8 codes (m->kv_cache) */
    void *k_cache, *v_cache;
    size_t kv_elem; /* bytes per cached value: 4, 2 or 1 */
    /* BL_KV_Q8: the codes' scales, [slot][layer][kv head][max_seq][kv_nbs] */
    float *k_scale, *v_scale;
    int kv_nbs; /* scales per row of head_dim codes */
    /* FP16 and int8 caches: [n_threads][2·max_seq·head_dim], a unit's keys, values in f32 */
    float *kv_scratch;
    float *rope_cos, *rope_sin; /* [max_seq][head_dim/2] */
    float *x, *xb, *q, *k, *v, *att, *tmp; /* batch rows */
    float *hb, *hb2;
    float *scores; /* [n_threads][min(max_batch, max_seq)·max_seq] */
    float *logit_rows; /* [n_slots][vocab]: last-token logits of a multi-sequence call */
    int n_threads;
    bl_pool *pool;
    bl_exec ex; /* the pool and the model's ISA level */
    float *work;
    size_t work_floats;
    seq_span *spans;      /* [max_batch]: the sequences of the call being computed */
    int n_spans;
    int *row_slot, *row_pos; /* [max_batch]: slot and position of each row */
    int32_t *row_tok;        /* [max_batch]: the tokens of a multi-sequence call, stacked */
    int *out_rows;           /* [max_batch]: the rows whose logits a call computes */
    uint8_t *row_bad;        /* [max_batch]: residual_rows' non-finite flags */
    bl_observer_fn observe;
    void *observe_ctx;
    int layer; /* layer being computed, for the observer */
};

void bl_state_set_observer(bl_state *s, bl_observer_fn fn, void *ctx) {
    s->observe = fn;
    s->observe_ctx = ctx;
}

static size_t max_workspace(const bl_model *m, int B) {
    size_t w = m->output.ops->workspace_floats(&m->output, B);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const bl_linear *L = &m->layers[l].proj[p];
            size_t s = L->ops->workspace_floats(L, B);
            if (s > w) w = s;
        }
    return w;
}

void bl_state_free(bl_state *s) {
    if (!s) return;
    bl_pool_free(s->pool);
    float **bufs[] = {&s->kv_scratch, &s->rope_cos, &s->rope_sin, &s->x,       &s->xb,
                      &s->q,          &s->k,        &s->v,        &s->att,     &s->tmp,
                      &s->hb,         &s->hb2,      &s->scores,   &s->work,    &s->logit_rows,
                      &s->k_scale,    &s->v_scale};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) bl_aligned_free(*bufs[i]);
    bl_aligned_free(s->k_cache);
    bl_aligned_free(s->v_cache);
    free(s->pos);
    free(s->spans);
    free(s->row_slot);
    free(s->row_pos);
    free(s->row_tok);
    free(s->out_rows);
    free(s->row_bad);
    free(s);
}

static void *alloc_elems(size_t a, size_t b, size_t elem, bool *ok) {
    size_t n;
    if (bl_mul_overflows(a, b, &n) || bl_mul_overflows(n, elem, &n)) {
        *ok = false;
        return NULL;
    }
    void *p = bl_aligned_alloc_large(n);
    if (!p) *ok = false;
    return p;
}

static float *alloc_floats(size_t a, size_t b, bool *ok) {
    return alloc_elems(a, b, sizeof(float), ok);
}

/* Attention scores one thread needs: one span of at most min(max_batch, max_seq) queries of a
 * head, or the query heads of one KV head (GQA group) for one query. */
static size_t scores_per_thread(const bl_state *s) {
    const int span = s->max_batch < s->max_seq ? s->max_batch : s->max_seq;
    const int group = s->m->cfg.n_heads / s->m->cfg.n_kv_heads;
    return (size_t)(span > group ? span : group) * (size_t)s->max_seq;
}

double bl_kv_cache_bytes_per_token(const bl_model *m) {
    const bl_config *c = &m->cfg;
    double row = (double)bl_kv_value_bytes(m->kv_cache) * c->head_dim;
    if (m->kv_cache == BL_KV_Q8) row += sizeof(float) * (double)bl_kv_q8_scales(c->head_dim);
    return 2.0 * c->n_layers * c->n_kv_heads * row;
}

int bl_state_threads(const bl_state *s) { return s->n_threads; }

bl_pool *bl_state_pool(const bl_state *s) { return s->pool; }

bl_status bl_state_new(const bl_model *m, int max_seq, int max_batch, int n_threads,
                       bl_state **out, bl_err *err) {
    return bl_state_new_slots(m, 1, max_seq, max_batch, n_threads, out, err);
}

bl_status bl_state_new_slots(const bl_model *m, int n_slots, int max_seq, int max_batch,
                             int n_threads, bl_state **out, bl_err *err) {
    *out = NULL;
    const bl_config *c = &m->cfg;
    if (max_seq <= 0 || max_batch <= 0 || n_slots <= 0)
        return bl_fail(err, BL_ERR_ARG, "context length, batch and slot count must be positive");
    bl_state *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_slots = n_slots;
    s->max_seq = max_seq;
    /* one call fills at most max_seq positions of each of its sequences */
    const int64_t most = (int64_t)n_slots * max_seq;
    s->max_batch = max_batch < most ? max_batch : (int)most;
    s->q_dim = c->n_heads * c->head_dim;
    s->kv_dim = c->n_kv_heads * c->head_dim;
    s->layer = -1;
    bl_blas_single_thread();
    bl_status st = bl_pool_new(n_threads, &s->pool, err);
    if (st) {
        free(s);
        return st;
    }
    s->n_threads = bl_pool_size(s->pool);
    s->ex.pool = s->pool;
    s->ex.isa = m->isa;
    s->ex.tables = m->sign_tables;
    const size_t B = (size_t)s->max_batch, half = (size_t)c->head_dim / 2;
    const size_t cache_rows = (size_t)n_slots * (size_t)c->n_layers * (size_t)max_seq;
    bool ok = true;
    s->pos = calloc((size_t)n_slots, sizeof *s->pos);
    s->spans = calloc(B, sizeof *s->spans);
    s->row_slot = calloc(B, sizeof *s->row_slot);
    s->row_pos = calloc(B, sizeof *s->row_pos);
    s->row_tok = calloc(B, sizeof *s->row_tok);
    s->out_rows = calloc(B, sizeof *s->out_rows);
    s->row_bad = calloc(B, sizeof *s->row_bad);
    if (!s->pos || !s->spans || !s->row_slot || !s->row_pos || !s->row_tok || !s->out_rows ||
        !s->row_bad)
        ok = false;
    s->kv_elem = (size_t)bl_kv_value_bytes(m->kv_cache);
    s->k_cache = alloc_elems(cache_rows, (size_t)s->kv_dim, s->kv_elem, &ok);
    s->v_cache = alloc_elems(cache_rows, (size_t)s->kv_dim, s->kv_elem, &ok);
    if (m->kv_cache == BL_KV_Q8) {
        s->kv_nbs = bl_kv_q8_scales(c->head_dim);
        const size_t per_row = (size_t)c->n_kv_heads * (size_t)s->kv_nbs;
        s->k_scale = alloc_floats(cache_rows, per_row, &ok);
        s->v_scale = alloc_floats(cache_rows, per_row, &ok);
    }
    if (m->kv_cache != BL_KV_F32)
        s->kv_scratch =
            alloc_floats((size_t)s->n_threads, 2 * (size_t)max_seq * (size_t)c->head_dim, &ok);
    if (n_slots > 1) s->logit_rows = alloc_floats((size_t)n_slots, (size_t)c->vocab_size, &ok);
    s->rope_cos = alloc_floats((size_t)max_seq, half, &ok);
    s->rope_sin = alloc_floats((size_t)max_seq, half, &ok);
    s->x = alloc_floats(B, (size_t)c->dim, &ok);
    s->xb = alloc_floats(B, (size_t)c->dim, &ok);
    s->tmp = alloc_floats(B, (size_t)c->dim, &ok);
    s->q = alloc_floats(B, (size_t)s->q_dim, &ok);
    s->att = alloc_floats(B, (size_t)s->q_dim, &ok);
    s->k = alloc_floats(B, (size_t)s->kv_dim, &ok);
    s->v = alloc_floats(B, (size_t)s->kv_dim, &ok);
    s->hb = alloc_floats(B, (size_t)c->hidden_dim, &ok);
    s->hb2 = alloc_floats(B, (size_t)c->hidden_dim, &ok);
    s->scores = alloc_floats((size_t)s->n_threads, scores_per_thread(s), &ok);
    s->work_floats = max_workspace(m, s->max_batch);
    s->work = alloc_floats(s->work_floats ? s->work_floats : 1, 1, &ok);
    if (!ok) {
        bl_state_free(s);
        return bl_fail(err, BL_ERR_NOMEM, "cannot allocate the KV cache for %d x %d tokens",
                       n_slots, max_seq);
    }
    /* Angles in double: positions up to 10^5 times frequencies near 1 keep full accuracy. */
    for (int p = 0; p < max_seq; p++)
        for (size_t i = 0; i < half; i++) {
            double a = (double)p * (double)m->rope_inv_freq[i];
            s->rope_cos[(size_t)p * half + i] = (float)cos(a);
            s->rope_sin[(size_t)p * half + i] = (float)sin(a);
        }
    *out = s;
    return BL_OK;
}

void bl_state_reset(bl_state *s) { s->pos[0] = 0; }
int bl_state_pos(const bl_state *s) { return s->pos[0]; }
void bl_state_truncate(bl_state *s, int pos) { bl_state_slot_truncate(s, 0, pos); }
int bl_state_slots(const bl_state *s) { return s->n_slots; }
int bl_state_max_batch(const bl_state *s) { return s->max_batch; }
int bl_state_slot_pos(const bl_state *s, int slot) {
    return slot >= 0 && slot < s->n_slots ? s->pos[slot] : 0;
}
void bl_state_slot_truncate(bl_state *s, int slot, int pos) {
    if (slot >= 0 && slot < s->n_slots && pos >= 0 && pos < s->pos[slot]) s->pos[slot] = pos;
}

/* KV head h of layer l of a slot's key (or value) cache: max_seq rows of head_dim values (f32,
 * FP16 or int8 codes), one row per position. Head-major, so that the rows decode attention reads
 * for one head are contiguous: with the positions' rows of all heads side by side (kv_dim apart, 8 KiB
 * at 7B dims in FP16) every row of a head started a new 4 KiB page, where the hardware's stream
 * prefetchers stop (batch-8 decode steps at ~1040 positions, 7B dims, two threads: 222-274 ms
 * before, 168-171 after; docs/performance.md, "A head-major KV cache"). */
static uint8_t *cache_at(const bl_state *s, void *cache, int slot, int l, int h) {
    const bl_config *c = &s->m->cfg;
    return (uint8_t *)cache +
           (((size_t)slot * c->n_layers + (size_t)l) * c->n_kv_heads + (size_t)h) * s->max_seq *
               c->head_dim * s->kv_elem;
}

/* The scales of cache_at's rows (BL_KV_Q8): max_seq rows of kv_nbs. */
static float *scales_at(const bl_state *s, float *scales, int slot, int l, int h) {
    const bl_config *c = &s->m->cfg;
    return scales + (((size_t)slot * c->n_layers + (size_t)l) * c->n_kv_heads + (size_t)h) *
                        s->max_seq * s->kv_nbs;
}

void bl_state_slot_copy(bl_state *s, int dst, int src, int n) {
    if (dst < 0 || dst >= s->n_slots || src < 0 || src >= s->n_slots || dst == src || n < 0 ||
        n > s->pos[src])
        return;
    const size_t bytes = (size_t)n * s->m->cfg.head_dim * s->kv_elem;
    for (int l = 0; l < s->m->cfg.n_layers; l++)
        for (int h = 0; h < s->m->cfg.n_kv_heads; h++) {
            memcpy(cache_at(s, s->k_cache, dst, l, h), cache_at(s, s->k_cache, src, l, h), bytes);
            memcpy(cache_at(s, s->v_cache, dst, l, h), cache_at(s, s->v_cache, src, l, h), bytes);
            if (!s->k_scale) continue;
            const size_t sb = (size_t)n * s->kv_nbs * sizeof(float);
            memcpy(scales_at(s, s->k_scale, dst, l, h), scales_at(s, s->k_scale, src, l, h), sb);
            memcpy(scales_at(s, s->v_scale, dst, l, h), scales_at(s, s->v_scale, src, l, h), sb);
        }
    s->pos[dst] = n;
}

/* A row of kv_dim values (every KV head's head_dim) into position p of a slot's layer l cache
 * (rounded to FP16, or to int8 codes with their scales). */
static void cache_store(const bl_state *s, void *cache, float *scales, int slot, int l, int p,
                        const float *row) {
    const int hd = s->m->cfg.head_dim;
    for (int h = 0; h < s->m->cfg.n_kv_heads; h++) {
        uint8_t *dst = cache_at(s, cache, slot, l, h) + (size_t)p * hd * s->kv_elem;
        const float *src = row + (size_t)h * hd;
        switch (s->m->kv_cache) {
        case BL_KV_F16: bl_f32_to_f16_n(src, (uint16_t *)(void *)dst, (size_t)hd); break;
        case BL_KV_Q8:
            bl_kv_q8_quantize(src, hd, (int8_t *)(void *)dst,
                              scales_at(s, scales, slot, l, h) + (size_t)p * s->kv_nbs);
            break;
        default: memcpy(dst, src, (size_t)hd * sizeof(float)); break;
        }
    }
}

/* The first n rows of a KV head (cache_at, scales_at) widened to f32 into dst (n·head_dim). */
static void cache_widen(const bl_state *s, const void *rows, const float *scales, int n,
                        float *dst) {
    const int hd = s->m->cfg.head_dim;
    if (s->m->kv_cache == BL_KV_F16) {
        bl_half_to_f32(BL_DT_F16, rows, dst, (size_t)n * hd);
        return;
    }
    for (int r = 0; r < n; r++)
        bl_kv_q8_dequantize((const int8_t *)rows + (size_t)r * hd, scales + (size_t)r * s->kv_nbs,
                            hd, dst + (size_t)r * hd);
}

/* Σx² in double as 8 interleaved partial sums (element i into sum i mod 8), added pairwise at
 * the end: one running sum was a chain of n dependent double additions (~5 µs per 4096-wide row,
 * 2 % of a batched 7B decode step); the order is fixed, so the bits do not depend on the ISA. */
#define SQ(k) ((double)x[i + (k)] * x[i + (k)])
static double sum_squares(const float *x, int n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += SQ(0), a1 += SQ(1), a2 += SQ(2), a3 += SQ(3);
        a4 += SQ(4), a5 += SQ(5), a6 += SQ(6), a7 += SQ(7);
    }
    const int r = n - i; /* the last r < 8 elements: into sums 0..r−1 */
    if (r > 0) a0 += SQ(0);
    if (r > 1) a1 += SQ(1);
    if (r > 2) a2 += SQ(2);
    if (r > 3) a3 += SQ(3);
    if (r > 4) a4 += SQ(4);
    if (r > 5) a5 += SQ(5);
    if (r > 6) a6 += SQ(6);
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7));
}
#undef SQ

/* out = x·scale·w; out may be x (the q/k norms work in place). Groups of 8 read before they are
 * written, as straight-line code the compiler vectorizes (one element at a time it could not:
 * out might overlap x or w). */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    const double ss = sum_squares(x, n);
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float a[8], b[8], o[8];
        memcpy(a, x + i, sizeof a);
        memcpy(b, w + i, sizeof b);
        for (int k = 0; k < 8; k++) o[k] = a[k] * scale * b[k];
        memcpy(out + i, o, sizeof o);
    }
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Rotates the pairs (v[a], v[b]) of one head by the angles of cs/sn: a = 2i, b = 2i + 1
 * (interleaved) or a = i, b = i + half. Two loops rather than a choice per element, so the
 * compiler vectorizes the second (the usual layout); the same operations either way. */
static void rope(float *restrict v, int head_dim, const float *restrict cs,
                 const float *restrict sn, bool interleaved) {
    const int half = head_dim / 2;
    if (interleaved) {
        for (int i = 0; i < half; i++) {
            const float x0 = v[2 * i], x1 = v[2 * i + 1];
            v[2 * i] = x0 * cs[i] - x1 * sn[i];
            v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
        }
        return;
    }
    float *restrict lo = v, *restrict hi = v + half;
    int i = 0;
    for (; i + 4 <= half; i += 4) { /* straight-line groups of 4: vectorized at -O2 */
        float a[4], b[4];
        memcpy(a, lo + i, sizeof a);
        memcpy(b, hi + i, sizeof b);
        lo[i] = a[0] * cs[i] - b[0] * sn[i];
        lo[i + 1] = a[1] * cs[i + 1] - b[1] * sn[i + 1];
        lo[i + 2] = a[2] * cs[i + 2] - b[2] * sn[i + 2];
        lo[i + 3] = a[3] * cs[i + 3] - b[3] * sn[i + 3];
        hi[i] = a[0] * sn[i] + b[0] * cs[i];
        hi[i + 1] = a[1] * sn[i + 1] + b[1] * cs[i + 1];
        hi[i + 2] = a[2] * sn[i + 2] + b[2] * cs[i + 2];
        hi[i + 3] = a[3] * sn[i + 3] + b[3] * cs[i + 3];
    }
    for (; i < half; i++) {
        const float x0 = lo[i], x1 = hi[i];
        lo[i] = x0 * cs[i] - x1 * sn[i];
        hi[i] = x0 * sn[i] + x1 * cs[i];
    }
}

static void add_bias(float *y, const float *bias, int T, int n) {
    if (!bias) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += bias[i];
}

static void linear(bl_state *s, const bl_linear *L, const float *x, int T, float *y) {
    if (s->observe && s->layer >= 0) {
        const bl_layer *ly = &s->m->layers[s->layer];
        s->observe(s->observe_ctx, s->layer, (int)(L - ly->proj), x, T, L->n);
    }
    L->ops->forward(L, x, T, y, s->work, &s->ex);
}

/* The per-token steps between the products (norms, RoPE, the cache write) go across the pool
 * from this many tokens (a batched decode step, a prefill): each token's row is computed whole by
 * one thread, so the bits do not depend on the split. One token stays on the calling thread,
 * where a dispatch would cost about what the step does. */
#define TOKENS_PAR_MIN 2

typedef struct {
    bl_state *s;
    const bl_layer *ly;
    int l;
    const float *w; /* norm_rows: the weights */
} token_job;

static void rope_rows(void *ctx, int64_t t0, int64_t t1);

/* s->xb = RMSNorm(s->x) with weights w, row by row. */
static void norm_range(void *ctx, int64_t t0, int64_t t1) {
    const token_job *j = ctx;
    const bl_config *c = &j->s->m->cfg;
    const size_t D = (size_t)c->dim;
    for (int64_t t = t0; t < t1; t++)
        rmsnorm(j->s->xb + (size_t)t * D, j->s->x + (size_t)t * D, j->w, c->dim, c->norm_eps);
}

static void norm_rows(bl_state *s, const float *w, int T) {
    token_job j = {s, NULL, 0, w};
    bl_pool_for(s->pool, T, T >= TOKENS_PAR_MIN, norm_range, &j);
}

/* Q/K/V projections, optional bias and q/k norm, RoPE, and the cache write. */
static void attention_inputs(bl_state *s, const bl_layer *ly, int l, int T) {
    linear(s, &ly->proj[BL_PROJ_Q], s->xb, T, s->q);
    linear(s, &ly->proj[BL_PROJ_K], s->xb, T, s->k);
    linear(s, &ly->proj[BL_PROJ_V], s->xb, T, s->v);
    add_bias(s->q, ly->bias[0], T, s->q_dim);
    add_bias(s->k, ly->bias[1], T, s->kv_dim);
    add_bias(s->v, ly->bias[2], T, s->kv_dim);
    token_job j = {s, ly, l, NULL};
    bl_pool_for(s->pool, T, T >= TOKENS_PAR_MIN, rope_rows, &j);
}

/* Rows [t0, t1) of attention_inputs: q/k norm, RoPE and the cache write, row by row (each row its
 * own position in its own slot, so rows are independent). */
static void rope_rows(void *ctx, int64_t t0, int64_t t1) {
    const token_job *j = ctx;
    bl_state *s = j->s;
    const bl_layer *ly = j->ly;
    const int l = j->l;
    const bl_config *c = &s->m->cfg;
    const int hd = c->head_dim, half = hd / 2;
    for (int64_t t = t0; t < t1; t++) {
        const int p = s->row_pos[t];
        const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
        for (int h = 0; h < c->n_heads; h++) {
            float *qh = s->q + (size_t)t * s->q_dim + (size_t)h * hd;
            if (ly->q_norm) rmsnorm(qh, qh, ly->q_norm, hd, c->norm_eps);
            rope(qh, hd, cs, sn, c->rope_interleaved);
        }
        for (int h = 0; h < c->n_kv_heads; h++) {
            float *kh = s->k + (size_t)t * s->kv_dim + (size_t)h * hd;
            if (ly->k_norm) rmsnorm(kh, kh, ly->k_norm, hd, c->norm_eps);
            rope(kh, hd, cs, sn, c->rope_interleaved);
        }
        cache_store(s, s->k_cache, s->k_scale, s->row_slot[t], l, p, s->k + (size_t)t * s->kv_dim);
        cache_store(s, s->v_cache, s->v_scale, s->row_slot[t], l, p, s->v + (size_t)t * s->kv_dim);
    }
}

/* Causal attention of the batch's queries over the cache (GQA: kv head = head / group). Per
 * sequence and head, the sequence's T queries attend over its own slot: for T <= SMALL_T the
 * query heads of a KV head together, one position at a time (bl_attend: keys and values read
 * once for the group), else head by head and in blocks of ATT_QBLOCK queries, as one product
 * Q·K_hᵀ and one product P·V_h over the positions the block sees. The units — (sequence, KV
 * head, a part of its query heads), the parts only as fine as the thread count needs — are
 * split across the pool's threads, each computed whole by one thread; a
 * head's result depends neither on its unit nor on the other sequences (bl_attend gives the
 * same bits in any group; the choice of method depends on the sequence's own T only), so not on
 * the thread count. Thread ith uses scores block ith (ith < n_threads). */
/* Sequences of at most this many new tokens attend query by query instead of with two BLAS
 * calls. Attention runs on one thread below ATT_PAR_MIN multiply-adds (queries × positions ×
 * head dim × heads; TinyLlama's decode step reaches it at 32 positions, ~5 µs with the AVX-512
 * kernel: 9.8 µs per layer at 64), where waking the pool would cost about what it saves. */
#define SMALL_T 4
#define ATT_PAR_MIN 65536.0
/* Longer spans go in blocks of this many queries, each block's two products over the positions
 * its last query sees (not the whole span's), so the causal mask's upper triangle is mostly not
 * computed: 1024 tokens from position 0 cost 53 % of the whole-span products' flops. */
#define ATT_QBLOCK 64

typedef struct {
    bl_state *s;
    int l;
    int sub; /* each GQA group's query heads in `sub` units of group/sub heads */
} attn_job;

/* The first key a query at position p sees: the start of its sliding window (0 without one). */
static inline int window_lo(const bl_config *c, int p) {
    return c->sliding_window > 0 && p >= c->sliding_window ? p - c->sliding_window + 1 : 0;
}

static void attention_units(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    bl_state *s = j->s;
    const int l = j->l;
    const bl_config *c = &s->m->cfg;
    const int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, G = group / j->sub;
    const int units_per_span = c->n_kv_heads * j->sub;
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    float *P = s->scores + (size_t)ith * scores_per_thread(s);
    int64_t u0, u1;
    bl_split_range((int64_t)s->n_spans * units_per_span, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        const seq_span *sp = &s->spans[u / units_per_span];
        const int h0 = (int)(u % units_per_span) * G, kvh = h0 / group, T = sp->n;
        const float *q0 = s->q + (size_t)sp->row0 * s->q_dim + (size_t)h0 * hd;
        float *out0 = s->att + (size_t)sp->row0 * s->q_dim + (size_t)h0 * hd;
        /* the KV head's rows of the slot's layer cache, f32, FP16 or int8, hd values apart */
        const void *kc = cache_at(s, s->k_cache, sp->slot, l, kvh);
        const void *vc = cache_at(s, s->v_cache, sp->slot, l, kvh);
        const float *ks = s->k_scale ? scales_at(s, s->k_scale, sp->slot, l, kvh) : NULL;
        const float *vs = s->v_scale ? scales_at(s, s->v_scale, sp->slot, l, kvh) : NULL;
        const bl_kv_type type = s->m->kv_cache;
        /* row r of the head's keys and values, and of their scales */
        const size_t row_bytes = (size_t)hd * s->kv_elem;
#define ROW(base, r) ((const void *)((const uint8_t *)(base) + (size_t)(r) * row_bytes))
#define SROW(sc, r) ((sc) ? (sc) + (size_t)(r) * s->kv_nbs : NULL)
        if (T <= SMALL_T && type != BL_KV_F32) { /* decode on the cache as it is */
            bool fused = true; /* the level has the kernel for every query or for none */
            for (int t = 0; t < T && fused; t++) {
                const float *q = q0 + (size_t)t * s->q_dim;
                float *out = out0 + (size_t)t * s->q_dim;
                const int p = sp->pos0 + t, lo = window_lo(c, p), n = p + 1 - lo;
                fused = type == BL_KV_F16
                            ? bl_attend_f16(q, hd, G, ROW(kc, lo), ROW(vc, lo), hd, hd, n,
                                            inv_sqrt, P, out, hd, s->ex.isa)
                            : bl_attend_q8(q, hd, G, ROW(kc, lo), SROW(ks, lo), ROW(vc, lo),
                                           SROW(vs, lo), hd, s->kv_nbs, hd, n, inv_sqrt, P, out,
                                           hd, s->ex.isa);
            }
            if (fused) continue;
        }
        /* kh, vh: the keys and values from the unit's first visible one (lo0) on */
        const int lo0 = window_lo(c, sp->pos0);
        const float *kh = ROW(kc, lo0), *vh = ROW(vc, lo0);
        const int64_t ld = hd; /* row stride of kh and vh */
        if (type != BL_KV_F32) { /* the head's visible rows widened into this thread's scratch */
            float *kf = s->kv_scratch + (size_t)ith * 2 * (size_t)s->max_seq * (size_t)hd;
            float *vf = kf + (size_t)s->max_seq * (size_t)hd;
            const int n = sp->pos0 + T - lo0; /* the keys the unit's queries see */
            cache_widen(s, ROW(kc, lo0), SROW(ks, lo0), n, kf);
            cache_widen(s, ROW(vc, lo0), SROW(vs, lo0), n, vf);
            kh = kf, vh = vf;
        }
#undef ROW
#undef SROW
        if (T <= SMALL_T) { /* decode: the G heads together, one query position at a time */
            for (int t = 0; t < T; t++) {
                const int p = sp->pos0 + t, lo = window_lo(c, p);
                bl_attend(q0 + (size_t)t * s->q_dim, hd, G, kh + (size_t)(lo - lo0) * ld,
                          vh + (size_t)(lo - lo0) * ld, ld, hd, p + 1 - lo, inv_sqrt, P,
                          out0 + (size_t)t * s->q_dim, hd, s->ex.isa);
            }
            continue;
        }
        for (int h = 0; h < G; h++)
            for (int t0 = 0; t0 < T; t0 += ATT_QBLOCK) { /* causal: a block sees its prefix */
                const int tb = T - t0 < ATT_QBLOCK ? T - t0 : ATT_QBLOCK;
                /* keys [lo, last]: from the first query's window start to the last query */
                const int pa = sp->pos0 + t0, lo = window_lo(c, pa);
                const int nb = pa + tb - lo;
                const float *q = q0 + (size_t)t0 * s->q_dim + (size_t)h * hd;
                float *out = out0 + (size_t)t0 * s->q_dim + (size_t)h * hd;
                const float *kb = kh + (size_t)(lo - lo0) * ld, *vb = vh + (size_t)(lo - lo0) * ld;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, nb, hd, inv_sqrt, q,
                            s->q_dim, kb, ld, 0.0f, P, nb);
                for (int t = 0; t < tb; t++) {
                    float *row = P + (size_t)t * nb;
                    /* row t sees keys [first, end) of the block's */
                    const int first = window_lo(c, pa + t) - lo, end = pa + t + 1 - lo;
                    for (int k = 0; k < first; k++) row[k] = 0.0f;
                    bl_softmax(row + first, end - first, s->ex.isa);
                    for (int k = end; k < nb; k++) row[k] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, hd, nb, 1.0f, P, nb,
                            vb, ld, 0.0f, out, s->q_dim);
            }
    }
}

static void attention(bl_state *s, int l) {
    const bl_config *c = &s->m->cfg;
    double work = 0.0;
    for (int i = 0; i < s->n_spans; i++)
        work += (double)s->spans[i].n *
                (s->spans[i].pos0 + s->spans[i].n - window_lo(c, s->spans[i].pos0)) *
                c->head_dim * c->n_heads;
    const int group = c->n_heads / c->n_kv_heads;
    int nth = work > ATT_PAR_MIN ? s->n_threads : 1;
    /* the fewest units per GQA group (a divisor of the group) that give every thread one */
    int sub = 1;
    while (sub < group && (int64_t)s->n_spans * c->n_kv_heads * sub < nth) {
        sub++;
        while (group % sub) sub++;
    }
    const int64_t units = (int64_t)s->n_spans * c->n_kv_heads * sub;
    if (units < nth) nth = (int)units;
    attn_job j = {s, l, sub};
    bl_pool_run_n(s->pool, nth, attention_units, &j);
}

/* SwiGLU's activation, hb = silu(hb)·hb2 (bl_silu_mul), over elements [i0, i1): element-wise, so
 * any split gives the same bits. Split across the pool from SWIGLU_PAR_MIN elements: a decode
 * step's 5632 (TinyLlama) take 1.3 µs with the vector exp, less than waking the other threads
 * (12 µs with libm's expf, when they were split from 4096); a batched step's 8 × 5632, ~10 µs,
 * are split (a dispatch to running workers costs ~0.5 µs). */
#define SWIGLU_PAR_MIN 16384
#define SWIGLU_UNIT 1024

typedef struct {
    float *hb;
    const float *hb2;
    int64_t n;
    bl_isa isa;
} swiglu_job;

static void swiglu_range(void *ctx, int64_t u0, int64_t u1) {
    const swiglu_job *j = ctx;
    const int64_t i0 = u0 * SWIGLU_UNIT, i1 = u1 * SWIGLU_UNIT < j->n ? u1 * SWIGLU_UNIT : j->n;
    bl_silu_mul(j->hb + i0, j->hb2 + i0, i1 - i0, j->isa);
}

static void mlp(bl_state *s, const bl_layer *ly, int T) {
    const int H = s->m->cfg.hidden_dim;
    linear(s, &ly->proj[BL_PROJ_GATE], s->xb, T, s->hb);
    linear(s, &ly->proj[BL_PROJ_UP], s->xb, T, s->hb2);
    const int64_t n = (int64_t)T * H;
    swiglu_job j = {s->hb, s->hb2, n, s->ex.isa};
    bl_pool_for(s->pool, (n + SWIGLU_UNIT - 1) / SWIGLU_UNIT, n >= SWIGLU_PAR_MIN, swiglu_range,
                &j);
    linear(s, &ly->proj[BL_PROJ_DOWN], s->hb, T, s->tmp);
}

/* x += d over n elements, eight per step as straight-line code the compiler vectorizes (one
 * element at a time it did not). */
static void residual_add(float *restrict x, const float *restrict d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) x[i + k] += d[i + k];
    for (; i < n; i++) x[i] += d[i];
}

/* Whether one of n floats is NaN or ±Inf (the F32 dtype's scan, vectorized). */
static bool any_nonfinite(const float *r, int64_t n) {
    return bl_dtype_info(BL_DT_F32)->find_nonfinite(r, (size_t)n) < (size_t)n;
}

/* Index of the first row (of T rows of n floats) holding a NaN or Inf, or -1 (any_nonfinite per
 * row): per layer the two checks read the T×dim residual stream twice, against the 2·T·(4·dim² +
 * 3·dim·hidden) flops of the layer's projections (dim ≥ 64: under 0.2% of the layer, not
 * measurable in practice); the logits check reads T×vocab floats against the head's
 * 2·T·vocab·dim flops. */
static int first_nonfinite_row(const float *x, int T, int64_t n) {
    for (int t = 0; t < T; t++)
        if (any_nonfinite(x + (size_t)t * (size_t)n, n)) return t;
    return -1;
}

/* s->x += s->tmp row by row, flagging the rows left holding a NaN or Inf (row_bad). */
static void residual_range(void *ctx, int64_t t0, int64_t t1) {
    bl_state *s = ctx;
    const int64_t D = s->m->cfg.dim;
    for (int64_t t = t0; t < t1; t++) {
        residual_add(s->x + t * D, s->tmp + t * D, (size_t)D);
        s->row_bad[t] = any_nonfinite(s->x + t * D, D);
    }
}

/* The residual add after attention or the MLP; the first row holding a non-finite value, or -1. */
static int residual_rows(bl_state *s, int T) {
    bl_pool_for(s->pool, T, T >= TOKENS_PAR_MIN, residual_range, s);
    for (int t = 0; t < T; t++)
        if (s->row_bad[t]) return t;
    return -1;
}

/* A non-finite activation stops the pass with an error naming the model file, what (layer and
 * part, or tensor) and the token position (and the sequence's slot in a multi-sequence state). */
static bl_status nonfinite(const bl_state *s, int row, bl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bl_status nonfinite(const bl_state *s, int row, bl_err *err, const char *fmt, ...) {
    char what[200], slot[32] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (s->n_slots > 1) snprintf(slot, sizeof slot, " of slot %d", s->row_slot[row]);
    return bl_fail(err, BL_ERR_NUMERIC, "%s: non-finite value (NaN or Inf) %s at token position "
                   "%d%s", s->m->path ? s->m->path : "model", what, s->row_pos[row], slot);
}

/* The decoder layers over the T <= max_batch rows of s->spans (tokens row by row); afterwards
 * s->x holds the last hidden state of every row. The slots advance only once the whole call has
 * succeeded (commit), so a failing call leaves every cache as it was. */
static bl_status forward_rows(bl_state *s, const int32_t *tokens, int T, bl_err *err) {
    const bl_model *m = s->m;
    const bl_config *c = &m->cfg;
    const int D = c->dim;
    int bad;
    for (int i = 0; i < s->n_spans; i++)
        for (int t = 0; t < s->spans[i].n; t++) {
            s->row_slot[s->spans[i].row0 + t] = s->spans[i].slot;
            s->row_pos[s->spans[i].row0 + t] = s->spans[i].pos0 + t;
        }
    for (int t = 0; t < T; t++)
        if (m->embed.ops) m->embed.ops->get_row(&m->embed, tokens[t], s->x + (size_t)t * D);
        else bl_tensor_row_f32(&m->tok_embd, tokens[t], D, s->x + (size_t)t * D);
    if ((bad = first_nonfinite_row(s->x, T, D)) >= 0)
        return nonfinite(s, bad, err, "in the embedding of token %d (model.embed_tokens.weight)",
                         tokens[bad]);
    for (int l = 0; l < c->n_layers; l++) {
        const bl_layer *ly = &m->layers[l];
        s->layer = l;
        norm_rows(s, ly->attn_norm, T);
        attention_inputs(s, ly, l, T);
        attention(s, l);
        linear(s, &ly->proj[BL_PROJ_O], s->att, T, s->tmp);
        if ((bad = residual_rows(s, T)) >= 0)
            return nonfinite(s, bad, err, "in layer %d after attention (model.layers.%d: "
                             "input_layernorm, q/k/v/o_proj)", l, l);
        norm_rows(s, ly->ffn_norm, T);
        mlp(s, ly, T);
        if ((bad = residual_rows(s, T)) >= 0)
            return nonfinite(s, bad, err, "in layer %d after the MLP (model.layers.%d: "
                             "post_attention_layernorm, gate/up/down_proj)", l, l);
    }
    s->layer = -1; /* the output head is not a decoder projection */
    return BL_OK;
}

static void commit(bl_state *s) {
    for (int i = 0; i < s->n_spans; i++) s->pos[s->spans[i].slot] += s->spans[i].n;
}

/* Logits of n rows of s->x, listed in rows (NULL: rows first..first+n-1), into out (n×vocab):
 * final norm into s->xb, then one product with the output head. */
static bl_status output_head(bl_state *s, const int *rows, int first, int n, float *out,
                             bl_err *err) {
    const bl_config *c = &s->m->cfg;
    const int D = c->dim;
    int bad;
    for (int k = 0; k < n; k++) {
        const int r = rows ? rows[k] : first + k;
        rmsnorm(s->xb + (size_t)k * D, s->x + (size_t)r * D, s->m->out_norm, D, c->norm_eps);
    }
    if ((bad = first_nonfinite_row(s->xb, n, D)) >= 0)
        return nonfinite(s, rows ? rows[bad] : first + bad, err,
                         "after the final norm (model.norm.weight)");
    linear(s, &s->m->output, s->xb, n, out);
    if ((bad = first_nonfinite_row(out, n, c->vocab_size)) >= 0)
        return nonfinite(s, rows ? rows[bad] : first + bad, err, "in the logits (output head %s)",
                         c->tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    return BL_OK;
}

bl_status bl_forward(bl_state *s, const int32_t *tokens, int T, float *logits, bool all_logits,
                     bl_err *err) {
    const int V = s->m->cfg.vocab_size;
    if (T <= 0) return bl_fail(err, BL_ERR_ARG, "no tokens to process");
    if (T > s->max_seq - s->pos[0])
        return bl_fail(err, BL_ERR_ARG, "context full: %d tokens in cache, %d more, limit %d",
                       s->pos[0], T, s->max_seq);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return bl_fail(err, BL_ERR_ARG, "token id %d out of range [0, %d)", tokens[t], V);
    for (int done = 0; done < T; done += s->max_batch) {
        const int n = T - done < s->max_batch ? T - done : s->max_batch;
        s->spans[0] = (seq_span){.slot = 0, .row0 = 0, .n = n, .pos0 = s->pos[0]};
        s->n_spans = 1;
        bl_status st = forward_rows(s, tokens + done, n, err);
        if (!st && logits && all_logits)
            st = output_head(s, NULL, 0, n, logits + (size_t)done * V, err);
        else if (!st && logits && done + n == T)
            st = output_head(s, NULL, n - 1, 1, logits, err);
        if (st) return st;
        commit(s);
    }
    return BL_OK;
}

bl_status bl_forward_batch(bl_state *s, const bl_seq_batch *seqs, int n_seqs, bl_err *err) {
    const int V = s->m->cfg.vocab_size;
    int32_t *rows = s->row_tok;
    if (n_seqs <= 0 || !seqs) return bl_fail(err, BL_ERR_ARG, "no sequences to run");
    int T = 0;
    for (int i = 0; i < n_seqs; i++) {
        const bl_seq_batch *q = &seqs[i];
        if (q->slot < 0 || q->slot >= s->n_slots)
            return bl_fail(err, BL_ERR_ARG, "slot %d out of range [0, %d)", q->slot, s->n_slots);
        for (int j = 0; j < i; j++)
            if (seqs[j].slot == q->slot)
                return bl_fail(err, BL_ERR_ARG, "slot %d given twice in one batch", q->slot);
        if (q->n <= 0 || !q->tokens)
            return bl_fail(err, BL_ERR_ARG, "slot %d: no tokens to process", q->slot);
        if (q->n > s->max_seq - s->pos[q->slot])
            return bl_fail(err, BL_ERR_ARG, "slot %d: context full: %d tokens in cache, %d more, "
                           "limit %d", q->slot, s->pos[q->slot], q->n, s->max_seq);
        if (q->n > s->max_batch - T)
            return bl_fail(err, BL_ERR_ARG, "batch of more than %d rows", s->max_batch);
        for (int t = 0; t < q->n; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= V)
                return bl_fail(err, BL_ERR_ARG, "slot %d: token id %d out of range [0, %d)",
                               q->slot, q->tokens[t], V);
        s->spans[i] = (seq_span){.slot = q->slot, .row0 = T, .n = q->n, .pos0 = s->pos[q->slot]};
        memcpy(rows + T, q->tokens, (size_t)q->n * sizeof *rows);
        T += q->n;
    }
    s->n_spans = n_seqs;
    bl_status st = forward_rows(s, rows, T, err);
    if (st) return st;
    /* every row of the sequences that want all their logits, each straight into its buffer */
    for (int i = 0; !st && i < n_seqs; i++)
        if (seqs[i].logits && seqs[i].all_logits)
            st = output_head(s, NULL, s->spans[i].row0, seqs[i].n, seqs[i].logits, err);
    /* the last row of every other sequence that wants logits, through the head together */
    int n_out = 0;
    int *last = s->out_rows;
    float *one = NULL; /* where the only such sequence's logits go */
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].logits && !seqs[i].all_logits) {
            last[n_out++] = s->spans[i].row0 + s->spans[i].n - 1;
            one = seqs[i].logits;
        }
    if (!st && n_out == 1) {
        st = output_head(s, last, 0, 1, one, err);
    } else if (!st && n_out > 0) {
        st = output_head(s, last, 0, n_out, s->logit_rows, err);
        for (int i = 0, k = 0; !st && i < n_seqs; i++)
            if (seqs[i].logits && !seqs[i].all_logits)
                memcpy(seqs[i].logits, s->logit_rows + (size_t)k++ * V, (size_t)V * sizeof(float));
    }
    if (st) return st;
    commit(s);
    return BL_OK;
}
