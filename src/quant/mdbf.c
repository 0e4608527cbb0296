/* DBF and MDBF fitting (ALGORITHMS.md §4, §5). Both run the same pipeline, so that DBF is exactly
 * MDBF with l = 1, P = 1 (A_env = a, Q_U ⊙ Q_V = μ, B_env = b):
 *
 *   1. importance scaling  T = diag(√o)·W·diag(√i)                         (§4)
 *   2. closed-form init per path on the running residual: rank-r TSVD, F₀ = UΣ^½, G₀ = Σ^½Vᵀ,
 *      each projected onto {S ⊙ TSVD_l(|·|)}                                  (§5)
 *   3. alternating ADMM per path on W minus the other paths (admm.c)        (§4)
 *   4. MDBF only: optional Adam on the envelopes, signs frozen (below)     (§5)
 *   5. scalings divided back out, gauge balanced, vectors rounded to FP16.
 *
 * DBF's reference code starts the ADMM from a random normal point (260 outer iterations). We start
 * DBF from the closed-form point too: on an LLM-like 1024×1024 matrix at 1 bpw it is as good or
 * better at every iteration count (rel_err 0.469 / 0.452 / 0.442 / 0.436 after 10 / 20 / 40 / 80
 * iterations against 0.476 / 0.455 / 0.443 / 0.436 from the random start), and it makes
 * DBF ≡ MDBF(l = 1, P = 1) exactly. */
#include "quant/qf_internal.h"
#include "bitllm/formats/dbf.h"
#include "bitllm/formats/mdbf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float ADAM_LR = 0.01f;    /* relative to each tensor's RMS, cosine-decayed */

/* A path's buffers, sized for its shape (malloc'd; free_mdbf_path releases them). On failure
 * nothing stays allocated and the pointers are NULL. */
static bool alloc_path(int64_t m, int64_t n, int64_t r, int l, bl_mdbf_path *out) {
    out->SA = malloc((size_t)m * (size_t)bl_sign_row_bytes(r));
    out->SB = malloc((size_t)r * (size_t)bl_sign_row_bytes(n));
    out->A_env = malloc(sizeof(float) * (size_t)(m * l));
    out->Q_U = malloc(sizeof(float) * (size_t)(r * l));
    out->Q_V = malloc(sizeof(float) * (size_t)(r * l));
    out->B_env = malloc(sizeof(float) * (size_t)(n * l));
    if (out->SA && out->SB && out->A_env && out->Q_U && out->Q_V && out->B_env) return true;
    free(out->SA), free(out->SB), free(out->A_env), free(out->Q_U), free(out->Q_V),
        free(out->B_env);
    memset(out, 0, sizeof *out);
    return false;
}

static void free_mdbf_path(bl_mdbf_path *p) {
    free(p->SA);
    free(p->SB);
    free(p->A_env);
    free(p->Q_U);
    free(p->Q_V);
    free(p->B_env);
    memset(p, 0, sizeof *p);
}

static void free_paths(bl_mdbf_path *ps, int P) {
    if (!ps) return;
    for (int p = 0; p < P; p++) free_mdbf_path(&ps[p]);
    free(ps);
}

/* Moves a fitted path into the stored representation. F = Zfᵀ (m×r) with Zf = S ⊙ (L·Rᵀ), so
 * A_env = R_f, Q_U = L_f scaled by 1/‖F column‖ (the normalization the ADMM used), S_A = S_fᵀ. */
static bl_status export_path(bl_qf_path *q, bl_mdbf_path *out, bl_err *err) {
    int64_t m = q->m, n = q->n, r = q->r;
    int l = q->l;
    memset(out, 0, sizeof *out);
    const bool ok = alloc_path(m, n, r, l, out);
    float *nrm = malloc(sizeof(float) * (size_t)r);
    if (!ok || !nrm) {
        free(nrm);
        free_mdbf_path(out);
        return bl_fail(err, BL_ERR_NOMEM, "MDBF output (%lldx%lld, r=%lld)", (long long)m,
                       (long long)n, (long long)r);
    }
    bl_qf_transpose_signs(q->f.env.sign, r, m, out->SA);
    memcpy(out->SB, q->g.env.sign, (size_t)r * (size_t)bl_sign_row_bytes(n));
    memcpy(out->A_env, q->f.env.R, sizeof(float) * (size_t)(m * l));
    memcpy(out->Q_V, q->g.env.L, sizeof(float) * (size_t)(r * l));
    memcpy(out->B_env, q->g.env.R, sizeof(float) * (size_t)(n * l));
    bl_qf_row_norms(q->f.Z, r, m, nrm);
    for (int64_t k = 0; k < r; k++) {
        float inv = 1.0f / (nrm[k] + 1e-12f);
        for (int j = 0; j < l; j++) out->Q_U[k * l + j] = q->f.env.L[k * l + j] * inv;
    }
    free(nrm);
    return BL_OK;
}

/* ---- step 4: gradient refinement of the envelopes with the sign matrices frozen ----
 * (ALGORITHMS.md §5, last step; OneCompression mdbf/gradient_refine.py). With
 * F = S_A ⊙ (A·Q_Uᵀ), G = S_B ⊙ (Q_V·Bᵀ) and D = ∂L/∂Ŵ (the residual, or residual·H under the
 * metric):
 *   ∂L/∂F = D·Gᵀ,  ∂L/∂G = Fᵀ·D,
 *   ∂L/∂A = (∂F ⊙ S_A)·Q_U,  ∂L/∂Q_U = (∂F ⊙ S_A)ᵀ·A,
 *   ∂L/∂Q_V = (∂G ⊙ S_B)·B,  ∂L/∂B = (∂G ⊙ S_B)ᵀ·Q_V   (constant factor 2 dropped: Adam is
 * invariant to gradient scale).
 * Adam (cosine-decayed learning rate, step sizes relative to each tensor's initial RMS) on the
 * envelope factors A_env, Q_U, Q_V, B_env of all P paths, signs frozen, minimizing
 * ‖T − Σ F_p G_p‖²_F (or tr(E·H·Eᵀ) under the metric). The loss is evaluated before every step
 * and after the last one; the best iterate is kept, so the result is never worse than the start. */

typedef struct {
    float *x;      /* the parameter (inside a bl_mdbf_path) */
    int64_t len;
    float *g, *m1, *m2, *best; /* views into shared arrays */
    float scale, eps;
} tensor;

static void unpack_signs(const uint8_t *bits, int64_t rows, int64_t cols, float *out) {
    int64_t rb = bl_sign_row_bytes(cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            out[i * cols + j] = 1.0f - 2.0f * (float)((bits[i * rb + (j >> 3)] >> (j & 7)) & 1);
}

/* out (rows×cols) = S ⊙ (X·Yᵀ), X rows×l, Y cols×l */
static void signed_product(const float *S, const float *X, const float *Y, int64_t rows,
                           int64_t cols, int l, float *out) {
    if (l > 1) bl_qf_gemm(false, true, rows, cols, l, 1.0f, X, l, Y, l, 0.0f, out, cols);
    for (int64_t i = 0; i < rows; i++) {
        float *o = out + i * cols;
        const float *s = S + i * cols;
        if (l == 1)
            for (int64_t j = 0; j < cols; j++) o[j] = s[j] * X[i] * Y[j];
        else
            for (int64_t j = 0; j < cols; j++) o[j] *= s[j];
    }
}

static void mul_inplace(float *a, const float *s, size_t len) {
    for (size_t i = 0; i < len; i++) a[i] *= s[i];
}

static double dot(const float *a, const float *b, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += (double)a[i] * b[i];
    return s;
}

static bl_status adam_envelopes(bl_mdbf_path *paths, int P, int64_t m, int64_t n, int64_t r,
                                int l, const float *T, const bl_qf_metric *mt, int steps,
                                float lr, bl_progress_fn progress, void *ctx, double base,
                                double span, bl_err *err) {
    const double b1 = 0.9, b2 = 0.999;
    size_t mr = (size_t)(m * r), rn = (size_t)(r * n), mn = (size_t)(m * n);
    int nt = 4 * P;
    size_t total = (size_t)P * (size_t)l * (size_t)(m + 2 * r + n);
    tensor *ts = calloc((size_t)nt, sizeof(tensor));
    float *state = malloc(sizeof(float) * total * 4);
    float *SA = malloc(sizeof(float) * mr * (size_t)P), *SB = malloc(sizeof(float) * rn * (size_t)P);
    float *F = malloc(sizeof(float) * mr * (size_t)P), *G = malloc(sizeof(float) * rn * (size_t)P);
    float *Y = malloc(sizeof(float) * mn), *D = mt ? malloc(sizeof(float) * mn) : Y;
    float *mscr = mt ? malloc(sizeof(float) * (size_t)m * (size_t)mt->k) : NULL;
    float *dF = malloc(sizeof(float) * mr), *dG = malloc(sizeof(float) * rn);
    bl_status st = BL_OK;
    if (!ts || !state || !SA || !SB || !F || !G || !Y || !D || !dF || !dG || (mt && !mscr)) {
        st = bl_fail(err, BL_ERR_NOMEM, "Adam refinement buffers");
        goto done;
    }
    memset(state, 0, sizeof(float) * total * 4);
    size_t off = 0;
    for (int p = 0; p < P; p++) {
        float *xs[4] = {paths[p].A_env, paths[p].Q_U, paths[p].Q_V, paths[p].B_env};
        int64_t lens[4] = {m * l, r * l, r * l, n * l};
        for (int k = 0; k < 4; k++) {
            tensor *t = &ts[4 * p + k];
            t->x = xs[k];
            t->len = lens[k];
            t->g = state + off;
            t->m1 = state + total + off;
            t->m2 = state + 2 * total + off;
            t->best = state + 3 * total + off;
            t->scale = (float)bl_qf_rms(t->x, t->len, 1);
            memcpy(t->best, t->x, sizeof(float) * (size_t)t->len);
            off += (size_t)t->len;
        }
        unpack_signs(paths[p].SA, m, r, SA + (size_t)p * mr);
        unpack_signs(paths[p].SB, r, n, SB + (size_t)p * rn);
    }
    double best = INFINITY;
    for (int step = 0; step <= steps; step++) {
        /* forward: Y = Σ F_p G_p − T */
        memcpy(Y, T, sizeof(float) * mn);
        for (int p = 0; p < P; p++) {
            float *Fp = F + (size_t)p * mr, *Gp = G + (size_t)p * rn;
            signed_product(SA + (size_t)p * mr, paths[p].A_env, paths[p].Q_U, m, r, l, Fp);
            signed_product(SB + (size_t)p * rn, paths[p].Q_V, paths[p].B_env, r, n, l, Gp);
            bl_qf_gemm(false, false, m, n, r, 1.0f, Fp, r, Gp, n, p == 0 ? -1.0f : 1.0f, Y, n);
        }
        double loss;
        if (mt) {
            bl_qf_metric_pow(mt, Y, m, 1.0, mscr, D);
            loss = dot(Y, D, mn);
        } else {
            loss = dot(Y, Y, mn);
        }
        if (!isfinite(loss)) break; /* keep the best finite iterate */
        if (loss < best) {
            best = loss;
            for (int k = 0; k < nt; k++)
                memcpy(ts[k].best, ts[k].x, sizeof(float) * (size_t)ts[k].len);
        }
        if (step == steps) break;
        /* backward */
        for (int p = 0; p < P; p++) {
            float *Fp = F + (size_t)p * mr, *Gp = G + (size_t)p * rn;
            tensor *t = &ts[4 * p];
            bl_qf_gemm(false, true, m, r, n, 1.0f, D, n, Gp, n, 0.0f, dF, r);
            mul_inplace(dF, SA + (size_t)p * mr, mr);
            bl_qf_gemm(false, false, m, l, r, 1.0f, dF, r, paths[p].Q_U, l, 0.0f, t[0].g, l);
            bl_qf_gemm(true, false, r, l, m, 1.0f, dF, r, paths[p].A_env, l, 0.0f, t[1].g, l);
            bl_qf_gemm(true, false, r, n, m, 1.0f, Fp, r, D, n, 0.0f, dG, n);
            mul_inplace(dG, SB + (size_t)p * rn, rn);
            bl_qf_gemm(false, false, r, l, n, 1.0f, dG, n, paths[p].B_env, l, 0.0f, t[2].g, l);
            bl_qf_gemm(true, false, n, l, r, 1.0f, dG, n, paths[p].Q_V, l, 0.0f, t[3].g, l);
        }
        /* Adam step, cosine-decayed, relative to each tensor's initial RMS */
        double lr_t = lr * 0.5 * (1.0 + cos(M_PI * (double)step / (double)steps));
        double c1 = 1.0 - pow(b1, step + 1), c2 = 1.0 - pow(b2, step + 1);
        for (int k = 0; k < nt; k++) {
            tensor *t = &ts[k];
            if (step == 0) t->eps = (float)(1e-8 * bl_qf_rms(t->g, t->len, 1)) + 1e-30f;
            float sc = t->scale > 0.0f ? t->scale : 1e-3f;
            for (int64_t i = 0; i < t->len; i++) {
                double gi = t->g[i];
                t->m1[i] = (float)(b1 * t->m1[i] + (1.0 - b1) * gi);
                t->m2[i] = (float)(b2 * t->m2[i] + (1.0 - b2) * gi * gi);
                double mh = t->m1[i] / c1, vh = t->m2[i] / c2;
                t->x[i] -= (float)(lr_t * sc * mh / (sqrt(vh) + t->eps));
            }
        }
        if (progress) progress(ctx, base + span * (double)(step + 1) / (double)steps);
    }
    for (int k = 0; k < nt; k++) memcpy(ts[k].x, ts[k].best, sizeof(float) * (size_t)ts[k].len);
done:
    free(ts);
    free(state);
    free(SA);
    free(SB);
    free(F);
    free(G);
    if (D != Y) free(D);
    free(mscr);
    free(Y);
    free(dF);
    free(dG);
    return st;
}

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static void progress(const bl_fit_opts *o, double f) {
    if (o->progress) o->progress(o->progress_ctx, f);
}

/* Steps 1–4 of the pipeline; returns P paths in W's scale (importance divided out), unbalanced
 * and unrounded. `extras` enables the MDBF-only option (Adam); the activation metric H applies to
 * both, so DBF stays MDBF(l = 1, P = 1) under H too. */
static bl_status fit_paths(const float *W, int64_t m, int64_t n, int64_t r, int l, int P,
                           const bl_fit_opts *o, bool extras, bl_mdbf_path **out, bl_err *err) {
    *out = NULL;
    const double t_start = bl_time_s();
    if (o->trace) memset(o->trace, 0, sizeof *o->trace);
    bl_qf_metric mt_store, *mt = NULL;
    float *so = NULL, *si = NULL, *T = NULL, *Res = NULL, *Tgt = NULL;
    bl_qf_path *qp = calloc((size_t)P, sizeof(bl_qf_path));
    bl_mdbf_path *ps = calloc((size_t)P, sizeof(bl_mdbf_path));
    size_t mn = (size_t)m * (size_t)n;
    bl_status st = BL_OK;
    if (!qp || !ps) {
        st = bl_fail(err, BL_ERR_NOMEM, "MDBF paths");
        goto done;
    }
    if ((st = bl_qf_sqrt_importance(o->out_importance, m, &so, err)) != BL_OK) goto done;
    if (o->H) {
        /* H's diagonal is the input importance (mean x²); it replaces in_importance and is
         * scaled out of the metric, which keeps only the correlations */
        float *dg = malloc(sizeof(float) * (size_t)n);
        if (!dg) {
            st = bl_fail(err, BL_ERR_NOMEM, "H diagonal");
            goto done;
        }
        for (int64_t j = 0; j < n; j++) dg[j] = o->H[j * n + j] > 0.0f ? o->H[j * n + j] : 0.0f;
        st = bl_qf_sqrt_importance(dg, n, &si, err);
        free(dg);
        if (st != BL_OK) goto done;
        const int64_t rank = o->H_rank > 0 ? o->H_rank : n > BL_FIT_H_FULL_MAX ? BL_FIT_H_RANK : n;
        if ((st = bl_qf_metric_init(&mt_store, o->H, n, si, rank, o->seed ^ 0x5bd1e995u, err)) !=
            BL_OK)
            goto done;
        mt = &mt_store;
    } else if ((st = bl_qf_sqrt_importance(o->in_importance, n, &si, err)) != BL_OK) {
        goto done;
    }
    T = malloc(sizeof(float) * mn);
    if (P > 1) {
        Res = malloc(sizeof(float) * mn);
        Tgt = malloc(sizeof(float) * mn);
    }
    if (!T || (P > 1 && (!Res || !Tgt))) {
        st = bl_fail(err, BL_ERR_NOMEM, "MDBF target (%lldx%lld)", (long long)m, (long long)n);
        goto done;
    }
    bl_qf_scale_rows_cols(W, m, n, so, si, T);
    /* T's RMS brought into [0.5, 1) by a power of two (exact): the ADMM never sees tiny or huge
     * numbers, and W·2^k gives bit-identical signs */
    int pow2 = 0;
    double t2 = 0.0;
    for (size_t i = 0; i < mn; i++) t2 += (double)T[i] * T[i];
    if (t2 > 0.0) {
        frexp(sqrt(t2 / (double)mn), &pow2);
        for (size_t i = 0; i < mn; i++) T[i] = ldexpf(T[i], -pow2);
        t2 = ldexp(t2, -2 * pow2);
    }

    int inner = o->inner > 0 ? o->inner : BL_QF_DEFAULT_INNER;
    bl_qf_admm_opts ao = {
        .iters = o->iters,
        .max_iters = o->max_iters > 0 ? o->max_iters : BL_FIT_MAX_ITERS,
        .ramp = BL_FIT_RAMP,
        .window = BL_FIT_WINDOW,
        .tol = o->tol > 0.0 ? o->tol : BL_FIT_TOL,
        .inner = inner,
        .reg = BL_QF_RIDGE,
        .proj_iters = BL_QF_PROJ_ITERS,
        .obj_norm = t2,
        .trace = o->trace,
        .progress = o->progress,
        .progress_ctx = o->progress_ctx,
    };
    int adam = extras ? o->adam_steps : 0;
    double w_init = 0.1, w_adam = adam > 0 ? 0.3 : 0.0, w_admm = 1.0 - w_init - w_adam;

    /* 2. closed-form init, each path on the residual of the previous ones */
    if (P > 1) memcpy(Res, T, sizeof(float) * mn);
    for (int p = 0; p < P; p++) {
        uint64_t seed = o->seed * 0x100000001b3ull + (uint64_t)p * 0x9e3779b97f4a7c15ull;
        if ((st = bl_qf_path_alloc(&qp[p], m, n, r, l, seed, err)) != BL_OK) goto done;
        if ((st = bl_qf_path_init_svd(&qp[p], P > 1 ? Res : T, mt, err)) != BL_OK) goto done;
        if (P > 1 && (st = bl_qf_path_product(&qp[p], -1.0f, 1.0f, Res, err)) != BL_OK) goto done;
        progress(o, w_init * (p + 1) / P);
    }
    if (o->trace) o->trace->seconds[BL_FIT_PHASE_INIT] += bl_time_s() - t_start;
    /* 3. ADMM per path against W minus all other paths (Gauss–Seidel over paths) */
    for (int p = 0; p < P; p++) {
        const float *target = T;
        const double t_res = bl_time_s();
        if (P > 1) {
            memcpy(Tgt, Res, sizeof(float) * mn);
            if ((st = bl_qf_path_product(&qp[p], 1.0f, 1.0f, Tgt, err)) != BL_OK) goto done;
            target = Tgt;
        }
        if (o->trace) o->trace->seconds[BL_FIT_PHASE_INIT] += bl_time_s() - t_res;
        ao.progress_base = w_init + w_admm * p / P;
        ao.progress_span = w_admm / P;
        if ((st = bl_qf_admm(&qp[p], target, mt, &ao, NULL, err)) != BL_OK) goto done;
        if (P > 1) {
            const double t_r2 = bl_time_s();
            memcpy(Res, Tgt, sizeof(float) * mn);
            if ((st = bl_qf_path_product(&qp[p], -1.0f, 1.0f, Res, err)) != BL_OK) goto done;
            if (o->trace) o->trace->seconds[BL_FIT_PHASE_INIT] += bl_time_s() - t_r2;
        }
    }
    for (int p = 0; p < P; p++) {
        if ((st = export_path(&qp[p], &ps[p], err)) != BL_OK) goto done;
        bl_qf_path_free(&qp[p]);
    }
    /* 4. Adam on the envelopes */
    if (adam > 0) {
        free(Res);
        free(Tgt);
        Res = Tgt = NULL;
        float lr = o->adam_lr > 0.0f ? o->adam_lr : ADAM_LR;
        st = adam_envelopes(ps, P, m, n, r, l, T, mt, adam, lr, o->progress, o->progress_ctx,
                            w_init + w_admm, w_adam, err);
        if (st != BL_OK) goto done;
    }
    /* importance and the power-of-two normalization divided back out of the outer envelopes */
    for (int p = 0; p < P; p++) {
        for (int64_t i = 0; i < m; i++)
            for (int j = 0; j < l; j++)
                ps[p].A_env[i * l + j] = ldexpf(ps[p].A_env[i * l + j], pow2) / (so ? so[i] : 1.0f);
        for (int64_t i = 0; i < n && si; i++)
            for (int j = 0; j < l; j++) ps[p].B_env[i * l + j] /= si[i];
        if (!all_finite(ps[p].A_env, (size_t)(m * l)) || !all_finite(ps[p].Q_U, (size_t)(r * l)) ||
            !all_finite(ps[p].Q_V, (size_t)(r * l)) || !all_finite(ps[p].B_env, (size_t)(n * l))) {
            st = bl_fail(err, BL_ERR_NUMERIC, "MDBF fit produced non-finite scales (path %d)", p);
            goto done;
        }
    }
    *out = ps;
    ps = NULL;
done:
    if (qp)
        for (int p = 0; p < P; p++) bl_qf_path_free(&qp[p]);
    free(qp);
    free_paths(ps, P);
    if (mt) bl_qf_metric_free(mt);
    free(so);
    free(si);
    free(T);
    free(Res);
    free(Tgt);
    return st;
}

static void scale_col(float *X, int64_t rows, int l, int j, double s) {
    for (int64_t i = 0; i < rows; i++) X[i * l + j] = (float)(X[i * l + j] * s);
}

/* Gauge balancing: every component's two envelope factors get equal RMS, then F and G get equal
 * typical magnitude. The product Σ F·G is unchanged; the point is to keep every stored vector far
 * from the FP16 limits (and equally well resolved by it). */
static void balance_path(bl_mdbf_path *p, int64_t m, int64_t n, int64_t r, int l) {
    for (int j = 0; j < l; j++) {
        double ra = bl_qf_rms(p->A_env + j, m, l), rq = bl_qf_rms(p->Q_U + j, r, l);
        if (ra > 0.0 && rq > 0.0) {
            double s = sqrt(rq / ra);
            scale_col(p->A_env, m, l, j, s);
            scale_col(p->Q_U, r, l, j, 1.0 / s);
        }
        double rv = bl_qf_rms(p->Q_V + j, r, l), rb = bl_qf_rms(p->B_env + j, n, l);
        if (rv > 0.0 && rb > 0.0) {
            double s = sqrt(rv / rb);
            scale_col(p->B_env, n, l, j, s);
            scale_col(p->Q_V, r, l, j, 1.0 / s);
        }
    }
    double fF = bl_qf_rms(p->A_env, m, l) * bl_qf_rms(p->Q_U, r, l);
    double fG = bl_qf_rms(p->Q_V, r, l) * bl_qf_rms(p->B_env, n, l);
    if (fF > 0.0 && fG > 0.0) {
        double t = pow(fG / fF, 0.25);
        for (int j = 0; j < l; j++) {
            scale_col(p->A_env, m, l, j, t);
            scale_col(p->Q_U, r, l, j, t);
            scale_col(p->Q_V, r, l, j, 1.0 / t);
            scale_col(p->B_env, n, l, j, 1.0 / t);
        }
    }
}

static bool round_f16_all(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        x[i] = bl_round_f16(x[i]);
        if (!isfinite(x[i])) return false;
    }
    return true;
}

/* The stored form of one fitted path. l = 1 (DBF's form): one middle scale μ = Q_U ⊙ Q_V kept in
 * Q_U (Q_V = 1, not stored), and a = A_env, μ, b = B_env scaled to equal RMS; l > 1: the gauge
 * balancing above. Then every vector rounded to FP16. False when a value does not fit. */
static bool finish_path(bl_mdbf_path *p, int64_t m, int64_t n, int64_t r, int l) {
    if (l == 1) {
        for (int64_t j = 0; j < r; j++) {
            p->Q_U[j] *= p->Q_V[j];
            p->Q_V[j] = 1.0f;
        }
        double ra = bl_qf_rms(p->A_env, m, 1), rm = bl_qf_rms(p->Q_U, r, 1);
        double rb = bl_qf_rms(p->B_env, n, 1);
        if (ra > 0.0 && rm > 0.0 && rb > 0.0) { /* product unchanged */
            double g = cbrt(ra * rm * rb);
            scale_col(p->A_env, m, 1, 0, g / ra);
            scale_col(p->Q_U, r, 1, 0, g / rm);
            scale_col(p->B_env, n, 1, 0, g / rb);
        }
    } else {
        balance_path(p, m, n, r, l);
    }
    return round_f16_all(p->A_env, (size_t)(m * l)) && round_f16_all(p->Q_U, (size_t)(r * l)) &&
           round_f16_all(p->Q_V, (size_t)(r * l)) && round_f16_all(p->B_env, (size_t)(n * l));
}

static bl_status check_input(const float *W, int64_t m, int64_t n, int64_t r, const char *fn,
                             const char *what, bl_err *err) {
    if (!W || m < 1 || n < 1)
        return bl_fail(err, BL_ERR_ARG, "%s: bad input (%lldx%lld)", fn, (long long)m, (long long)n);
    /* not capped at min(m, n): a wider middle still adds sign bits that lower the error */
    if (r < 1 || r > BL_MAX_MID)
        return bl_fail(err, BL_ERR_ARG, "%s: %s = %lld outside [1, %lld]", fn, what, (long long)r,
                       (long long)BL_MAX_MID);
    if (!all_finite(W, (size_t)m * (size_t)n))
        return bl_fail(err, BL_ERR_NUMERIC, "%s: W contains a non-finite value", fn);
    return BL_OK;
}

bl_status bl_fit_mdbf(const float *W, int64_t m, int64_t n, int64_t r, int l, int P,
                      const bl_fit_opts *o, bl_mdbf *out, bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_fit_mdbf: NULL output");
    memset(out, 0, sizeof *out);
    bl_status st = check_input(W, m, n, r, "bl_fit_mdbf", "rank r", err);
    if (st != BL_OK) return st;
    if (l < 1 || P < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_mdbf: l = %d and P = %d must be >= 1", l, P);
    bl_fit_opts def;
    if (!o) {
        bl_fit_opts_default(&def);
        o = &def;
    }
    if (o->iters < 0 || o->inner < 0 || o->adam_steps < 0 || o->H_rank < 0)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_mdbf: negative iteration count");
    bl_mdbf_path *ps;
    if ((st = fit_paths(W, m, n, r, l, P, o, true, &ps, err)) != BL_OK) return st;
    for (int p = 0; p < P; p++) {
        if (!finish_path(&ps[p], m, n, r, l)) {
            free_paths(ps, P);
            return bl_fail(err, BL_ERR_NUMERIC, "bl_fit_mdbf: a scale does not fit in FP16");
        }
    }
    out->m = m;
    out->n = n;
    out->r = r;
    out->l = l;
    out->P = P;
    out->paths = ps;
    out->view = false;
    progress(o, 1.0);
    return BL_OK;
}

bl_status bl_fit_dbf(const float *W, int64_t m, int64_t n, int64_t k, const bl_fit_opts *o,
                     bl_dbf *out, bl_err *err) {
    if (!out) return bl_fail(err, BL_ERR_ARG, "bl_fit_dbf: NULL output");
    memset(out, 0, sizeof *out);
    bl_status st = check_input(W, m, n, k, "bl_fit_dbf", "middle dimension k", err);
    if (st != BL_OK) return st;
    bl_fit_opts def;
    if (!o) {
        bl_fit_opts_default(&def);
        o = &def;
    }
    if (o->iters < 0 || o->inner < 0 || o->H_rank < 0)
        return bl_fail(err, BL_ERR_ARG, "bl_fit_dbf: negative iteration count or H rank");
    bl_mdbf_path *ps;
    if ((st = fit_paths(W, m, n, k, 1, 1, o, false, &ps, err)) != BL_OK) return st;
    bl_mdbf_path *p = &ps[0];
    /* the path in MDBF(l = 1)'s stored form is DBF's: a = A_env, μ = Q_U, b = B_env */
    if (!finish_path(p, m, n, k, 1)) {
        free_paths(ps, 1);
        return bl_fail(err, BL_ERR_NUMERIC, "bl_fit_dbf: a scale does not fit in FP16");
    }
    out->m = m;
    out->n = n;
    out->k = k;
    out->A = p->SA;
    out->B = p->SB;
    out->a = p->A_env;
    out->mu = p->Q_U;
    out->b = p->B_env;
    out->view = false;
    free(p->Q_V);
    free(ps);
    progress(o, 1.0);
    return BL_OK;
}

/* ---- random factors (benchmarks; fit.h, the draws of random_factors.c) ---- */

bl_status bl_random_dbf(int64_t m, int64_t n, int64_t k, uint64_t seed, bl_dbf *out,
                        bl_err *err) {
    bl_status s = bl_qf_random_start("bl_random_dbf", out, sizeof *out, m, n, err);
    if (s) return s;
    if (k < 1 || k > BL_MAX_MID)
        return bl_fail(err, BL_ERR_ARG, "bl_random_dbf: middle dimension %lld outside [1, %lld]",
                       (long long)k, (long long)BL_MAX_MID);
    out->m = m;
    out->n = n;
    out->k = k;
    out->A = malloc((size_t)m * (size_t)bl_sign_row_bytes(k));
    out->B = malloc((size_t)k * (size_t)bl_sign_row_bytes(n));
    out->a = malloc(sizeof(float) * (size_t)m);
    out->mu = malloc(sizeof(float) * (size_t)k);
    out->b = malloc(sizeof(float) * (size_t)n);
    if (!out->A || !out->B || !out->a || !out->mu || !out->b) {
        bl_dbf_free(out);
        return bl_qf_random_nomem("bl_random_dbf", m, n, err);
    }
    bl_qf_random_bits(out->A, m, k, seed, 0, BL_QF_RT_SIGN_A);
    bl_qf_random_bits(out->B, k, n, seed, 0, BL_QF_RT_SIGN_B);
    /* Ŵ_ij = a_i·Σ_k A_ik·μ_k·B_kj·b_j: a sum of k independent ±terms, variance k·μ² */
    bl_qf_random_scales(out->a, m, 1.0, seed, 0, BL_QF_RT_OUTER);
    bl_qf_random_const(out->mu, k, BL_QF_RANDOM_STD / sqrt((double)k));
    bl_qf_random_scales(out->b, n, 1.0, seed, 0, BL_QF_RT_IN);
    return BL_OK;
}

bl_status bl_random_mdbf(int64_t m, int64_t n, int64_t r, int l, int P, uint64_t seed,
                         bl_mdbf *out, bl_err *err) {
    bl_status st = bl_qf_random_start("bl_random_mdbf", out, sizeof *out, m, n, err);
    if (st) return st;
    if (r < 1 || r > BL_MAX_MID || l < 1 || P < 1)
        return bl_fail(err, BL_ERR_ARG, "bl_random_mdbf: r = %lld (max %lld), l = %d, P = %d",
                       (long long)r, (long long)BL_MAX_MID, l, P);
    out->paths = calloc((size_t)P, sizeof(bl_mdbf_path));
    if (!out->paths) return bl_qf_random_nomem("bl_random_mdbf", m, n, err);
    out->m = m;
    out->n = n;
    out->r = r;
    out->l = l;
    out->P = P;
    /* Per path Ŵ = Σ_k F_ik·G_kj over r independent ±terms, so path std 0.02/√P needs RMS
     * env(F)·env(G) = s = 0.02/√(P·r); F and G get √s each, as the fit's gauge balancing does.
     * env(F) = Σ_j A_env[i,j]·Q_U[k,j] with A_env = t·jitter and Q_U = t has second moment
     * t⁴·(l + l(l−1)·E[j]²), E[j] = 1/BL_QF_JITTER_RMS; t is chosen to make that s. */
    const double s = BL_QF_RANDOM_STD / sqrt((double)P * (double)r),
                 ej2 = pow(BL_QF_JITTER_RMS, -2.0);
    const double t = pow(s / (l + l * (l - 1.0) * ej2), 0.25);
    for (int p = 0; p < P; p++) {
        bl_mdbf_path *e = &out->paths[p];
        if (!alloc_path(m, n, r, l, e)) {
            bl_mdbf_free(out);
            return bl_qf_random_nomem("bl_random_mdbf", m, n, err);
        }
        bl_qf_random_bits(e->SA, m, r, seed, p, BL_QF_RT_SIGN_A);
        bl_qf_random_bits(e->SB, r, n, seed, p, BL_QF_RT_SIGN_B);
        bl_qf_random_scales(e->A_env, m * l, t, seed, p, BL_QF_RT_OUTER);
        bl_qf_random_const(e->Q_U, r * l, t);
        bl_qf_random_const(e->Q_V, r * l, t);
        bl_qf_random_scales(e->B_env, n * l, t, seed, p, BL_QF_RT_IN);
    }
    return BL_OK;
}
