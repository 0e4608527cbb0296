/* Whole-model post-training quantization, as a recipe: calibration (input second moments,
 * output-gradient importance; src/ptq/calibrate.c, importance.c) → per-layer initial fits →
 * optional stages → the checkpoint with its provenance (provenance.c). Layers are fitted one at
 * a time from their dense weights (one f32 copy of one layer at a time); the fitted layers are
 * small (≈1 bit/weight) and are kept until the checkpoint is written. With random_factors the weights are never read: each
 * layer gets random factors of the fitted shapes (benchmarks of synthetic models at real sizes). */
#include "bitllm/quantize.h"
#include "model/model_internal.h"
#include "ptq/ptq_internal.h"
#include "ptq/quantize_dist.h"
#include "core/parallel.h"

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

bl_status bl_quantize_model(const bl_model *src, const bl_quant_opts *o, const char *outdir,
                            bl_quant_summary *sum, bl_err *err) {
    const bl_config *c = &src->cfg;
    const double t0 = bl_time_s();
    const int total = c->n_layers * BL_PROJ_COUNT;
    if (o->random_factors && ((o->calib_ids && o->n_calib > 0) || o->out_importance))
        return bl_fail(err, BL_ERR_ARG,
                       "random factors never read the weights: calibration and gradient "
                       "statistics make no sense with them");
    bl_linear *q = calloc((size_t)total, sizeof *q);
    if (!q) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    ptq_calib cal;
    float **grads = NULL;
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
    qd_ctx dq; /* under MPI: which projections this rank fits (quantize_dist.h) */
    const bl_layer_fit_opts plan_lo = layer_opts(o);
    if (!s) s = qd_begin(&dq, src, &plan_lo, err);
    if (s) {
        free(q);
        return s;
    }
    /* 1. calibration */
    float *const *out_imp = o->out_importance;
    if (use_calib && o->grad_importance && !out_imp) {
        s = bl_quant_grad_importance(src, o->calib_ids, o->n_calib, o->calib_ctx, &grads, err);
        out_imp = grads;
    }
    if (use_calib && !s) s = ptq_calib_collect(src, o, &cal, err);
    else if (use_calib) memset(&cal, 0, sizeof cal);
    /* 2. the initial fit of every layer */
    double bits = 0, weights = 0;
    float *W = NULL, *imp = NULL;
    bl_layer_fit_result *res = malloc(sizeof *res);
    if (!res) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers && !s; l++) {
        if (use_calib && o->activation_aware &&
            bl_method_uses(&o->method, false, BL_QP_ACTIVATION_AWARE) && qd_layer_mine(&dq, l))
            s = ptq_calib_gram(src, o, &cal, l, err);
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            if (!qd_mine(&dq, l * BL_PROJ_COUNT + p)) continue;
            const bl_linear *L = &src->layers[l].proj[p];
            size_t mn = (size_t)(L->m * L->n);
            free(W);
            free(imp);
            W = imp = NULL;
            if (!o->random_factors) { /* random factors must not page in a multi-GB source */
                W = malloc(mn * sizeof(float));
                imp = malloc((size_t)L->n * sizeof(float));
                if (!W || !imp) {
                    s = bl_fail(err, BL_ERR_NOMEM, "out of memory for layer %d", l);
                    break;
                }
                if ((s = L->ops->to_dense(L, W, err))) break;
            }
            bl_layer_fit_opts lo = layer_opts(o);
            lo.fit.seed = o->fit.seed + (uint64_t)(l * BL_PROJ_COUNT + p) * 7919u;
            if (use_calib) {
                ptq_calib_in_importance(&cal, l, p, L->n, imp);
                lo.fit.in_importance = imp;
                if (o->activation_aware) lo.fit.H = cal.gram[ptq_proj_input(p)];
            }
            if (out_imp && bl_method_uses(&o->method, false, BL_QP_CALIB))
                lo.fit.out_importance = out_imp[l * BL_PROJ_COUNT + p];
            bl_linear *out = &q[l * BL_PROJ_COUNT + p];
            if ((s = bl_fit_layer(W, L->m, L->n, &lo, out, res, err))) break;
            const void *src_bytes;
            size_t src_n;
            if (bl_linear_dense_bytes(L, &src_bytes, &src_n))
                bl_tensor_set_release(&src->tensors, src_bytes, src_n);
            bits += res->bpw * (double)mn;
            weights += (double)mn;
            qd_done(&dq, l * BL_PROJ_COUNT + p, res);
            if (o->on_layer) {
                char name[96];
                bl_proj_name(l, p, name, sizeof name);
                o->on_layer(o->on_layer_ctx, name, L->m, L->n, res);
            }
        }
    }
    free(W);
    free(imp);
    free(res);
    if (use_calib) ptq_calib_free(&cal);
    bl_quant_importance_free(src, grads);
    /* under MPI: rank 0 gathers every rank's layers; the stages and the checkpoint are its own */
    if (!s) s = qd_gather(&dq, src, o, q, &bits, &weights, err);
    const bool writes = qd_writes(&dq);
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
        s = bl_model_write(src, q, outdir, name, pj, err);
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
    bl_model_free(out);
    return BL_OK;
}
