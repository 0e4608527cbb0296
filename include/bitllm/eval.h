/* Measuring models: perplexity (and, later, zero-shot tasks). */
#ifndef BITLLM_EVAL_H
#define BITLLM_EVAL_H

#include "bitllm/model.h"
#include "bitllm/fit.h"

BL_API_BEGIN

typedef struct {
    double nll;       /* total negative log-likelihood (nats) */
    int64_t tokens;   /* scored tokens */
    int ctx;          /* window length including BOS */
    int64_t chunks;
    double ppl;       /* exp(nll / tokens) */
    double seconds;
} bl_ppl_result;

/* Perplexity protocol: the token stream (tokenized once, without BOS) is cut into consecutive
 * chunks of ctx−1 tokens; each chunk runs as [BOS] + chunk and every chunk token is scored, so
 * `tokens` equals n. Models without a BOS token use chunks of ctx tokens and score all but the
 * first token of each chunk. batch = tokens per forward call (0 = default). */
bl_status bl_perplexity(const bl_model *m, const int32_t *ids, size_t n, int ctx, int batch,
                        bl_progress_fn progress, void *progress_ctx, bl_ppl_result *out,
                        bl_err *err);

/* ---- the window of a measurement (ppl, eval, compare, distill's perplexity) ---- */

typedef enum {
    BL_CTX_FLAG = 0, /* given by the user */
    BL_CTX_MODEL,    /* the model's trained context (max_position_embeddings, context_length) */
    BL_CTX_CAP,      /* the default cap: the trained context is longer than 2048 */
} bl_ctx_source;

typedef struct {
    int ctx;
    bl_ctx_source source;
    int trained;     /* the model's trained context */
} bl_ctx_choice;

/* requested 0: the trained context, at most 2048. requested >= 2: that window; above the trained
 * context only with allow_long (positions the model never saw: results degrade), else
 * BL_ERR_ARG naming the trained context. Other values are BL_ERR_ARG. */
bl_status bl_ctx_choose(const bl_model *m, int requested, bool allow_long, bl_ctx_choice *out,
                        bl_err *err);
/* "flag", "model" or "default" (JSON), and a phrase for text output ("from --ctx", ...). */
const char *bl_ctx_source_name(bl_ctx_source s);
void bl_ctx_describe(const bl_ctx_choice *c, const char *flag, char *buf, size_t cap);

/* log p(target | logits) in double precision (log-softmax). */
double bl_log_prob(const float *logits, int vocab, int target);
/* The normalizer of log-softmax: *mx = max logit, *log_sum = log Σ exp(l − mx) in double, so
 * that log p(t) = (double)logits[t] − *mx − *log_sum (bl_log_prob's arithmetic exactly). */
void bl_log_softmax_norm(const float *logits, int vocab, float *mx, double *log_sum);

BL_API_END
#endif
