/* OpenAI request parsing and response JSON (api.c), private to src/serve. */
#ifndef BITLLM_SERVE_API_H
#define BITLLM_SERVE_API_H

#include "serve/serve_internal.h"

/* An error answer: HTTP status, message, and the OpenAI "param" / "code" (NULL: null). */
typedef struct {
    int status;
    const char *param, *code;
    char message[512];
} srv_error;

/* What request parsing needs from the server. */
typedef struct {
    const bl_model *m;
    const bl_chat_template *tmpl; /* NULL: no chat template, tmpl_error says why */
    const char *tmpl_error;
    int ctx;
} srv_api_ctx;

/* A request: its choices' generation parameters in OpenAI's index order (each prompt of a
 * completions request, n_per_prompt times: "n"). */
#define SRV_MAX_CHOICES 16
typedef struct {
    bool chat, stream, include_usage;
    srv_params *choice;
    int n_choices, n_per_prompt;
} srv_api_req;

/* Parses a completion (chat = false) or chat completion body. On failure e is filled (400 with
 * the offending parameter) and out holds nothing to free; else srv_api_req_free frees it. */
bool srv_parse_request(const srv_api_ctx *c, const char *body, size_t len, bool chat,
                       srv_api_req *out, srv_error *e);
void srv_api_req_free(srv_api_req *r);

/* The fixed part of every object of one reply. */
typedef struct {
    bool chat;
    char id[48];
    long created;
    const char *model;
} srv_reply;

/* JSON texts (malloc'ed; NULL when out of memory). */
char *srv_error_json(const srv_error *e);
/* The log-probabilities of a reply: n entries (srv_take_logprobs), the first n_prompt of them
 * the prompt's (echo), tokens' texts from tok. */
typedef struct {
    const srv_logprob *lps;
    int n, n_prompt;
    size_t echo_chars;    /* characters of the echoed prompt text */
    const size_t *offset; /* NULL, or each entry's text_offset as given (a stream's) */
    const bl_tokenizer *tok;
} srv_lp_view;
/* One choice of an answer: its text, finish reason and log-probabilities (NULL: null). */
typedef struct {
    const char *text, *finish;
    const srv_lp_view *lp;
} srv_choice_out;
/* The whole answer: n choices (index = position) and the request's usage. */
char *srv_completion_json(const srv_reply *r, const srv_choice_out *ch, int n, srv_usage u);
/* A stream chunk of choice `index`: text (NULL: none; chat: the delta's content), role (chat: the first chunk's
 * "role": "assistant"), finish (NULL until the last), the log-probabilities of its token (NULL:
 * "logprobs": null). */
char *srv_chunk_json(const srv_reply *r, int index, const char *text, bool role,
                     const char *finish, const srv_lp_view *lp);
char *srv_usage_chunk_json(const srv_reply *r, srv_usage u);
/* llama.cpp's POST /tokenize ({"content", "add_special", "with_pieces"} -> {"tokens"}) and POST
 * /detokenize ({"tokens"} -> {"content"}): the answer's JSON, or NULL with e filled (out of
 * memory included). */
char *srv_tokenize(const srv_api_ctx *c, const char *body, size_t len, srv_error *e);
char *srv_detokenize(const srv_api_ctx *c, const char *body, size_t len, srv_error *e);
char *srv_models_json(const char *model, long created); /* GET /v1/models */
char *srv_model_json(const char *model, long created);  /* GET /v1/models/{model} */

#endif
