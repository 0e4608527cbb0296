/* Perplexity over a token stream (ALGORITHMS.md §7; chunking as in the tool's documentation). */
#include "bitllm/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define BL_DEFAULT_CTX_CAP 2048

bl_status bl_ctx_choose(const bl_model *m, int requested, bool allow_long, bl_ctx_choice *out,
                        bl_err *err) {
    const int trained = m->cfg.max_seq;
    out->trained = trained;
    if (requested == 0) {
        out->ctx = trained < BL_DEFAULT_CTX_CAP ? trained : BL_DEFAULT_CTX_CAP;
        out->source = trained > BL_DEFAULT_CTX_CAP ? BL_CTX_CAP : BL_CTX_MODEL;
        return BL_OK;
    }
    out->ctx = requested;
    out->source = BL_CTX_FLAG;
    if (requested < 2)
        return bl_fail(err, BL_ERR_ARG, "the window must be at least 2 tokens, got %d",
                       requested);
    if (requested > trained && !allow_long)
        return bl_fail(err, BL_ERR_ARG, "a window of %d tokens is longer than the %d tokens %s "
                       "was trained on; results past that are not meaningful (pass "
                       "--allow-long-ctx to run it anyway)", requested, trained,
                       m->path ? m->path : "the model");
    return BL_OK;
}

const char *bl_ctx_source_name(bl_ctx_source s) {
    return s == BL_CTX_FLAG ? "flag" : s == BL_CTX_MODEL ? "model" : "default";
}

void bl_ctx_describe(const bl_ctx_choice *c, const char *flag, char *buf, size_t cap) {
    if (c->source == BL_CTX_FLAG)
        snprintf(buf, cap, "ctx %d from %s%s", c->ctx, flag,
                 c->ctx > c->trained ? ", beyond the trained context" : "");
    else if (c->source == BL_CTX_MODEL)
        snprintf(buf, cap, "ctx %d: the model's trained context", c->ctx);
    else
        snprintf(buf, cap, "ctx %d: default cap (the model's trained context is %d)", c->ctx,
                 c->trained);
}

void bl_log_softmax_norm(const float *logits, int vocab, float *mx, double *log_sum) {
    float m = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > m) m = logits[i];
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - m);
    *mx = m;
    *log_sum = log(sum);
}

double bl_log_prob(const float *logits, int vocab, int target) {
    float mx;
    double log_sum;
    bl_log_softmax_norm(logits, vocab, &mx, &log_sum);
    return (double)logits[target] - mx - log_sum;
}

bl_status bl_perplexity(const bl_model *m, const int32_t *ids, size_t n, int ctx, int batch,
                        bl_progress_fn progress, void *progress_ctx, bl_ppl_result *out,
                        bl_err *err) {
    const int V = m->cfg.vocab_size, bos = m->cfg.bos_id;
    const bool use_bos = bl_model_adds_bos(m);
    if (ctx < 2) return bl_fail(err, BL_ERR_ARG, "context length must be at least 2, got %d", ctx);
    if (n == 0) return bl_fail(err, BL_ERR_ARG, "no tokens to score");
    if (batch <= 0) batch = 128;
    if (batch > ctx) batch = ctx;
    const size_t chunk = (size_t)(use_bos ? ctx - 1 : ctx);
    bl_state *st;
    bl_status s = bl_state_new(m, ctx, batch, 0, &st, err);
    if (s) return s;
    float *logits = malloc((size_t)batch * (size_t)V * sizeof(float));
    int32_t *win = malloc((size_t)ctx * sizeof(int32_t));
    if (!logits || !win) {
        free(logits);
        free(win);
        bl_state_free(st);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    double t0 = bl_time_s(), nll = 0.0;
    int64_t scored = 0, chunks = 0;
    for (size_t start = 0; start < n && !s; start += chunk) {
        size_t len = n - start < chunk ? n - start : chunk;
        int w = 0;
        if (use_bos) win[w++] = bos;
        for (size_t i = 0; i < len; i++) win[w++] = ids[start + i];
        bl_state_reset(st);
        /* Position p's logits predict window token p+1. */
        for (int p0 = 0; p0 < w - 1 && !s; p0 += batch) {
            int T = w - 1 - p0 < batch ? w - 1 - p0 : batch;
            s = bl_forward(st, win + p0, T, logits, true, err);
            if (s)
                bl_fail_context(err, s, "chunk %lld (text tokens %zu to %zu)",
                                (long long)chunks + 1, start, start + len - 1);
            for (int t = 0; t < T && !s; t++) {
                nll -= bl_log_prob(logits + (size_t)t * V, V, win[p0 + t + 1]);
                scored++;
            }
        }
        chunks++;
        if (progress) progress(progress_ctx, (double)(start + len) / (double)n);
    }
    free(logits);
    free(win);
    bl_state_free(st);
    if (s) return s;
    out->nll = nll;
    out->tokens = scored;
    out->ctx = ctx;
    out->chunks = chunks;
    out->ppl = exp(nll / (double)scored);
    out->seconds = bl_time_s() - t0;
    if (!isfinite(out->ppl))
        return bl_fail(err, BL_ERR_NUMERIC, "perplexity is not finite (nll %g over %lld tokens)",
                       nll, (long long)scored);
    return BL_OK;
}
