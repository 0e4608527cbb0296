/* Layer-wise quantization over the ranks of an MPI job (docs/distributed.md): the plan that
 * assigns every projection to one rank, and the gather of the fitted layers onto rank 0, which
 * writes the model. With one rank every call is a no-op and every layer is "mine". */
#ifndef BITLLM_QUANTIZE_DIST_H
#define BITLLM_QUANTIZE_DIST_H

#include "bitllm/quantize.h"

typedef struct qd_ctx_s {
    int *owner;                 /* per projection (l·BL_PROJ_COUNT + p): its rank; NULL alone */
    int n;                      /* projections */
    bl_layer_fit_result *res;   /* per projection fitted here: its result */
    bl_tensor_set recv;         /* rank 0: the layers received, views into parts */
    void **parts;
    size_t *sizes;
} qd_ctx;

/* The plan: projections by estimated fit cost (qd_cost, with the options every projection is
 * fitted with), largest first onto the least-loaded rank. Every rank computes the same plan
 * from the model's shapes and the options. */
bl_status qd_begin(qd_ctx *d, const bl_model *src, const bl_layer_fit_opts *lo, bl_err *err);
/* Whether this rank fits projection i / some projection of layer l. */
bool qd_mine(const qd_ctx *d, int i);
bool qd_layer_mine(const qd_ctx *d, int l);
/* Keeps the result of projection i (fitted here) for rank 0's report. */
void qd_done(qd_ctx *d, int i, const bl_layer_fit_result *r);
/* Every rank sends the layers it fitted to rank 0; rank 0 fills q[i] for the others' layers
 * (views into the received bytes, valid until qd_end), adds their bits and weights and calls
 * o->on_layer for each, in projection order. */
bl_status qd_gather(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                    double *bits, double *weights, bl_err *err);
/* Block reconstruction: a plan for the seven projections of layer l alone (the same rule), mids
 * the allocated middle dimensions or NULL. Alone nothing is planned (every projection mine). */
bl_status qd_begin_layer(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, int l,
                         const int64_t *mids, bl_err *err);
/* Every rank receives the layers the others fitted (each rank broadcasts its message in turn;
 * call qd_done for this rank's first): q[i] for the others' projections become views into the
 * received bytes (valid until qd_end), d->res[i] their fit results. */
bl_status qd_share(qd_ctx *d, const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                   bl_err *err);
/* Rank 0 (or alone): the rank that writes the output. */
bool qd_writes(const qd_ctx *d);
/* Frees the plan and the received bytes (after q's layers are freed). */
void qd_end(qd_ctx *d);

/* Estimated cost of fitting one m×n projection with these options: m·n·k + (m+n)·k² for a
 * format with a middle dimension k (all paths; per ADMM iteration: the products with the factors
 * and the k×k solves), m·n for the others (one pass, or a fixed number of rank-1 iterations). */
double qd_cost(const bl_layer_fit_opts *lo, int64_t m, int64_t n);

#endif
