/* Measuring models: perplexity (and, later, zero-shot tasks). */
#ifndef BITLLM_EVAL_H
#define BITLLM_EVAL_H

#include "bitllm/model.h"
#include "bitllm/quant.h"

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

/* log p(target | logits) in double precision (log-softmax). */
double bl_log_prob(const float *logits, int vocab, int target);

#endif
