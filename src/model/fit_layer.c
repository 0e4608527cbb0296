/* One weight matrix fitted with one method into a layer (bl_fit_layer): the single place where a
 * method name, a bpw target and the fitting options become a bl_linear, used by whole-model
 * quantization and by `bitllm fit`. Measures what the layer stores and how close it is. */
#include "bitllm/quantize.h"
#include "core/parallel.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_layer_fit_opts_default(bl_layer_fit_opts *o) {
    memset(o, 0, sizeof *o);
    bl_method_parse("onebit", &o->method, NULL);
    bl_fit_opts_default(&o->fit);
}

double bl_layer_target_bpw(const bl_layer_fit_opts *o, int64_t m, int64_t n) {
    return o->bpw > 0 ? o->bpw : 1.0 + 16.0 / (double)n + 16.0 / (double)m;
}

int64_t bl_layer_mid(const bl_layer_fit_opts *o, int64_t m, int64_t n) {
    const bl_format_ops *f = o->method.format;
    if (!f || !f->mid_from_bpw) return 0;
    if (o->method.params.mid > 0) return o->method.params.mid;
    return bl_format_mid_for_bpw(f, m, n, &o->method.params, bl_layer_target_bpw(o, m, n));
}

bl_status bl_layer_fit_check(const bl_layer_fit_opts *o, int64_t m, int64_t n, const char *name,
                             bl_err *err) {
    if (m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad shape %lld x %lld", name, (long long)m,
                       (long long)n);
    const bl_format_ops *f = o->method.format;
    if (!f) return bl_fail(err, BL_ERR_ARG, "%s: no quantization method", name);
    if (!f->fit || !f->random)
        return bl_fail(err, BL_ERR_ARG, "%s: %s layers are not fitted", name, f->name);
    if (!f->mid_from_bpw) return BL_OK;
    const bl_format_params *p = &o->method.params;
    if (p->mid < 0 || p->mid > BL_MAX_MID)
        return bl_fail(err, BL_ERR_ARG, "%s: bad middle dimension %lld", name, (long long)p->mid);
    if (p->mid > 0) return BL_OK; /* an explicit middle dimension is its own bit budget */
    bl_format_params p1 = *p;
    p1.mid = 1;
    double min_bpw = (double)bl_format_stored_bits(f, m, n, &p1) / ((double)m * (double)n);
    double want = bl_layer_target_bpw(o, m, n);
    if (min_bpw > want * (1.0 + 1e-9)) {
        char spec[128];
        bl_method_spec(&o->method, spec, sizeof spec);
        return bl_fail(err, BL_ERR_ARG,
                       "%s (%lld x %lld): target %.4f bpw is below the %.4f bpw that %s needs at "
                       "its smallest middle dimension; raise --bpw or lower its other "
                       "parameters (--envelope-rank/--paths)",
                       name, (long long)m, (long long)n, want, min_bpw, spec);
    }
    return BL_OK;
}

/* Fits W, or with o->random_factors (W unused) draws random data of the same shapes. */
static bl_status fit_any(const bl_layer_fit_opts *o, const float *W, int64_t m, int64_t n,
                         const bl_fit_opts *fo, bl_linear *out, bl_err *err) {
    const bl_format_ops *f = o->method.format;
    bl_format_params p = o->method.params;
    if (f->mid_from_bpw) p.mid = bl_layer_mid(o, m, n);
    return o->random_factors ? f->random(m, n, &p, fo->seed, out, err)
                             : f->fit(W, m, n, &p, fo, out, err);
}

/* Relative errors of Ŵ (in What) against W: plain, and weighted by the fit's importances
 * (o_r·i_c per entry, or the output error tr(diag(o)·E·H·Eᵀ)/tr(diag(o)·W·H·Wᵀ) under an
 * activation metric H), and the weighted squared norm of W the latter is relative to. */
static bl_status measure(const float *W, const float *What, int64_t m, int64_t n,
                         const bl_fit_opts *fo, bl_layer_fit_result *res, bl_err *err) {
    res->rel_err = bl_rel_err(W, What, m, n);
    res->wrel_err = res->rel_err;
    double w2 = 0.0;
    for (size_t i = 0; i < (size_t)m * (size_t)n; i++) w2 += (double)W[i] * W[i];
    res->wnorm2 = w2;
    if (fo->H) {
        const size_t mn = (size_t)m * (size_t)n;
        float *E = malloc(sizeof(float) * mn), *EH = malloc(sizeof(float) * mn);
        if (!E || !EH) {
            free(E);
            free(EH);
            return bl_fail(err, BL_ERR_NOMEM, "weighted error (%lld x %lld)", (long long)m,
                           (long long)n);
        }
        double num = 0.0, den = 0.0;
        const float *ow = fo->out_importance;
        for (size_t i = 0; i < mn; i++) E[i] = W[i] - What[i];
        bl_sgemm(CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0f, E, (int)n, fo->H,
                 (int)n, 0.0f, EH, (int)n, bl_pool_omp_current());
        for (size_t i = 0; i < mn; i++) num += (ow ? fmax(ow[i / (size_t)n], 0.0) : 1.0) *
                                               (double)E[i] * EH[i];
        bl_sgemm(CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)n, 1.0f, W, (int)n, fo->H,
                 (int)n, 0.0f, EH, (int)n, bl_pool_omp_current());
        for (size_t i = 0; i < mn; i++) den += (ow ? fmax(ow[i / (size_t)n], 0.0) : 1.0) *
                                               (double)W[i] * EH[i];
        free(E);
        free(EH);
        res->wnorm2 = den;
        res->wrel_err = den > 0.0 ? sqrt(fmax(num, 0.0) / den) : res->rel_err;
    } else if (fo->in_importance || fo->out_importance) {
        double num = 0.0, den = 0.0;
        for (int64_t i = 0; i < m; i++) {
            const double wo = fo->out_importance ? fmax(fo->out_importance[i], 0.0) : 1.0;
            double rn = 0.0, rd = 0.0;
            for (int64_t j = 0; j < n; j++) {
                const double wi = fo->in_importance ? fmax(fo->in_importance[j], 0.0) : 1.0;
                const double d = (double)W[i * n + j] - What[i * n + j];
                rn += wi * d * d;
                rd += wi * (double)W[i * n + j] * W[i * n + j];
            }
            num += wo * rn;
            den += wo * rd;
        }
        res->wnorm2 = den;
        res->wrel_err = den > 0.0 ? sqrt(num / den) : (num == 0.0 ? 0.0 : INFINITY);
    }
    return BL_OK;
}

bl_status bl_fit_layer(const float *W, int64_t m, int64_t n, const bl_layer_fit_opts *o,
                       bl_linear *out, bl_layer_fit_result *res, bl_err *err) {
    memset(out, 0, sizeof *out);
    memset(res, 0, sizeof *res);
    res->rel_err = res->wrel_err = NAN;
    bl_status s = bl_layer_fit_check(o, m, n, "bl_fit_layer", err);
    if (s) return s;
    if (!W && !o->random_factors) return bl_fail(err, BL_ERR_ARG, "bl_fit_layer: NULL weights");
    const double t0 = bl_time_s(), c0 = bl_cpu_time_s();
    bl_fit_opts fo = o->fit;
    fo.trace = &res->trace;
    memset(&res->trace, 0, sizeof res->trace);
    /* OpenBLAS stays on one thread (never switched process-wide: fits may run side by side on
     * several threads, as bl_quantize_model does); the large products of a fit are split across
     * the calling thread's OpenMP threads by bl_qf_gemm, and run whole on one thread when the fit
     * itself runs inside a parallel region. */
    bl_blas_single_thread(); /* before any of the fit's BLAS/LAPACK calls, not at the first
                              * product: a call made on OpenBLAS's threads before then would
                              * round by their split (and race with the switch) */
    const int omp_prev = bl_omp_threads_begin(o->n_threads);
    s = fit_any(o, W, m, n, &fo, out, err);
    bl_omp_threads_end(omp_prev);
    res->seconds = bl_time_s() - t0;
    res->cpu_seconds = bl_cpu_time_s() - c0;
    if (s) return s;
    res->mid = out->params.mid;
    res->bpw = bl_linear_bpw(out);
    res->iters = res->trace.iters;
    if (o->random_factors) return BL_OK;
    float *What = malloc(sizeof(float) * (size_t)m * (size_t)n);
    if (!What) s = bl_fail(err, BL_ERR_NOMEM, "bl_fit_layer: %lld x %lld reconstruction",
                           (long long)m, (long long)n);
    if (!s) s = out->ops->to_dense(out, What, err);
    if (!s) s = measure(W, What, m, n, &fo, res, err);
    free(What);
    if (s) bl_linear_free(out);
    return s;
}

bl_status bl_model_matrix(const bl_model *m, const char *name, float **W, int64_t *rows,
                          int64_t *cols, bl_err *err) {
    *W = NULL;
    *rows = *cols = 0;
    /* a decoder projection by its Hugging Face name, whatever the file calls it */
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            char hf[128];
            bl_proj_name(l, p, hf, sizeof hf);
            strcat(hf, ".weight");
            if (strcmp(hf, name) != 0) continue;
            const bl_linear *L = &m->layers[l].proj[p];
            float *w = malloc(sizeof(float) * (size_t)L->m * (size_t)L->n);
            if (!w) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", name);
            bl_status s = L->ops->to_dense(L, w, err);
            if (s) {
                free(w);
                return s;
            }
            *W = w;
            *rows = L->m;
            *cols = L->n;
            return BL_OK;
        }
    /* any other 2-D tensor of the checkpoint by its stored name */
    const bl_tensor *t = bl_tensor_set_find(&m->tensors, name);
    if (!t)
        return bl_fail(err, BL_ERR_ARG,
                       "%s: no tensor '%s' (projections are named like "
                       "model.layers.0.mlp.down_proj.weight)", m->path, name);
    if (t->ndim != 2)
        return bl_fail(err, BL_ERR_ARG, "%s: tensor '%s' has %d dimensions, not 2", m->path, name,
                       t->ndim);
    bl_status s = bl_tensor_to_f32(t, W, err);
    if (s) return s;
    *rows = t->shape[0];
    *cols = t->shape[1];
    return BL_OK;
}
