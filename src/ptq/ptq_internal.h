/* The post-training quantization layer's internals: calibration statistics, importance and
 * provenance, shared by the recipe (src/ptq/quantize.c). */
#ifndef BITLLM_PTQ_INTERNAL_H
#define BITLLM_PTQ_INTERNAL_H

#include "bitllm/quantize.h"

#include <cjson/cJSON.h>

/* q/k/v read the same input, as do gate/up: statistics are kept per distinct input. */
enum { PTQ_IN_ATTN, PTQ_IN_O, PTQ_IN_MLP, PTQ_IN_DOWN, PTQ_IN_COUNT };
/* The input projection p reads. */
int ptq_proj_input(int p);

/* Per-input-channel second moments of every projection input over the calibration tokens, and
 * optionally H = XᵀX/N of one layer (activation-aware fits). */
typedef struct {
    int n_layers;
    double *sumsq[PTQ_IN_COUNT]; /* [layer][n] */
    int64_t width[PTQ_IN_COUNT];
    int64_t count;               /* tokens seen (same for every input) */
    int gram_layer;              /* layer whose XᵀX is accumulated, or -1 */
    float *gram[PTQ_IN_COUNT];   /* n×n for gram_layer */
} ptq_calib;

/* Whether the fits use H = XᵀX/N (calibrated, a method that reads it, not asked for the diagonal
 * importance only). */
bool ptq_hessian_fit(const bl_quant_opts *o);
/* Allocates the statistics and runs the calibration tokens of o through m. */
bl_status ptq_calib_collect(const bl_model *m, const bl_quant_opts *o, ptq_calib *c, bl_err *err);
/* H = XᵀX/N for every input of one layer, by another calibration pass. */
bl_status ptq_calib_gram(const bl_model *m, const bl_quant_opts *o, ptq_calib *c, int layer,
                         bl_err *err);
void ptq_calib_free(ptq_calib *c);
/* The input-channel importance of projection p of layer l (mean squared input + 1e-8), n values. */
void ptq_calib_in_importance(const ptq_calib *c, int l, int p, int64_t n, float *imp);

/* The fit options of projection p of layer l: the recipe's method, bpw and fit options with the
 * projection's seed, and with calibration (cal not NULL) its input importance (written to imp, n
 * floats), H when cal holds layer l's Grams and the fit uses them, and its output importance. */
void ptq_layer_opts(const bl_quant_opts *o, const ptq_calib *cal, float *const *out_imp, int l,
                    int p, int64_t n, float *imp, bl_layer_fit_opts *lo);

/* Output-gradient importance (bl_quant_grad_importance) and, in scale (n_layers·BL_PROJ_COUNT
 * values, caller frees; may be NULL), each projection's mean squared output gradient before the
 * normalization to mean 1. */
bl_status ptq_grad_importance(const bl_model *m, const int32_t *ids, size_t n, int ctx,
                              float ***out, double **scale, bl_err *err);

/* Per-matrix bit allocation (allocate.c): the middle dimension of every projection (mids,
 * n_layers·BL_PROJ_COUNT entries) that minimizes Σ sens·(weighted error) under the uniform run's
 * total stored bits; cal (NULL without calibration) receives each layer's Grams in turn. */
bl_status ptq_allocate(const bl_model *src, const bl_quant_opts *o, ptq_calib *cal,
                       float *const *out_imp, const double *sens, int64_t *mids, bl_err *err);

/* The seven fits of layer l (side by side on n_threads threads, results independent of the
 * count): into q[l·7 + p], with calibration statistics cal or, when H is given, each input's
 * covariance H[ptq_proj_input(p)] (then for every method, with diag(H) as input importance). Only
 * this rank's projections when dq is given. */
typedef struct {
    bl_layer_fit_result r;
    bl_status status;
    bl_err err;
} ptq_fit_out;
struct qd_ctx_s;
void ptq_fit_projs(const bl_model *src, const bl_quant_opts *o, int l, ptq_calib *cal,
                   const float *const *H, float *const *out_imp, const int64_t *mids,
                   const struct qd_ctx_s *dq, bl_linear *q, ptq_fit_out *res, int n_threads);

/* Block-wise reconstruction (reconstruct.c): fills every layer of q (n_layers·7) from the
 * calibration sequences of o, adding each projection's stored bits and weights. */
bl_status ptq_reconstruct(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                          float *const *out_imp, const int64_t *mids, bl_linear *q, double *bits,
                          double *weights, int *resumed, bool *spilled, bl_err *err);
/* Global scale calibration (calibrate_scales.c): the FP16 vectors of q tuned on KL. */
bl_status ptq_calibrate_scales(const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                               double *kl_before, double *kl_after, bl_err *err);
/* The calibration tokens of o as sequences of o->calib_ctx tokens (each starting with BOS):
 * *rows (caller frees) and their count. */
bl_status ptq_calib_sequences(const bl_model *src, const bl_quant_opts *o, int32_t **rows,
                              int64_t *n_rows, bl_err *err);

/* The token embeddings and the output head as o->embed and o->head ask (src/ptq/edges.c). */
#include "model/model_internal.h"
typedef struct {
    bl_model_parts parts; /* head and embed of the checkpoint (proj left NULL), or NULL: kept */
    bl_linear head, embed;
    uint16_t *f16[2];     /* F16 copies made for "f16" (embed, head) */
    bl_tensor t16[2];
} ptq_edges;
/* BL_ERR_ARG, before any work, when o->embed or o->head is not a usable spec. */
bl_status ptq_edges_check(const bl_model *src, const bl_quant_opts *o, bl_err *err);
bl_status ptq_edges_make(const bl_model *src, const bl_quant_opts *o, ptq_edges *e, bl_err *err);
void ptq_edges_free(ptq_edges *e);

/* The provenance object written into quantization_config (the one writer). */
cJSON *ptq_provenance(const bl_model *src, const bl_quant_opts *o);

#endif
