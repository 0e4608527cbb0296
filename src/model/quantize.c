/* Whole-model post-training quantization. Decoder layers are fitted one after the other from
 * their dense weights, the seven projections of a layer side by side on the options' threads (one
 * f32 copy per projection in flight); the fitted layers are small (≈1 bit/weight) and are kept
 * until the checkpoint is written. With random_factors the weights are never read: each
 * layer gets random factors of the fitted shapes (benchmarks of synthetic models at real sizes). */
#include "bitllm/quantize.h"
#include "model/model_internal.h"
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
    bl_fit_opts_default(&o->fit);
}

/* ---- calibration: per-input-channel second moments (and optionally XᵀX) ---- */

/* q/k/v read the same input, as do gate/up: statistics are kept per distinct input. */
enum { IN_ATTN, IN_O, IN_MLP, IN_DOWN, IN_COUNT };
static const int proj_input[BL_PROJ_COUNT] = {IN_ATTN, IN_ATTN, IN_ATTN, IN_O,
                                              IN_MLP,  IN_MLP,  IN_DOWN};

typedef struct {
    int n_layers;
    double *sumsq[IN_COUNT]; /* [layer][n] */
    int64_t width[IN_COUNT];
    int64_t count;           /* tokens seen (same for every input) */
    int gram_layer;          /* layer whose XᵀX is accumulated, or -1 */
    float *gram[IN_COUNT];   /* n×n for gram_layer */
} calib_stats;

static void observe(void *ctx, int layer, int proj, const float *x, int T, int64_t n) {
    calib_stats *c = ctx;
    /* Each distinct input is seen first by q (attn), o, gate (mlp) and down. */
    if (proj != BL_PROJ_Q && proj != BL_PROJ_O && proj != BL_PROJ_GATE && proj != BL_PROJ_DOWN)
        return;
    int in = proj_input[proj];
    double *ss = c->sumsq[in] + (size_t)layer * (size_t)n;
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) ss[j] += (double)x[(size_t)t * n + j] * x[(size_t)t * n + j];
    if (layer == 0 && proj == BL_PROJ_Q) c->count += T;
    if (layer == c->gram_layer && c->gram[in])
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, T, 1.0f, x, (int)n, 1.0f,
                    c->gram[in], (int)n);
}

static void calib_free(calib_stats *c) {
    for (int i = 0; i < IN_COUNT; i++) {
        free(c->sumsq[i]);
        free(c->gram[i]);
    }
}

static bl_status calib_run(const bl_model *m, const bl_quant_opts *o, calib_stats *c,
                           bl_err *err) {
    bl_state *st;
    int ctx = o->calib_ctx > 0 ? o->calib_ctx : 256;
    if (ctx > m->cfg.max_seq) ctx = m->cfg.max_seq;
    bl_status s = bl_state_new(m, ctx, ctx < 128 ? ctx : 128, o->n_threads, &st, err);
    if (s) return s;
    bl_state_set_observer(st, observe, c);
    int32_t *win = malloc((size_t)ctx * sizeof(int32_t));
    if (!win) {
        bl_state_free(st);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    const bool bos = m->cfg.bos_id >= 0;
    const size_t chunk = (size_t)ctx - (bos ? 1 : 0);
    for (size_t at = 0; at < o->n_calib && !s; at += chunk) {
        size_t len = o->n_calib - at < chunk ? o->n_calib - at : chunk;
        int w = 0;
        if (bos) win[w++] = m->cfg.bos_id;
        memcpy(win + w, o->calib_ids + at, len * sizeof(int32_t));
        bl_state_reset(st);
        s = bl_forward(st, win, w + (int)len, NULL, false, err);
        if (s)
            bl_fail_context(err, s, "calibration: window %zu (calibration tokens %zu to %zu)",
                            at / chunk + 1, at, at + len - 1);
    }
    free(win);
    bl_state_free(st);
    return s;
}

static bl_status calib_init(const bl_model *m, calib_stats *c, bl_err *err) {
    memset(c, 0, sizeof *c);
    c->n_layers = m->cfg.n_layers;
    c->gram_layer = -1;
    const int64_t qd = (int64_t)m->cfg.n_heads * m->cfg.head_dim;
    c->width[IN_ATTN] = m->cfg.dim;
    c->width[IN_O] = qd;
    c->width[IN_MLP] = m->cfg.dim;
    c->width[IN_DOWN] = m->cfg.hidden_dim;
    for (int i = 0; i < IN_COUNT; i++) {
        c->sumsq[i] = calloc((size_t)c->n_layers * (size_t)c->width[i], sizeof(double));
        if (!c->sumsq[i]) return bl_fail(err, BL_ERR_NOMEM, "out of memory for calibration");
    }
    return BL_OK;
}

/* H = XᵀX/N for every input of one layer (activation-aware MDBF), by a calibration pass. */
static bl_status calib_gram(const bl_model *m, const bl_quant_opts *o, calib_stats *c, int layer,
                            bl_err *err) {
    for (int i = 0; i < IN_COUNT; i++) {
        free(c->gram[i]);
        c->gram[i] = calloc((size_t)(c->width[i] * c->width[i]), sizeof(float));
        if (!c->gram[i]) return bl_fail(err, BL_ERR_NOMEM, "out of memory for XᵀX");
    }
    /* The pass also re-adds second moments: keep them unchanged by saving and restoring. */
    double *saved[IN_COUNT];
    for (int i = 0; i < IN_COUNT; i++) saved[i] = c->sumsq[i];
    calib_stats tmp = *c;
    bl_status s = calib_init(m, &tmp, err);
    tmp.gram_layer = layer;
    for (int i = 0; i < IN_COUNT; i++) tmp.gram[i] = c->gram[i];
    if (!s) s = calib_run(m, o, &tmp, err);
    for (int i = 0; i < IN_COUNT; i++) {
        free(tmp.sumsq[i]);
        c->sumsq[i] = saved[i];
        const int64_t n = c->width[i];
        float *H = c->gram[i];
        /* ssyrk filled the upper triangle: mirror it and divide by the token count. */
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = a; b < n; b++) {
                float v = H[a * n + b] / (float)(tmp.count ? tmp.count : 1);
                H[a * n + b] = H[b * n + a] = v;
            }
    }
    return s;
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

static cJSON *provenance(const bl_model *src, const bl_quant_opts *o) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "source", src->path);
    char name[64];
    bl_method_name(&o->method, name, sizeof name);
    cJSON_AddStringToObject(p, "method", name);
    if (bl_method_uses(&o->method, false, BL_QP_BPW)) {
        if (o->bpw > 0) bl_json_add_exact(p, "bpw_target", o->bpw); /* read back exactly */
        else cJSON_AddStringToObject(p, "bpw_target", "onebit");
    }
    /* the format parameters that an option sets, under the option's name */
    const bl_format_ops *f = o->method.format;
    for (int i = 0; i < f->n_params; i++)
        if (f->params[i].flag >= 0 &&
            bl_method_uses(&o->method, false, (bl_qparam)f->params[i].flag))
            cJSON_AddNumberToObject(p, bl_qparam_name((bl_qparam)f->params[i].flag),
                                    (double)bl_format_param_get(&f->params[i], &o->method.params));
    if (bl_method_uses(&o->method, false, BL_QP_ACTIVATION_AWARE))
        cJSON_AddBoolToObject(p, "activation_aware", o->activation_aware);
    if (bl_method_uses(&o->method, false, BL_QP_SVID))
        cJSON_AddStringToObject(p, "svid", o->fit.nmf ? "nmf" : "svd");
    if (o->random_factors) cJSON_AddBoolToObject(p, "random_factors", true);
    bl_json_add_u64(p, "seed", o->fit.seed);
    cJSON_AddNumberToObject(p, "iters", o->fit.iters);
    if (o->fit.max_iters > 0) cJSON_AddNumberToObject(p, "max_iters", o->fit.max_iters);
    if (o->fit.tol > 0) bl_json_add_exact(p, "tol", o->fit.tol);
    cJSON_AddNumberToObject(p, "calib_tokens", (double)o->n_calib);
    cJSON_AddBoolToObject(p, "gradient_importance", o->out_importance != NULL);
    if (o->provenance) cJSON_AddStringToObject(p, "command", o->provenance);
    return p;
}

/* One projection's fit, run on one thread: its own f32 copy of the weights, importance and
 * fitted layer; the outcome is reported through the task. */
typedef struct {
    const bl_model *src;
    const bl_quant_opts *o;
    const calib_stats *cal; /* NULL without calibration */
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
    bl_layer_fit_opts lo = layer_opts(o);
    lo.fit.seed = o->fit.seed + (uint64_t)(t->l * BL_PROJ_COUNT + t->p) * 7919u;
    if (!s && t->cal) {
        const int in = proj_input[t->p];
        const double *ss = t->cal->sumsq[in] + (size_t)t->l * (size_t)L->n;
        for (int64_t j = 0; j < L->n; j++)
            imp[j] = (float)(ss[j] / (double)(t->cal->count ? t->cal->count : 1)) + 1e-8f;
        lo.fit.in_importance = imp;
        if (o->activation_aware) lo.fit.H = t->cal->gram[in];
    }
    if (o->out_importance && bl_method_uses(&o->method, false, BL_QP_CALIB))
        lo.fit.out_importance = o->out_importance[t->l * BL_PROJ_COUNT + t->p];
    if (!s) s = bl_fit_layer(W, L->m, L->n, &lo, t->out, t->res, &t->err);
    free(W);
    free(imp);
    t->status = s;
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
    calib_stats cal;
    bool use_calib = o->calib_ids && o->n_calib > 0 && bl_method_uses(&o->method, false, BL_QP_CALIB);
    bl_status s = BL_OK;
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, bl_proj_hf_name(p));
            bl_layer_fit_opts lo = layer_opts(o);
            s = bl_layer_fit_check(&lo, src->layers[l].proj[p].m, src->layers[l].proj[p].n, name,
                                   err);
        }
    if (s) {
        free(q);
        return s;
    }
    if (use_calib) {
        s = calib_init(src, &cal, err);
        if (!s) s = calib_run(src, o, &cal, err);
    }
    double bits = 0, weights = 0;
    const int omp_prev = bl_omp_threads_begin(o->n_threads);
    const int n_threads = bl_resolve_threads(o->n_threads);
    bl_layer_fit_result *res = calloc(BL_PROJ_COUNT, sizeof *res); /* one per projection */
    if (!res) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers && !s; l++) {
        if (use_calib && o->activation_aware &&
            bl_method_uses(&o->method, false, BL_QP_ACTIVATION_AWARE))
            s = calib_gram(src, o, &cal, l, err);
        if (s) break;
        /* The seven projections of a layer are independent fits: they run side by side, one per
         * thread, each with single-threaded BLAS/LAPACK (OpenBLAS's process-wide thread count is
         * never changed) and each seeded by its position, so the result does not depend on the
         * thread count. Reports follow in projection order once the layer is done. */
        fit_task tasks[BL_PROJ_COUNT];
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            fit_task *t = &tasks[p];
            memset(t, 0, sizeof *t);
            t->src = src;
            t->o = o;
            t->cal = use_calib ? &cal : NULL;
            t->l = l;
            t->p = p;
            t->out = &q[l * BL_PROJ_COUNT + p];
            t->res = &res[p];
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
        for (int k = 0; k < BL_PROJ_COUNT; k++) fit_one(&tasks[fit_order[k]]);
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            const fit_task *t = &tasks[p];
            if (t->status) {
                if (err) *err = t->err;
                s = t->status;
                break;
            }
            const bl_linear *L = &src->layers[l].proj[p];
            const void *src_bytes;
            size_t src_n;
            if (bl_linear_dense_bytes(L, &src_bytes, &src_n))
                bl_tensor_set_release(&src->tensors, src_bytes, src_n);
            const double mn = (double)L->m * (double)L->n;
            bits += t->res->bpw * mn;
            weights += mn;
            if (o->on_layer) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, bl_proj_hf_name(p));
                o->on_layer(o->on_layer_ctx, name, L->m, L->n, t->res);
            }
        }
    }
    bl_omp_threads_end(omp_prev);
    free(res);
    if (use_calib) calib_free(&cal);
    if (!s) {
        cJSON *prov = provenance(src, o);
        char *pj = cJSON_PrintUnformatted(prov);
        cJSON_Delete(prov);
        char name[64];
        bl_method_name(&o->method, name, sizeof name);
        s = bl_model_write(src, q, outdir, name, pj, err);
        free(pj);
    }
    for (int i = 0; i < total; i++) bl_linear_free(&q[i]);
    free(q);
    if (s) return s;
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
