/* The decoder forward pass in f32 with a KV cache. A batch of T tokens goes through every
 * projection as one T-row matrix product; attention is computed per head in parallel, each head
 * summing in a fixed order, so results do not depend on the thread count. Every parallel step
 * runs on the state's own thread pool (bitllm/pool.h), never on OpenMP. */
#include "bitllm/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/parallel.h"
#include <stdlib.h>
#include <string.h>

struct bl_state {
    const bl_model *m;
    int max_seq, max_batch, pos;
    int q_dim, kv_dim;
    float *k_cache, *v_cache; /* [layer][max_seq][kv_dim] */
    float *rope_cos, *rope_sin; /* [max_seq][head_dim/2] */
    float *x, *xb, *q, *k, *v, *att, *tmp; /* batch rows */
    float *hb, *hb2;
    float *scores; /* [n_threads][max_batch·max_seq] */
    int n_threads;
    bl_pool *pool;
    bl_exec ex; /* the pool and the model's ISA level */
    float *work;
    size_t work_floats;
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
    float **bufs[] = {&s->k_cache, &s->v_cache, &s->rope_cos, &s->rope_sin, &s->x,  &s->xb,
                      &s->q,       &s->k,       &s->v,        &s->att,      &s->tmp, &s->hb,
                      &s->hb2,     &s->scores,  &s->work};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) bl_aligned_free(*bufs[i]);
    free(s);
}

static float *alloc_floats(size_t a, size_t b, bool *ok) {
    size_t n;
    if (bl_mul_overflows(a, b, &n) || bl_mul_overflows(n, sizeof(float), &n)) {
        *ok = false;
        return NULL;
    }
    float *p = bl_aligned_alloc(n);
    if (!p) *ok = false;
    return p;
}

int bl_state_threads(const bl_state *s) { return s->n_threads; }

bl_status bl_state_new(const bl_model *m, int max_seq, int max_batch, int n_threads,
                       bl_state **out, bl_err *err) {
    *out = NULL;
    const bl_config *c = &m->cfg;
    if (max_seq <= 0 || max_batch <= 0)
        return bl_fail(err, BL_ERR_ARG, "context length and batch must be positive");
    bl_state *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->max_seq = max_seq;
    s->max_batch = max_batch < max_seq ? max_batch : max_seq;
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
    const size_t B = (size_t)s->max_batch, half = (size_t)c->head_dim / 2;
    bool ok = true;
    s->k_cache = alloc_floats((size_t)c->n_layers * (size_t)max_seq, (size_t)s->kv_dim, &ok);
    s->v_cache = alloc_floats((size_t)c->n_layers * (size_t)max_seq, (size_t)s->kv_dim, &ok);
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
    s->scores = alloc_floats((size_t)s->n_threads * B, (size_t)max_seq, &ok);
    s->work_floats = max_workspace(m, s->max_batch);
    s->work = alloc_floats(s->work_floats ? s->work_floats : 1, 1, &ok);
    if (!ok) {
        bl_state_free(s);
        return bl_fail(err, BL_ERR_NOMEM, "cannot allocate the KV cache for %d tokens", max_seq);
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

void bl_state_reset(bl_state *s) { s->pos = 0; }
int bl_state_pos(const bl_state *s) { return s->pos; }
void bl_state_truncate(bl_state *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void rope(float *v, int head_dim, const float *cs, const float *sn, bool interleaved) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
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

/* Q/K/V projections, optional bias and q/k norm, RoPE, and the cache write. */
static void attention_inputs(bl_state *s, const bl_layer *ly, int l, int T) {
    const bl_config *c = &s->m->cfg;
    const int hd = c->head_dim, half = hd / 2;
    linear(s, &ly->proj[BL_PROJ_Q], s->xb, T, s->q);
    linear(s, &ly->proj[BL_PROJ_K], s->xb, T, s->k);
    linear(s, &ly->proj[BL_PROJ_V], s->xb, T, s->v);
    add_bias(s->q, ly->bias[0], T, s->q_dim);
    add_bias(s->k, ly->bias[1], T, s->kv_dim);
    add_bias(s->v, ly->bias[2], T, s->kv_dim);
    for (int t = 0; t < T; t++) {
        const int p = s->pos + t;
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
        size_t off = ((size_t)l * s->max_seq + (size_t)p) * s->kv_dim;
        memcpy(s->k_cache + off, s->k + (size_t)t * s->kv_dim, (size_t)s->kv_dim * sizeof(float));
        memcpy(s->v_cache + off, s->v + (size_t)t * s->kv_dim, (size_t)s->kv_dim * sizeof(float));
    }
}

/* Causal attention of the batch's queries over the cache (GQA: kv head = head / group). Per
 * head, scores for all T queries are one product Q_h·K_hᵀ and the output one product P·V_h; the
 * heads are split across the pool's threads, each head computed whole by one thread, so results
 * do not depend on the thread count. Thread ith uses scores row ith (ith < n_threads). */
/* Batches of at most this many tokens attend with plain loops instead of two BLAS calls. */
#define SMALL_T 4

static void softmax(float *row, int n) {
    float mx = -INFINITY, sum = 0.0f;
    for (int k = 0; k < n; k++) mx = row[k] > mx ? row[k] : mx;
    for (int k = 0; k < n; k++) sum += (row[k] = expf(row[k] - mx));
    const float inv = 1.0f / sum;
    for (int k = 0; k < n; k++) row[k] *= inv;
}

/* One query q (hd) over keys/values 0..n−1 (rows of kh/vh, stride ld): out = softmax(q·Kᵀ·scale)·V.
 * Fixed summation orders (the dot in SIMD lanes, then keys in order), so the result does not
 * depend on the thread that computes it. P holds n scores. */
static void attend_one(const float *q, const float *kh, const float *vh, int ld, int hd, int n,
                       float scale, float *P, float *out) {
    for (int k = 0; k < n; k++) {
        const float *kr = kh + (size_t)k * ld;
        float d = 0.0f;
#pragma omp simd reduction(+ : d)
        for (int i = 0; i < hd; i++) d += q[i] * kr[i];
        P[k] = scale * d;
    }
    softmax(P, n);
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int k = 0; k < n; k++) {
        const float *vr = vh + (size_t)k * ld, p = P[k];
#pragma omp simd
        for (int i = 0; i < hd; i++) out[i] += p * vr[i];
    }
}

typedef struct {
    bl_state *s;
    int l, T;
} attn_job;

static void attention_heads(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    bl_state *s = j->s;
    const int l = j->l, T = j->T;
    const bl_config *c = &s->m->cfg;
    const int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    const int n_ctx = s->pos + T; /* keys visible to the last query */
    const float inv_sqrt = 1.0f / sqrtf((float)hd);
    const float *kc = s->k_cache + (size_t)l * s->max_seq * s->kv_dim;
    const float *vc = s->v_cache + (size_t)l * s->max_seq * s->kv_dim;
    float *P = s->scores + (size_t)ith * s->max_batch * s->max_seq;
    int64_t h0, h1;
    bl_split_range(c->n_heads, ith, nth, &h0, &h1);
    for (int h = (int)h0; h < (int)h1; h++) {
        const int kvh = h / group;
        const float *kh = kc + (size_t)kvh * hd, *vh = vc + (size_t)kvh * hd;
        float *out = s->att + (size_t)h * hd;
        if (T <= SMALL_T) { /* decode: plain loops, no BLAS call overhead */
            for (int t = 0; t < T; t++)
                attend_one(s->q + (size_t)t * s->q_dim + (size_t)h * hd, kh, vh, s->kv_dim, hd,
                           s->pos + t + 1, inv_sqrt, P, out + (size_t)t * s->q_dim);
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_ctx, hd, inv_sqrt,
                    s->q + (size_t)h * hd, s->q_dim, kh, s->kv_dim, 0.0f, P, n_ctx);
        for (int t = 0; t < T; t++) {
            float *row = P + (size_t)t * n_ctx;
            const int visible = s->pos + t + 1;
            softmax(row, visible);
            for (int k = visible; k < n_ctx; k++) row[k] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, n_ctx, 1.0f, P, n_ctx, vh,
                    s->kv_dim, 0.0f, out, s->q_dim);
    }
}

static void attention(bl_state *s, int l, int T) {
    const bl_config *c = &s->m->cfg;
    const bool par = (double)T * (s->pos + T) * c->head_dim * c->n_heads > 65536.0;
    attn_job j = {s, l, T};
    const int nth = par ? (c->n_heads < s->n_threads ? c->n_heads : s->n_threads) : 1;
    bl_pool_run_n(s->pool, nth, attention_heads, &j);
}

static void mlp(bl_state *s, const bl_layer *ly, int T) {
    const int H = s->m->cfg.hidden_dim;
    linear(s, &ly->proj[BL_PROJ_GATE], s->xb, T, s->hb);
    linear(s, &ly->proj[BL_PROJ_UP], s->xb, T, s->hb2);
    const size_t n = (size_t)T * H;
    for (size_t i = 0; i < n; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
    linear(s, &ly->proj[BL_PROJ_DOWN], s->hb, T, s->tmp);
}

static void residual_add(float *x, const float *d, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += d[i];
}

/* Index of the first row (of T rows of n floats) holding a NaN or Inf, or -1. One pass of integer
 * ORs over the exponent bits, which the compiler vectorises: per layer it reads the T×dim
 * residual stream twice, against the 2·T·(4·dim² + 3·dim·hidden) flops of the layer's
 * projections (dim ≥ 64: under 0.2% of the layer, not measurable in practice); the logits check
 * reads T×vocab floats against the head's 2·T·vocab·dim flops. */
static int first_nonfinite_row(const float *x, int T, int64_t n) {
    for (int t = 0; t < T; t++) {
        const float *r = x + (size_t)t * (size_t)n;
        uint32_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, r + i, sizeof b);
            bad |= (b & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return t;
    }
    return -1;
}

/* A non-finite activation stops the pass with an error naming the model file, what (layer and
 * part, or tensor) and the token position. */
static bl_status nonfinite(const bl_state *s, int row, bl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bl_status nonfinite(const bl_state *s, int row, bl_err *err, const char *fmt, ...) {
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return bl_fail(err, BL_ERR_NUMERIC, "%s: non-finite value (NaN or Inf) %s at token position "
                   "%d", s->m->path ? s->m->path : "model", what, s->pos + row);
}

/* One batch of T <= max_batch tokens. */
static bl_status forward_batch(bl_state *s, const int32_t *tokens, int T, float *logits,
                               bool all_logits, bl_err *err) {
    const bl_model *m = s->m;
    const bl_config *c = &m->cfg;
    const int D = c->dim;
    int bad;
    for (int t = 0; t < T; t++) bl_tensor_row_f32(&m->tok_embd, tokens[t], D, s->x + (size_t)t * D);
    if ((bad = first_nonfinite_row(s->x, T, D)) >= 0)
        return nonfinite(s, bad, err, "in the embedding of token %d (model.embed_tokens.weight)",
                         tokens[bad]);
    for (int l = 0; l < c->n_layers; l++) {
        const bl_layer *ly = &m->layers[l];
        s->layer = l;
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, ly->attn_norm, D, c->norm_eps);
        attention_inputs(s, ly, l, T);
        attention(s, l, T);
        linear(s, &ly->proj[BL_PROJ_O], s->att, T, s->tmp);
        residual_add(s->x, s->tmp, (size_t)T * D);
        if ((bad = first_nonfinite_row(s->x, T, D)) >= 0)
            return nonfinite(s, bad, err, "in layer %d after attention (model.layers.%d: "
                             "input_layernorm, q/k/v/o_proj)", l, l);
        for (int t = 0; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, ly->ffn_norm, D, c->norm_eps);
        mlp(s, ly, T);
        residual_add(s->x, s->tmp, (size_t)T * D);
        if ((bad = first_nonfinite_row(s->x, T, D)) >= 0)
            return nonfinite(s, bad, err, "in layer %d after the MLP (model.layers.%d: "
                             "post_attention_layernorm, gate/up/down_proj)", l, l);
    }
    s->layer = -1; /* the output head is not a decoder projection */
    if (logits) {
        const int first = all_logits ? 0 : T - 1;
        for (int t = first; t < T; t++)
            rmsnorm(s->xb + (size_t)t * D, s->x + (size_t)t * D, m->out_norm, D, c->norm_eps);
        if ((bad = first_nonfinite_row(s->xb + (size_t)first * D, T - first, D)) >= 0)
            return nonfinite(s, first + bad, err, "after the final norm (model.norm.weight)");
        linear(s, &m->output, s->xb + (size_t)first * D, T - first, logits);
        if ((bad = first_nonfinite_row(logits, T - first, c->vocab_size)) >= 0)
            return nonfinite(s, first + bad, err, "in the logits (output head %s)",
                             c->tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    }
    s->pos += T;
    return BL_OK;
}

bl_status bl_forward(bl_state *s, const int32_t *tokens, int T, float *logits, bool all_logits,
                     bl_err *err) {
    const int V = s->m->cfg.vocab_size;
    if (T <= 0) return bl_fail(err, BL_ERR_ARG, "no tokens to process");
    if (T > s->max_seq - s->pos)
        return bl_fail(err, BL_ERR_ARG, "context full: %d tokens in cache, %d more, limit %d",
                       s->pos, T, s->max_seq);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return bl_fail(err, BL_ERR_ARG, "token id %d out of range [0, %d)", tokens[t], V);
    for (int done = 0; done < T; done += s->max_batch) {
        int n = T - done < s->max_batch ? T - done : s->max_batch;
        bool last = done + n == T;
        float *lg = NULL;
        if (logits && all_logits) lg = logits + (size_t)done * V;
        else if (logits && last) lg = logits;
        bl_status st = forward_batch(s, tokens + done, n, lg, all_logits, err);
        if (st) return st;
    }
    return BL_OK;
}
