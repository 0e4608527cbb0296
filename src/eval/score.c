/* Log-likelihood scoring with lm-evaluation-harness semantics (docs/eval.md): tokenization of a
 * (context, continuation) pair, left truncation to the window, a KV cache that keeps the prefix
 * shared by the choices of an item, and the per-task metrics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"

bl_status bl_encode_pair(const bl_tokenizer *t, bool bos, const char *context,
                         const char *continuation, bl_token_pair *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    const int bos_id = bl_tokenizer_bos(t);
    if (bos && bos_id < 0) return bl_fail(err, BL_ERR_ARG, "tokenizer has no BOS token");
    int32_t *c = NULL, *w = NULL;
    size_t nc = 0, nw = 0;
    bl_status s;
    if (!context[0]) {
        /* lm-eval: an empty context becomes the prefix token alone. */
        if (!bos) return bl_fail(err, BL_ERR_ARG, "empty context and no BOS to stand for it");
        if ((s = bl_tokenizer_encode(t, continuation, strlen(continuation), false, &w, &nw, err)))
            return s;
        out->ids = malloc((nw + 1) * sizeof(int32_t));
        if (!out->ids) {
            free(w);
            return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        }
        out->ids[0] = bos_id;
        memcpy(out->ids + 1, w, nw * sizeof(int32_t));
        out->n_ctx = 1;
        out->n_cont = (int)nw;
        free(w);
        if (nw == 0) {
            bl_token_pair_free(out);
            return bl_fail(err, BL_ERR_ARG, "continuation produced no tokens");
        }
        return BL_OK;
    }
    /* Trailing whitespace of the context belongs to the continuation (lm-eval _encode_pair):
     * SentencePiece and byte-level BPE both attach a space to the word that follows it. */
    size_t clen = strlen(context), k = clen;
    while (k && bl_is_space(context[k - 1])) k--;
    size_t cont_len = strlen(continuation);
    char *whole = malloc(clen + cont_len + 1);
    if (!whole) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    memcpy(whole, context, clen);
    memcpy(whole + clen, continuation, cont_len + 1);
    s = bl_tokenizer_encode(t, whole, k, bos, &c, &nc, err);
    if (!s) s = bl_tokenizer_encode(t, whole, clen + cont_len, bos, &w, &nw, err);
    free(whole);
    if (!s && nc == 0) s = bl_fail(err, BL_ERR_ARG, "context produced no tokens");
    if (!s && nw <= nc)
        s = bl_fail(err, BL_ERR_ARG, "continuation produced no tokens (%zu context, %zu whole)",
                    nc, nw);
    if (!s) {
        /* Context tokens as encoded alone, then the tail of the joint encoding. */
        out->ids = malloc(nw * sizeof(int32_t));
        if (!out->ids) {
            s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
        } else {
            memcpy(out->ids, c, nc * sizeof(int32_t));
            memcpy(out->ids + nc, w + nc, (nw - nc) * sizeof(int32_t));
            out->n_ctx = (int)nc;
            out->n_cont = (int)(nw - nc);
        }
    }
    free(c);
    free(w);
    return s;
}

void bl_token_pair_free(bl_token_pair *p) {
    if (!p) return;
    free(p->ids);
    memset(p, 0, sizeof *p);
}

struct bl_scorer {
    const bl_model *m;
    bl_state *st;
    int ctx, V;
    int32_t *cached; /* mirror of the tokens in the KV cache */
    int n_cached;
    float *logits;
    size_t logit_rows;
    int64_t computed;
};

bl_status bl_scorer_new(const bl_model *m, int ctx, bl_scorer **out, bl_err *err) {
    *out = NULL;
    if (ctx < 2) return bl_fail(err, BL_ERR_ARG, "window must be at least 2 tokens, got %d", ctx);
    bl_scorer *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->ctx = ctx;
    s->V = m->cfg.vocab_size;
    s->cached = malloc((size_t)ctx * sizeof(int32_t));
    if (!s->cached) {
        free(s);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    bl_status st = bl_state_new(m, ctx, 128, 0, &s->st, err);
    if (st) {
        bl_scorer_free(s);
        return st;
    }
    *out = s;
    return BL_OK;
}

void bl_scorer_free(bl_scorer *s) {
    if (!s) return;
    bl_state_free(s->st);
    free(s->cached);
    free(s->logits);
    free(s);
}

void bl_scorer_reset(bl_scorer *s) {
    bl_state_reset(s->st);
    s->n_cached = 0;
}

int64_t bl_scorer_computed(const bl_scorer *s) { return s->computed; }

static bl_status score_one(bl_scorer *s, const bl_token_pair *p, bl_cont_score *out,
                           bl_err *err) {
    const int V = s->V, total = p->n_ctx + p->n_cont;
    if (p->n_cont < 1 || p->n_ctx < 1) return bl_fail(err, BL_ERR_ARG, "empty request");
    if (p->n_cont > s->ctx)
        return bl_fail(err, BL_ERR_ARG, "continuation of %d tokens exceeds the window of %d",
                       p->n_cont, s->ctx);
    /* lm-eval: inp = (ctx + cont)[-(window + 1):][:-1], scored = the last n_cont positions. */
    const int start = total > s->ctx + 1 ? total - (s->ctx + 1) : 0;
    const int32_t *win = p->ids + start;
    const int n_inp = total - start - 1, first = p->n_ctx - start - 1;
    /* Reuse the cached prefix up to the first scored position. */
    int l = 0;
    while (l < first && l < s->n_cached && s->cached[l] == win[l]) l++;
    bl_state_truncate(s->st, l);
    s->n_cached = l;
    bl_status st = BL_OK;
    if (first > l) {
        st = bl_forward(s->st, win + l, first - l, NULL, false, err);
        if (st) return st;
        s->computed += first - l;
    }
    const int T = n_inp - first; /* = n_cont */
    if ((size_t)T > s->logit_rows) {
        float *lg = realloc(s->logits, (size_t)T * (size_t)V * sizeof(float));
        if (!lg) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        s->logits = lg;
        s->logit_rows = (size_t)T;
    }
    s->n_cached = first; /* if the forward below fails, only the prefix is known good */
    st = bl_forward(s->st, win + first, T, s->logits, true, err);
    if (st) return st;
    s->computed += T;
    memcpy(s->cached, win, (size_t)n_inp * sizeof(int32_t));
    s->n_cached = n_inp;
    double ll = 0.0;
    bool greedy = true;
    for (int t = 0; t < T; t++) {
        const float *lg = s->logits + (size_t)t * V;
        const int target = win[first + t + 1];
        ll += bl_log_prob(lg, V, target);
        int am = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[am]) am = v;
        greedy = greedy && am == target;
    }
    out->ll = ll;
    out->greedy = greedy;
    out->n_tokens = T;
    out->start = start;
    return BL_OK;
}

bl_status bl_score_pairs(bl_scorer *s, const bl_token_pair *pairs, int n, bl_cont_score *out,
                         bl_err *err) {
    for (int i = 0; i < n; i++) {
        bl_status st = score_one(s, &pairs[i], &out[i], err);
        if (st) return st;
    }
    return BL_OK;
}

void bl_task_predict(const bl_task_item *item, const bl_cont_score *s, bool norm_bytes,
                     int *pred, int *pred_norm) {
    if (item->n_req == 1) {
        *pred = *pred_norm = s[0].greedy ? 0 : -1;
        return;
    }
    int a = 0, b = 0;
    double best_b = -INFINITY;
    for (int i = 0; i < item->n_req; i++) {
        int len = norm_bytes ? item->req[i].norm_bytes : item->req[i].norm_chars;
        double v = s[i].ll / (double)(len > 0 ? len : 1);
        if (s[i].ll > s[a].ll) a = i;
        if (i == 0 || v > best_b) best_b = v, b = i;
    }
    *pred = a;
    *pred_norm = b;
}

static double stderr_of(int correct, int n) {
    /* lm-eval mean_stderr: sample standard deviation (n - 1) over sqrt(n). */
    if (n < 2) return NAN;
    double p = (double)correct / n;
    return sqrt(p * (1.0 - p) / (double)(n - 1));
}

bl_status bl_task_eval(const bl_model *m, const bl_task_set *t, const bl_eval_opts *o,
                       bl_task_result *out, bl_err *err) {
    memset(out, 0, sizeof *out);
    if (!m->tok) return bl_fail(err, BL_ERR_ARG, "%s has no tokenizer", m->path);
    bl_ctx_choice cc;
    bl_status cs = bl_ctx_choose(m, o->ctx, true, &cc, err); /* the caller decides on long windows */
    if (cs) return cs;
    const int ctx = cc.ctx;
    const bool bos = !o->no_bos && bl_model_adds_bos(m);
    int max_req = 1;
    for (int i = 0; i < t->n_items; i++)
        if (t->items[i].n_req > max_req) max_req = t->items[i].n_req;
    bl_token_pair *pairs = calloc((size_t)max_req, sizeof *pairs);
    bl_cont_score *sc = calloc((size_t)max_req, sizeof *sc);
    bl_scorer *scorer = NULL;
    bl_status st = pairs && sc ? bl_scorer_new(m, ctx, &scorer, err)
                               : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    double t0 = bl_time_s(), ll_sum = 0.0;
    int correct = 0, correct_norm = 0;
    for (int i = 0; !st && i < t->n_items; i++) {
        const bl_task_item *it = &t->items[i];
        for (int j = 0; j < it->n_req && !st; j++) {
            st = bl_encode_pair(m->tok, bos, it->req[j].context, it->req[j].continuation,
                                &pairs[j], err);
            if (st && err) {
                char msg[sizeof err->msg];
                memcpy(msg, err->msg, sizeof msg);
                bl_fail(err, st, "%s item %d choice %d: %s", bl_task_name(t->id), i, j, msg);
            }
        }
        /* Each item starts from an empty cache, so its scores do not depend on the items
         * before it (--limit N reproduces the first N scores of a full run). */
        bl_scorer_reset(scorer);
        if (!st) {
            st = bl_score_pairs(scorer, pairs, it->n_req, sc, err);
            if (st) bl_fail_context(err, st, "%s item %d (%s)", bl_task_name(t->id), i, t->path);
        }
        for (int j = 0; j < it->n_req; j++) {
            if (!st) {
                out->tokens += pairs[j].n_ctx + pairs[j].n_cont - 1 - sc[j].start;
                out->scored += sc[j].n_tokens;
                out->truncated += sc[j].start > 0;
            }
            bl_token_pair_free(&pairs[j]);
        }
        if (st) break;
        int pred, pred_norm;
        bl_task_predict(it, sc, o->norm_bytes, &pred, &pred_norm);
        correct += pred == it->gold;
        correct_norm += pred_norm == it->gold;
        ll_sum += sc[0].ll;
        if (o->on_item) o->on_item(o->on_item_ctx, i, it, sc);
        if (o->progress) o->progress(o->progress_ctx, (double)(i + 1) / t->n_items);
    }
    if (!st) {
        const int n = t->n_items;
        out->id = t->id;
        out->n = n;
        out->ctx = ctx;
        out->bos = bos;
        out->acc = (double)correct / n;
        out->acc_stderr = stderr_of(correct, n);
        out->acc_norm = out->acc_norm_stderr = NAN;
        if (bl_task_has_acc_norm(t->id)) {
            out->acc_norm = (double)correct_norm / n;
            out->acc_norm_stderr = stderr_of(correct_norm, n);
        }
        /* lm-eval "perplexity" aggregation: exp(-mean of the per-item log-likelihoods). */
        out->ppl = t->id == BL_TASK_LAMBADA ? exp(-ll_sum / n) : NAN;
        out->computed = bl_scorer_computed(scorer);
        out->seconds = bl_time_s() - t0;
    }
    bl_scorer_free(scorer);
    free(pairs);
    free(sc);
    return st;
}
