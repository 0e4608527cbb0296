/* Quantization-aware knowledge distillation (ALGORITHMS.md §3, §4): a quantized student
 * (projections of any format with a training entry) learns from its full-precision teacher, both running in this
 * process on the training engine of src/nn (f32, OpenMP, results independent of the thread
 * count). Also: training data (packed text or teacher-generated sequences) and the per-channel
 * output-gradient statistics that DBF's importance weighting uses. See docs/distill.md. */
#ifndef BITLLM_TRAIN_H
#define BITLLM_TRAIN_H

#include "bitllm/model.h"
#include "bitllm/fit.h"

BL_API_BEGIN

/* ---- training data: rows of `seq` token ids, each starting with BOS ---- */

typedef struct {
    int32_t *ids;     /* n_rows × seq */
    int64_t n_rows;
    int seq;
} bl_train_data;

/* Packs a token stream (tokenized without BOS) into rows [BOS] + seq−1 tokens; the tail that
 * does not fill a row is dropped. bos < 0: rows of seq stream tokens. */
bl_status bl_train_data_from_ids(const int32_t *ids, size_t n, int seq, int bos,
                                 bl_train_data *out, bl_err *err);
/* A text file (tokenized with m's tokenizer and packed as above) or a token file written by
 * bl_train_data_save (recognised by its first line); token-file rows longer than seq are cut. */
bl_status bl_train_data_load(const bl_model *m, const char *path, int seq, bl_train_data *out,
                             bl_err *err);
/* Token file: a header line "# bitllm-tokens v1 rows=R seq=L vocab=V", then one row of
 * space-separated ids per line. Written atomically. */
bl_status bl_train_data_save(const bl_train_data *d, int vocab, const char *path, bl_err *err);
/* Sequences sampled from the teacher (LLM-QAT style): BOS, a uniformly random first token
 * (not BOS/EOS), greedy decoding for the next 3–5 tokens, then sampling at temperature 1; after
 * an EOS the row goes on with BOS and a fresh random start. Every row has its own random stream
 * (seed, row), so the result does not depend on the thread count. */
bl_status bl_train_data_generate(const bl_model *teacher, int64_t n_rows, int seq, uint64_t seed,
                                 bl_progress_fn progress, void *progress_ctx, bl_train_data *out,
                                 bl_err *err);
void bl_train_data_free(bl_train_data *d);

/* ---- distillation ---- */

typedef struct {
    int step, steps;       /* steps done, total */
    int64_t tokens;        /* student tokens processed so far */
    double loss, ce, mse;  /* this step (mean over its micro-batches) */
    double lr, grad_norm;  /* grad_norm before clipping */
    double tok_per_s, elapsed_s, eta_s;
    int64_t flips;         /* signs flipped so far */
} bl_distill_progress;

typedef struct {
    int steps;             /* optimizer steps in total (default 200) */
    int seq;               /* tokens per sequence incl. BOS (default 256) */
    int batch;             /* sequences per micro-batch (default 8) */
    int accum;             /* micro-batches per step (gradient accumulation, default 1) */
    double lr;             /* peak learning rate (default 1e-3) */
    double lr_min;         /* end of the cosine schedule (default 0) */
    int warmup;            /* linear warm-up steps (default steps/20) */
    double wd;             /* AdamW decoupled weight decay on matrices (default 0.01) */
    double beta1, beta2, adam_eps; /* default 0.9, 0.98, 1e-8 */
    double clip;           /* global gradient-norm clip, 0 = off (default 1.0) */
    double alpha;          /* weight of the hidden-state MSE (default 1.0) */
    uint64_t seed;         /* data order (default 0) */
    int save_every;        /* checkpoint every K steps, 0 = only at the end (default 0) */
    int stop_after;        /* stop after this step, as if killed (for resume tests); 0 = off */
    bool resume;           /* continue from OUTDIR/checkpoint */
    int flip_every;        /* sign flipping of factored formats every K steps, 0 = off */
    double flip_frac;      /* at most this fraction of a sign matrix per flip (default 1e-3) */
    int post_ln;           /* onebit post-LayerNorm: 1 on (default), 0 off, -1 as in STUDENT */
    float latent_init;     /* onebit latent magnitude (default 0.01, reference code) */
    bool train_embed, train_head; /* default off */
    bool freeze_norms;     /* default: RMSNorm weights, q/k norms and biases train */
    int eval_batches;      /* fixed batches for the loss before/after (default 1) */
    const char *provenance; /* command line, stored in the output's quantization_config */
    int n_threads;         /* threads of every parallel step (0 = bl_default_threads()); the
                              result does not depend on it */
    /* Where the trained model's files go (default: OUTDIR itself). The command line passes the
     * temporary directory of bl_outdir_prepare, so the model appears in OUTDIR in one step while
     * checkpoints, which must survive a kill, go straight to OUTDIR/checkpoint. */
    const char *export_dir;
    void (*on_step)(void *ctx, const bl_distill_progress *p);
    void *on_step_ctx;
    void (*on_note)(void *ctx, const char *msg); /* resume/checkpoint notes */
    void *on_note_ctx;
} bl_distill_opts;

void bl_distill_opts_default(bl_distill_opts *o);

typedef struct {
    int start_step, steps_done; /* steps done by this call, from start_step */
    int64_t tokens;             /* student tokens over the whole run (resumed runs included) */
    double seconds;             /* training time of the whole run */
    double loss_before, ce_before, mse_before; /* KD loss on the fixed batches at step 0 */
    double loss_after, ce_after, mse_after;    /* ... after the last step */
    int64_t flips;
    bool stopped;               /* stop_after reached: no model written */
} bl_distill_result;

/* Trains student against teacher on data and writes OUTDIR (a loadable quantized model dir; see
 * export_dir); checkpoints go to OUTDIR/checkpoint/state.safetensors, each written atomically. A
 * NaN or Inf in the loss or the gradients stops the run with BL_ERR_NUMERIC, naming the step and
 * where the value appeared (teacher or student, layer, position; or the tensor whose gradient
 * it is), and keeps the last checkpoint.
 * teacher and student must have the same dim, layers and vocabulary. */
bl_status bl_distill(const bl_model *teacher, const bl_model *student,
                     const bl_train_data *data, const char *outdir, const bl_distill_opts *o,
                     bl_distill_result *res, bl_err *err);

/* Options of bl_distill_opts that only students with some layer formats read. */
typedef enum { BL_DO_POST_LN, BL_DO_LATENT_INIT, BL_DO_FLIP, BL_DO_COUNT } bl_distill_opt;
/* Whether some layer of student has a format that reads opt. */
bool bl_distill_student_reads(const bl_model *student, bl_distill_opt opt);
/* The trainable formats that read opt, as a comma list of format names. */
void bl_distill_opt_users(bl_distill_opt opt, char *buf, size_t cap);

/* ---- gradient statistics for DBF importance (ALGORITHMS.md §4) ---- */

/* o_r = (1/N) Σ_t (∂ℓ/∂y_{t,r})² for the output channels r of every projection, where ℓ is the
 * summed next-token cross-entropy of windows of ctx tokens ([BOS] + ctx−1 ids, as the
 * perplexity protocol cuts them) and N the number of positions. out must hold
 * n_layers·BL_PROJ_COUNT pointers; out[l·7 + p] receives a malloc'ed array of that projection's
 * m values (free each with free()). */
bl_status bl_grad_stats(const bl_model *m, const int32_t *ids, size_t n, int ctx, float **out,
                        bl_err *err);

BL_API_END
#endif
