/* Whole-model post-training quantization, as a recipe: calibration (input second moments,
 * output-gradient importance; src/ptq/calibrate.c, importance.c) → per-layer initial fits →
 * optional stages → the checkpoint with its provenance (provenance.c). Decoder layers are fitted
 * one after the other from their dense weights, the seven projections of a layer side by side on
 * the options' threads (one f32 copy per projection in flight); the fitted layers are small
 * (≈1 bit/weight) and are kept until the checkpoint is written. With random_factors the weights
 * are never read: each layer gets random factors of the fitted shapes (benchmarks of synthetic
 * models at real sizes). */
#include "bitllm/quantize.h"
#include "model/model_internal.h"
#include "ptq/ptq_internal.h"
#include "ptq/quantize_dist.h"
#include "core/parallel.h"
#include "bitllm/dist.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_quant_opts_default(bl_quant_opts *o) {
    memset(o, 0, sizeof *o);
    bl_method_parse("onebit", &o->method, NULL);
    o->bpw = 0; /* a format with a middle dimension: match onebit's bpw for each layer's shape */
    o->calib_ctx = 256;
    o->grad_importance = true;
    o->activation_aware = true;
    o->recon.epochs = 2;
    o->recon.batch = 4;
    o->recon.lr = 1e-3;
    o->recon.sign_lr = 3e-4;
    o->recon.flip_frac = 1;
    o->recon.kl_epochs = 1;
    /* onebit, stories260K, 2 scale epochs (docs/results.md): ppl 103.7 at 1e-4, 52.4 at 1e-3,
     * 32.1 at 1e-2, 34.8 at 3e-2 */
    o->recon.kl_lr = 1e-2;
    bl_fit_opts_default(&o->fit);
}

/* ---- fitting one layer ---- */

static bl_layer_fit_opts layer_opts(const bl_quant_opts *o) {
    bl_layer_fit_opts lo;
    bl_layer_fit_opts_default(&lo);
    lo.method = o->method;
    lo.bpw = o->bpw;
    lo.fit = o->fit;
    lo.random_factors = o->random_factors;
    return lo;
}

void ptq_layer_opts(const bl_quant_opts *o, const ptq_calib *cal, float *const *out_imp, int l,
                    int p, int64_t n, float *imp, bl_layer_fit_opts *lo) {
    *lo = layer_opts(o);
    lo->fit.seed = o->fit.seed + (uint64_t)(l * BL_PROJ_COUNT + p) * 7919u;
    if (cal) {
        ptq_calib_in_importance(cal, l, p, n, imp);
        lo->fit.in_importance = imp;
        if (cal->gram_layer == l && ptq_hessian_fit(o)) lo->fit.H = cal->gram[ptq_proj_input(p)];
    }
    if (out_imp && bl_method_uses(&o->method, false, BL_QP_CALIB))
        lo->fit.out_importance = out_imp[l * BL_PROJ_COUNT + p];
}

/* One projection's fit, run on one thread: its own f32 copy of the weights, importance and
 * fitted layer; the outcome is reported through the task. */
typedef struct {
    const bl_model *src;
    const bl_quant_opts *o;
    ptq_calib *cal;              /* NULL without calibration */
    const float *const *H;       /* or each input's XᵀX/N (block reconstruction), or NULL */
    float *const *out_imp;       /* output-gradient importance per projection, or NULL */
    const int64_t *mids;         /* allocated middle dimensions per projection, or NULL */
    int l, p;
    bl_linear *out;
    bl_status status;
    bl_err err;
    bl_layer_fit_result *res; /* what the fit stores, its error and its time */
} fit_task;

/* Largest projections first (gate, up, down, then the attention ones), so that a few threads
 * finish a layer together. */
static const int fit_order[BL_PROJ_COUNT] = {BL_PROJ_GATE, BL_PROJ_UP, BL_PROJ_DOWN, BL_PROJ_Q,
                                             BL_PROJ_O, BL_PROJ_K, BL_PROJ_V};

static void fit_one(fit_task *t) {
    const bl_quant_opts *o = t->o;
    const bl_linear *L = &t->src->layers[t->l].proj[t->p];
    const size_t mn = (size_t)(L->m * L->n);
    float *W = NULL, *imp = NULL;
    bl_status s = BL_OK;
    if (!o->random_factors) { /* random factors must not page in a multi-GB source */
        W = malloc(mn * sizeof(float));
        imp = malloc((size_t)L->n * sizeof(float));
        if (!W || !imp) s = bl_fail(&t->err, BL_ERR_NOMEM, "out of memory for layer %d", t->l);
        if (!s) s = L->ops->to_dense(L, W, &t->err);
    }
    bl_layer_fit_opts lo;
    ptq_layer_opts(o, (s || t->H) ? NULL : t->cal, t->out_imp, t->l, t->p, L->n, imp, &lo);
    if (!s && t->H) { /* block reconstruction: the covariance of the projection's current inputs */
        const float *H = t->H[ptq_proj_input(t->p)];
        for (int64_t j = 0; j < L->n; j++) imp[j] = H[j * L->n + j] + 1e-8f;
        lo.fit.in_importance = imp;
        if (ptq_hessian_fit(o)) lo.fit.H = H; /* --fit-metric diag: its diagonal only */
    }
    if (t->mids) lo.method.params.mid = t->mids[t->l * BL_PROJ_COUNT + t->p];
    if (!s) s = bl_fit_layer(W, L->m, L->n, &lo, t->out, t->res, &t->err);
    free(W);
    free(imp);
    t->status = s;
}

void ptq_fit_projs(const bl_model *src, const bl_quant_opts *o, int l, ptq_calib *cal,
                   const float *const *H, float *const *out_imp, const int64_t *mids,
                   const qd_ctx *dq, bl_linear *q, ptq_fit_out *res, int n_threads) {
    /* The seven projections of a layer are independent fits: they run side by side, one per
     * thread, each with single-threaded BLAS/LAPACK (OpenBLAS's process-wide thread count is
     * never changed) and each seeded by its position, so the result does not depend on the
     * thread count. */
    fit_task tasks[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        fit_task *t = &tasks[p];
        memset(t, 0, sizeof *t);
        t->src = src;
        t->o = o;
        t->cal = cal;
        t->H = H;
        t->out_imp = out_imp;
        t->mids = mids;
        t->l = l;
        t->p = p;
        t->out = &q[l * BL_PROJ_COUNT + p];
        t->res = &res[p].r;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int k = 0; k < BL_PROJ_COUNT; k++)
        if (!dq || qd_mine(dq, l * BL_PROJ_COUNT + fit_order[k])) fit_one(&tasks[fit_order[k]]);
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        res[p].status = tasks[p].status;
        res[p].err = tasks[p].err;
    }
}

bl_status bl_quantize_model(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                            bl_quant_summary *sum, bl_err *err) {
    const bl_config *c = &src->cfg;
    const double t0 = bl_time_s();
    const int total = c->n_layers * BL_PROJ_COUNT;
    if (o->random_factors && ((o->calib_ids && o->n_calib > 0) || o->out_importance))
        return bl_fail(err, BL_ERR_ARG,
                       "random factors never read the weights: calibration and gradient "
                       "statistics make no sense with them");
    if (o->allocate && o->random_factors)
        return bl_fail(err, BL_ERR_ARG, "bit allocation fits every matrix at several sizes: it "
                                        "makes no sense with random factors");
    if (o->allocate && !o->method.format->mid_from_bpw)
        return bl_fail(err, BL_ERR_ARG, "bit allocation: %s has no size knob (only formats with "
                                        "a middle dimension can be given more or fewer bits per "
                                        "matrix)", o->method.format->name);
    bl_linear *q = calloc((size_t)total, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    ptq_calib cal;
    float **grads = NULL;
    double *gscale = NULL;           /* mean squared output gradient per projection */
    int64_t *mids = NULL;            /* with allocate: every projection's middle dimension */
    bool use_calib = o->calib_ids && o->n_calib > 0 && bl_method_uses(&o->method, false, BL_QP_CALIB);
    bl_status s = BL_OK;
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            char name[96];
            bl_proj_name(l, p, name, sizeof name);
            bl_layer_fit_opts lo = layer_opts(o);
            s = bl_layer_fit_check(&lo, src->layers[l].proj[p].m, src->layers[l].proj[p].n, name,
                                   err);
        }
    if (!s) s = ptq_edges_check(src, o, err);
    qd_ctx dq; /* under MPI: which projections this rank fits (quantize_dist.h) */
    const bl_layer_fit_opts plan_lo = layer_opts(o);
    if (!s) s = qd_begin(&dq, src, &plan_lo, err);
    if (s) {
        free(q);
        return s;
    }
    /* 1. calibration */
    float *const *out_imp = o->out_importance;
    /* the gradient pass: the fits' output importance, and the allocation's sensitivities (which
     * it needs even when the fits are asked to use input statistics only) */
    if (use_calib && !out_imp && (o->grad_importance || o->allocate)) {
        s = ptq_grad_importance(src, o->calib_ids, o->n_calib, o->calib_ctx, &grads, &gscale,
                                err);
        if (o->grad_importance) out_imp = grads;
    }
    const bool recon = o->recon.block && o->calib_ids && o->n_calib > 0 &&
                       bl_recon_supports(&o->method);
    if (use_calib && (!recon || o->allocate) && !s) s = ptq_calib_collect(src, o, &cal, err);
    else if (use_calib) memset(&cal, 0, sizeof cal);
    /* 1b. the per-matrix bit budget */
    if (o->allocate && !s) {
        double *sens = malloc(sizeof(double) * (size_t)total);
        mids = malloc(sizeof(int64_t) * (size_t)total);
        if (!sens || !mids) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
        for (int i = 0; i < total && !s; i++) sens[i] = gscale ? gscale[i] : 1.0;
        if (!s) s = ptq_allocate(src, o, use_calib ? &cal : NULL, out_imp, sens, mids, err);
        free(sens);
    }
    /* 2. the initial fit of every layer */
    double bits = 0, weights = 0;
    const int omp_prev = bl_omp_threads_begin(o->n_threads);
    const int n_threads = bl_resolve_threads(o->n_threads);
    ptq_fit_out *res = calloc(BL_PROJ_COUNT, sizeof *res); /* one per projection */
    if (!res) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    int resumed = 0;
    bool spilled = false;
    if (recon && !s) s = ptq_reconstruct(src, o, outdir, out_imp, mids, q, &bits, &weights,
                                          &resumed, &spilled, err);
    for (int l = 0; l < c->n_layers && !s && !recon; l++) {
        if (use_calib && ptq_hessian_fit(o) && qd_layer_mine(&dq, l))
            s = ptq_calib_gram(src, o, &cal, l, err);
        if (s) break;
        ptq_fit_projs(src, o, l, use_calib ? &cal : NULL, NULL, out_imp, mids, &dq, q, res,
                      n_threads);
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            if (!qd_mine(&dq, l * BL_PROJ_COUNT + p)) continue;
            if (res[p].status) {
                if (err) *err = res[p].err;
                s = res[p].status;
                break;
            }
            const bl_linear *L = &src->layers[l].proj[p];
            const void *src_bytes;
            size_t src_n;
            if (bl_linear_dense_bytes(L, &src_bytes, &src_n))
                bl_tensor_set_release(&src->tensors, src_bytes, src_n);
            const double mn = (double)L->m * (double)L->n;
            bits += res[p].r.bpw * mn;
            weights += mn;
            qd_done(&dq, l * BL_PROJ_COUNT + p, &res[p].r);
            if (o->on_layer) {
                char name[96];
                bl_proj_name(l, p, name, sizeof name);
                o->on_layer(o->on_layer_ctx, name, L->m, L->n, &res[p].r);
            }
        }
    }
    bl_omp_threads_end(omp_prev);
    free(res);
    if (use_calib) ptq_calib_free(&cal);
    bl_quant_importance_free(src, grads);
    free(gscale);
    free(mids);
    /* under MPI: rank 0 gathers every rank's layers (block reconstruction leaves the whole model
     * on every rank, its calibration data sharded); the stages and the checkpoint are rank 0's */
    if (!s && !recon) s = qd_gather(&dq, src, o, q, &bits, &weights, err);
    const bool writes = qd_writes(&dq);
    double kl_before = NAN, kl_after = NAN;
    if (!s && recon && o->recon.calibrate_scales)
        s = ptq_calibrate_scales(src, o, q, &kl_before, &kl_after, err);
    /* 3. the recipe's further stages */
    for (int i = 0; i < o->n_stages && !s && writes; i++) {
        s = o->stages[i].run(o->stages[i].ctx, src, o, q, err);
        if (s) bl_fail_context(err, s, "quantization stage %s", o->stages[i].name);
    }
    /* 4. the checkpoint */
    if (!s && writes) {
        cJSON *prov = ptq_provenance(src, o);
        char *pj = cJSON_PrintUnformatted(prov);
        cJSON_Delete(prov);
        char name[64];
        bl_method_name(&o->method, name, sizeof name);
        ptq_edges edges;
        s = ptq_edges_make(src, o, &edges, err);
        edges.parts.proj = q;
        if (!s) s = bl_model_write(src, &edges.parts, outdir, name, pj, err);
        ptq_edges_free(&edges);
        free(pj);
    }
    for (int i = 0; i < total; i++) bl_linear_free(&q[i]);
    free(q);
    qd_end(&dq);
    if (s || !writes) {
        memset(sum, 0, sizeof *sum);
        sum->seconds = bl_time_s() - t0;
        return s;
    }
    /* Whole-model accounting from what was written. */
    bl_model *out;
    if ((s = bl_model_load(outdir, NULL, &out, err))) return s;
    sum->bpw_layers = bits / weights;
    bl_model_bpw(out, NULL, &sum->bpw_model);
    sum->bytes = 0;
    for (int i = 0; i < out->tensors.n; i++) sum->bytes += out->tensors.t[i].nbytes;
    sum->seconds = bl_time_s() - t0;
    sum->kl_before = kl_before;
    sum->kl_after = kl_after;
    sum->blocks_resumed = resumed;
    sum->spilled = spilled;
    bl_model_free(out);
    return BL_OK;
}
