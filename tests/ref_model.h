/* An independent float64 forward pass of the LLaMA-family decoder for tests: written plainly,
 * token by token, with no code shared with src/model. It reads weights by tensor name from a
 * bl_tensor_set, in HF naming ("model.layers.N.self_attn.q_proj.weight") or GGUF naming
 * ("blk.N.attn_q.weight"), and supports interleaved or rotate-half RoPE, GQA, q/k/v biases,
 * per-head q/k RMSNorm and Llama-3 frequency scaling. */
#ifndef BITLLM_TEST_REF_MODEL_H
#define BITLLM_TEST_REF_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitllm/io.h"
#include "bitllm/model.h"

typedef struct {
    bl_config c;
    double *emb, *out_norm, *head;
    struct {
        double *an, *fn, *wq, *wk, *wv, *wo, *w1, *w3, *w2, *bq, *bk, *bv, *qn, *kn;
    } *L;
    double *kc, *vc; /* [layer][pos][kv_dim] */
    int max_seq;
} ref_model;

static double *ref_get(const bl_tensor_set *ts, const char *name, long long numel, int required) {
    const bl_tensor *t = bl_tensor_set_find(ts, name);
    if (!t) {
        if (required) fprintf(stderr, "ref_model: missing %s\n", name);
        return NULL;
    }
    if (bl_tensor_numel(t) != numel) {
        fprintf(stderr, "ref_model: %s has %lld elements, expected %lld\n", name,
                (long long)bl_tensor_numel(t), numel);
        return NULL;
    }
    float *f;
    if (bl_tensor_to_f32(t, &f, NULL) != BL_OK) return NULL;
    double *d = malloc((size_t)numel * sizeof(double));
    for (long long i = 0; i < numel; i++) d[i] = f[i];
    free(f);
    return d;
}

/* gguf_names: 1 for GGUF/llama2.c tensor names, 0 for HF names. */
static int ref_model_init(ref_model *r, const bl_config *c, const bl_tensor_set *ts, int gguf_names,
                          int max_seq) {
    memset(r, 0, sizeof *r);
    r->c = *c;
    r->max_seq = max_seq;
    const long long D = c->dim, H = c->hidden_dim, V = c->vocab_size, hd = c->head_dim;
    const long long qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    r->emb = ref_get(ts, gguf_names ? "token_embd.weight" : "model.embed_tokens.weight", V * D, 1);
    r->out_norm = ref_get(ts, gguf_names ? "output_norm.weight" : "model.norm.weight", D, 1);
    r->head = ref_get(ts, gguf_names ? "output.weight" : "lm_head.weight", V * D, 0);
    if (!r->head) r->head = ref_get(ts, gguf_names ? "token_embd.weight" : "model.embed_tokens.weight", V * D, 1);
    if (!r->emb || !r->out_norm || !r->head) return 0;
    r->L = calloc((size_t)c->n_layers, sizeof *r->L);
    for (int l = 0; l < c->n_layers; l++) {
        char n[160];
#define REF_T(field, gname, hname, numel, req)                                                  \
    do {                                                                                     \
        if (gguf_names) snprintf(n, sizeof n, "blk.%d.%s", l, gname);                        \
        else snprintf(n, sizeof n, "model.layers.%d.%s", l, hname);                          \
        r->L[l].field = ref_get(ts, n, numel, req);                                          \
        if (req && !r->L[l].field) return 0;                                                 \
    } while (0)
        REF_T(an, "attn_norm.weight", "input_layernorm.weight", D, 1);
        REF_T(fn, "ffn_norm.weight", "post_attention_layernorm.weight", D, 1);
        REF_T(wq, "attn_q.weight", "self_attn.q_proj.weight", qd * D, 1);
        REF_T(wk, "attn_k.weight", "self_attn.k_proj.weight", kvd * D, 1);
        REF_T(wv, "attn_v.weight", "self_attn.v_proj.weight", kvd * D, 1);
        REF_T(wo, "attn_output.weight", "self_attn.o_proj.weight", D * qd, 1);
        REF_T(w1, "ffn_gate.weight", "mlp.gate_proj.weight", H * D, 1);
        REF_T(w3, "ffn_up.weight", "mlp.up_proj.weight", H * D, 1);
        REF_T(w2, "ffn_down.weight", "mlp.down_proj.weight", D * H, 1);
        REF_T(bq, "attn_q.bias", "self_attn.q_proj.bias", qd, c->qkv_bias);
        REF_T(bk, "attn_k.bias", "self_attn.k_proj.bias", kvd, c->qkv_bias);
        REF_T(bv, "attn_v.bias", "self_attn.v_proj.bias", kvd, c->qkv_bias);
        REF_T(qn, "attn_q_norm.weight", "self_attn.q_norm.weight", hd, c->qk_norm);
        REF_T(kn, "attn_k_norm.weight", "self_attn.k_norm.weight", hd, c->qk_norm);
#undef REF_T
    }
    r->kc = calloc((size_t)(c->n_layers * max_seq * kvd), sizeof(double));
    r->vc = calloc((size_t)(c->n_layers * max_seq * kvd), sizeof(double));
    return 1;
}

static void ref_model_free(ref_model *r) {
    free(r->emb);
    free(r->out_norm);
    free(r->head);
    for (int l = 0; r->L && l < r->c.n_layers; l++) {
        double **f[] = {&r->L[l].an, &r->L[l].fn, &r->L[l].wq, &r->L[l].wk, &r->L[l].wv,
                        &r->L[l].wo, &r->L[l].w1, &r->L[l].w3, &r->L[l].w2, &r->L[l].bq,
                        &r->L[l].bk, &r->L[l].bv, &r->L[l].qn, &r->L[l].kn};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(*f[i]);
    }
    free(r->L);
    free(r->kc);
    free(r->vc);
}

static void ref_rmsnorm(double *o, const double *x, const double *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * s * w[i];
}

static void ref_matvec(double *y, const double *W, const double *x, int m, int n) {
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += W[(size_t)i * n + j] * x[j];
        y[i] = s;
    }
}

static double ref_inv_freq(const bl_config *c, int i) {
    double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
    if (!c->rope_llama3) return f;
    double wl = 2 * M_PI / f, lo = c->rope_orig_max_pos / c->rope_low_freq_factor,
           hi = c->rope_orig_max_pos / c->rope_high_freq_factor;
    if (wl < hi) return f;
    if (wl > lo) return f / c->rope_factor;
    double sm = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1 - sm) * f / c->rope_factor + sm * f;
}

static void ref_rope(double *v, const bl_config *c, int pos) {
    int hd = c->head_dim, half = hd / 2;
    for (int i = 0; i < half; i++) {
        /* linear scaling as Hugging Face's LlamaLinearScalingRotaryEmbedding: the position
         * divided by the factor */
        const double t = c->rope_linear > 0 ? pos / (double)c->rope_linear : pos;
        double a = t * ref_inv_freq(c, i), cs = cos(a), sn = sin(a);
        int p0 = c->rope_interleaved ? 2 * i : i, p1 = c->rope_interleaved ? 2 * i + 1 : i + half;
        double x0 = v[p0], x1 = v[p1];
        v[p0] = x0 * cs - x1 * sn;
        v[p1] = x0 * sn + x1 * cs;
    }
}

/* Runs one token at position pos; writes vocab logits. */
static void ref_model_step(ref_model *r, int token, int pos, double *logits) {
    const bl_config *c = &r->c;
    const int D = c->dim, H = c->hidden_dim, hd = c->head_dim, nh = c->n_heads,
              nkv = c->n_kv_heads, qd = nh * hd, kvd = nkv * hd;
    double *x = malloc(sizeof(double) * D), *xb = malloc(sizeof(double) * D),
           *q = malloc(sizeof(double) * qd), *k = malloc(sizeof(double) * kvd),
           *v = malloc(sizeof(double) * kvd), *att = malloc(sizeof(double) * qd),
           *h1 = malloc(sizeof(double) * H), *h3 = malloc(sizeof(double) * H),
           *tmp = malloc(sizeof(double) * (D > qd ? D : qd)),
           *sc = malloc(sizeof(double) * (pos + 1));
    memcpy(x, r->emb + (size_t)token * D, sizeof(double) * D);
    for (int l = 0; l < c->n_layers; l++) {
        ref_rmsnorm(xb, x, r->L[l].an, D, c->norm_eps);
        ref_matvec(q, r->L[l].wq, xb, qd, D);
        ref_matvec(k, r->L[l].wk, xb, kvd, D);
        ref_matvec(v, r->L[l].wv, xb, kvd, D);
        if (r->L[l].bq) {
            for (int i = 0; i < qd; i++) q[i] += r->L[l].bq[i];
            for (int i = 0; i < kvd; i++) k[i] += r->L[l].bk[i], v[i] += r->L[l].bv[i];
        }
        for (int h = 0; h < nh; h++) {
            if (r->L[l].qn) ref_rmsnorm(q + h * hd, q + h * hd, r->L[l].qn, hd, c->norm_eps);
            ref_rope(q + h * hd, c, pos);
        }
        for (int h = 0; h < nkv; h++) {
            if (r->L[l].kn) ref_rmsnorm(k + h * hd, k + h * hd, r->L[l].kn, hd, c->norm_eps);
            ref_rope(k + h * hd, c, pos);
        }
        double *kc = r->kc + ((size_t)l * r->max_seq) * kvd, *vc = r->vc + ((size_t)l * r->max_seq) * kvd;
        memcpy(kc + (size_t)pos * kvd, k, sizeof(double) * kvd);
        memcpy(vc + (size_t)pos * kvd, v, sizeof(double) * kvd);
        /* a sliding window as Hugging Face's mask: key t is seen when t > pos - window */
        int t0 = 0;
        while (c->sliding_window > 0 && t0 <= pos - c->sliding_window) t0++;
        for (int h = 0; h < nh; h++) {
            int g = h / (nh / nkv);
            double mx = -1e300, sum = 0;
            for (int t = t0; t <= pos; t++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += q[h * hd + i] * kc[(size_t)t * kvd + g * hd + i];
                sc[t] = d / sqrt((double)hd);
                if (sc[t] > mx) mx = sc[t];
            }
            for (int t = t0; t <= pos; t++) sum += (sc[t] = exp(sc[t] - mx));
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int t = t0; t <= pos; t++) o += sc[t] / sum * vc[(size_t)t * kvd + g * hd + i];
                att[h * hd + i] = o;
            }
        }
        ref_matvec(tmp, r->L[l].wo, att, D, qd);
        for (int i = 0; i < D; i++) x[i] += tmp[i];
        ref_rmsnorm(xb, x, r->L[l].fn, D, c->norm_eps);
        ref_matvec(h1, r->L[l].w1, xb, H, D);
        ref_matvec(h3, r->L[l].w3, xb, H, D);
        for (int i = 0; i < H; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h3[i];
        ref_matvec(tmp, r->L[l].w2, h1, D, H);
        for (int i = 0; i < D; i++) x[i] += tmp[i];
    }
    ref_rmsnorm(xb, x, r->out_norm, D, c->norm_eps);
    ref_matvec(logits, r->head, xb, c->vocab_size, D);
    free(x), free(xb), free(q), free(k), free(v), free(att), free(h1), free(h3), free(tmp), free(sc);
}

static double ref_log_prob(const double *logits, int V, int target) {
    double mx = logits[0], s = 0;
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) s += exp(logits[i] - mx);
    return logits[target] - mx - log(s);
}

/* Total NLL under the perplexity protocol: chunks of ctx-1 tokens, each run as [BOS]+chunk. */
static double ref_ppl_nll(ref_model *r, const int32_t *ids, size_t n, int ctx, int bos,
                          long long *scored) {
    double nll = 0, *lg = malloc(sizeof(double) * r->c.vocab_size);
    *scored = 0;
    for (size_t s = 0; s < n; s += (size_t)ctx - 1) {
        size_t len = n - s < (size_t)ctx - 1 ? n - s : (size_t)ctx - 1;
        int prev = bos;
        for (size_t i = 0; i < len; i++) {
            ref_model_step(r, prev, (int)i, lg);
            nll -= ref_log_prob(lg, r->c.vocab_size, ids[s + i]);
            prev = ids[s + i];
            (*scored)++;
        }
    }
    free(lg);
    return nll;
}

#endif
