/* Private to src/serve: the scheduler (engine.c), the OpenAI request/response objects (api.c),
 * the HTTP front end (http.c), the chat session (session.c) and the text helpers they share.
 * Generated text becomes valid UTF-8 through the tokenizer's streaming detokenizer (bl_detok). */
#ifndef BITLLM_SERVE_INTERNAL_H
#define BITLLM_SERVE_INTERNAL_H

#include <pthread.h>

#include "bitllm/serve.h"

/* ---- growable byte string ---- */
typedef struct {
    char *p;
    size_t n, cap;
} srv_str;
bool srv_str_put(srv_str *s, const char *p, size_t n);
void srv_str_free(srv_str *s);
/* Characters (code points) in the valid UTF-8 s[0..n). */
size_t srv_utf8_chars(const char *s, size_t n);

/* ---- stop strings ---- */
#define SRV_MAX_STOP 4
/* Where the earliest stop string starts in text[from..n) (matches may begin before `from` by at
 * most the stop's length - 1), or -1. */
long srv_find_stop(const char *text, size_t n, size_t from, char *const *stop, int n_stop);
/* Bytes at the end of text that could still become a stop string (held back while streaming). */
size_t srv_stop_hold(const char *text, size_t n, char *const *stop, int n_stop);

/* ---- a generation request ---- */
typedef struct {
    int32_t *prompt; /* owned */
    int n_prompt;
    int max_tokens;  /* > 0 */
    float temperature, top_p;
    int top_k;       /* 0 = off */
    float min_p;     /* 0 = off */
    bl_penalties pen; /* over the prompt and the tokens generated */
    uint64_t seed;
    char *stop[SRV_MAX_STOP]; /* owned */
    int n_stop;
    int32_t stop_ids[8];
    int n_stop_ids;
    bool ignore_eos;
    bool logprobs;    /* record each token's log-probability (and top_logprobs alternatives) */
    int top_logprobs; /* 0..SRV_MAX_TOP_LOGPROBS */
    bool echo;        /* the prompt before the text; with logprobs, its tokens scored too (no
                       * prompt cache then) */
    char *text;       /* echo of a prompt given as a string: that string (owned) */
    int n_bias;       /* logit_bias: token ids and biases (owned) */
    int32_t *bias_id;
    float *bias;
} srv_params;

/* A token's log-probability under the model (log-softmax of the raw logits: before penalties,
 * temperature and filters) and its n_top most likely alternatives (by logit, then id). */
#define SRV_MAX_TOP_LOGPROBS 20
typedef struct {
    int32_t id;
    float lp; /* NAN for a prompt's first token, which nothing predicts */
    int n_top;
    int32_t top_id[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
} srv_logprob;
void srv_params_free(srv_params *p);
/* dst = src's parameters with a copy of the prompt ids[0..n) and text (NULL: none); false when
 * out of memory (dst then holds nothing to free). */
bool srv_params_copy(srv_params *dst, const srv_params *src, const int32_t *ids, int n,
                     const char *text);

typedef struct srv_req srv_req;
typedef struct srv_engine srv_engine;

typedef struct {
    int parallel, ctx, queue, chunk;
    bl_log_fn log;
    void *log_ctx;
    int n_threads; /* of the state's forward passes (0 = default) */
} srv_engine_opts;

bl_status srv_engine_new(const bl_model *m, const srv_engine_opts *o, srv_engine **out,
                         bl_err *err);
/* Stops the scheduler thread: draining, after every admitted and queued request is done; else
 * cancelling them. Every request is done afterwards (clients may still read their text). */
void srv_engine_stop(srv_engine *e, bool drain);
/* Frees the engine (stopping it first if needed) once no client holds a request. */
void srv_engine_free(srv_engine *e);
/* No new requests from now on (srv_submit answers SRV_STOPPING). */
void srv_engine_close(srv_engine *e);

/* Counters since the engine started (GET /metrics), and its state now. */
typedef struct {
    uint64_t prompt_tokens;  /* prompt tokens run through the model */
    uint64_t cached_tokens;  /* prompt tokens taken from the prompt cache instead */
    uint64_t generated;      /* tokens sampled */
    uint64_t finished, failed, cancelled; /* requests */
    uint64_t steps;          /* batched forward passes */
    double step_seconds;     /* time in them */
    int processing, queued, slots;
} srv_metrics;
void srv_engine_metrics(srv_engine *e, srv_metrics *out);

enum { SRV_OK = 0, SRV_QUEUE_FULL = 1, SRV_STOPPING = 2, SRV_NOMEM = 3 };
/* Queues a request (taking p's buffers; p is cleared). *out holds a reference for the caller,
 * released with srv_release. */
int srv_submit(srv_engine *e, srv_params *p, srv_req **out);

/* A request's token counts: prompt, completion, and the prompt tokens whose keys and values came
 * from the server's prompt cache (usage.prompt_tokens_details.cached_tokens). */
typedef struct {
    int prompt, completion, cached;
} srv_usage;

typedef struct {
    bool done;
    const char *finish;  /* "stop" or "length" once done; NULL when it failed */
    char error[256];     /* why it failed */
    srv_usage usage;
} srv_status;
/* Where the pieces of taken text end (offsets into the text they were appended to); with
 * want_logprobs, the log-probabilities that came with them (p.logprobs: one per piece). */
typedef struct {
    size_t *ends;
    int n;
    bool want_logprobs;
    srv_logprob *lps;
    int n_lps;
} srv_pieces;
/* Waits up to timeout_ms for new text or the end; appends the new text (valid UTF-8) to *text
 * and, when pieces is given, the end of each token's piece of it (one per generated token, plus
 * one for text flushed after a stop token, or, with logprobs, for the end-of-sequence token);
 * fills st. */
void srv_wait(srv_engine *e, srv_req *r, int timeout_ms, srv_str *text, srv_pieces *pieces,
              srv_status *st);
/* Waits up to timeout_ms until one of r[0..n) has new text or is done (the text is then taken
 * with srv_wait and no timeout). */
void srv_wait_any(srv_engine *e, srv_req *const *r, int n, int timeout_ms);
/* The client went away: the scheduler frees the request's slot at its next step. */
void srv_cancel(srv_engine *e, srv_req *r);
/* The log-probabilities of a request (p.logprobs) not yet taken: with echo, one per prompt token
 * (the first without one), then one per sampled token, the one that ended the text (EOS)
 * included. Moved to the caller (free()); *n = 0 when none. */
void srv_take_logprobs(srv_engine *e, srv_req *r, srv_logprob **out, int *n);
void srv_release(srv_engine *e, srv_req *r);

#endif
