/* Zero-shot tasks with lm-evaluation-harness semantics (docs/eval.md): loading the task files into
 * (context, continuation) requests with lm-eval's prompt templates, lm-eval's tokenization of a
 * request, log-likelihood scoring with a shared-prefix KV cache, and per-task metrics. */
#ifndef BITLLM_TASKS_H
#define BITLLM_TASKS_H

#include "bitllm/eval.h"

BL_API_BEGIN

typedef enum {
    BL_TASK_PIQA = 0,
    BL_TASK_ARC_EASY,
    BL_TASK_ARC_CHALLENGE,
    BL_TASK_HELLASWAG,
    BL_TASK_WINOGRANDE,
    BL_TASK_BOOLQ,
    BL_TASK_LAMBADA,
    BL_TASK_OPENBOOKQA,
    BL_TASK_COUNT
} bl_task_id;

/* "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq", "lambada",
 * "openbookqa". */
const char *bl_task_name(bl_task_id t);
bool bl_task_from_name(const char *name, bl_task_id *out);
/* Parses a comma-separated list ("all" = every task, in enum order; duplicates are dropped) into
 * ids[BL_TASK_COUNT]. */
bl_status bl_task_parse_list(const char *list, bl_task_id *ids, int *n, bl_err *err);
/* Whether lm-eval reports acc_norm for the task (not for winogrande, boolq, lambada). */
bool bl_task_has_acc_norm(bl_task_id t);

/* One log-likelihood request: the continuation is scored given the context. */
typedef struct {
    char *context;
    char *continuation;
    /* acc_norm denominators of the choice text without lm-eval's target delimiter " ":
     * Unicode characters (what lm-eval divides by) and UTF-8 bytes. */
    int norm_chars, norm_bytes;
} bl_task_request;

typedef struct {
    bl_task_request *req;
    int n_req;
    int gold; /* index of the right request; 0 for LAMBADA (one request per item) */
} bl_task_item;

typedef struct {
    bl_task_id id;
    char *path; /* the file the items came from */
    bl_task_item *items;
    int n_items;
} bl_task_set;

/* Reads the task's file under data_dir (the folder holding llm-foundry-icl/, piqa/, hellaswag/;
 * docs/eval.md lists which file each task uses) and builds its requests. limit > 0 keeps the
 * first limit items. */
bl_status bl_task_load(bl_task_id id, const char *data_dir, int limit, bl_task_set **out,
                       bl_err *err);
/* The same from the file's text in memory (path names it in messages); for PIQA, labels is
 * piqa/valid-labels.lst when data is piqa/valid.jsonl, or NULL when data is llm-foundry's
 * piqa.jsonl. Every item is checked (fields, their types, choice counts, the gold index). */
bl_status bl_task_parse(bl_task_id id, const char *path, const char *data, size_t len,
                        const char *labels, size_t labels_len, int limit, bl_task_set **out,
                        bl_err *err);
void bl_task_set_free(bl_task_set *s);

/* lm-eval's tokenization of a request: whitespace at the end of the context moves to the front of
 * the continuation; ctx = encode(context), whole = encode(context + continuation), and the
 * continuation tokens are whole[len(ctx):]. With bos, BOS starts both encodings. The model input
 * is ctx followed by the continuation tokens. */
typedef struct {
    int32_t *ids; /* n_ctx context tokens, then n_cont continuation tokens */
    int n_ctx, n_cont;
} bl_token_pair;

bl_status bl_encode_pair(const bl_tokenizer *t, bool bos, const char *context,
                         const char *continuation, bl_token_pair *out, bl_err *err);
void bl_token_pair_free(bl_token_pair *p);

/* Score of one continuation. */
typedef struct {
    double ll;    /* sum of log p(token | everything before it) over the continuation */
    bool greedy;  /* every continuation token was the argmax (lowest id on ties) */
    int n_tokens; /* continuation tokens scored */
    int start;    /* tokens dropped from the left to fit the window (0 if none) */
} bl_cont_score;

/* Scores continuations with one KV cache. Each request runs as lm-eval runs it: the last ctx+1
 * tokens of context+continuation, all but the last as input. The part of a request's input that
 * precedes its first scored position and matches tokens already in the cache is not computed
 * again, so the context shared by the choices of an item runs once; each continuation then runs
 * as one forward call. */
typedef struct bl_scorer bl_scorer;
bl_status bl_scorer_new(const bl_model *m, int ctx, bl_scorer **out, bl_err *err);
void bl_scorer_free(bl_scorer *s);
/* Forgets the cached tokens (the next request computes its whole input). */
void bl_scorer_reset(bl_scorer *s);
bl_status bl_score_pairs(bl_scorer *s, const bl_token_pair *pairs, int n, bl_cont_score *out,
                         bl_err *err);
/* Tokens run through the model so far. */
int64_t bl_scorer_computed(const bl_scorer *s);

typedef struct {
    int ctx;         /* window in tokens (0 = the model's trained context, at most 2048:
                      * bl_ctx_choose) */
    bool norm_bytes; /* acc_norm by UTF-8 bytes instead of lm-eval's characters */
    bool no_bos;     /* do not prepend BOS even when the tokenizer adds it */
    bl_progress_fn progress;
    void *progress_ctx;
    /* Called after each item with its scores (n = item->n_req). */
    void (*on_item)(void *ctx, int index, const bl_task_item *item, const bl_cont_score *s);
    void *on_item_ctx;
} bl_eval_opts;

typedef struct {
    bl_task_id id;
    int n;                          /* items */
    double acc, acc_stderr;         /* stderr = sample std / sqrt(n) = sqrt(p(1-p)/(n-1)) */
    double acc_norm, acc_norm_stderr; /* NAN when the task has no acc_norm */
    double ppl;                     /* LAMBADA: exp(-mean over items of the ll); else NAN */
    int ctx;                        /* window used */
    bool bos;                       /* BOS prepended */
    int64_t tokens;                 /* input tokens of all requests, after truncation */
    int64_t scored;                 /* continuation tokens scored */
    int64_t computed;               /* tokens run through the model (shared prefixes once) */
    int64_t truncated;              /* requests left-truncated to fit the window */
    double seconds;
} bl_task_result;

/* Per-item decision from the scores (lm-eval): pred = argmax ll, pred_norm = argmax ll/len
 * (first index on ties). For LAMBADA both are 0 when the item is greedy-correct, else -1. */
void bl_task_predict(const bl_task_item *item, const bl_cont_score *s, bool norm_bytes,
                     int *pred, int *pred_norm);

bl_status bl_task_eval(const bl_model *m, const bl_task_set *t, const bl_eval_opts *o,
                       bl_task_result *out, bl_err *err);

BL_API_END
#endif
