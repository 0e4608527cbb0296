/* The chat session behind `bitllm chat`: a conversation rendered with the model's chat template,
 * generated into one KV cache that keeps the conversation between turns (each turn runs only the
 * tokens that differ from what the cache holds), with the oldest turns dropped when the next
 * answer would not fit. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

struct bl_chat_session {
    const bl_model *m;
    bl_chat_session_opts o;
    bl_chat_template tmpl;
    bl_state *st;
    bl_sampler smp;
    float *logits;
    bl_chat_msg *msgs; /* contents owned (roles are literals) */
    int n_msgs, cap_msgs;
    int32_t *cached;   /* the tokens in the cache, in order */
    int n_cached;
    int32_t stop[8];
    int n_stop;
};

static void free_msgs(bl_chat_session *s, int from) {
    for (int i = from; i < s->n_msgs; i++) free((char *)s->msgs[i].content);
    s->n_msgs = from;
}

void bl_chat_session_free(bl_chat_session *s) {
    if (!s) return;
    free_msgs(s, 0);
    free(s->msgs);
    free(s->cached);
    free(s->logits);
    bl_sampler_free(&s->smp);
    bl_state_free(s->st);
    free(s);
}

static bool push_msg(bl_chat_session *s, const char *role, const char *text, size_t len) {
    if (s->n_msgs == s->cap_msgs) {
        int cap = s->cap_msgs ? 2 * s->cap_msgs : 16;
        bl_chat_msg *p = realloc(s->msgs, (size_t)cap * sizeof *p);
        if (!p) return false;
        s->msgs = p;
        s->cap_msgs = cap;
    }
    char *c = bl_strndup(text, len);
    if (!c) return false;
    s->msgs[s->n_msgs++] = (bl_chat_msg){role, c};
    return true;
}

bl_status bl_chat_session_new(const bl_model *m, const bl_chat_session_opts *o,
                              bl_chat_session **out, bl_err *err) {
    *out = NULL;
    if (!m->tok) return bl_fail(err, BL_ERR_ARG, "%s has no tokenizer", m->path);
    bl_chat_session *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->o = *o;
    if (s->o.ctx <= 0) s->o.ctx = m->cfg.max_seq < 4096 ? m->cfg.max_seq : 4096;
    bl_status st = BL_OK;
    if (s->o.ctx > m->cfg.max_seq || s->o.ctx < 16)
        st = bl_fail(err, BL_ERR_ARG, "context of %d tokens: it must be in [16, %d]", s->o.ctx,
                     m->cfg.max_seq);
    if (!st) st = bl_chat_template_for(m->tok, o->chat_template, &s->tmpl, err);
    if (!st) st = bl_state_new(m, s->o.ctx, 256, o->n_threads, &s->st, err);
    if (!st) st = bl_sampler_init(&s->smp, m->cfg.vocab_size, o->temperature, o->top_p, o->seed,
                                  err);
    if (!st) st = bl_sampler_set_filters(&s->smp, o->top_k, o->min_p, err);
    /* a zero-initialized option means no penalties (a repeat penalty of 0 is not one) */
    if (s->o.penalties.repeat == 0.0f && s->o.penalties.presence == 0.0f &&
        s->o.penalties.frequency == 0.0f && s->o.penalties.last_n == 0)
        s->o.penalties = BL_PENALTIES_OFF;
    if (!st) st = bl_sampler_set_penalties(&s->smp, &s->o.penalties, err);
    s->logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
    s->cached = bl_malloc_array((size_t)s->o.ctx, sizeof *s->cached);
    if (!st && (!s->logits || !s->cached)) st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!st && o->system && *o->system && !push_msg(s, "system", o->system, strlen(o->system)))
        st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (st) {
        bl_chat_session_free(s);
        return st;
    }
    s->n_stop = bl_chat_stop_tokens(&s->tmpl, m->tok, s->stop, 8);
    *out = s;
    return BL_OK;
}

const char *bl_chat_session_template(const bl_chat_session *s) { return s->tmpl.name; }

void bl_chat_session_reset(bl_chat_session *s) {
    free_msgs(s, s->n_msgs && strcmp(s->msgs[0].role, "system") == 0 ? 1 : 0);
    s->n_cached = 0;
    bl_state_reset(s->st);
}

/* Drops the oldest exchange after the system message (a user turn and the answer after it). */
static int drop_oldest(bl_chat_session *s) {
    const int first = s->n_msgs && strcmp(s->msgs[0].role, "system") == 0 ? 1 : 0;
    int k = 1;
    if (first + 1 < s->n_msgs && strcmp(s->msgs[first + 1].role, "assistant") == 0) k = 2;
    for (int i = first; i < first + k; i++) free((char *)s->msgs[i].content);
    memmove(s->msgs + first, s->msgs + first + k, (size_t)(s->n_msgs - first - k) * sizeof *s->msgs);
    s->n_msgs -= k;
    return k;
}

static bool is_stop(const bl_chat_session *s, int32_t t) {
    for (int i = 0; i < s->n_stop; i++)
        if (s->stop[i] == t) return true;
    return false;
}

/* Runs ids through the cache, reusing the longest prefix it already holds. */
static bl_status feed(bl_chat_session *s, const int32_t *ids, int n, bl_err *err) {
    int common = 0;
    while (common < n && common < s->n_cached && s->cached[common] == ids[common]) common++;
    if (common == n) common--; /* at least one token, for the logits */
    bl_state_truncate(s->st, common);
    bl_status st = bl_forward(s->st, ids + common, n - common, s->logits, false, err);
    if (st) {
        bl_state_reset(s->st);
        s->n_cached = 0;
        return st;
    }
    memcpy(s->cached, ids, (size_t)n * sizeof *ids);
    s->n_cached = n;
    return BL_OK;
}

bl_status bl_chat_session_say(bl_chat_session *s, const char *user, bl_text_fn on_text,
                              void *ctx, int *dropped, bl_err *err) {
    if (dropped) *dropped = 0;
    if (!push_msg(s, "user", user, strlen(user))) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    const int reserve = s->o.max_tokens > 0 && s->o.max_tokens < s->o.ctx / 2 ? s->o.max_tokens
                                                                              : s->o.ctx / 4;
    int32_t *ids = NULL;
    size_t n = 0;
    bl_chat_opts co = {.add_generation_prompt = true};
    bl_status st;
    for (;;) {
        free(ids);
        ids = NULL;
        if ((st = bl_chat_tokenize(&s->tmpl, s->m->tok, s->msgs, s->n_msgs, &co, &ids, &n, err)))
            break;
        if ((int64_t)n + reserve <= s->o.ctx) break;
        const int first = s->n_msgs && strcmp(s->msgs[0].role, "system") == 0 ? 1 : 0;
        if (s->n_msgs - first <= 1) {
            st = bl_fail(err, BL_ERR_ARG, "the message is %zu tokens with the template; with %d "
                         "kept for the answer it does not fit the %d-token context", n, reserve,
                         s->o.ctx);
            break;
        }
        int k = drop_oldest(s);
        if (dropped) *dropped += k;
    }
    if (st) {
        free(ids);
        free_msgs(s, s->n_msgs - 1); /* the message was not taken */
        return st;
    }
    st = feed(s, ids, (int)n, err);
    /* the penalties' window: the conversation as rendered, then the answer */
    if (!st && bl_penalties_active(&s->o.penalties)) {
        st = bl_sampler_set_penalties(&s->smp, &s->o.penalties, err);
        for (size_t i = 0; i < n && !st; i++) bl_sampler_accept(&s->smp, ids[i]);
    }
    free(ids);
    if (st) return st;
    srv_str answer = {0};
    bl_detok dt;
    if ((st = bl_detok_init(&dt, s->m->tok, err))) return st;
    int made = 0;
    bool go = true;
    const int limit = s->o.max_tokens > 0 ? s->o.max_tokens : s->o.ctx;
    size_t k;
    const char *text;
    while (go && made < limit && !st) {
        int32_t t = (int32_t)bl_sample(&s->smp, s->logits);
        if (t < 0) {
            st = bl_fail(err, BL_ERR_NUMERIC, "%s: non-finite logits", s->m->path);
            break;
        }
        if (is_stop(s, t)) break;
        made++;
        bl_sampler_accept(&s->smp, t);
        text = bl_detok_push(&dt, t, &k);
        if (!srv_str_put(&answer, text, k)) {
            st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
            break;
        }
        if (k && on_text) go = on_text(ctx, text, k);
        if (!go || s->n_cached >= s->o.ctx) break;
        st = bl_forward(s->st, &t, 1, s->logits, false, err);
        if (!st) s->cached[s->n_cached++] = t;
    }
    text = bl_detok_finish(&dt, &k);
    if (!st && k && srv_str_put(&answer, text, k) && on_text && go) on_text(ctx, text, k);
    if (!st && !push_msg(s, "assistant", answer.p ? answer.p : "", answer.n))
        st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_detok_free(&dt);
    srv_str_free(&answer);
    return st;
}
