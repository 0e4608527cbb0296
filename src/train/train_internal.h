/* Pieces of the distillation trainer shared between src/train files. */
#ifndef BITLLM_TRAIN_INTERNAL_H
#define BITLLM_TRAIN_INTERNAL_H

#include "bitllm/train.h"
#include "nn/nn.h"

/* ---- optimizer (optim.c) ---- */

/* Learning rate of 0-based step: linear warm-up to lr over `warmup` steps, then cosine to
 * lr_min at the last step. */
double tr_lr(const bl_distill_opts *o, int step);
/* Global L2 norm of the trainable gradients (double, fixed summation order). */
double tr_grad_norm(const nn_model *M, const float *G);
/* AdamW step t (1-based) on the trainable tensors; gscale multiplies the gradients first
 * (clipping). Weight decay only on tensors marked decay. Latent sign scores (NN_R_FLIP) step at
 * lr·flip_ratio, every other tensor at lr. */
void tr_adamw(const nn_model *M, float *P, const float *G, float *m, float *v, int t, double lr,
              double flip_ratio, float gscale, const bl_distill_opts *o);
/* Sign flipping: in every sign matrix with a latent score, flip the entries whose score has
 * crossed zero against the current sign, at most ceil(frac·rows·cols) per matrix, largest
 * |score| first. Returns the number of flips in *flips. */
bl_status tr_flip_signs(nn_model *M, const float *P, double frac, int64_t *flips, bl_err *err);

/* ---- data order (data.c): epoch e visits the rows in a permutation drawn from (seed, e) ---- */

typedef struct {
    const bl_train_data *d;
    uint64_t seed;
    int64_t epoch;
    int64_t *perm;
} tr_order;

bl_status tr_order_init(tr_order *o, const bl_train_data *d, uint64_t seed, bl_err *err);
/* Row number pos of the training stream (pos counts rows over all epochs). */
const int32_t *tr_order_row(tr_order *o, int64_t pos);
void tr_order_free(tr_order *o);

/* ---- data parallelism (dist_step.c) ---- */

/* Sums the gradients G (n floats) and the step's losses over the MPI ranks: G becomes the sum,
 * ce and mse the mean of the ranks' values. No-op alone. */
bl_status tr_dist_sum_grads(float *G, size_t n, double *ce, double *mse, bl_err *err);

/* ---- checkpoints (checkpoint.c) ---- */

typedef struct {
    int step;             /* optimizer steps done */
    int64_t data_pos;     /* rows consumed */
    int64_t tokens;
    int64_t flips;
    double seconds;
    double loss_before, ce_before, mse_before;
} tr_state;

/* Writes OUTDIR/checkpoint/state.safetensors atomically: trainable tensors, Adam moments,
 * flippable sign matrices and the state above with the options that fix the data order. */
bl_status tr_checkpoint_save(const char *outdir, const nn_model *M, const float *P,
                             const float *m, const float *v, const tr_state *st,
                             const bl_distill_opts *o, bl_err *err);
/* Restores what tr_checkpoint_save wrote into a model built from the same student. */
bl_status tr_checkpoint_load(const char *outdir, nn_model *M, float *P, float *m, float *v,
                             tr_state *st, const bl_distill_opts *o, bl_err *err);

/* ---- non-finite values (nonfinite.c) ---- */

/* Describes the first NaN/Inf of the forward pass stored in A ("in the output of layer 3
 * (sequence 0, position 17)": embeddings, each layer's output, final norm, logits, in that
 * order) into buf; false when every value is finite. */
bool tr_find_nonfinite(const nn_model *M, const nn_acts_f32 *A, char *buf, size_t cap);
/* Name of the first trainable tensor whose gradient in G holds a NaN/Inf, or NULL. */
const char *tr_nonfinite_grad(const nn_model *M, const float *G);

/* ---- export (export.c) ---- */

/* Writes the student as a normal model directory (config.json with quantization_config,
 * model.safetensors, tokenizer) through bl_model_save; src supplies the frozen parts. */
bl_status tr_export(const nn_model *M, const float *P, const bl_model *src, const char *outdir,
                    const char *method, const char *extra_json, bl_err *err);

#endif
