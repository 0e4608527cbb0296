/* The OpenAI API objects: request bodies of /v1/completions and /v1/chat/completions parsed into
 * generation parameters (every field checked; unsupported options that would change the result
 * are refused rather than ignored), and the JSON of responses, stream chunks, model lists and
 * errors. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/api.h"

static bool fail(srv_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(srv_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->param = param;
    e->code = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

static const cJSON *get(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNull(v) ? NULL : v;
}

/* An integer-valued number within [lo, hi]. */
static bool get_int(const cJSON *o, const char *k, double lo, double hi, long long *out,
                    srv_error *e) {
    const cJSON *v = get(o, k);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi)
        return fail(e, 400, k, "'%s' must be an integer in [%.0f, %.0f]", k, lo, hi);
    *out = (long long)v->valuedouble;
    return true;
}

static bool get_num(const cJSON *o, const char *k, double lo, double hi, bool lo_open,
                    double *out, srv_error *e) {
    const cJSON *v = get(o, k);
    if (!v) return true;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || (lo_open && d == lo))
        return fail(e, 400, k, "'%s' must be a number in %s%g, %g]", k, lo_open ? "(" : "[", lo,
                    hi);
    *out = d;
    return true;
}

static bool get_bool(const cJSON *o, const char *k, bool *out, srv_error *e) {
    const cJSON *v = get(o, k);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return fail(e, 400, k, "'%s' must be true or false", k);
    *out = cJSON_IsTrue(v);
    return true;
}

/* Options this server does not implement: refused when set to anything but their default. */
static bool refuse_unsupported(const cJSON *o, srv_error *e) {
    const cJSON *v;
    if ((v = get(o, "best_of")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return fail(e, 400, "best_of", "'best_of' must be 1");
    if ((v = get(o, "tools")) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return fail(e, 400, "tools", "'tools' are not supported");
    if ((v = get(o, "suffix")) && !(cJSON_IsString(v) && !v->valuestring[0]))
        return fail(e, 400, "suffix", "'suffix' is not supported");
    if ((v = get(o, "response_format"))) {
        const cJSON *t = get(v, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return fail(e, 400, "response_format", "only response_format {\"type\": \"text\"} is "
                        "supported");
    }
    /* OpenAI's legacy function calling, and the sampling and constraint extensions of llama.cpp's
     * server that a client moving from it may send: refused unless at their neutral value */
    static const struct {
        const char *key;
        double neutral; /* NAN: a text or list, neutral when empty (null, "", [] or {}) ... */
        const char *word; /* ... or when this word */
    } ext[] = {
        {"functions", NAN, NULL},      {"function_call", NAN, "none"}, {"grammar", NAN, NULL},
        {"json_schema", NAN, NULL},    {"typical_p", 1, NULL},         {"tfs_z", 1, NULL},
        {"mirostat", 0, NULL},         {"dynatemp_range", 0, NULL},    {"xtc_probability", 0, NULL},
        {"dry_multiplier", 0, NULL},   {"n_probs", 0, NULL},           {"top_n_sigma", -1, NULL},
    };
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if (!(v = get(o, ext[i].key))) continue;
        const bool neutral =
            isnan(ext[i].neutral)
                ? (cJSON_IsString(v) && (!v->valuestring[0] ||
                                         (ext[i].word && !strcmp(v->valuestring, ext[i].word)))) ||
                      ((cJSON_IsArray(v) || cJSON_IsObject(v)) && cJSON_GetArraySize(v) == 0)
                : cJSON_IsNumber(v) && v->valuedouble == ext[i].neutral;
        if (!neutral)
            return fail(e, 400, ext[i].key, "'%s' is not supported", ext[i].key);
    }
    return true;
}

/* Log-probabilities and echo. Completions: "logprobs" is the number of alternatives per token
 * (0..20; null or false: none) and "echo" returns the prompt before the text (with logprobs,
 * its tokens scored too). Chat: "logprobs" is true/false and "top_logprobs" the alternatives. */
static bool parse_logprobs(const srv_api_ctx *c, const cJSON *o, bool chat, srv_params *p,
                           srv_error *e) {
    const cJSON *v = get(o, "logprobs");
    long long top = 0;
    if (chat) {
        if ((v = get(o, "echo")) && !cJSON_IsFalse(v))
            return fail(e, 400, "echo", "'echo' is a parameter of /v1/completions, not of chat "
                        "completions");
        if (!get_bool(o, "logprobs", &p->logprobs, e) ||
            !get_int(o, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, e))
            return false;
        if (get(o, "top_logprobs") && !p->logprobs)
            return fail(e, 400, "top_logprobs", "'top_logprobs' needs \"logprobs\": true");
    } else {
        if (v && !cJSON_IsFalse(v)) {
            if (!get_int(o, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &top, e)) return false;
            p->logprobs = true;
        }
        if (!get_bool(o, "echo", &p->echo, e)) return false;
    }
    p->top_logprobs = (int)top;
    const char *what = p->logprobs ? "logprobs" : p->echo ? "echo" : NULL;
    if (what && !c->m->tok)
        return fail(e, 400, what, "'%s' needs the model's tokenizer, which it lacks", what);
    return true;
}

/* logit_bias: {"token id": bias in [-100, 100], ...}, at most SRV_MAX_BIAS entries. */
#define SRV_MAX_BIAS 1024
static bool parse_bias(const srv_api_ctx *c, const cJSON *o, srv_params *p, srv_error *e) {
    const cJSON *v = get(o, "logit_bias"), *b;
    if (!v) return true;
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) > SRV_MAX_BIAS)
        return fail(e, 400, "logit_bias", "'logit_bias' must be an object of at most %d token "
                    "ids (as strings) to biases in [-100, 100]", SRV_MAX_BIAS);
    const int n = cJSON_GetArraySize(v);
    if (n == 0) return true;
    p->bias_id = bl_malloc_array((size_t)n, sizeof *p->bias_id);
    p->bias = bl_malloc_array((size_t)n, sizeof *p->bias);
    if (!p->bias_id || !p->bias) return fail(e, 500, NULL, "out of memory");
    cJSON_ArrayForEach(b, v) {
        char *end;
        const long id = strtol(b->string, &end, 10);
        if (!isdigit((unsigned char)b->string[0]) || *end || id < 0 || id >= c->m->cfg.vocab_size)
            return fail(e, 400, "logit_bias", "'logit_bias' key '%.40s' is not a token id in "
                        "[0, %d)", b->string, c->m->cfg.vocab_size);
        if (!cJSON_IsNumber(b) || !(b->valuedouble >= -100 && b->valuedouble <= 100))
            return fail(e, 400, "logit_bias", "'logit_bias' of token %ld must be a number in "
                        "[-100, 100]", id);
        p->bias_id[p->n_bias] = (int32_t)id;
        p->bias[p->n_bias++] = (float)b->valuedouble;
    }
    return true;
}

static bool parse_stop(const cJSON *o, srv_params *p, srv_error *e) {
    const cJSON *v = get(o, "stop"), *s;
    if (!v) return true;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0] && !(p->stop[p->n_stop++] = bl_strdup(v->valuestring)))
            return fail(e, 500, NULL, "out of memory");
        return true;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > SRV_MAX_STOP)
        return fail(e, 400, "stop", "'stop' must be a string or an array of at most %d strings",
                    SRV_MAX_STOP);
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s)) return fail(e, 400, "stop", "'stop' entries must be strings");
        if (s->valuestring[0] && !(p->stop[p->n_stop++] = bl_strdup(s->valuestring)))
            return fail(e, 500, NULL, "out of memory");
    }
    return true;
}

/* A seed for requests that give none: different every time, as OpenAI's. */
static uint64_t fresh_seed(void) {
    static atomic_ullong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
           (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
}

/* The token ids of the JSON array v (a request's parameter `param`) into *ids (malloc'ed; NULL
 * when empty) and *n; each an integer in [0, vocabulary). */
static bool token_ids(const srv_api_ctx *c, const cJSON *v, const char *param, int32_t **ids,
                      size_t *n, srv_error *e) {
    const int k = cJSON_GetArraySize(v);
    *n = 0;
    if (k > 0 && !(*ids = bl_malloc_array((size_t)k, sizeof **ids)))
        return fail(e, 500, NULL, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, v) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= c->m->cfg.vocab_size)
            return fail(e, 400, param, "token ids must be integers in [0, %d)",
                        c->m->cfg.vocab_size);
        (*ids)[(*n)++] = (int32_t)t->valuedouble;
    }
    return true;
}

/* One completion prompt, a string or an array of token ids, into ids (and, for echo, the string
 * as given into *text). */
static bool one_prompt(const srv_api_ctx *c, const cJSON *v, bool echo, int32_t **ids, int *n_ids,
                       char **text, srv_error *e) {
    if (cJSON_IsString(v)) {
        if (!c->m->tok)
            return fail(e, 400, "prompt", "the model has no tokenizer; give token ids");
        size_t n = 0;
        bl_err err = {0};
        /* BOS as bitllm generate adds it, so both see the same tokens */
        if (bl_tokenizer_encode(c->m->tok, v->valuestring, strlen(v->valuestring),
                                bl_model_adds_bos(c->m), ids, &n, &err))
            return fail(e, 400, "prompt", "cannot tokenize the prompt: %s", err.msg);
        *n_ids = (int)(n > (size_t)INT32_MAX ? INT32_MAX : n);
        if (echo && !(*text = bl_strdup(v->valuestring))) /* echoed as given */
            return fail(e, 500, NULL, "out of memory");
        return true;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return fail(e, 400, "prompt", "'prompt' must be a string, an array of token ids, or an "
                    "array of up to %d of either", SRV_MAX_CHOICES);
    size_t n = 0;
    const bool ok = token_ids(c, v, "prompt", ids, &n, e);
    *n_ids = (int)n;
    return ok;
}

/* The completion prompts: one (a string or token ids) into p, or an array of several strings or
 * id arrays: the first into p, the others' prompts (and texts) into more[0..*n_more). */
static bool completion_prompt(const srv_api_ctx *c, const cJSON *o, srv_params *p,
                              srv_params **more, int *n_more, srv_error *e) {
    const cJSON *v = get(o, "prompt");
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsArray(v) || !first || cJSON_IsNumber(first))
        return one_prompt(c, v, p->echo, &p->prompt, &p->n_prompt, &p->text, e);
    const int n = cJSON_GetArraySize(v);
    if (n > SRV_MAX_CHOICES)
        return fail(e, 400, "prompt", "at most %d prompts in one request, not %d",
                    SRV_MAX_CHOICES, n);
    if (n > 1 && !(*more = calloc((size_t)n - 1, sizeof **more)))
        return fail(e, 500, NULL, "out of memory");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        srv_params *q = i == 0 ? p : &(*more)[i - 1];
        if (i > 0) ++*n_more;
        if (cJSON_IsNumber(it))
            return fail(e, 400, "prompt", "'prompt' mixes token ids with prompts");
        if (!one_prompt(c, it, p->echo, &q->prompt, &q->n_prompt, &q->text, e)) return false;
        i++;
    }
    return true;
}

/* Chat messages -> the template's token ids. */
static bool chat_prompt(const srv_api_ctx *c, const cJSON *o, srv_params *p, srv_error *e) {
    if (!c->tmpl) return fail(e, 400, "messages", "%s", c->tmpl_error);
    const cJSON *v = get(o, "messages"), *m;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return fail(e, 400, "messages", "'messages' must be a non-empty array");
    const int n = cJSON_GetArraySize(v);
    bl_chat_msg *msgs = calloc((size_t)n, sizeof *msgs);
    char **owned = calloc((size_t)n, sizeof *owned);
    bool ok = msgs && owned ? true : fail(e, 500, NULL, "out of memory");
    int i = 0;
    cJSON_ArrayForEach(m, v) {
        if (!ok) break;
        const cJSON *role = get(m, "role"), *content = get(m, "content");
        if (!cJSON_IsString(role)) {
            ok = fail(e, 400, "messages", "messages[%d]: 'role' must be a string", i);
            break;
        }
        msgs[i].role = strcmp(role->valuestring, "developer") == 0 ? "system" : role->valuestring;
        if (get(m, "tool_calls")) {
            ok = fail(e, 400, "messages", "messages[%d]: tool calls are not supported", i);
            break;
        }
        if (cJSON_IsString(content)) {
            msgs[i].content = content->valuestring;
        } else if (cJSON_IsArray(content)) { /* [{"type": "text", "text": ...}, ...] */
            srv_str joined = {0};
            const cJSON *part;
            ok = srv_str_put(&joined, "", 0);
            cJSON_ArrayForEach(part, content) {
                const cJSON *type = get(part, "type"), *text = get(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
                    !cJSON_IsString(text)) {
                    ok = fail(e, 400, "messages", "messages[%d]: only text content parts are "
                              "supported", i);
                    break;
                }
                ok = ok && srv_str_put(&joined, text->valuestring, strlen(text->valuestring));
            }
            owned[i] = joined.p;
            msgs[i].content = joined.p;
            if (!ok) break;
        } else {
            ok = fail(e, 400, "messages", "messages[%d]: 'content' must be a string or an array "
                      "of text parts", i);
            break;
        }
        i++;
    }
    if (ok) {
        bl_chat_opts co = {.add_generation_prompt = true};
        size_t n_ids = 0;
        bl_err err = {0};
        if (bl_chat_tokenize(c->tmpl, c->m->tok, msgs, n, &co, &p->prompt, &n_ids, &err))
            ok = fail(e, 400, "messages", "%s", err.msg);
        p->n_prompt = (int)(n_ids > (size_t)INT32_MAX ? INT32_MAX : n_ids);
        int32_t ids[8];
        int k = bl_chat_stop_tokens(c->tmpl, c->m->tok, ids, 8);
        for (int j = 0; j < k && p->n_stop_ids < 8; j++) p->stop_ids[p->n_stop_ids++] = ids[j];
    }
    for (int j = 0; j < n && owned; j++) free(owned[j]);
    free(owned);
    free(msgs);
    return ok;
}

/* The request body as a JSON object; NULL with e filled (400) when it is not one. */
static cJSON *parse_body(const char *body, size_t len, srv_error *e) {
    size_t bad_at = 0;
    cJSON *o = bl_json_parse(body, len, &bad_at);
    if (!o && bl_json_nul_at(body, len) == bad_at) { /* cJSON would cut the string there */
        fail(e, 400, NULL, "the request holds a NUL character (\\u0000), which a prompt or "
             "parameter cannot contain");
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        if (o) fail(e, 400, NULL, "the request body is not a JSON object");
        else fail(e, 400, NULL, "the request body is not a JSON object (malformed JSON: error at "
                  "byte %zu)", bad_at);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

bool srv_parse_request(const srv_api_ctx *c, const char *body, size_t len, bool chat,
                       srv_api_req *out, srv_error *e) {
    memset(out, 0, sizeof *out);
    out->chat = chat;
    srv_params tmpl = {0}, *p = &tmpl, *more = NULL; /* the first prompt's, the others' */
    int n_more = 0;
    bool ok = true;
    cJSON *o = parse_body(body, len, e);
    if (!o) {
        ok = false;
        goto done;
    }
    long long max_tokens = -1, seed = 0, n_per = 1;
    const bl_penalties off = BL_PENALTIES_OFF;
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, presence = off.presence,
           frequency = off.frequency, repeat = off.repeat;
    long long top_k = 0;
    long long last_n = off.last_n;
    bool has_seed = get(o, "seed") != NULL;
    const char *max_key = chat && get(o, "max_completion_tokens") ? "max_completion_tokens"
                                                                  : "max_tokens";
    /* (echo first: with it, max_tokens may be 0, to score a prompt) */
    ok = refuse_unsupported(o, e) && get_bool(o, "stream", &out->stream, e) &&
         parse_logprobs(c, o, chat, p, e) &&
         get_int(o, max_key, p->echo ? 0 : 1, 1e9, &max_tokens, e) &&
         get_num(o, "temperature", 0, 2, false, &temperature, e) &&
         get_num(o, "top_p", 0, 1, true, &top_p, e) &&
         get_int(o, "top_k", 0, 1e9, &top_k, e) && get_num(o, "min_p", 0, 1, false, &min_p, e) &&
         get_num(o, "presence_penalty", -2, 2, false, &presence, e) &&
         get_num(o, "frequency_penalty", -2, 2, false, &frequency, e) &&
         get_num(o, "repeat_penalty", 0, 100, true, &repeat, e) &&
         get_int(o, "repeat_last_n", -1, 1e9, &last_n, e) &&
         get_int(o, "seed", -9.2e18, 9.2e18, &seed, e) &&
         get_int(o, "n", 1, SRV_MAX_CHOICES, &n_per, e) &&
         get_bool(o, "ignore_eos", &p->ignore_eos, e) && parse_stop(o, p, e) &&
         parse_bias(c, o, p, e);
    const cJSON *so = get(o, "stream_options");
    if (ok && so && !cJSON_IsObject(so))
        ok = fail(e, 400, "stream_options", "'stream_options' must be an object");
    if (ok && so) ok = get_bool(so, "include_usage", &out->include_usage, e);
    if (!ok) goto done;
    ok = chat ? chat_prompt(c, o, p, e) : completion_prompt(c, o, p, &more, &n_more, e);
    if (!ok) goto done;
    if (!chat && c->m->cfg.eos_id >= 0) p->stop_ids[p->n_stop_ids++] = c->m->cfg.eos_id;
    const int n_prompts = 1 + n_more;
    for (int i = 0; i < n_prompts; i++) {
        const int np = i ? more[i - 1].n_prompt : p->n_prompt;
        const char *what = chat ? "messages" : "prompt";
        char which[32] = "";
        if (n_prompts > 1) snprintf(which, sizeof which, " %d", i);
        if (np == 0) {
            ok = fail(e, 400, what, "the prompt%s is empty", which);
            goto done;
        }
        if (np >= c->ctx) {
            ok = fail(e, 400, what, "the prompt%s is %d tokens but a sequence holds at most %d "
                      "(--ctx %d), which leaves no room to generate", which, np, c->ctx, c->ctx);
            e->code = "context_length_exceeded";
            goto done;
        }
    }
    if (n_prompts * n_per > SRV_MAX_CHOICES) {
        ok = fail(e, 400, "n", "%d prompts × n = %lld choices; at most %d in one request",
                  n_prompts, n_prompts * n_per, SRV_MAX_CHOICES);
        goto done;
    }
    p->temperature = (float)temperature;
    p->top_p = (float)top_p;
    p->top_k = (int)top_k;
    p->min_p = (float)min_p;
    p->pen = (bl_penalties){(float)repeat, (float)presence, (float)frequency, (int)last_n};
    p->seed = has_seed ? (uint64_t)seed : fresh_seed();
    /* every choice: prompt i in OpenAI's order (prompt by prompt, n each), seed + j for the j-th
     * sample of a prompt, max_tokens clamped to what its prompt leaves (OpenAI's defaults: 16
     * tokens for completions, as many as fit for chat) */
    const int n_choices = n_prompts * (int)n_per;
    if (!(out->choice = calloc((size_t)n_choices, sizeof *out->choice))) {
        ok = fail(e, 500, NULL, "out of memory");
        goto done;
    }
    out->n_per_prompt = (int)n_per;
    for (int i = 0; ok && i < n_prompts; i++)
        for (int j = 0; ok && j < n_per; j++) {
            const srv_params *src = i ? &more[i - 1] : p;
            srv_params *dst = &out->choice[out->n_choices++];
            if (!srv_params_copy(dst, p, src->prompt, src->n_prompt, src->text)) {
                ok = fail(e, 500, NULL, "out of memory");
                break;
            }
            const int room = c->ctx - dst->n_prompt;
            const long long want = max_tokens >= 0 ? max_tokens : chat ? room : 16;
            dst->max_tokens = (int)(want < room ? want : room);
            dst->seed = p->seed + (uint64_t)j;
        }
done:
    cJSON_Delete(o);
    srv_params_free(&tmpl);
    for (int i = 0; i < n_more; i++) srv_params_free(&more[i]);
    free(more);
    if (!ok) srv_api_req_free(out);
    return ok;
}

void srv_api_req_free(srv_api_req *r) {
    for (int i = 0; i < r->n_choices; i++) srv_params_free(&r->choice[i]);
    free(r->choice);
    memset(r, 0, sizeof *r);
}

/* ---- responses ---- */

static char *print(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static const char *error_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 503: return "unavailable_error";
    default: return "server_error";
    }
}

char *srv_error_json(const srv_error *e) {
    cJSON *o = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", error_type(e->status));
    if (e->param) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    return print(o);
}

static cJSON *usage(srv_usage n) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", n.prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n.completion);
    cJSON_AddNumberToObject(u, "total_tokens", n.prompt + n.completion);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", n.cached);
    return u;
}

static cJSON *envelope(const srv_reply *r, const char *object, int index, cJSON **choice) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    if (choice) {
        *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(*choice, "index", index);
        cJSON_AddItemToArray(choices, *choice);
    }
    return o;
}

static void add_finish(cJSON *choice, const char *finish, cJSON *logprobs) {
    if (logprobs) cJSON_AddItemToObject(choice, "logprobs", logprobs);
    else cJSON_AddNullToObject(choice, "logprobs");
    if (finish) cJSON_AddStringToObject(choice, "finish_reason", finish);
    else cJSON_AddNullToObject(choice, "finish_reason");
}

/* A token's text (valid UTF-8: bytes of a partial character become U+FFFD) and raw bytes. */
typedef struct {
    char raw[256], *text;
    size_t n;
} tok_text;

static bool token_text(const bl_tokenizer *t, int32_t id, tok_text *out) {
    out->n = bl_tokenizer_piece(t, id, out->raw, sizeof out->raw);
    out->text = bl_utf8_valid(out->raw, out->n, NULL);
    return out->text != NULL;
}

static cJSON *bytes_array(const tok_text *t) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < t->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)t->raw[i]));
    return a;
}

/* Completions' logprobs: tokens, token_logprobs, top_logprobs (a dict per token, null for the
 * prompt's first) and text_offset: where each token's text begins in the returned text, in
 * characters (echoed tokens by the prompt's decoding, moved back by the prefix space a
 * SentencePiece decoding adds to a prompt echoed as given). */
static cJSON *completion_logprobs(const srv_lp_view *v) {
    cJSON *o = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(o, "tokens"),
          *lps = cJSON_AddArrayToObject(o, "token_logprobs"),
          *tops = cJSON_AddArrayToObject(o, "top_logprobs"),
          *offs = cJSON_AddArrayToObject(o, "text_offset");
    /* the offsets are computed by decoding the tokens, unless given (a stream's) */
    bl_detok d = {0};
    bl_err err = {0};
    size_t at = 0, base = 0;
    bool ok = toks && lps && tops && offs && (v->offset || bl_detok_init(&d, v->tok, &err) == BL_OK);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    for (int i = 0; ok && i <= v->n; i++) {
        if (i == v->n_prompt && i > 0 && !v->offset) { /* the echo ends: its offsets settle */
            size_t k = 0;
            bl_detok_finish(&d, &k);
            /* the echoed text may be the prompt as given, shorter than its decoding by the
             * tokenizer's prefix space: the prompt's offsets move back by the difference */
            const size_t decoded = at + (k ? 1 : 0);
            const size_t shift = decoded > v->echo_chars ? decoded - v->echo_chars : 0;
            for (int j = 0; shift && j < i; j++) {
                cJSON *x = cJSON_GetArrayItem(offs, j);
                const double off = x->valuedouble > (double)shift ? x->valuedouble - (double)shift : 0;
                cJSON_SetNumberValue(x, off);
            }
            /* the generated text decodes alone, after the echoed one */
            base = v->echo_chars;
            at = 0;
            bl_detok_free(&d);
            ok = bl_detok_init(&d, v->tok, &err) == BL_OK;
            if (!ok) break;
        }
        if (i == v->n) break;
        const srv_logprob *l = &v->lps[i];
        tok_text t;
        ok = token_text(v->tok, l->id, &t);
        if (!ok) break;
        cJSON_AddItemToArray(toks, cJSON_CreateString(t.text));
        free(t.text);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(v->offset ? v->offset[i]
                                                                        : base + at)));
        if (!v->offset) {
            size_t k = 0;
            const char *piece = bl_detok_push(&d, l->id, &k);
            at += srv_utf8_chars(piece, k);
        }
        if (isnan(l->lp)) {
            cJSON_AddItemToArray(lps, cJSON_CreateNull());
            cJSON_AddItemToArray(tops, cJSON_CreateNull());
            continue;
        }
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(l->lp));
        cJSON *top = cJSON_CreateObject();
        for (int j = 0; top && j < l->n_top; j++) {
            tok_text a;
            if (!(ok = token_text(v->tok, l->top_id[j], &a))) break;
            if (!cJSON_GetObjectItemCaseSensitive(top, a.text)) /* the likelier of equal texts */
                cJSON_AddNumberToObject(top, a.text, l->top_lp[j]);
            free(a.text);
        }
        cJSON_AddItemToArray(tops, top);
    }
    bl_detok_free(&d);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Chat's logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob,
 * bytes}]}], "refusal": null}. */
static cJSON *chat_logprobs(const srv_lp_view *v) {
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    cJSON_AddNullToObject(o, "refusal");
    bool ok = content != NULL;
    for (int i = 0; ok && i < v->n; i++) {
        const srv_logprob *l = &v->lps[i];
        cJSON *e = cJSON_CreateObject(), *top;
        tok_text t;
        if (!(ok = e && token_text(v->tok, l->id, &t))) break;
        cJSON_AddStringToObject(e, "token", t.text);
        cJSON_AddNumberToObject(e, "logprob", l->lp);
        cJSON_AddItemToObject(e, "bytes", bytes_array(&t));
        free(t.text);
        top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int j = 0; ok && j < l->n_top; j++) {
            cJSON *a = cJSON_CreateObject();
            tok_text x;
            if (!(ok = a && token_text(v->tok, l->top_id[j], &x))) {
                cJSON_Delete(a);
                break;
            }
            cJSON_AddStringToObject(a, "token", x.text);
            cJSON_AddNumberToObject(a, "logprob", l->top_lp[j]);
            cJSON_AddItemToObject(a, "bytes", bytes_array(&x));
            free(x.text);
            cJSON_AddItemToArray(top, a);
        }
        cJSON_AddItemToArray(content, e);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *srv_completion_json(const srv_reply *r, const srv_choice_out *ch, int n, srv_usage u) {
    cJSON *o = envelope(r, r->chat ? "chat.completion" : "text_completion", 0, NULL);
    cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
    for (int i = 0; i < n; i++) {
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, choice);
        cJSON_AddNumberToObject(choice, "index", i);
        if (r->chat) {
            cJSON *msg = cJSON_AddObjectToObject(choice, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", ch[i].text);
        } else {
            cJSON_AddStringToObject(choice, "text", ch[i].text);
        }
        cJSON *lpo = NULL;
        if (ch[i].lp && !(lpo = r->chat ? chat_logprobs(ch[i].lp) : completion_logprobs(ch[i].lp))) {
            cJSON_Delete(o);
            return NULL;
        }
        add_finish(choice, ch[i].finish, lpo);
    }
    cJSON_AddItemToObject(o, "usage", usage(u));
    return print(o);
}

char *srv_chunk_json(const srv_reply *r, int index, const char *text, bool role,
                     const char *finish, const srv_lp_view *lp) {
    cJSON *choice, *o = envelope(r, r->chat ? "chat.completion.chunk" : "text_completion", index,
                                 &choice);
    if (r->chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (role) cJSON_AddStringToObject(delta, "role", "assistant");
        if (text) cJSON_AddStringToObject(delta, "content", text);
    } else {
        cJSON_AddStringToObject(choice, "text", text ? text : "");
    }
    cJSON *lpo = NULL;
    if (lp && !(lpo = r->chat ? chat_logprobs(lp) : completion_logprobs(lp))) {
        cJSON_Delete(o);
        return NULL;
    }
    add_finish(choice, finish, lpo);
    return print(o);
}

char *srv_usage_chunk_json(const srv_reply *r, srv_usage u) {
    cJSON *o = envelope(r, r->chat ? "chat.completion.chunk" : "text_completion", 0, NULL);
    cJSON_AddItemToObject(o, "usage", usage(u));
    return print(o);
}

static cJSON *model_object(const char *model, long created) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "bitllm");
    return m;
}

char *srv_models_json(const char *model, long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(data, model_object(model, created));
    return print(o);
}

char *srv_model_json(const char *model, long created) { return print(model_object(model, created)); }

/* ---- llama.cpp's /tokenize and /detokenize ---- */

/* The body of a tokenizer endpoint: NULL (e filled) when it is no JSON object or the model has
 * no tokenizer. */
static cJSON *tokenizer_body(const srv_api_ctx *c, const char *body, size_t len, srv_error *e) {
    cJSON *o = parse_body(body, len, e);
    if (o && !c->m->tok) {
        fail(e, 400, NULL, "the model has no tokenizer");
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *srv_tokenize(const srv_api_ctx *c, const char *body, size_t len, srv_error *e) {
    cJSON *o = tokenizer_body(c, body, len, e), *out = NULL;
    char *res = NULL;
    const cJSON *content = o ? get(o, "content") : NULL;
    bool add_special = false, with_pieces = false;
    int32_t *ids = NULL;
    size_t n = 0;
    bl_err err = {0};
    if (!o) goto done;
    if (!cJSON_IsString(content)) {
        fail(e, 400, "content", "'content' must be a string");
        goto done;
    }
    if (!get_bool(o, "add_special", &add_special, e) || !get_bool(o, "with_pieces", &with_pieces, e))
        goto done;
    /* add_special: BOS as a completion prompt gets it (when the model prepends one) */
    if (bl_tokenizer_encode(c->m->tok, content->valuestring, strlen(content->valuestring),
                            add_special && bl_model_adds_bos(c->m), &ids, &n, &err)) {
        fail(e, 400, "content", "cannot tokenize the content: %s", err.msg);
        goto done;
    }
    out = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; toks && i < n; i++) {
        if (!with_pieces) {
            cJSON_AddItemToArray(toks, cJSON_CreateNumber(ids[i]));
            continue;
        }
        tok_text t;
        cJSON *x = cJSON_CreateObject();
        if (!x || !token_text(c->m->tok, ids[i], &t)) {
            cJSON_Delete(x);
            cJSON_Delete(out);
            fail(e, 500, NULL, "out of memory");
            goto done;
        }
        cJSON_AddNumberToObject(x, "id", ids[i]);
        cJSON_AddStringToObject(x, "piece", t.text); /* (llama.cpp: bytes of a partial character
                                                      * as a number array; here U+FFFD) */
        free(t.text);
        cJSON_AddItemToArray(toks, x);
    }
    if (!(res = print(out))) fail(e, 500, NULL, "out of memory");
done:
    free(ids);
    cJSON_Delete(o);
    return res;
}

char *srv_detokenize(const srv_api_ctx *c, const char *body, size_t len, srv_error *e) {
    cJSON *o = tokenizer_body(c, body, len, e);
    const cJSON *tokens = o ? get(o, "tokens") : NULL;
    int32_t *ids = NULL;
    char *text = NULL, *res = NULL;
    size_t n = 0, tl = 0;
    bl_err err = {0};
    if (!o) goto done;
    if (!cJSON_IsArray(tokens)) {
        fail(e, 400, "tokens", "'tokens' must be an array of token ids");
        goto done;
    }
    if (!token_ids(c, tokens, "tokens", &ids, &n, e)) goto done;
    if (bl_tokenizer_decode(c->m->tok, ids, n, &text, &tl, &err)) {
        fail(e, 500, NULL, "cannot decode the tokens: %s", err.msg);
        goto done;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "content", text);
    res = print(out);
    if (!res) fail(e, 500, NULL, "out of memory");
done:
    free(ids);
    free(text);
    cJSON_Delete(o);
    return res;
}
