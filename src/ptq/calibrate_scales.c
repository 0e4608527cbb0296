/* Global scale calibration (docs/reconstruct.md): with every sign of every quantized layer frozen,
 * only their FP16 vectors (scales and envelopes: NN_R_SCALE, NN_R_ENVELOPE) are tuned with Adam
 * (cosine learning rate) to minimise KL(FP ‖ quantized) of the next-token distributions over the
 * calibration sequences. The teacher's distributions are recomputed for every batch (memory stays
 * at one batch of logits). Kept only when it lowers the KL. Under MPI every rank runs its shard's
 * rows of every step (rc_shard, as block reconstruction does) and the gradients and KL sums are
 * summed over ranks, so every rank holds the same vectors. */
#include "ptq/recon_internal.h"

#include "core/parallel.h"
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nn_model *S, *T;
    float *PS, *PT;
    nn_acts_f32 *AS, *AT;
    const int32_t *rows; /* every sequence, on every rank */
    rc_shard sh;
    int T_len;
    double *ent; /* per row: the teacher's entropy */
} kl_ctx;

/* Teacher distributions (into AT->logits) and their entropies for sequences seq[0..B). */
static void teacher_batch(kl_ctx *k, int32_t *tok) {
    const int64_t N = k->AT->N;
    const int V = k->T->cfg.vocab_size;
    nn_forward_f32(k->T, k->PT, k->AT, tok);
    nn_softmax_rows_f32(k->AT->logits, k->AT->logits, N, V);
    for (int64_t t = 0; t < N; t++) {
        double h = 0;
        const float *p = k->AT->logits + t * V;
        for (int c = 0; c < V; c++)
            if (p[c] > 0) h -= (double)p[c] * log((double)p[c]);
        k->ent[t] = h;
    }
}

/* Mean KL per token over every sequence (of all ranks). */
static bl_status mean_kl(kl_ctx *k, int32_t *tok, double *kl, bl_err *err) {
    const int64_t N = k->AS->N;
    const int V = k->S->cfg.vocab_size;
    double sum = 0;
    for (int64_t i = k->sh.seq0; i < k->sh.seq0 + k->sh.n_loc; i += k->sh.b) {
        memcpy(tok, k->rows + i * k->T_len, sizeof(int32_t) * (size_t)N);
        teacher_batch(k, tok);
        nn_forward_f32(k->S, k->PS, k->AS, tok);
        const double ce = nn_soft_ce_f32(k->AS->logits, k->AT->logits, N, V, 1.0, NULL,
                                         k->AS->row);
        double h = 0;
        for (int64_t t = 0; t < N; t++) h += k->ent[t];
        sum += ce - h / (double)N;
    }
    bl_status s = rc_sum_f64(&sum, 1, "the KL", err);
    *kl = sum / (double)(k->sh.n_seq / k->sh.b); /* the mean of equal batches' means */
    return s;
}

bl_status ptq_calibrate_scales(const bl_model *src, const bl_quant_opts *o, bl_linear *q,
                               double *kl_before, double *kl_after, bl_err *err) {
    const bl_recon_opts *ro = &o->recon;
    const bl_config *c = &src->cfg;
    *kl_before = *kl_after = NAN;
    if (ro->kl_epochs < 1 || !(ro->kl_lr > 0))
        return bl_fail(err, BL_ERR_ARG, "scale calibration: epochs must be >= 1 and lr > 0");
    kl_ctx k;
    memset(&k, 0, sizeof k);
    int32_t *rows = NULL;
    int64_t n_seq = 0;
    bl_status s = ptq_calib_sequences(src, o, &rows, &n_seq, err);
    if (!s) s = rc_shard_make(n_seq, ro->batch, &k.sh, err);
    if (!s) s = rc_check_same_tokens(rows, n_seq, o->calib_ctx, err);
    if (s) {
        free(rows);
        return s;
    }
    k.rows = rows;
    k.T_len = o->calib_ctx;
    const int omp_prev = bl_omp_threads_begin(o->n_threads);
    /* the student: the quantized layers, only their vectors trainable */
    bl_layer *layers = malloc(sizeof *layers * (size_t)c->n_layers);
    if (!layers) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_model v = *src;
    for (int l = 0; l < c->n_layers && !s; l++) {
        layers[l] = src->layers[l];
        for (int p = 0; p < BL_PROJ_COUNT; p++) layers[l].proj[p] = q[l * BL_PROJ_COUNT + p];
    }
    v.layers = layers;
    nn_build_opts so, to;
    nn_build_opts_default(&so);
    so.post_ln = -1;
    so.train_norms = false;
    nn_build_opts_default(&to);
    to.post_ln = -1;
    to.train_norms = to.train_quant = false;
    if (!s) s = nn_model_from_bl(&v, k.T_len, &so, &k.S, &k.PS, err);
    free(layers);
    if (!s) {
        for (int i = 0; i < k.S->n_t; i++)
            if (k.S->t[i].role == NN_R_LATENT) k.S->t[i].trainable = false;
        nn_model_update_grad_flags(k.S);
        s = nn_model_from_bl(src, k.T_len, &to, &k.T, &k.PT, err);
    }
    if (!s) s = nn_acts_new_f32(k.S, k.sh.b, k.T_len, &k.AS, err);
    if (!s) s = nn_acts_new_f32(k.T, k.sh.b, k.T_len, &k.AT, err);
    const int64_t N = (int64_t)k.sh.b * k.T_len;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N);
    k.ent = malloc(sizeof(double) * (size_t)N);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)k.sh.n_loc);
    const size_t np = k.S ? k.S->n_params : 0;
    float *G = np ? bl_aligned_alloc(np * sizeof(float)) : NULL,
          *m = np ? bl_aligned_alloc(np * sizeof(float)) : NULL,
          *vv = np ? bl_aligned_alloc(np * sizeof(float)) : NULL;
    if (!s && (!tok || !k.ent || !perm || !G || !m || !vv))
        s = bl_fail(err, BL_ERR_NOMEM, "out of memory for scale calibration");
    if (!s) {
        memset(m, 0, np * sizeof(float));
        memset(vv, 0, np * sizeof(float));
        s = mean_kl(&k, tok, kl_before, err);
    }
    const int64_t per_epoch = n_seq / k.sh.B;
    bl_distill_opts d;
    bl_distill_opts_default(&d);
    d.steps = (int)(ro->kl_epochs * per_epoch);
    d.warmup = 0;
    d.lr = ro->kl_lr;
    d.lr_min = 0;
    d.wd = 0;
    const int V = c->vocab_size;
    const double t0 = bl_time_s();
    int step = 0;
    for (int e = 0; e < ro->kl_epochs && !s; e++) {
        s = rc_epoch_order(&k.sh, o->fit.seed * 0x9e3779b97f4a7c15ull + 0x5ca1e + (uint64_t)e,
                           perm, err);
        for (int64_t b = 0; b < per_epoch && !s; b++, step++) {
            for (int i = 0; i < k.sh.b; i++)
                memcpy(tok + (int64_t)i * k.T_len, rows + perm[b * k.sh.b + i] * k.T_len,
                       sizeof(int32_t) * (size_t)k.T_len);
            teacher_batch(&k, tok);
            nn_forward_f32(k.S, k.PS, k.AS, tok);
            /* the gradient of the mean over the step's B sequences, of which this rank has b */
            const double ce = nn_soft_ce_f32(k.AS->logits, k.AT->logits, N, V,
                                             (double)k.sh.b / k.sh.B, k.AS->logits, k.AS->row);
            if (!isfinite(ce)) {
                s = bl_fail(err, BL_ERR_NUMERIC, "scale calibration: the loss is not finite at "
                            "step %d", step + 1);
                break;
            }
            memset(G, 0, np * sizeof(float));
            nn_backward_f32(k.S, k.PS, G, k.AS, tok, k.AS->logits, NULL);
            s = rc_sum_f32(G, np, "the scales' gradient", err);
            if (s) break;
            tr_adamw(k.S, k.PS, G, m, vv, step + 1, tr_lr(&d, step), 1.0, 1.0f, &d);
            if (ro->on_progress && ((step + 1) % 8 == 0 || step + 1 == d.steps)) {
                char what[64];
                snprintf(what, sizeof what, "scale calibration epoch %d/%d", e + 1, ro->kl_epochs);
                const double el = bl_time_s() - t0;
                ro->on_progress(ro->ctx, what, step + 1, d.steps,
                                el / (step + 1) * (d.steps - step - 1));
            }
        }
    }
    /* the vectors as stored (FP16), kept only when the KL went down */
    bl_linear *nq = NULL;
    if (!s) {
        nq = calloc((size_t)c->n_layers * BL_PROJ_COUNT, sizeof *nq);
        if (!nq) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            const nn_linear *L = &k.S->layers[l].proj[p];
            s = nn_linear_export(L, k.PS, &nq[l * BL_PROJ_COUNT + p], err);
        }
    if (!s) { /* measure what will be written */
        nn_model_free(k.S);
        bl_aligned_free(k.PS);
        k.S = NULL;
        k.PS = NULL;
        layers = malloc(sizeof *layers * (size_t)c->n_layers);
        if (!layers) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
        for (int l = 0; l < c->n_layers && !s; l++) {
            layers[l] = src->layers[l];
            for (int p = 0; p < BL_PROJ_COUNT; p++) layers[l].proj[p] = nq[l * BL_PROJ_COUNT + p];
        }
        v.layers = layers;
        if (!s) s = nn_model_from_bl(&v, k.T_len, &so, &k.S, &k.PS, err);
        free(layers);
        if (!s) s = mean_kl(&k, tok, kl_after, err);
    }
    const bool keep = !s && *kl_after <= *kl_before;
    for (int i = 0; nq && i < c->n_layers * BL_PROJ_COUNT; i++) {
        if (keep) {
            bl_linear_free(&q[i]);
            q[i] = nq[i];
        } else {
            bl_linear_free(&nq[i]);
        }
    }
    if (!s && !keep) *kl_after = *kl_before;
    free(nq);
    free(tok);
    free(k.ent);
    free(perm);
    bl_aligned_free(G);
    bl_aligned_free(m);
    bl_aligned_free(vv);
    nn_acts_free_f32(k.AS);
    nn_acts_free_f32(k.AT);
    nn_model_free(k.S);
    nn_model_free(k.T);
    bl_aligned_free(k.PS);
    bl_aligned_free(k.PT);
    free(rows);
    bl_omp_threads_end(omp_prev);
    return s;
}
