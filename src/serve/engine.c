/* The scheduler: one thread owns the model's multi-slot state and does continuous batching.
 *
 * Every step: cancelled requests leave, waiting requests are admitted into free slots in arrival
 * order, then one bl_forward_batch runs the next token of every decoding sequence and the next
 * prompt chunk of sequences still reading their prompt. Prompt chunks are the ones bl_forward
 * would cut (`chunk` tokens from position 0, as bitllm generate uses), and a chunk joins a step
 * only whole, so every sequence computes exactly what it would compute alone (model.h); each
 * samples with its own generator, so its text does not depend on the batch.
 *
 * Prompt cache. A slot that a request leaves keeps the keys and values of the whole chunks of its
 * prompt. A new request takes the free slot whose kept chunks start its prompt for longest (the
 * least recently used among equals) and runs only the rest, from a chunk boundary: a chat client
 * that sends the whole conversation every turn has its earlier turns' chunks computed once. When
 * the prompt chunks a running request has already run start the new prompt for longer (requests
 * that share a long system prompt, arriving together), their keys and values are copied into
 * the new request's slot instead (bl_state_slot_copy: a memcpy per layer). Only
 * whole prompt chunks are kept (not a prompt's last partial chunk, nor generated tokens, which a
 * new prompt would run in other chunks), so a request's logits stay bit-identical to a fresh
 * run's, and at least one prompt token is always run, for the logits.
 *
 * Locking: e->mu guards the queue, the active list and every request's shared fields (output
 * text, status, cancel flag, references); the model state, samplers and raw text belong to the
 * scheduler thread. The forward pass runs without the lock. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitllm/eval.h"
#include "serve/serve_internal.h"

struct srv_req {
    srv_params p;
    /* scheduler thread only */
    int slot, fed;          /* prompt tokens in the cache */
    int32_t next;           /* sampled token to feed at the next step */
    int cached;             /* prompt tokens taken from the prompt cache */
    bool copied;            /* ... copied from a running request's slot */
    int n_gen;
    bl_sampler smp;
    bl_detok detok;         /* token ids -> valid UTF-8 */
    srv_logprob cur;        /* p.logprobs: the sampled token's, passed on with its piece */
    bool has_cur;
    srv_str gen;            /* the text generated so far */
    size_t emitted;         /* bytes of gen passed on */
    double t_start;
    unsigned long id;
    /* shared, under e->mu */
    srv_str out;            /* text not yet taken by the client */
    size_t *ends;           /* where each token's piece of it ends (one piece per token) */
    int n_ends, cap_ends;
    srv_logprob *lps;       /* p.logprobs: the scored prompt tokens', then one per piece */
    int n_lps, cap_lps;
    bool done, cancel, admitted;
    int n_out;              /* tokens generated, as the client sees them */
    const char *finish;
    char error[256];
    int refs;
    pthread_cond_t cond;
    pthread_cond_t *waiter; /* srv_wait_any's, while it waits on this request among others */
    srv_req *next_q;
};

struct srv_engine {
    const bl_model *m;
    srv_engine_opts o;
    bl_state *st;
    float *logits;          /* parallel × vocab */
    float *plogits;         /* chunk × vocab: a scored prompt chunk's logits (allocated on need) */
    const float **step_lg;  /* parallel: the logits each of a step's sequences samples from */
    bl_seq_batch *seqs;     /* parallel */
    srv_req **step_reqs;    /* parallel: the request of each of a step's sequences */
    int32_t *step_tok;      /* parallel: the token sampled for each */
    srv_req **slots;        /* parallel: the request in each slot, or NULL */
    /* the prompt cache: per slot the tokens of the whole prompt chunks its cache holds from
     * position 0 (n_kept, a multiple of chunk) and the admission that last used it */
    int32_t **kept;         /* parallel × ctx */
    int *n_kept;
    unsigned long *used, n_admitted;
    srv_req **order;        /* parallel: active requests in admission order */
    int n_active;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    srv_req *q_head, *q_tail;
    int n_queued;
    bool closed, stop, drain;
    unsigned long next_id;
    srv_metrics met;        /* under mu */
    pthread_t thread;
    bool thread_started;
};

static void logf_(srv_engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(srv_engine *e, const char *fmt, ...) {
    if (!e->o.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    e->o.log(e->o.log_ctx, line);
}

void srv_params_free(srv_params *p) {
    free(p->prompt);
    free(p->text);
    free(p->bias_id);
    free(p->bias);
    for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
    memset(p, 0, sizeof *p);
}

bool srv_params_copy(srv_params *dst, const srv_params *src, const int32_t *ids, int n,
                     const char *text) {
    *dst = *src;
    dst->prompt = NULL;
    dst->text = NULL;
    dst->bias_id = NULL;
    dst->bias = NULL;
    dst->n_stop = 0;
    bool ok = (dst->prompt = bl_malloc_array((size_t)(n ? n : 1), sizeof *ids)) != NULL;
    if (ok && n) memcpy(dst->prompt, ids, (size_t)n * sizeof *ids);
    dst->n_prompt = n;
    if (ok && text) ok = (dst->text = bl_strdup(text)) != NULL;
    for (int i = 0; ok && i < src->n_stop; i++)
        if ((ok = (dst->stop[i] = bl_strdup(src->stop[i])) != NULL)) dst->n_stop++;
    if (ok && src->n_bias) {
        dst->bias_id = bl_malloc_array((size_t)src->n_bias, sizeof *dst->bias_id);
        dst->bias = bl_malloc_array((size_t)src->n_bias, sizeof *dst->bias);
        ok = dst->bias_id && dst->bias;
        if (ok) {
            memcpy(dst->bias_id, src->bias_id, (size_t)src->n_bias * sizeof *dst->bias_id);
            memcpy(dst->bias, src->bias, (size_t)src->n_bias * sizeof *dst->bias);
        }
    }
    if (!ok) srv_params_free(dst);
    return ok;
}

static void req_free(srv_req *r) {
    srv_params_free(&r->p);
    bl_sampler_free(&r->smp);
    bl_detok_free(&r->detok);
    srv_str_free(&r->gen);
    srv_str_free(&r->out);
    free(r->ends);
    free(r->lps);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* Wakes whoever waits for r's output: its own waiters and a srv_wait_any among others (e->mu
 * held). */
static void wake_locked(srv_req *r) {
    pthread_cond_broadcast(&r->cond);
    if (r->waiter) pthread_cond_broadcast(r->waiter);
}

/* Drops one reference (e->mu held); frees the request with the last. */
static void unref_locked(srv_req *r) {
    if (--r->refs == 0) req_free(r);
}

/* ---- request end and text (scheduler thread; takes e->mu) ---- */

/* Room for one more piece end (e->mu held); NULL when out of memory. */
static size_t *tk_grow_ends(srv_req *r) {
    if (r->n_ends == r->cap_ends) {
        int cap = r->cap_ends ? 2 * r->cap_ends : 64;
        size_t *p = realloc(r->ends, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        r->ends = p;
        r->cap_ends = cap;
    }
    return r->ends;
}

/* The log-probability of tok under logits (NULL: a prompt's first token, none) and its
 * p.top_logprobs alternatives. */
static void logprob_of(const srv_req *r, const float *logits, int V, int32_t tok,
                       srv_logprob *l) {
    l->id = tok;
    l->lp = NAN;
    l->n_top = 0;
    if (!logits) return;
    float mx;
    double log_sum;
    bl_log_softmax_norm(logits, V, &mx, &log_sum); /* bl_log_prob's arithmetic */
    l->lp = (float)((double)logits[tok] - mx - log_sum);
    const int k = r->p.top_logprobs;
    for (int v = 0; v < V; v++) { /* insertion into the k best, by logit then id */
        int at = l->n_top;
        while (at > 0 && logits[v] > logits[l->top_id[at - 1]]) at--;
        if (at >= k) continue;
        const int last = l->n_top < k ? l->n_top : k - 1;
        memmove(l->top_id + at + 1, l->top_id + at, (size_t)(last - at) * sizeof *l->top_id);
        l->top_id[at] = v;
        if (l->n_top < k) l->n_top++;
    }
    for (int i = 0; i < l->n_top; i++)
        l->top_lp[i] = (float)((double)logits[l->top_id[i]] - mx - log_sum);
}

/* Appends an entry to r's log-probabilities (e->mu held); false when out of memory. */
static bool push_logprob_locked(srv_req *r, const srv_logprob *l) {
    if (r->n_lps == r->cap_lps) {
        const int cap = r->cap_lps ? 2 * r->cap_lps : 64;
        srv_logprob *p = realloc(r->lps, (size_t)cap * sizeof *p);
        if (!p) return false;
        r->lps = p;
        r->cap_lps = cap;
    }
    r->lps[r->n_lps++] = *l;
    return true;
}

/* Passes text gen[emitted..upto) on into the shared output as one piece (possibly empty: a
 * token whose text is held back still has its piece, so a stream sends one event per token),
 * with the token's log-probability when it has one (in the same step, so a client that takes
 * both sees one entry per piece).
 * gen holds whole characters only (bl_detok), and a held-back stop-string prefix starts at a
 * character, so every piece is valid UTF-8. */
static bool emit(srv_engine *e, srv_req *r, size_t upto) {
    pthread_mutex_lock(&e->mu);
    bool ok = tk_grow_ends(r) && srv_str_put(&r->out, r->gen.p + r->emitted, upto - r->emitted) &&
              (!r->has_cur || push_logprob_locked(r, &r->cur));
    r->has_cur = false;
    if (ok) r->ends[r->n_ends++] = r->out.n;
    r->emitted = upto;
    r->n_out = r->n_gen;
    wake_locked(r);
    pthread_mutex_unlock(&e->mu);
    return ok;
}

/* The end of the text: a character that never completed becomes U+FFFD. */
static bool end_text(srv_req *r) {
    size_t k = 0;
    const char *tail = r->detok.tok ? bl_detok_finish(&r->detok, &k) : "";
    return srv_str_put(&r->gen, tail, k);
}

/* Frees r's slot (e->mu held). With keep, the slot's cache keeps the whole chunks of r's prompt
 * that have run, for the prompt cache; otherwise (a failed request) it is emptied. */
static void leave_slot(srv_engine *e, srv_req *r, bool keep) {
    const int s = r->slot, C = e->o.chunk;
    const int k = keep ? (r->fed < r->p.n_prompt ? r->fed : r->p.n_prompt) / C * C : 0;
    memcpy(e->kept[s], r->p.prompt, (size_t)k * sizeof(int32_t));
    e->n_kept[s] = k;
    bl_state_slot_truncate(e->st, s, k);
    e->slots[s] = NULL;
}

/* Ends a request: finish is "stop"/"length", or NULL with a reason. Frees its slot. */
static void finish(srv_engine *e, srv_req *r, const char *why, const char *error) {
    const double secs = bl_time_s() - r->t_start;
    const unsigned long id = r->id;
    const int n_prompt = r->p.n_prompt, n_gen = r->n_gen, cached = r->cached;
    const bool copied = r->copied;
    pthread_mutex_lock(&e->mu);
    r->done = true;
    r->finish = why;
    r->n_out = r->n_gen;
    if (error) snprintf(r->error, sizeof r->error, "%.200s", error);
    if (why) e->met.finished++;
    else e->met.failed++;
    wake_locked(r);
    leave_slot(e, r, why != NULL);
    for (int i = 0, k = 0; i < e->n_active; i++)
        if (e->order[i] != r) e->order[k++] = e->order[i];
    e->n_active--;
    unref_locked(r); /* r may be gone from here on */
    pthread_mutex_unlock(&e->mu);
    logf_(e, "request %lu: %s, prompt %d tokens (%d from the prompt cache%s), %d generated, "
          "%.2f s", id, why ? why : (error ? error : "failed"), n_prompt, cached,
          copied ? ", copied from a running request" : "", n_gen, secs);
}

static bool is_stop_id(const srv_req *r, int32_t tok) {
    for (int i = 0; i < r->p.n_stop_ids; i++)
        if (r->p.stop_ids[i] == tok) return true;
    return false;
}

/* A sampled token: stop, or append its text and check stop strings and limits. */
static void accept_token(srv_engine *e, srv_req *r, int32_t tok) {
    if (tok < 0) {
        finish(e, r, NULL, "non-finite logits");
        return;
    }
    if (!r->p.ignore_eos && is_stop_id(r, tok)) {
        /* what is still held back goes out as a last piece (with logprobs, always: the
         * end-of-sequence token's entry rides on it) */
        const bool ok = end_text(r) && ((r->gen.n == r->emitted && !r->has_cur) ||
                                        emit(e, r, r->gen.n));
        if (ok) finish(e, r, "stop", NULL);
        else finish(e, r, NULL, "out of memory");
        return;
    }
    r->n_gen++;
    bl_sampler_accept(&r->smp, tok);
    size_t k = 0;
    const char *piece = r->detok.tok ? bl_detok_push(&r->detok, tok, &k) : "";
    const size_t before = r->gen.n;
    if (!srv_str_put(&r->gen, piece, k)) {
        finish(e, r, NULL, "out of memory");
        return;
    }
    long at = srv_find_stop(r->gen.p, r->gen.n, before, r->p.stop, r->p.n_stop);
    if (at >= 0) r->gen.n = (size_t)at; /* the stop string is not part of the text */
    const char *why = at >= 0 ? "stop"
                    : r->n_gen >= r->p.max_tokens || bl_state_slot_pos(e->st, r->slot) >= e->o.ctx
                        ? "length"
                        : NULL;
    if (why && at < 0 && !end_text(r)) { /* (after a stop string the rest is dropped) */
        finish(e, r, NULL, "out of memory");
        return;
    }
    /* text that could still turn out to begin a stop string waits for the next tokens */
    size_t upto = why ? r->gen.n : r->gen.n - srv_stop_hold(r->gen.p, r->gen.n, r->p.stop,
                                                              r->p.n_stop);
    if (upto < r->emitted) upto = r->emitted;
    if (!emit(e, r, upto)) finish(e, r, NULL, "out of memory");
    else if (why) finish(e, r, why, NULL);
    else r->next = tok;
}

/* ---- the scheduler ---- */

/* How many of p's prompt tokens the n tokens at `have` hold, in whole chunks, and not the whole
 * prompt (its last token must run, for the logits). */
static int shared_chunks(const srv_engine *e, const srv_params *p, const int32_t *have, int n) {
    const int C = e->o.chunk, limit = (p->n_prompt - 1) / C * C;
    const int max = n < limit ? n : limit;
    int k = 0;
    while (k < max && have[k] == p->prompt[k]) k++;
    return k / C * C;
}

/* The free slot for a request with parameters p (e->mu held): the one whose kept chunks start
 * p's prompt for longest, the least recently used among equals; *reuse receives how many tokens
 * it takes from there. Should a running request's prompt chunks that have run start p's prompt
 * for longer (concurrent requests with one long system prompt), *src receives its slot and
 * *reuse that length, to be copied; otherwise *src is -1. */
static int pick_slot(const srv_engine *e, const srv_params *p, int *reuse, int *src) {
    int best = -1, best_n = -1;
    for (int s = 0; s < e->o.parallel; s++) {
        if (e->slots[s]) continue;
        const int n = shared_chunks(e, p, e->kept[s], e->n_kept[s]);
        if (n > best_n || (n == best_n && e->used[s] < e->used[best])) best = s, best_n = n;
    }
    *reuse = best_n;
    *src = -1;
    for (int s = 0; s < e->o.parallel; s++) {
        const srv_req *r = e->slots[s];
        if (!r) continue;
        const int ran = r->fed < r->p.n_prompt ? r->fed : r->p.n_prompt;
        const int n = shared_chunks(e, p, r->p.prompt, ran);
        if (n > *reuse) *reuse = n, *src = s;
    }
    return best;
}

/* Cancelled requests leave, waiting ones take free slots (e->mu held). */
static void admit_locked(srv_engine *e) {
    for (int i = 0; i < e->n_active; i++) {
        srv_req *r = e->order[i];
        const bool shutdown = e->stop && !e->drain;
        if (!r->cancel && !shutdown) continue;
        if (shutdown) snprintf(r->error, sizeof r->error, "server shutting down");
        r->done = true;
        r->finish = NULL;
        if (!r->error[0]) snprintf(r->error, sizeof r->error, "cancelled");
        e->met.cancelled++;
        wake_locked(r);
        leave_slot(e, r, true); /* its finished chunks are as good as anyone's */
        for (int j = i; j + 1 < e->n_active; j++) e->order[j] = e->order[j + 1];
        e->n_active--;
        i--;
        logf_(e, "request %lu: cancelled after %d tokens", r->id, r->n_gen);
        unref_locked(r);
    }
    while (e->q_head && e->n_active < e->o.parallel) {
        srv_req *r = e->q_head;
        e->q_head = r->next_q;
        if (!e->q_head) e->q_tail = NULL;
        e->n_queued--;
        if (r->cancel) {
            r->done = true;
            snprintf(r->error, sizeof r->error, "cancelled");
            e->met.cancelled++;
            wake_locked(r);
            unref_locked(r);
            continue;
        }
        int reuse, src;
        const int slot = pick_slot(e, &r->p, &reuse, &src);
        bl_err err = {0};
        if (bl_sampler_init(&r->smp, e->m->cfg.vocab_size, r->p.temperature, r->p.top_p,
                            r->p.seed, &err) ||
            bl_sampler_set_filters(&r->smp, r->p.top_k, r->p.min_p, &err) ||
            bl_sampler_set_penalties(&r->smp, &r->p.pen, &err) ||
            bl_sampler_set_bias(&r->smp, r->p.bias_id, r->p.bias, r->p.n_bias, &err) ||
            (e->m->tok && bl_detok_init(&r->detok, e->m->tok, &err))) {
            r->done = true;
            snprintf(r->error, sizeof r->error, "%.200s", err.msg);
            wake_locked(r);
            unref_locked(r);
            continue;
        }
        for (int i = 0; i < r->p.n_prompt; i++) bl_sampler_accept(&r->smp, r->p.prompt[i]);
        if (r->p.echo && r->p.logprobs) { /* every prompt token's logits are needed: run them all */
            reuse = 0;
            src = -1;
            srv_logprob first;
            logprob_of(r, NULL, e->m->cfg.vocab_size, r->p.prompt[0], &first);
            if (!push_logprob_locked(r, &first)) {
                r->done = true;
                snprintf(r->error, sizeof r->error, "out of memory");
                wake_locked(r);
                unref_locked(r);
                continue;
            }
        }
        if (src >= 0) {
            bl_state_slot_copy(e->st, slot, src, reuse);
            memcpy(e->kept[slot], r->p.prompt, (size_t)reuse * sizeof(int32_t));
        } else {
            bl_state_slot_truncate(e->st, slot, reuse);
        }
        e->n_kept[slot] = reuse;
        e->used[slot] = ++e->n_admitted;
        r->fed = r->cached = reuse;
        e->met.cached_tokens += (uint64_t)reuse;
        r->copied = src >= 0;
        r->slot = slot;
        r->admitted = true;
        r->t_start = bl_time_s();
        e->slots[slot] = r;
        e->order[e->n_active++] = r;
    }
}

/* The next token of every row of a step that has logits, sampled side by side on the state's
 * threads: each request's sampler (its RNG, penalty window and buffers) is its own, so a token
 * does not depend on where it was drawn. Sampling a 32000-token vocabulary takes ~10 µs greedy,
 * ~90 µs at temperature > 0 and ~0.1–0.2 ms with top_p < 1 (model/sample.c). */
typedef struct {
    srv_req *const *reqs;
    const float *const *lg;
    int32_t *tok;
} sample_job;

static void sample_range(void *ctx, int64_t lo, int64_t hi) {
    const sample_job *j = ctx;
    for (int64_t k = lo; k < hi; k++)
        if (j->lg[k]) j->tok[k] = (int32_t)bl_sample(&j->reqs[k]->smp, j->lg[k]);
}

static bool scored(const srv_req *r) { return r->p.echo && r->p.logprobs; }

/* One batched forward over the active requests and what follows from its logits. A prompt
 * that is scored (echo with logprobs) runs with all its rows' logits, one such chunk per step. */
static void step(srv_engine *e) {
    const int V = e->m->cfg.vocab_size, max_rows = bl_state_max_batch(e->st);
    srv_req **reqs = e->step_reqs; /* each active request at most once: n <= parallel */
    const float **lg = e->step_lg;
    int32_t *tok = e->step_tok;
    int n = 0, rows = 0;
    if (!e->plogits) /* the buffer of scored prompt chunks, once one is needed */
        for (int i = 0; i < e->n_active; i++) {
            srv_req *r = e->order[i];
            if (!scored(r) || r->fed >= r->p.n_prompt) continue;
            e->plogits = bl_malloc_array((size_t)e->o.chunk * (size_t)V, sizeof(float));
            if (!e->plogits) {
                finish(e, r, NULL, "out of memory for the prompt's logits");
                return;
            }
            break;
        }
    /* decoding sequences: one row each */
    for (int i = 0; i < e->n_active; i++) {
        srv_req *r = e->order[i];
        if (r->fed < r->p.n_prompt) continue;
        e->seqs[n] = (bl_seq_batch){r->slot, &r->next, 1, e->logits + (size_t)n * V, false};
        lg[n] = e->seqs[n].logits;
        reqs[n++] = r;
        rows++;
    }
    /* prompt chunks in admission order, each only whole */
    bool scoring = false;
    for (int i = 0; i < e->n_active; i++) {
        srv_req *r = e->order[i];
        if (r->fed >= r->p.n_prompt) continue;
        int c = r->p.n_prompt - r->fed < e->o.chunk ? r->p.n_prompt - r->fed : e->o.chunk;
        if (rows + c > max_rows || (scored(r) && scoring)) break;
        const bool last = r->fed + c == r->p.n_prompt, all = scored(r);
        float *out = all ? e->plogits : last ? e->logits + (size_t)n * V : NULL;
        e->seqs[n] = (bl_seq_batch){r->slot, r->p.prompt + r->fed, c, out, all};
        lg[n] = !last || r->p.max_tokens == 0 ? NULL : all ? out + (size_t)(c - 1) * V : out;
        scoring |= all;
        reqs[n++] = r;
        rows += c;
    }
    bl_err err = {0};
    const double t0 = bl_time_s();
    if (n && bl_forward_batch(e->st, e->seqs, n, &err) != BL_OK) {
        for (int k = 0; k < n; k++) finish(e, reqs[k], NULL, err.msg);
        return;
    }
    uint64_t prompt_rows = 0, sampled = 0;
    for (int k = 0; k < n; k++) {
        if (reqs[k]->fed < reqs[k]->p.n_prompt) prompt_rows += (uint64_t)e->seqs[k].n;
        if (lg[k]) sampled++;
    }
    pthread_mutex_lock(&e->mu);
    e->met.steps++;
    e->met.step_seconds += bl_time_s() - t0;
    e->met.prompt_tokens += prompt_rows;
    e->met.generated += sampled;
    pthread_mutex_unlock(&e->mu);
    sample_job sj = {reqs, lg, tok};
    bl_pool_for(bl_state_pool(e->st), n, n >= 2, sample_range, &sj);
    for (int k = 0; k < n; k++) {
        srv_req *r = reqs[k];
        if (r->fed < r->p.n_prompt) {
            bool ok = true;
            for (int j = 0; ok && e->seqs[k].all_logits && j < e->seqs[k].n; j++)
                if (r->fed + j + 1 < r->p.n_prompt) { /* row j predicts the next prompt token */
                    srv_logprob l;
                    logprob_of(r, e->plogits + (size_t)j * V, V, r->p.prompt[r->fed + j + 1], &l);
                    pthread_mutex_lock(&e->mu);
                    ok = push_logprob_locked(r, &l);
                    pthread_mutex_unlock(&e->mu);
                }
            r->fed += e->seqs[k].n;
            if (!ok) {
                finish(e, r, NULL, "out of memory");
                continue;
            }
            if (r->fed == r->p.n_prompt && r->p.max_tokens == 0) { /* echo only: nothing to add */
                finish(e, r, "length", NULL);
                continue;
            }
        }
        if (!lg[k]) continue;
        if (r->p.logprobs && tok[k] >= 0) { /* passed on with the token's piece */
            logprob_of(r, lg[k], V, tok[k], &r->cur);
            r->has_cur = true;
        }
        accept_token(e, r, tok[k]);
    }
}

static void *run(void *arg) {
    srv_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        admit_locked(e);
        if (e->n_active == 0) {
            if (e->stop && (!e->drain || !e->q_head)) break;
            pthread_cond_wait(&e->wake, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* not draining: whatever still waits is refused */
    while (e->q_head) {
        srv_req *r = e->q_head;
        e->q_head = r->next_q;
        r->done = true;
        snprintf(r->error, sizeof r->error, "server shutting down");
        wake_locked(r);
        unref_locked(r);
    }
    e->q_tail = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

bl_status srv_engine_new(const bl_model *m, const srv_engine_opts *o, srv_engine **out,
                         bl_err *err) {
    *out = NULL;
    if (o->parallel < 1 || o->ctx < 2 || o->queue < 0 || o->chunk < 1)
        return bl_fail(err, BL_ERR_ARG, "server: parallel >= 1, ctx >= 2, queue >= 0 and "
                       "chunk >= 1 are needed");
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    e->m = m;
    e->o = *o;
    e->next_id = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    const size_t P = (size_t)o->parallel;
    e->logits = bl_malloc_array(P * (size_t)m->cfg.vocab_size, sizeof(float));
    e->seqs = calloc(P, sizeof *e->seqs);
    e->step_reqs = calloc(P, sizeof *e->step_reqs);
    e->step_lg = calloc(P, sizeof *e->step_lg);
    e->step_tok = calloc(P, sizeof *e->step_tok);
    e->slots = calloc(P, sizeof *e->slots);
    e->order = calloc(P, sizeof *e->order);
    e->kept = calloc(P, sizeof *e->kept);
    e->n_kept = calloc(P, sizeof *e->n_kept);
    e->used = calloc(P, sizeof *e->used);
    bool ok = e->logits && e->seqs && e->step_reqs && e->step_lg && e->step_tok && e->slots && e->order &&
              e->kept && e->n_kept && e->used;
    for (size_t i = 0; ok && i < P; i++)
        ok = (e->kept[i] = bl_malloc_array((size_t)o->ctx, sizeof(int32_t))) != NULL;
    bl_status s = BL_OK;
    if (!ok) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    /* a step holds one row per decoding sequence plus one whole prompt chunk */
    if (!s)
        s = bl_state_new_slots(m, o->parallel, o->ctx, o->chunk + o->parallel, o->n_threads,
                               &e->st, err);
    if (!s && pthread_create(&e->thread, NULL, run, e) != 0)
        s = bl_fail(err, BL_ERR_NOMEM, "server: cannot start the scheduler thread");
    if (s) {
        srv_engine_free(e);
        return s;
    }
    e->thread_started = true;
    *out = e;
    return BL_OK;
}

void srv_engine_close(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->closed = true;
    pthread_mutex_unlock(&e->mu);
}

void srv_engine_stop(srv_engine *e, bool drain) {
    if (!e || !e->thread_started) return;
    pthread_mutex_lock(&e->mu);
    e->closed = e->stop = true;
    e->drain = drain;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->thread_started = false;
}

void srv_engine_free(srv_engine *e) {
    if (!e) return;
    srv_engine_stop(e, false);
    bl_state_free(e->st);
    free(e->logits);
    free(e->plogits);
    free((void *)e->step_lg);
    free(e->seqs);
    free(e->step_reqs);
    free(e->step_tok);
    free(e->slots);
    free(e->order);
    for (int i = 0; e->kept && i < e->o.parallel; i++) free(e->kept[i]);
    free(e->kept);
    free(e->n_kept);
    free(e->used);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void srv_engine_metrics(srv_engine *e, srv_metrics *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->met;
    out->processing = e->n_active;
    out->queued = e->n_queued;
    out->slots = e->o.parallel;
    pthread_mutex_unlock(&e->mu);
}

int srv_submit(srv_engine *e, srv_params *p, srv_req **out) {
    *out = NULL;
    srv_req *r = calloc(1, sizeof *r);
    if (!r) return SRV_NOMEM;
    pthread_cond_init(&r->cond, NULL);
    pthread_mutex_lock(&e->mu);
    int rc = SRV_OK;
    if (e->closed) rc = SRV_STOPPING;
    else if (e->n_active + e->n_queued >= e->o.parallel + e->o.queue) /* slots and queue full */
        rc = SRV_QUEUE_FULL;
    if (rc != SRV_OK) {
        pthread_mutex_unlock(&e->mu);
        pthread_cond_destroy(&r->cond);
        free(r);
        return rc;
    }
    r->p = *p;
    memset(p, 0, sizeof *p);
    r->id = e->next_id++;
    r->refs = 2; /* the caller's and the scheduler's */
    if (e->q_tail) e->q_tail->next_q = r;
    else e->q_head = r;
    e->q_tail = r;
    e->n_queued++;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return SRV_OK;
}

/* timeout_ms from now on the clock condition variables use. */
static struct timespec deadline(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

void srv_wait_any(srv_engine *e, srv_req *const *r, int n, int timeout_ms) {
    pthread_mutex_lock(&e->mu);
    bool ready = false;
    for (int i = 0; i < n && !ready; i++) ready = r[i]->done || r[i]->n_ends > 0;
    if (!ready && timeout_ms > 0) {
        pthread_cond_t cv;
        pthread_cond_init(&cv, NULL);
        for (int i = 0; i < n; i++) r[i]->waiter = &cv;
        const struct timespec ts = deadline(timeout_ms);
        pthread_cond_timedwait(&cv, &e->mu, &ts);
        for (int i = 0; i < n; i++) r[i]->waiter = NULL;
        pthread_cond_destroy(&cv);
    }
    pthread_mutex_unlock(&e->mu);
}

void srv_wait(srv_engine *e, srv_req *r, int timeout_ms, srv_str *text, srv_pieces *pieces,
              srv_status *st) {
    pthread_mutex_lock(&e->mu);
    if (!r->done && r->n_ends == 0 && timeout_ms > 0) {
        const struct timespec ts = deadline(timeout_ms);
        pthread_cond_timedwait(&r->cond, &e->mu, &ts);
    }
    const size_t base = text->n;
    bool taken = srv_str_put(text, r->out.p ? r->out.p : "", r->out.n);
    if (taken && pieces) {
        size_t *p = realloc(pieces->ends, ((size_t)pieces->n + (size_t)r->n_ends + 1) * sizeof *p);
        if (p) {
            pieces->ends = p;
            for (int i = 0; i < r->n_ends; i++) p[pieces->n++] = base + r->ends[i];
        } else {
            taken = false;
            text->n = base;
        }
    }
    if (taken && pieces && pieces->want_logprobs && r->n_lps) { /* moved with their pieces */
        srv_logprob *l = realloc(pieces->lps, ((size_t)pieces->n_lps + (size_t)r->n_lps) *
                                                  sizeof *l);
        if (l) {
            memcpy(l + pieces->n_lps, r->lps, (size_t)r->n_lps * sizeof *l);
            pieces->lps = l;
            pieces->n_lps += r->n_lps;
            r->n_lps = 0;
        } else {
            taken = false;
            text->n = base;
            pieces->n -= r->n_ends;
        }
    }
    if (taken) {
        r->out.n = 0;
        r->n_ends = 0;
    }
    st->done = r->done && r->out.n == 0 && r->n_ends == 0;
    st->finish = r->finish;
    snprintf(st->error, sizeof st->error, "%s", r->error);
    st->usage = (srv_usage){r->p.n_prompt, r->n_out, r->admitted ? r->cached : 0};
    pthread_mutex_unlock(&e->mu);
}

void srv_cancel(srv_engine *e, srv_req *r) {
    pthread_mutex_lock(&e->mu);
    if (!r->done) {
        r->cancel = true;
        pthread_cond_broadcast(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
}

void srv_take_logprobs(srv_engine *e, srv_req *r, srv_logprob **out, int *n) {
    pthread_mutex_lock(&e->mu);
    *out = r->lps;
    *n = r->n_lps;
    r->lps = NULL;
    r->n_lps = r->cap_lps = 0;
    pthread_mutex_unlock(&e->mu);
}

void srv_release(srv_engine *e, srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&e->mu);
    unref_locked(r);
    pthread_mutex_unlock(&e->mu);
}
