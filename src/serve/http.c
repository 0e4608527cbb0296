/* The HTTP front end on libmicrohttpd: routing, API keys, body limits, JSON answers and
 * server-sent events, in front of the scheduler (engine.c).
 *
 * libmicrohttpd runs one thread per connection, so a handler may wait for its request: a plain
 * answer is sent once generation ends, a stream is a content-reader callback that waits for new
 * text and writes it as "data: {...}\n\n" events. While waiting, the connection's socket is polled
 * for a hang-up; a client that went away has its request cancelled, which frees the slot at the
 * scheduler's next step. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve/api.h"

#define WAIT_MS 100 /* how often a waiting handler looks at its socket */

struct bl_server {
    const bl_model *m;
    bl_server_opts o;
    char *host, *api_key, *model_id, *cors;
    bl_chat_template tmpl;
    bool have_tmpl;
    char tmpl_error[512];
    srv_engine *engine;
    struct MHD_Daemon *d;
    int port;
    long started;
    atomic_ulong next_id;
    atomic_int inflight; /* generation responses not yet completely sent */
};

static void logf_(const bl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const bl_server *s, const char *fmt, ...) {
    if (!s->o.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_ctx, line);
}

/* ---- answers ---- */

/* Queues a response with the headers every answer carries (CORS, when allowed). */
static enum MHD_Result queue(const bl_server *s, struct MHD_Connection *c, int status,
                             struct MHD_Response *r) {
    if (s->cors) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cors);
        if (strcmp(s->cors, "*") != 0) MHD_add_response_header(r, "Vary", "Origin");
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer(const bl_server *s, struct MHD_Connection *c, int status,
                              char *json, const char *allow) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                              "\"param\":null,\"code\":null}}";
    struct MHD_Response *r =
        json ? MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                               MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    if (!json) status = 500;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (allow) MHD_add_response_header(r, "Allow", allow);
    return queue(s, c, status, r);
}

static enum MHD_Result answer_error(const bl_server *s, struct MHD_Connection *c, int status,
                                    const char *param, const char *code, const char *allow,
                                    const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result answer_error(const bl_server *s, struct MHD_Connection *c, int status,
                                    const char *param, const char *code, const char *allow,
                                    const char *fmt, ...) {
    srv_error e = {.status = status, .param = param, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return answer(s, c, status, srv_error_json(&e), allow);
}

/* ---- the client's socket ---- */

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return i ? i->connect_fd : -1;
}

/* True when the peer closed or reset the connection (pipelined bytes do not count). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return true;
    char b;
    return (p.revents & POLLIN) && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* One choice of a request in flight: its engine request and what its answer adds to the text. */
typedef struct {
    srv_req *req;
    char *echo; /* echo: the prompt's text, before the generated text (NUL-terminated) */
    size_t echo_n;
    int n_scored; /* prompt tokens with log-probabilities (echo with logprobs) */
    bool logprobs;
    /* a stream's */
    srv_logprob *plps; /* the prompt's log-probabilities taken so far (n_scored in all) */
    int n_plps;
    size_t chars;      /* characters sent (text_offset) */
    bool finished;
    srv_usage usage;
} choice_t;

static void drop_choices(bl_server *s, choice_t *ch, int n, bool cancel) {
    for (int i = 0; i < n; i++) {
        if (ch[i].req && cancel) srv_cancel(s->engine, ch[i].req);
        if (ch[i].req) srv_release(s->engine, ch[i].req);
        free(ch[i].echo);
        free(ch[i].plps);
    }
    free(ch);
}

/* A request's usage from its choices': a prompt's tokens count once, however many samples it
 * has (choices i*n_per .. i*n_per + n_per - 1 share prompt i). */
static void add_usage(srv_usage *total, int i, int n_per, srv_usage u) {
    if (i % n_per == 0) total->prompt += u.prompt, total->cached += u.cached;
    total->completion += u.completion;
}

/* ---- streaming ---- */

/* A stream: its choices' events interleaved as their tokens come, each chunk naming its choice
 * ("index"), as OpenAI streams n > 1 and several prompts. */
typedef struct {
    bl_server *s;
    choice_t *ch;
    int n, n_per;
    srv_reply reply;
    bool include_usage, started, finished;
    int fd;
    srv_str pending; /* formatted events not yet written */
    size_t off;
} stream_t;

static bool add_event(stream_t *st, char *json) {
    bool ok = json && srv_str_put(&st->pending, "data: ", 6) &&
              srv_str_put(&st->pending, json, strlen(json)) && srv_str_put(&st->pending, "\n\n", 2);
    free(json);
    return ok;
}

/* The echo event of choice i: the prompt's text, with its tokens' log-probabilities when asked
 * (sent once all of them have come). */
static bool send_echo(stream_t *st, int i) {
    choice_t *c = &st->ch[i];
    const srv_lp_view lp = {.lps = c->plps, .n = c->n_plps, .n_prompt = c->n_plps,
                            .echo_chars = srv_utf8_chars(c->echo, c->echo_n),
                            .tok = st->s->m->tok};
    c->chars = lp.echo_chars;
    bool ok = add_event(st, srv_chunk_json(&st->reply, i, c->echo, false, NULL,
                                           c->logprobs ? &lp : NULL));
    free(c->echo);
    c->echo = NULL;
    return ok;
}

/* Takes what choice i has produced and formats its events: one per token, as OpenAI streams,
 * with its log-probabilities when asked; its finish event once done. Sets *got when there was
 * anything, *failed (with the reason's event sent) when generation failed. */
static bool pump_choice(stream_t *st, int i, bool *got, bool *failed) {
    choice_t *c = &st->ch[i];
    srv_str text = {0};
    srv_pieces pieces = {.want_logprobs = c->logprobs};
    srv_status ss;
    srv_wait(st->s->engine, c->req, 0, &text, &pieces, &ss);
    bool ok = true;
    int lp0 = 0; /* the prompt's log-probabilities come first (echo with logprobs) */
    if (c->n_plps < c->n_scored && pieces.n_lps > 0) {
        lp0 = c->n_scored - c->n_plps < pieces.n_lps ? c->n_scored - c->n_plps : pieces.n_lps;
        srv_logprob *p = realloc(c->plps, (size_t)(c->n_plps + lp0) * sizeof *p);
        ok = p != NULL;
        if (ok) {
            memcpy(p + c->n_plps, pieces.lps, (size_t)lp0 * sizeof *p);
            c->plps = p;
            c->n_plps += lp0;
        }
    }
    if (ok && c->echo && (c->n_plps == c->n_scored || pieces.n > 0 || ss.done)) ok = send_echo(st, i);
    size_t at = 0;
    for (int k = 0; ok && k < pieces.n; at = pieces.ends[k++]) {
        const char saved = text.p[pieces.ends[k]];
        text.p[pieces.ends[k]] = 0;
        const srv_lp_view lp = {.lps = pieces.lps + lp0 + k, .n = 1, .offset = &c->chars,
                                .tok = st->s->m->tok};
        ok = add_event(st, srv_chunk_json(&st->reply, i, text.p + at, false, NULL,
                                          lp0 + k < pieces.n_lps ? &lp : NULL));
        c->chars += srv_utf8_chars(text.p + at, pieces.ends[k] - at);
        text.p[pieces.ends[k]] = saved;
    }
    *got = *got || pieces.n > 0 || lp0 > 0 || ss.done;
    free(pieces.ends);
    free(pieces.lps);
    srv_str_free(&text);
    if (ok && ss.done) {
        c->finished = true;
        c->usage = ss.usage;
        if (ss.finish) {
            ok = add_event(st, srv_chunk_json(&st->reply, i, NULL, false, ss.finish, NULL));
        } else {
            srv_error err = {.status = 500};
            snprintf(err.message, sizeof err.message, "generation failed: %s", ss.error);
            ok = add_event(st, srv_error_json(&err));
            *failed = true;
        }
    }
    return ok;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_t *st = cls;
    srv_engine *e = st->s->engine;
    while (st->off == st->pending.n) {
        st->off = st->pending.n = 0;
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        bool ok = true;
        if (!st->started) { /* chat streams open with the assistant role, echoes with the prompt */
            st->started = true;
            for (int i = 0; ok && i < st->n; i++) {
                if (st->reply.chat)
                    ok = add_event(st, srv_chunk_json(&st->reply, i, "", true, NULL, NULL));
                else if (st->ch[i].echo && st->ch[i].n_scored == 0)
                    ok = send_echo(st, i);
            }
        } else {
            srv_req *wait[SRV_MAX_CHOICES];
            int k = 0;
            for (int i = 0; i < st->n; i++)
                if (!st->ch[i].finished) wait[k++] = st->ch[i].req;
            srv_wait_any(e, wait, k, WAIT_MS);
            bool got = false, failed = false, all_done = true;
            for (int i = 0; ok && !failed && i < st->n; i++)
                if (!st->ch[i].finished) ok = pump_choice(st, i, &got, &failed);
            for (int i = 0; i < st->n; i++) all_done = all_done && st->ch[i].finished;
            if (ok && (failed || all_done)) {
                if (!failed && st->include_usage) {
                    srv_usage total = {0};
                    for (int i = 0; i < st->n; i++) add_usage(&total, i, st->n_per, st->ch[i].usage);
                    ok = add_event(st, srv_usage_chunk_json(&st->reply, total));
                }
                ok = ok && srv_str_put(&st->pending, "data: [DONE]\n\n", 14);
                st->finished = true; /* (a failed choice's siblings are cancelled by stream_free) */
            } else if (ok && !got && client_gone(st->fd)) {
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->pending.n - st->off < max ? st->pending.n - st->off : max;
    memcpy(buf, st->pending.p + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the connection closed): cancel whatever still runs. */
static void stream_free(void *cls) {
    stream_t *st = cls;
    drop_choices(st->s, st->ch, st->n, true);
    srv_str_free(&st->pending);
    free(st);
}

/* ---- one request ---- */

typedef struct {
    srv_str body;
    bool too_large, answered, counted;
} conn_t;

static void new_reply(bl_server *s, bool chat, srv_reply *r) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->created = (long)time(NULL);
    r->model = s->model_id;
    snprintf(r->id, sizeof r->id, "%s-%lx%08lx", chat ? "chatcmpl" : "cmpl", (unsigned long)s->started,
             (unsigned long)atomic_fetch_add(&s->next_id, 1));
}

/* Waits for every choice and answers with all of them (OpenAI's "choices", in index order). */
static enum MHD_Result answer_choices(bl_server *s, struct MHD_Connection *c, bool chat,
                                      choice_t *ch, int n, int n_per, int fd) {
    srv_str *text = calloc((size_t)n, sizeof *text);
    srv_status *ss = calloc((size_t)n, sizeof *ss);
    srv_logprob **lps = calloc((size_t)n, sizeof *lps);
    srv_lp_view *lp = calloc((size_t)n, sizeof *lp);
    srv_choice_out *out = calloc((size_t)n, sizeof *out);
    bool ok = text && ss && lps && lp && out;
    for (int i = 0; ok && i < n; i++)
        ok = !ch[i].echo || srv_str_put(&text[i], ch[i].echo, ch[i].echo_n);
    for (int i = 0; ok && i < n; i++)
        for (;;) {
            srv_wait(s->engine, ch[i].req, WAIT_MS, &text[i], NULL, &ss[i]);
            if (ss[i].done) break;
            if (client_gone(fd)) {
                for (int k = 0; k < n; k++) srv_str_free(&text[k]);
                free(text), free(ss), free(lps), free(lp), free(out);
                drop_choices(s, ch, n, true);
                return MHD_NO; /* nobody to answer: close */
            }
        }
    srv_usage total = {0};
    int failed = -1;
    for (int i = 0; ok && i < n; i++) {
        lp[i] = (srv_lp_view){.n_prompt = ch[i].n_scored,
                              .echo_chars = srv_utf8_chars(ch[i].echo, ch[i].echo_n),
                              .tok = s->m->tok};
        if (ch[i].logprobs) srv_take_logprobs(s->engine, ch[i].req, &lps[i], &lp[i].n);
        lp[i].lps = lps[i];
        out[i] = (srv_choice_out){text[i].p ? text[i].p : "", ss[i].finish,
                                  ch[i].logprobs ? &lp[i] : NULL};
        if (!ss[i].finish && failed < 0) failed = i;
        add_usage(&total, i, n_per, ss[i].usage);
    }
    srv_reply reply;
    new_reply(s, chat, &reply);
    enum MHD_Result ret =
        !ok ? answer_error(s, c, 500, NULL, NULL, NULL, "out of memory")
        : failed < 0
            ? answer(s, c, 200, srv_completion_json(&reply, out, n, total), NULL)
            : answer_error(s, c, strstr(ss[failed].error, "shutting down") ? 503 : 500, NULL, NULL,
                           NULL, "generation failed: %s", ss[failed].error);
    for (int i = 0; i < n; i++) {
        if (text) srv_str_free(&text[i]);
        if (lps) free(lps[i]);
    }
    free(text), free(ss), free(lps), free(lp), free(out);
    drop_choices(s, ch, n, !ok); /* (out of memory: what still runs stops) */
    return ret;
}

static enum MHD_Result generate(bl_server *s, struct MHD_Connection *c, conn_t *cx, bool chat) {
    const srv_api_ctx api = {s->m, s->have_tmpl ? &s->tmpl : NULL, s->tmpl_error, s->o.ctx};
    srv_api_req ar;
    srv_error err;
    if (!srv_parse_request(&api, cx->body.p ? cx->body.p : "", cx->body.n, chat, &ar, &err))
        return answer(s, c, err.status, srv_error_json(&err), NULL);
    const bool stream = ar.stream, include_usage = ar.include_usage;
    const int n = ar.n_choices, n_per = ar.n_per_prompt;
    choice_t *ch = calloc((size_t)n, sizeof *ch);
    if (!ch) {
        srv_api_req_free(&ar);
        return answer_error(s, c, 500, NULL, NULL, NULL, "out of memory");
    }
    int rc = SRV_OK;
    for (int i = 0; i < n && rc == SRV_OK; i++) {
        srv_params *p = &ar.choice[i];
        ch[i].logprobs = p->logprobs;
        ch[i].n_scored = p->echo && p->logprobs ? p->n_prompt : 0;
        bl_err derr = {0};
        if (p->text) { /* a string prompt echoes as given, token ids as they decode */
            ch[i].echo = p->text;
            ch[i].echo_n = strlen(p->text);
            p->text = NULL;
        } else if (p->echo && bl_tokenizer_decode(s->m->tok, p->prompt, (size_t)p->n_prompt,
                                                  &ch[i].echo, &ch[i].echo_n, &derr)) {
            srv_api_req_free(&ar);
            drop_choices(s, ch, n, true);
            return answer_error(s, c, 500, NULL, NULL, NULL, "cannot decode the prompt: %s",
                                derr.msg);
        }
        rc = srv_submit(s->engine, p, &ch[i].req);
    }
    srv_api_req_free(&ar);
    if (rc != SRV_OK) {
        drop_choices(s, ch, n, true);
        if (rc == SRV_QUEUE_FULL)
            return answer_error(s, c, 503, NULL, NULL, NULL, "the server is busy: %d requests "
                                "running and %d waiting; retry later", s->o.parallel, s->o.queue);
        if (rc == SRV_STOPPING)
            return answer_error(s, c, 503, NULL, NULL, NULL, "the server is shutting down");
        return answer_error(s, c, 500, NULL, NULL, NULL, "out of memory");
    }
    cx->counted = true; /* a drain waits for this response to be sent */
    atomic_fetch_add(&s->inflight, 1);
    const int fd = conn_fd(c);
    if (!stream) return answer_choices(s, c, chat, ch, n, n_per, fd);
    stream_t *st = calloc(1, sizeof *st);
    struct MHD_Response *r =
        st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st,
                                               stream_free)
           : NULL;
    if (!r) {
        drop_choices(s, ch, n, true);
        free(st);
        return answer_error(s, c, 500, NULL, NULL, NULL, "out of memory");
    }
    *st = (stream_t){.s = s, .ch = ch, .n = n, .n_per = n_per, .include_usage = include_usage,
                     .fd = fd};
    new_reply(s, chat, &st->reply);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return queue(s, c, MHD_HTTP_OK, r);
}

/* GET /metrics: the engine's counters in Prometheus' text format (0.0.4). */
static enum MHD_Result answer_metrics(const bl_server *s, struct MHD_Connection *c) {
    srv_metrics m;
    srv_engine_metrics(s->engine, &m);
    const struct {
        const char *name, *type, *help;
        double v;
    } rows[] = {
        {"prompt_tokens_total", "counter", "Prompt tokens run through the model.",
         (double)m.prompt_tokens},
        {"prompt_tokens_cached_total", "counter",
         "Prompt tokens taken from the prompt cache instead of run.", (double)m.cached_tokens},
        {"tokens_predicted_total", "counter", "Tokens sampled.", (double)m.generated},
        {"requests_finished_total", "counter", "Requests that ended with stop or length.",
         (double)m.finished},
        {"requests_failed_total", "counter", "Requests that ended with an error.",
         (double)m.failed},
        {"requests_cancelled_total", "counter",
         "Requests cancelled (client gone, or shutting down).", (double)m.cancelled},
        {"decode_steps_total", "counter", "Batched forward passes.", (double)m.steps},
        {"decode_seconds_total", "counter", "Seconds in batched forward passes.",
         m.step_seconds},
        {"requests_processing", "gauge", "Requests in a KV-cache slot now.",
         (double)m.processing},
        {"requests_queued", "gauge", "Requests waiting for a slot now.", (double)m.queued},
        {"slots", "gauge", "KV-cache slots (--parallel).", (double)m.slots},
    };
    srv_str out = {0};
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof rows / sizeof rows[0]; i++) {
        char line[512];
        const int n = snprintf(line, sizeof line, "# HELP bitllm_%s %s\n# TYPE bitllm_%s %s\n"
                               "bitllm_%s %.17g\n", rows[i].name, rows[i].help, rows[i].name,
                               rows[i].type, rows[i].name, rows[i].v);
        ok = n > 0 && (size_t)n < sizeof line && srv_str_put(&out, line, (size_t)n);
    }
    struct MHD_Response *r =
        ok ? MHD_create_response_from_buffer(out.n, out.p, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        srv_str_free(&out);
        return answer_error(s, c, 500, NULL, NULL, NULL, "out of memory");
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return queue(s, c, 200, r);
}

/* Constant-time comparison of the bearer token with the key. */
static bool authorized(const bl_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *tok = h + 7;
    size_t a = strlen(tok), b = strlen(s->api_key);
    unsigned char diff = a != b;
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)(tok[i] ^ s->api_key[i % (b ? b : 1)]);
    return diff == 0;
}

enum { R_NONE, R_HEALTH, R_METRICS, R_MODELS, R_MODEL, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE };
static const struct {
    const char *url, *method;
    int route;
    bool prefix; /* the URL continues with a parameter */
} routes[] = {
    {"/health", "GET", R_HEALTH, false},
    {"/metrics", "GET", R_METRICS, false}, /* Prometheus text format */
    {"/v1/models", "GET", R_MODELS, false},
    {"/v1/models/", "GET", R_MODEL, true}, /* followed by the model's id */
    {"/v1/completions", "POST", R_COMPLETIONS, false},
    {"/v1/chat/completions", "POST", R_CHAT, false},
    {"/tokenize", "POST", R_TOKENIZE, false}, /* llama.cpp's */
    {"/detokenize", "POST", R_DETOKENIZE, false},
};

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version;
    bl_server *s = cls;
    conn_t *cx = *con_cls;
    int route = R_NONE;
    const char *allowed = NULL;
    const char *param = NULL; /* what follows a prefix route's URL (GET /v1/models/{model}) */
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const size_t n = strlen(routes[i].url);
        if (routes[i].prefix ? strncmp(url, routes[i].url, n) == 0 && url[n]
                             : strcmp(url, routes[i].url) == 0) {
            allowed = routes[i].method;
            if (strcmp(method, routes[i].method) == 0) route = routes[i].route;
            if (routes[i].prefix) param = url + n;
        }
    }
    if (!cx) { /* headers only so far: refuse early what needs no body */
        if (!(cx = calloc(1, sizeof *cx))) return MHD_NO;
        *con_cls = cx;
        if (allowed && s->cors && strcmp(method, "OPTIONS") == 0) { /* a browser's preflight */
            cx->answered = true;
            struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"",
                                                                     MHD_RESPMEM_PERSISTENT);
            if (!r) return MHD_NO;
            MHD_add_response_header(r, "Access-Control-Allow-Methods", allowed);
            MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type");
            MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
            return queue(s, c, MHD_HTTP_NO_CONTENT, r);
        }
        if (!allowed) {
            cx->answered = true;
            return answer_error(s, c, 404, NULL, NULL, NULL, "no such endpoint: %s %.200s", method,
                                url);
        }
        if (route == R_NONE) {
            cx->answered = true;
            return answer_error(s, c, 405, NULL, NULL, allowed, "%s %s: method not allowed (use %s)",
                                method, url, allowed);
        }
        if (route != R_HEALTH && !authorized(s, c)) {
            cx->answered = true;
            return answer_error(s, c, 401, NULL, "invalid_api_key", NULL,
                                "missing or wrong API key (send \"Authorization: Bearer KEY\")");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
            cx->answered = true;
            return answer_error(s, c, 413, NULL, NULL, NULL, "the request body is larger than %zu "
                                "bytes (--max-body)", s->o.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* body data */
        if (!cx->too_large && !cx->answered) {
            if (cx->body.n + *upload_size > s->o.max_body) cx->too_large = true;
            else if (!srv_str_put(&cx->body, upload, *upload_size)) return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cx->answered) return MHD_YES;
    cx->answered = true;
    if (cx->too_large)
        return answer_error(s, c, 413, NULL, NULL, NULL, "the request body is larger than %zu bytes "
                            "(--max-body)", s->o.max_body);
    switch (route) {
    case R_HEALTH: return answer(s, c, 200, bl_strdup("{\"status\":\"ok\"}"), NULL);
    case R_METRICS: return answer_metrics(s, c);
    case R_MODELS: return answer(s, c, 200, srv_models_json(s->model_id, s->started), NULL);
    case R_MODEL:
        if (strcmp(param, s->model_id) != 0)
            return answer_error(s, c, 404, "model", "model_not_found", NULL,
                                "the model '%.200s' does not exist; this server has '%.200s'",
                                param, s->model_id);
        return answer(s, c, 200, srv_model_json(s->model_id, s->started), NULL);
    case R_TOKENIZE:
    case R_DETOKENIZE: {
        const srv_api_ctx api = {s->m, NULL, NULL, s->o.ctx};
        srv_error err = {0};
        const char *b = cx->body.p ? cx->body.p : "";
        char *json = route == R_TOKENIZE ? srv_tokenize(&api, b, cx->body.n, &err)
                                         : srv_detokenize(&api, b, cx->body.n, &err);
        return json ? answer(s, c, 200, json, NULL)
                    : answer(s, c, err.status, srv_error_json(&err), NULL);
    }
    case R_COMPLETIONS: return generate(s, c, cx, false);
    default: return generate(s, c, cx, true);
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    bl_server *s = cls;
    conn_t *cx = *con_cls;
    if (!cx) return;
    if (cx->counted) atomic_fetch_sub(&s->inflight, 1);
    srv_str_free(&cx->body);
    free(cx);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    const bl_server *s = cls;
    if (!s->o.log) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    s->o.log(s->o.log_ctx, line);
}

/* ---- lifecycle ---- */

void bl_server_opts_default(bl_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 4;
    o->queue = 64;
    o->max_body = 1u << 20;
    o->chunk = 256;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *b = path + n;
    while (b > path && b[-1] != '/') b--;
    return b;
}

bl_status bl_server_start(const bl_model *m, const bl_server_opts *o, bl_server **out,
                          bl_err *err) {
    *out = NULL;
    bl_server *s = calloc(1, sizeof *s);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    s->m = m;
    s->o = *o;
    s->started = (long)time(NULL);
    if (s->o.ctx <= 0) s->o.ctx = m->cfg.max_seq < 2048 ? m->cfg.max_seq : 2048;
    const char *host = o->host && strcmp(o->host, "localhost") != 0 ? o->host : "127.0.0.1";
    s->host = bl_strdup(host);
    s->api_key = o->api_key && *o->api_key ? bl_strdup(o->api_key) : NULL;
    s->cors = o->cors && *o->cors ? bl_strdup(o->cors) : NULL;
    if (o->model_id) s->model_id = bl_strdup(o->model_id);
    else {
        s->model_id = bl_strdup(base_name(m->path ? m->path : "model"));
        if (s->model_id) {
            char *dot = strrchr(s->model_id, '.');
            if (dot && dot != s->model_id && (!strcmp(dot, ".gguf") || !strcmp(dot, ".bin")))
                *dot = 0;
        }
    }
    bl_status st = BL_OK;
    if (!s->host || (o->api_key && *o->api_key && !s->api_key) ||
        (o->cors && *o->cors && !s->cors) || !s->model_id)
        st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!st && s->o.ctx > m->cfg.max_seq)
        st = bl_fail(err, BL_ERR_ARG, "--ctx %d is more than the model's context of %d tokens",
                     s->o.ctx, m->cfg.max_seq);
    if (!st && (s->o.max_body < 64 || s->o.port < 0 || s->o.port > 65535))
        st = bl_fail(err, BL_ERR_ARG, "--max-body must be at least 64 bytes and --port in "
                     "[0, 65535]");
    if (!st) {
        bl_err terr = {0};
        s->have_tmpl = m->tok && bl_chat_template_for(m->tok, o->chat_template, &s->tmpl,
                                                      &terr) == BL_OK;
        if (o->chat_template && !s->have_tmpl) st = bl_fail(err, terr.code, "%s", terr.msg);
        snprintf(s->tmpl_error, sizeof s->tmpl_error, "%s",
                 !m->tok ? "the model has no tokenizer, so chat is not available"
                         : terr.msg[0] ? terr.msg : "no chat template");
    }
    /* the listening address */
    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    struct sockaddr *addr = NULL;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_ERROR_LOG;
    if (!st) {
        if (inet_pton(AF_INET, s->host, &a4.sin_addr) == 1) {
            a4.sin_family = AF_INET;
            a4.sin_port = htons((uint16_t)s->o.port);
            addr = (struct sockaddr *)&a4;
        } else if (inet_pton(AF_INET6, s->host, &a6.sin6_addr) == 1) {
            a6.sin6_family = AF_INET6;
            a6.sin6_port = htons((uint16_t)s->o.port);
            addr = (struct sockaddr *)&a6;
            flags |= MHD_USE_IPv6;
        } else {
            st = bl_fail(err, BL_ERR_ARG, "--host %.100s: not an IPv4 or IPv6 address", s->host);
        }
    }
    if (!st) {
        const srv_engine_opts eo = {s->o.parallel, s->o.ctx,   s->o.queue,    s->o.chunk,
                                    s->o.log,      s->o.log_ctx, s->o.n_threads};
        st = srv_engine_new(m, &eo, &s->engine, err);
    }
    if (!st) {
        /* room for every running and waiting request, plus some to answer 503 on */
        const unsigned limit = (unsigned)(s->o.parallel + s->o.queue + 32);
        s->d = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, handle, s,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_SOCK_ADDR,
                                addr, MHD_OPTION_CONNECTION_LIMIT, limit,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
        if (!s->d)
            st = bl_fail(err, BL_ERR_IO, "cannot listen on %s port %d (in use, or not an "
                         "address of this machine?)", s->host, s->o.port);
    }
    if (!st) {
        const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = i ? i->port : s->o.port;
        logf_(s, "KV cache: %d slots x %d tokens, %s, %.2f GiB; chat template: %s", s->o.parallel,
              s->o.ctx, bl_kv_cache_name(m->kv_cache),
              bl_kv_cache_bytes_per_token(m) * s->o.parallel * s->o.ctx / (1u << 30),
              s->have_tmpl ? s->tmpl.name : s->tmpl_error);
    }
    if (st) {
        bl_server_free(s);
        return st;
    }
    *out = s;
    return BL_OK;
}

int bl_server_port(const bl_server *s) { return s->port; }
int bl_server_ctx(const bl_server *s) { return s->o.ctx; }

void bl_server_stop(bl_server *s, bool drain) {
    if (!s || !s->engine) return;
    srv_engine_close(s->engine); /* new requests get 503 from here on */
    srv_engine_stop(s->engine, drain);
    /* every request is generated; let the answers reach their clients (a client that stops
     * reading gets 30 s) before the connections are closed */
    for (int i = 0; drain && i < 3000 && atomic_load(&s->inflight) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
    srv_engine_free(s->engine);
    s->engine = NULL;
}

void bl_server_free(bl_server *s) {
    if (!s) return;
    bl_server_stop(s, false);
    free(s->host);
    free(s->api_key);
    free(s->cors);
    free(s->model_id);
    free(s);
}
