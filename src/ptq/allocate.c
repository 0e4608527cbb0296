/* Per-matrix bit allocation (quantize --allocate): every projection's middle dimension is chosen
 * so that the summed sensitivity-weighted error is smallest under the uniform run's total stored
 * bits.
 *
 *  1. Curve. Each projection is fitted at a few middle dimensions around the uniform one
 *     (CURVE_FACTORS × k₀) with a short fixed ADMM schedule (CURVE_ITERS outer iterations; the
 *     errors are biased up against the full fit, about alike at every size, so their differences
 *     still rank the choices), with the same importances / H as the final fit. Its error is the
 *     absolute weighted error wrel²·wnorm2 — under H = XᵀX/N the output error ‖(W − Ŵ)X‖²/N,
 *     weighted per output row by the output-gradient importance — times the projection's
 *     sensitivity s = mean squared output gradient (so that Σ s·o_r·‖e_r X‖² estimates the loss
 *     increase to first order, Fisher-style); s = 1 without gradient statistics.
 *  2. Greedy. Every projection starts at its smallest point; the step with the largest error
 *     decrease per added bit (along the lower convex hull of each curve) is taken while it fits
 *     the budget Σ bits(k₀). What is left (less than one step) goes, mid by mid, to the
 *     projection whose next step has the steepest slope, so the total lands within one middle
 *     unit (m + n + 16 bits for DBF) of the budget.
 *  3. The recipe then fits every projection once, fully, at its chosen middle dimension.
 * Deterministic: the curve fits are seeded per projection and point, ties go to the lower index. */
#include "ptq/ptq_internal.h"
#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double CURVE_FACTORS[] = {0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0};
enum { N_POINTS = sizeof CURVE_FACTORS / sizeof CURVE_FACTORS[0], CURVE_ITERS = 30 };

typedef struct {
    int n;                /* points on the lower convex hull, increasing bits */
    int64_t mid[N_POINTS];
    double bits[N_POINTS], err[N_POINTS];
    int at;               /* chosen point */
} curve;

static int64_t uniform_mid(const bl_quant_opts *o, int64_t m, int64_t n) {
    bl_layer_fit_opts lo;
    bl_layer_fit_opts_default(&lo);
    lo.method = o->method;
    lo.bpw = o->bpw;
    return bl_layer_mid(&lo, m, n);
}

static uint64_t bits_at(const bl_format_ops *f, const bl_method *me, int64_t m, int64_t n,
                        int64_t mid) {
    bl_format_params p = me->params;
    p.mid = mid;
    return bl_format_stored_bits(f, m, n, &p);
}

/* Keeps the points of the lower convex hull of (bits, err) with err strictly decreasing. */
static void hull(curve *c) {
    int k = 0;
    for (int i = 0; i < c->n; i++) {
        if (k > 0 && c->err[i] >= c->err[k - 1]) continue; /* not better for more bits */
        while (k >= 2) {
            /* drop k−1 when it lies on or above the segment (k−2, i) */
            const double s1 = (c->err[k - 2] - c->err[k - 1]) / (c->bits[k - 1] - c->bits[k - 2]);
            const double s2 = (c->err[k - 1] - c->err[i]) / (c->bits[i] - c->bits[k - 1]);
            if (s2 >= s1) k--;
            else break;
        }
        c->mid[k] = c->mid[i];
        c->bits[k] = c->bits[i];
        c->err[k] = c->err[i];
        k++;
    }
    c->n = k;
}

typedef struct {
    const float *W;
    int64_t m, n;
    bl_layer_fit_opts lo;
    bl_status st;
    bl_err err;
    double e; /* weighted absolute error */
} point_task;

static void run_point(point_task *t) {
    bl_linear L;
    bl_layer_fit_result *r = malloc(sizeof *r);
    if (!r) {
        t->st = bl_fail(&t->err, BL_ERR_NOMEM, "out of memory");
        return;
    }
    t->st = bl_fit_layer(t->W, t->m, t->n, &t->lo, &L, r, &t->err);
    if (!t->st) {
        t->e = r->wrel_err * r->wrel_err * r->wnorm2;
        bl_linear_free(&L);
    }
    free(r);
}

/* Step 1 for the projections of layer l: curves[p] filled. */
static bl_status layer_curves(const bl_model *src, const bl_quant_opts *o, ptq_calib *cal,
                              float *const *out_imp, const double *sens, int l, curve *curves,
                              bl_err *err) {
    const bl_format_ops *f = o->method.format;
    float *W[BL_PROJ_COUNT] = {0}, *imp[BL_PROJ_COUNT] = {0};
    point_task *tasks = calloc((size_t)BL_PROJ_COUNT * N_POINTS, sizeof *tasks);
    bl_status s = tasks ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    int nt = 0;
    for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
        const bl_linear *L = &src->layers[l].proj[p];
        W[p] = malloc(sizeof(float) * (size_t)(L->m * L->n));
        imp[p] = malloc(sizeof(float) * (size_t)L->n);
        if (!W[p] || !imp[p]) s = bl_fail(err, BL_ERR_NOMEM, "out of memory for layer %d", l);
        if (!s) s = L->ops->to_dense(L, W[p], err);
        if (s) break;
        bl_layer_fit_opts lo;
        ptq_layer_opts(o, cal, out_imp, l, p, L->n, imp[p], &lo);
        const int64_t k0 = uniform_mid(o, L->m, L->n);
        curve *c = &curves[p];
        c->n = 0;
        for (int i = 0; i < N_POINTS; i++) {
            int64_t k = (int64_t)llround(CURVE_FACTORS[i] * (double)k0);
            k = k < 1 ? 1 : k > BL_MAX_MID ? BL_MAX_MID : k;
            if (c->n > 0 && k <= c->mid[c->n - 1]) continue;
            c->mid[c->n] = k;
            c->bits[c->n] = (double)bits_at(f, &o->method, L->m, L->n, k);
            point_task *t = &tasks[nt++];
            t->W = W[p];
            t->m = L->m;
            t->n = L->n;
            t->lo = lo;
            t->lo.method.params.mid = k;
            t->lo.n_threads = 1; /* the fits run side by side, one per thread */
            /* never longer than the final fit (a fixed count below CURVE_ITERS) */
            t->lo.fit.iters = o->fit.iters > 0 && o->fit.iters < CURVE_ITERS ? o->fit.iters
                                                                            : CURVE_ITERS;
            t->lo.fit.seed = lo.fit.seed + (uint64_t)i;
            c->n++;
        }
    }
    const int n_threads = bl_resolve_threads(o->n_threads);
    if (!s) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
        for (int i = 0; i < nt; i++) run_point(&tasks[i]);
    }
    for (int i = 0, p = 0, j = 0; i < nt && !s; i++) {
        if (tasks[i].st) {
            if (err) *err = tasks[i].err;
            s = tasks[i].st;
            break;
        }
        while (j >= curves[p].n) {
            p++;
            j = 0;
        }
        curves[p].err[j++] = tasks[i].e * sens[l * BL_PROJ_COUNT + p];
    }
    for (int p = 0; p < BL_PROJ_COUNT && !s; p++) hull(&curves[p]);
    for (int p = 0; p < BL_PROJ_COUNT; p++) {
        free(W[p]);
        free(imp[p]);
    }
    free(tasks);
    return s;
}

/* The slope of curve c's next hull step (error decrease per bit), or −1 at its end. */
static double next_slope(const curve *c) {
    if (c->at + 1 >= c->n) return -1.0;
    return (c->err[c->at] - c->err[c->at + 1]) / (c->bits[c->at + 1] - c->bits[c->at]);
}

bl_status ptq_allocate(const bl_model *src, const bl_quant_opts *o, ptq_calib *cal,
                       float *const *out_imp, const double *sens, int64_t *mids, bl_err *err) {
    const bl_format_ops *f = o->method.format; /* has a middle dimension (checked by the recipe) */
    const int L = src->cfg.n_layers, total = L * BL_PROJ_COUNT;
    curve *cv = calloc((size_t)total, sizeof *cv);
    if (!cv) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = BL_OK;
    double budget = 0.0, used = 0.0;
    for (int l = 0; l < L && !s; l++) {
        if (cal && ptq_hessian_fit(o)) s = ptq_calib_gram(src, o, cal, l, err);
        if (!s) s = layer_curves(src, o, cal, out_imp, sens, l, cv + l * BL_PROJ_COUNT, err);
        if (o->progress) o->progress(o->progress_ctx, (double)(l + 1) / (double)L);
    }
    for (int i = 0; i < total && !s; i++) {
        const bl_linear *Li = &src->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT];
        budget += (double)bits_at(f, &o->method, Li->m, Li->n, uniform_mid(o, Li->m, Li->n));
        cv[i].at = 0;
        used += cv[i].bits[0];
    }
    /* 2. greedy by marginal gain per bit */
    while (!s) {
        int best = -1;
        double bs = 0.0;
        for (int i = 0; i < total; i++) {
            const double sl = next_slope(&cv[i]);
            if (sl <= 0.0 || used + cv[i].bits[cv[i].at + 1] - cv[i].bits[cv[i].at] > budget)
                continue;
            if (best < 0 || sl > bs) {
                best = i;
                bs = sl;
            }
        }
        if (best < 0) break;
        used += cv[best].bits[cv[best].at + 1] - cv[best].bits[cv[best].at];
        cv[best].at++;
    }
    for (int i = 0; i < total && !s; i++) mids[i] = cv[i].mid[cv[i].at];
    /* the rest, mid by mid, to the steepest next step (the last segment's slope at a curve's end) */
    while (!s) {
        int best = -1;
        double bs = -1.0, step_bits = 0.0;
        for (int i = 0; i < total; i++) {
            const bl_linear *Li = &src->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT];
            const double db = (double)bits_at(f, &o->method, Li->m, Li->n, mids[i] + 1) -
                              (double)bits_at(f, &o->method, Li->m, Li->n, mids[i]);
            if (mids[i] >= BL_MAX_MID || used + db > budget) continue;
            const curve *c = &cv[i];
            const int a = c->at + 1 < c->n ? c->at : c->at - 1;
            const double sl = a >= 0 && a + 1 < c->n
                                  ? (c->err[a] - c->err[a + 1]) / (c->bits[a + 1] - c->bits[a])
                                  : 0.0;
            if (best < 0 || sl > bs) {
                best = i;
                bs = sl;
                step_bits = db;
            }
        }
        if (best < 0) break;
        /* as many units as fit, at most up to the next hull point */
        const curve *c = &cv[best];
        int64_t room = (int64_t)floor((budget - used) / step_bits);
        if (c->at + 1 < c->n && c->mid[c->at + 1] - 1 - mids[best] < room)
            room = c->mid[c->at + 1] - 1 - mids[best];
        if (room < 1) room = 1;
        const bl_linear *Lb = &src->layers[best / BL_PROJ_COUNT].proj[best % BL_PROJ_COUNT];
        const double b0 = (double)bits_at(f, &o->method, Lb->m, Lb->n, mids[best]);
        mids[best] += room;
        used += (double)bits_at(f, &o->method, Lb->m, Lb->n, mids[best]) - b0;
        if (c->at + 1 < c->n && mids[best] >= c->mid[c->at + 1]) cv[best].at++;
    }
    if (!s && o->on_alloc) {
        for (int i = 0; i < total; i++) {
            const int l = i / BL_PROJ_COUNT, p = i % BL_PROJ_COUNT;
            const bl_linear *Li = &src->layers[l].proj[p];
            const int64_t k0 = uniform_mid(o, Li->m, Li->n);
            bl_alloc_entry e = {.m = Li->m, .n = Li->n, .mid_uniform = k0, .mid = mids[i],
                                .sensitivity = sens[i]};
            bl_proj_name(l, p, e.name, sizeof e.name);
            const double mn = (double)Li->m * (double)Li->n;
            e.bpw_uniform = (double)bits_at(f, &o->method, Li->m, Li->n, k0) / mn;
            e.bpw = (double)bits_at(f, &o->method, Li->m, Li->n, mids[i]) / mn;
            e.budget_bits = budget;
            e.allocated_bits = used;
            o->on_alloc(o->on_alloc_ctx, &e);
        }
    }
    free(cv);
    return s;
}
