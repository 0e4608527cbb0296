/* Options, error measure, bit budgets and importance scaling shared by the fitting methods. */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bl_fit_opts_default(bl_fit_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 0;
    o->iters = 0;      /* stop on convergence (BL_FIT_* in fit.h) */
    o->inner = 0;      /* 3 */
    o->nmf = true;     /* OneBit recommends the NMF initialization (ALGORITHMS.md §2) */
    o->adam_steps = 0;
    o->adam_lr = 0.0f;
}

const char *bl_fit_phase_name(bl_fit_phase p) {
    static const char *const names[BL_FIT_PHASES] = {
        [BL_FIT_PHASE_INIT] = "init",       [BL_FIT_PHASE_GRAM] = "gram",
        [BL_FIT_PHASE_RHS] = "rhs",         [BL_FIT_PHASE_FACTOR] = "factor",
        [BL_FIT_PHASE_SOLVE] = "solve",     [BL_FIT_PHASE_PROJECT] = "project",
    };
    return (unsigned)p < BL_FIT_PHASES ? names[p] : "?";
}

double bl_rel_err(const float *W, const float *What, int64_t m, int64_t n) {
    double num = 0.0, den = 0.0;
    int64_t total = m * n;
    for (int64_t i = 0; i < total; i++) {
        double d = (double)W[i] - (double)What[i];
        num += d * d;
        den += (double)W[i] * (double)W[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

bl_status bl_qf_sqrt_importance(const float *imp, int64_t n, float **out, bl_err *err) {
    *out = NULL;
    if (!imp) return BL_OK;
    float *s = malloc(sizeof(float) * (size_t)n);
    if (!s) return bl_fail(err, BL_ERR_NOMEM, "importance scaling (%lld)", (long long)n);
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(imp[i]) || imp[i] < 0.0f) {
            free(s);
            return bl_fail(err, BL_ERR_ARG, "importance[%lld] = %g is not a finite value >= 0",
                           (long long)i, (double)imp[i]);
        }
        mean += imp[i];
    }
    mean /= (double)n;
    /* A zero importance would make the scaling singular (it is divided back out of a and b);
     * floor at 1e-8 of the mean as the reference's +1e-8 does. All zero → uniform. */
    double floor_v = mean > 0.0 ? 1e-8 * mean : 1.0;
    for (int64_t i = 0; i < n; i++) {
        double v = imp[i] > floor_v ? imp[i] : floor_v;
        s[i] = (float)sqrt(v);
    }
    *out = s;
    return BL_OK;
}

void bl_qf_scale_rows_cols(const float *W, int64_t m, int64_t n, const float *so, const float *si,
                           float *T) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        float a = so ? so[i] : 1.0f;
        const float *w = W + i * n;
        float *t = T + i * n;
        if (si)
            for (int64_t j = 0; j < n; j++) t[j] = a * w[j] * si[j];
        else
            for (int64_t j = 0; j < n; j++) t[j] = a * w[j];
    }
}
