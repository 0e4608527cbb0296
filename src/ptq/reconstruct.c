/* Block-wise reconstruction (docs/reconstruct.md; NanoQuant-style 1-bit PTQ). For block
 * b = 1…L: the block's inputs X_q come from the quantized blocks before it (at first the
 * embeddings of the calibration sequences), its target Y is the FP block applied to the FP inputs
 * X_fp (or to X_q); every projection of the block is fitted with the covariance of its current
 * inputs (the FP block run on X_q), then the block's latent signs (straight-through) and all its
 * scale/envelope vectors are trained with Adam on MSE(block_q(X_q), Y) for a few epochs over the
 * calibration sequences, cosine learning rate; the block is then frozen and X_q, X_fp move on.
 * Everything runs on the training engine's single-layer passes (nn_layer_forward/_backward).
 *
 * Under MPI (docs/distributed.md) every rank holds the same block parameters and a contiguous
 * shard of the calibration sequences (rc_shard): it computes the inputs and targets of its own
 * sequences only, runs forward and backward on its rows of every step, and the block's gradient,
 * its losses and the covariances are summed over ranks (rc_sum_*, a fixed order) so that every
 * rank takes the same Adam step. Which sequences a step uses does not depend on the rank count.
 *
 * Layers are always used in their stored form (format layers round their vectors to FP16), so a
 * run that resumes from the saved state (recon_state.c) continues from exactly what an
 * uninterrupted run holds. Results are independent of the thread count. */
#include "ptq/recon_internal.h"

#include "bitllm/dist.h"
#include "core/parallel.h"
#include "ptq/quantize_dist.h"
#include "train/train_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the training engine's model of one block ---- */

/* A one-layer nn model of layer l of src, with the projections proj (NULL: src's own). The
 * embeddings and the head are never used: the view has a vocabulary of one tied row. */
bl_status rc_block_model(const bl_model *src, int l, const bl_linear *proj, bool student,
                             int T, nn_model **M, float **P, bl_err *err) {
    nn_build_opts bo;
    nn_build_opts_default(&bo);
    bo.post_ln = -1; /* as fitted */
    bo.train_norms = false;
    bo.train_quant = student;
    bo.flip = student; /* factored formats: latent scores of their sign matrices */
    bl_model v = *src;
    bl_layer ly = src->layers[l];
    if (proj)
        for (int p = 0; p < BL_PROJ_COUNT; p++) ly.proj[p] = proj[p];
    v.cfg.n_layers = 1;
    v.cfg.vocab_size = 1;
    v.cfg.tied_embeddings = true;
    v.layers = &ly;
    return nn_model_from_bl(&v, T, &bo, M, P, err);
}

/* ---- passes over the calibration sequences ---- */

/* One forward pass of block model M over this rank's sequences, in order, b at a time: the output
 * written to out (may be in), the MSE against target accumulated into *loss (Σ (y − t)²) and
 * *tsq (Σ t²), and XᵀX of the block's four projection inputs added into H (this rank's sums). */
static bl_status pass(rc_ctx *r, const nn_model *M, const float *P, rc_store *in, rc_store *out,
                      rc_store *target, float *const *H, double *loss, double *tsq,
                      bl_err *err) {
    nn_acts_f32 *A;
    bl_status s = nn_acts_new_f32(M, r->sh.b, r->T, &A, err);
    if (s) return s;
    const int64_t N = A->N, D = r->D;
    double sl = 0, st = 0;
    for (int64_t i = 0; i < r->sh.n_loc && !s; i += r->sh.b) {
        s = rc_store_io(in, i * r->T, N, A->x, false, err);
        if (s) break;
        const double t0 = bl_time_s();
        nn_layer_forward_f32(M, P, A, 0);
        r->forward_s += bl_time_s() - t0;
        const float *y = A->x + N * D;
        if (target) {
            s = rc_store_io(target, i * r->T, N, r->ybuf, false, err);
            for (int64_t k = 0; k < N * D && !s; k++) {
                const double d = (double)y[k] - r->ybuf[k];
                sl += d * d;
                st += (double)r->ybuf[k] * r->ybuf[k];
            }
        }
        if (H) {
            const float *X[PTQ_IN_COUNT] = {A->xn1, A->ao, A->xn2, A->hmid};
            for (int in_ = 0; in_ < PTQ_IN_COUNT; in_++) {
                const int n = (int)r->width[in_];
                bl_sgemm(CblasTrans, CblasNoTrans, n, n, (int)N, 1.0f, X[in_], n, X[in_], n, 1.0f,
                         H[in_], n, bl_pool_omp_current());
            }
        }
        for (int64_t k = 0; k < N * D && !s && out; k++)
            if (!isfinite(y[k]))
                s = bl_fail(err, BL_ERR_NUMERIC, "the output of the %s block is not finite "
                            "(sequence %lld, position %lld) in %s",
                            nn_linear_is_dense(&M->layers[0].proj[0]) ? "FP" : "quantized",
                            (long long)(r->sh.seq0 + i + k / (r->T * D)),
                            (long long)(k / D % r->T), r->src->path);
        if (!s && out) s = rc_store_io(out, i * r->T, N, (float *)y, true, err);
    }
    nn_acts_free_f32(A);
    if (loss) *loss = sl;
    if (tsq) *tsq = st;
    return s;
}

/* The block's output error against the target over the whole set (all ranks): MSE per value and
 * relative. */
static bl_status block_loss(rc_ctx *r, const nn_model *M, const float *P, rc_store *in,
                            rc_store *target, double *mse, double *rel, bl_err *err) {
    double sum[2] = {0, 0};
    bl_status s = pass(r, M, P, in, NULL, target, NULL, &sum[0], &sum[1], err);
    if (!s) s = rc_sum_f64(sum, 2, "the block's output error", err);
    const double n = (double)r->n_seq * r->T * r->D;
    *mse = sum[0] / n;
    *rel = sum[1] > 0 ? sum[0] / sum[1] : 0;
    return s;
}

/* ---- training one block ---- */

static void zero_trainable(const nn_model *M, float *G) {
    for (int i = 0; i < M->n_t; i++)
        if (M->t[i].trainable) memset(G + M->t[i].off, 0, sizeof(float) * M->t[i].numel);
}

static bl_status train_block(rc_ctx *r, int b, nn_model *S, float *P, rc_store *xq,
                             rc_store *y, int *steps_done, int64_t *flips_done, bl_err *err) {
    const bl_recon_opts *ro = &r->o->recon;
    const int64_t per_epoch = r->n_seq / r->sh.B;
    const int total = (int)(ro->epochs * per_epoch);
    const size_t np = S->n_params;
    float *G = bl_aligned_alloc(np * sizeof(float)), *m = bl_aligned_alloc(np * sizeof(float)),
          *v = bl_aligned_alloc(np * sizeof(float));
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)r->sh.n_loc); /* this rank's rows per step */
    nn_acts_f32 *A = NULL;
    bl_status s = G && m && v && perm ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!s) {
        memset(G, 0, np * sizeof(float));
        memset(m, 0, np * sizeof(float));
        memset(v, 0, np * sizeof(float));
        s = nn_acts_new_f32(S, r->sh.b, r->T, &A, err);
    }
    bl_distill_opts d; /* the schedule and Adam settings of the shared optimizer */
    bl_distill_opts_default(&d);
    d.steps = total;
    d.warmup = 0;
    d.lr = ro->lr;
    d.lr_min = 0;
    d.wd = 0;
    const int64_t T = r->T, D = r->D, N = (int64_t)r->sh.b * T;
    const double t_start = bl_time_s();
    int step = 0;
    for (int e = 0; e < ro->epochs && !s; e++) {
        /* the steps' sequences per (seed, block, epoch) */
        s = rc_epoch_order(&r->sh, r->o->fit.seed * 0x9e3779b97f4a7c15ull +
                                       (uint64_t)b * 1000003u + (uint64_t)e + 1, perm, err);
        for (int64_t k = 0; k < per_epoch && !s; k++, step++) {
            for (int q = 0; q < r->sh.b && !s; q++) {
                const int64_t seq = perm[k * r->sh.b + q] - r->sh.seq0; /* in this rank's stores */
                s = rc_store_io(xq, seq * T, T, A->x + q * T * D, false, err);
                if (!s) s = rc_store_io(y, seq * T, T, r->ybuf + q * T * D, false, err);
            }
            if (s) break;
            double t0 = bl_time_s();
            nn_layer_forward_f32(S, P, A, 0);
            r->forward_s += bl_time_s() - t0;
            t0 = bl_time_s();
            const float *out = A->x + N * D;
            /* the mean over the step's B sequences, of which this rank has b */
            const float k2 = 2.0f / (float)((int64_t)r->sh.B * T * D);
            for (int64_t i = 0; i < N * D; i++) A->dx[i] = k2 * (out[i] - r->ybuf[i]);
            zero_trainable(S, G);
            nn_layer_backward_f32(S, P, G, A, 0);
            s = rc_sum_f32(G, np, "the block's gradient", err);
            if (s) break;
            /* the vectors (and onebit's latent weights) at lr, the factored formats' latent sign
             * scores at sign_lr: a sign flips when its score, started at ±flip_init, crosses
             * zero, so sign_lr sets how many steps of consistent gradient a flip takes (a factor
             * sign moves a whole row or column of the product) */
            tr_adamw(S, P, G, m, v, step + 1, tr_lr(&d, step), ro->sign_lr / ro->lr, 1.0f, &d);
            s = nn_model_sync_signs_f32(S, P, err); /* onebit: sign(latent) */
            /* factored formats: the signs whose latent score crossed zero (straight-through), at
             * most flip_frac of each matrix per step, largest scores first */
            int64_t flips = 0;
            if (!s) s = tr_flip_signs(S, P, ro->flip_frac, &flips, err);
            *flips_done += flips;
            r->backward_s += bl_time_s() - t0;
            if (ro->on_progress && ((step + 1) % 8 == 0 || step + 1 == total)) {
                char what[64];
                snprintf(what, sizeof what, "block %d/%d epoch %d/%d", b + 1, r->L, e + 1,
                         ro->epochs);
                const double el = bl_time_s() - t_start;
                ro->on_progress(ro->ctx, what, step + 1, total, el / (step + 1) * (total - step - 1));
            }
        }
    }
    *steps_done = step;
    nn_acts_free_f32(A);
    bl_aligned_free(G);
    bl_aligned_free(m);
    bl_aligned_free(v);
    free(perm);
    return s;
}

/* ---- the stage ---- */

bl_status rc_export_block(const nn_model *S, const float *P, bl_linear *q, bl_err *err) {
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        const nn_linear *L = &S->layers[0].proj[p];
        bl_linear nl;
        memset(&nl, 0, sizeof nl);
        bl_status s = nn_linear_export(L, P, &nl, err);
        if (s) return s;
        bl_linear_free(&q[p]);
        q[p] = nl;
    }
    return BL_OK;
}

/* Block b, from the fits to the propagation of X_q and X_fp. */
static bl_status do_block(rc_ctx *r, int b, float *const *out_imp, bl_linear *q,
                          bl_recon_block *res, bl_err *err) {
    const bl_quant_opts *o = r->o;
    bl_linear *qb = q + (size_t)b * BL_PROJ_COUNT;
    nn_model *T = NULL, *S = NULL;
    float *PT = NULL, *PS = NULL;
    const double t_block = bl_time_s();
    r->forward_s = r->backward_s = 0;
    /* targets, and the covariance of every projection input of the FP block on X_q */
    bl_status s = rc_block_model(r->src, b, NULL, false, r->T, &T, &PT, err);
    for (int i = 0; i < PTQ_IN_COUNT && !s; i++) {
        memset(r->H[i], 0, sizeof(float) * (size_t)(r->width[i] * r->width[i]));
    }
    rc_store *tin = o->recon.target_quant ? &r->xq : &r->xfp;
    if (!s) s = pass(r, T, PT, tin, &r->y, NULL, o->recon.target_quant ? r->H : NULL, NULL, NULL,
                     err);
    if (!s && !o->recon.target_quant) s = pass(r, T, PT, &r->xq, NULL, NULL, r->H, NULL, NULL, err);
    for (int i = 0; i < PTQ_IN_COUNT && !s; i++)
        s = rc_sum_f32(r->H[i], (size_t)(r->width[i] * r->width[i]), "XᵀX", err);
    const double ntok = (double)r->n_seq * r->T;
    for (int i = 0; i < PTQ_IN_COUNT && !s; i++)
        for (int64_t k = 0; k < r->width[i] * r->width[i]; k++) r->H[i][k] /= (float)ntok;
    /* initial fits with the current inputs' covariance; under MPI the seven fits are spread over
     * the ranks (largest first, quantize_dist.h) and the fitted layers exchanged */
    const double t_fit = bl_time_s();
    ptq_fit_out fo[BL_PROJ_COUNT];
    memset(fo, 0, sizeof fo);
    qd_ctx dq;
    memset(&dq, 0, sizeof dq);
    if (!s) s = qd_begin_layer(&dq, r->src, o, b, r->mids, err);
    if (!s) {
        ptq_fit_projs(r->src, o, b, NULL, (const float *const *)r->H, out_imp, r->mids, &dq, q,
                      fo, r->n_threads);
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            if (!qd_mine(&dq, b * BL_PROJ_COUNT + p)) continue;
            if (fo[p].status) {
                if (err) *err = fo[p].err;
                s = fo[p].status;
            }
            qd_done(&dq, b * BL_PROJ_COUNT + p, &fo[p].r);
        }
    }
    if (!s && dq.owner) { /* the others' layers, then owned copies of all seven on every rank */
        s = qd_share(&dq, r->src, o, q, err);
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++)
            if (!qd_mine(&dq, b * BL_PROJ_COUNT + p)) fo[p].r = dq.res[b * BL_PROJ_COUNT + p];
        if (!s) s = rc_block_model(r->src, b, qb, false, r->T, &S, &PS, err);
        if (!s) s = rc_export_block(S, PS, qb, err);
        nn_model_free(S);
        bl_aligned_free(PS);
        S = NULL;
        PS = NULL;
    }
    qd_end(&dq);
    res->fit_s = bl_time_s() - t_fit;
    for (int p = 0; p < BL_PROJ_COUNT && !s && o->on_layer; p++) { /* the initial fits */
        char name[96];
        bl_proj_name(b, p, name, sizeof name);
        o->on_layer(o->on_layer_ctx, name, qb[p].m, qb[p].n, &fo[p].r);
    }
    /* train latent signs and vectors on the block output error */
    if (!s) s = rc_block_model(r->src, b, qb, true, r->T, &S, &PS, err);
    if (!s) s = block_loss(r, S, PS, &r->xq, &r->y, &res->loss_before, &res->rel_before, err);
    if (!s && !isfinite(res->loss_before))
        s = bl_fail(err, BL_ERR_NUMERIC, "the output error of the quantized block is not finite");
    if (!s) s = train_block(r, b, S, PS, &r->xq, &r->y, &res->steps, &res->flips, err);
    bl_linear trained[BL_PROJ_COUNT];
    memset(trained, 0, sizeof trained);
    if (!s) s = rc_export_block(S, PS, trained, err);
    nn_model_free(S);
    bl_aligned_free(PS);
    S = NULL;
    PS = NULL;
    /* the trained block as it is stored (FP16 vectors), unless it is worse than the initial fit */
    if (!s) s = rc_block_model(r->src, b, trained, false, r->T, &S, &PS, err);
    if (!s) s = block_loss(r, S, PS, &r->xq, &r->y, &res->loss_after, &res->rel_after, err);
    if (!s && res->loss_after > res->loss_before) {
        res->reverted = true;
        res->loss_after = res->loss_before;
        res->rel_after = res->rel_before;
        nn_model_free(S);
        bl_aligned_free(PS);
        S = NULL;
        PS = NULL;
        s = rc_block_model(r->src, b, qb, false, r->T, &S, &PS, err);
    } else if (!s) {
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            bl_linear_free(&qb[p]);
            qb[p] = trained[p];
            memset(&trained[p], 0, sizeof trained[p]);
        }
    }
    for (int p = 0; p < BL_PROJ_COUNT; p++) bl_linear_free(&trained[p]);
    /* propagate: X_q through the quantized block, X_fp through the FP one */
    if (!s) s = pass(r, S, PS, &r->xq, &r->xq, NULL, NULL, NULL, NULL, err);
    if (!s && o->recon.target_quant) s = pass(r, T, PT, &r->xfp, &r->xfp, NULL, NULL, NULL, NULL, err);
    if (!s && !o->recon.target_quant) rc_store_swap(&r->xfp, &r->y);
    nn_model_free(S);
    bl_aligned_free(PS);
    nn_model_free(T);
    bl_aligned_free(PT);
    res->block = b;
    res->blocks = r->L;
    res->seconds = bl_time_s() - t_block;
    res->forward_s = r->forward_s;
    res->backward_s = r->backward_s;
    return s;
}

/* A resumed run: the inputs of block `start` from the finished blocks before it (X_q through the
 * quantized blocks, X_fp through the FP ones), by the passes an uninterrupted run makes, so the
 * same bits. */
static bl_status replay(rc_ctx *r, const bl_linear *q, int start, bl_err *err) {
    bl_status s = BL_OK;
    for (int b = 0; b < start && !s; b++)
        for (int k = 0; k < 2 && !s; k++) {
            nn_model *M = NULL;
            float *P = NULL;
            rc_store *x = k ? &r->xfp : &r->xq;
            s = rc_block_model(r->src, b, k ? NULL : q + (size_t)b * BL_PROJ_COUNT, false, r->T,
                               &M, &P, err);
            if (!s) s = pass(r, M, P, x, x, NULL, NULL, NULL, NULL, err);
            nn_model_free(M);
            bl_aligned_free(P);
        }
    return s ? bl_fail_context(err, s, "recomputing the inputs of block %d", start + 1) : BL_OK;
}

bool bl_recon_supports(const bl_method *m) {
    return nn_format_of(m->format) && !bl_format_is_dense(m->format);
}

bl_status ptq_reconstruct(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                          float *const *out_imp, const int64_t *mids, bl_linear *q, double *bits,
                          double *weights, int *resumed, bool *spilled, bl_err *err) {
    const bl_config *c = &src->cfg;
    const bl_recon_opts *ro = &o->recon;
    *resumed = 0;
    if (ro->epochs < 1 || ro->batch < 1 || !(ro->lr > 0) || !(ro->sign_lr >= 0) ||
        !(ro->flip_frac >= 0 && ro->flip_frac <= 1))
        return bl_fail(err, BL_ERR_ARG, "reconstruction: epochs and batch must be >= 1, lr > 0, "
                       "the sign lr >= 0 and the flip fraction in [0, 1] (got %d, %d, %g, "
                       "%g, %g)", ro->epochs, ro->batch, ro->lr, ro->sign_lr, ro->flip_frac);
    if (!bl_recon_supports(&o->method))
        return bl_fail(err, BL_ERR_UNSUPPORTED, "block reconstruction trains the formats the "
                       "training engine has (bitllm formats), not %s", o->method.format->name);
    rc_ctx r;
    memset(&r, 0, sizeof r);
    r.src = src;
    r.o = o;
    r.outdir = outdir;
    r.mids = mids;
    r.L = c->n_layers;
    r.D = c->dim;
    r.n_threads = bl_resolve_threads(o->n_threads);
    int32_t *rows = NULL;
    bl_status s = ptq_calib_sequences(src, o, &rows, &r.n_seq, err);
    if (s) return s;
    r.T = o->calib_ctx;
    r.ids = rows;
    s = rc_shard_make(r.n_seq, ro->batch, &r.sh, err);
    if (!s) s = rc_check_same_tokens(rows, r.n_seq, r.T, err);
    if (s) {
        free(rows);
        return s;
    }
    const int omp_prev = bl_omp_threads_begin(o->n_threads);
    s = rc_init(&r, err);
    *spilled = r.spilled;
    int start = 0;
    if (!s) s = rc_state_load(&r, q, &start, err);
    if (!s) s = replay(&r, q, start, err);
    *resumed = start;
    for (int b = 0; b < start && !s; b++) {
        if (ro->on_block) {
            r.done[b].resumed = true;
            ro->on_block(ro->ctx, &r.done[b]);
        }
    }
    for (int b = start; b < r.L && !s; b++) {
        bl_recon_block res;
        memset(&res, 0, sizeof res);
        s = do_block(&r, b, out_imp, q, &res, err);
        if (s) {
            bl_fail_context(err, s, "reconstruction of block %d", b + 1);
            break;
        }
        r.done[b] = res;
        s = rc_state_save(&r, q, b, err);
        if (!s && ro->on_block) ro->on_block(ro->ctx, &res);
    }
    for (int i = 0; i < c->n_layers * BL_PROJ_COUNT && !s; i++) {
        const double mn = (double)q[i].m * (double)q[i].n;
        *bits += bl_linear_bpw(&q[i]) * mn;
        *weights += mn;
    }
    if (!s) rc_state_clear(&r);
    rc_free(&r);
    bl_omp_threads_end(omp_prev);
    free(rows);
    return s;
}
