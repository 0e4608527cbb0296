/* An OpenAI-compatible HTTP server (libmicrohttpd) with continuous batching, and the chat session
 * behind `bitllm chat`.
 *
 * Server: one scheduler thread owns the model and a multi-slot inference state (model.h,
 * bl_forward_batch). Each step it admits waiting requests into free slots, then runs one batched
 * forward holding the next token of every decoding sequence and a prompt chunk of those still
 * reading their prompt, samples each sequence with its own seeded generator and streams the text
 * out. Requests join and leave between steps; a client that disconnects frees its slot at the
 * next step. Endpoints: POST /v1/completions, POST /v1/chat/completions (both optionally
 * streamed as server-sent events ending in "data: [DONE]"), GET /v1/models, GET
 * /v1/models/{id}, POST /tokenize and /detokenize (llama.cpp's), GET /metrics (Prometheus),
 * GET /health. Errors
 * are OpenAI error objects {"error": {"message", "type", "param", "code"}} with status 400, 401,
 * 404, 405, 413 or 503. docs/serve.md documents the API. */
#ifndef BITLLM_SERVE_H
#define BITLLM_SERVE_H

#include "bitllm/chat.h"
#include "bitllm/model.h"

BL_API_BEGIN

/* Log lines (one request or event each, no trailing newline). */
typedef void (*bl_log_fn)(void *ctx, const char *line);

typedef struct {
    const char *host;          /* address to listen on (default 127.0.0.1) */
    int port;                  /* 0: an ephemeral port (see bl_server_port) */
    const char *api_key;       /* when set, requests need "Authorization: Bearer <key>" */
    const char *cors;          /* when set, browsers may call from this origin ("*": any):
                                * Access-Control-Allow-Origin on every answer, preflights
                                * (OPTIONS) answered 204 */
    const char *model_id;      /* the id /v1/models reports (default: the model path's name) */
    const char *chat_template; /* family name; NULL: detected from the model */
    int parallel;              /* sequences decoded together (KV-cache slots), default 4 */
    int ctx;                   /* tokens per sequence, default min(model context, 2048) */
    int queue;                 /* requests waiting for a slot before 503, default 64 */
    size_t max_body;           /* request body limit in bytes before 413, default 1 MiB */
    int chunk;                 /* prompt tokens per sequence per step, default 256 (as generate) */
    int n_threads;             /* threads of the forward passes (0 = bl_default_threads()) */
    bl_log_fn log;
    void *log_ctx;
} bl_server_opts;

void bl_server_opts_default(bl_server_opts *o);

typedef struct bl_server bl_server;
/* Starts listening and the scheduler. The model must outlive the server. Without a usable chat
 * template the server still starts; /v1/chat/completions then answers 400 with the reason. */
bl_status bl_server_start(const bl_model *m, const bl_server_opts *o, bl_server **out,
                          bl_err *err);
int bl_server_port(const bl_server *s);
int bl_server_ctx(const bl_server *s); /* tokens per sequence in use */
/* Stops taking requests (new ones get 503), lets every admitted and queued request finish, then
 * stops listening. With drain = false, running requests are cancelled instead. Blocks until
 * done. */
void bl_server_stop(bl_server *s, bool drain);
void bl_server_free(bl_server *s);

/* ---- interactive chat (bitllm chat) ---- */

typedef struct {
    const char *system;        /* system message, or NULL */
    const char *chat_template; /* family name; NULL: detected from the model */
    int ctx;                   /* context tokens (default: the model's, at most 4096) */
    int max_tokens;            /* per answer (default: until the context is full) */
    float temperature, top_p;
    int top_k;                 /* 0 = off */
    float min_p;               /* 0 = off */
    uint64_t seed;
    int n_threads;             /* threads of the forward passes (0 = bl_default_threads()) */
    bl_penalties penalties;    /* over the conversation's tokens; all zero = none */
} bl_chat_session_opts;

typedef struct bl_chat_session bl_chat_session;
bl_status bl_chat_session_new(const bl_model *m, const bl_chat_session_opts *o,
                              bl_chat_session **out, bl_err *err);
void bl_chat_session_free(bl_chat_session *s);
/* Forgets the conversation (the system message stays). */
void bl_chat_session_reset(bl_chat_session *s);
/* Called with each piece of the answer as valid UTF-8; return false to stop the answer there. */
typedef bool (*bl_text_fn)(void *ctx, const char *text, size_t len);
/* Adds the user message, generates the answer (streamed to on_text) and adds it to the history.
 * Older turns are dropped when the conversation no longer fits the context, leaving room for
 * the answer; *dropped receives how many messages went (0 when none). The cache keeps the
 * conversation, so each turn only runs its new tokens. */
bl_status bl_chat_session_say(bl_chat_session *s, const char *user, bl_text_fn on_text,
                              void *ctx, int *dropped, bl_err *err);
const char *bl_chat_session_template(const bl_chat_session *s); /* family name in use */

BL_API_END
#endif
