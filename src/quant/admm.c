/* Alternating ADMM for W ≈ F·G with F, G constrained to the (multi-)SVID set, shared by DBF
 * (l = 1, ALGORITHMS.md §4) and MDBF (any l, §5). It follows the reference implementations
 * (usamec/double_binary factorizef/find_other2, OneCompression mdbf/admm.py):
 *
 *   outer it = 0..iters−1, ρ₀ = 0.03 + 0.97·min(1, it/(iters−3))³
 *     F-step: G's rows normalized (Gn = diag(1/‖G_k‖)·G), solve with G fixed
 *     G-step: F's columns normalized (Fn = F·diag(1/‖F_k‖)), solve with F fixed
 *   one side, variable X (r×c), normal matrix XX = Fixed·Fixedᵀ + λI, λ = reg·mean diag(XX):
 *     X = (XX + ρ₀I)⁻¹(XY + ρ₀(Z − U))
 *     repeat inner−1 times: Z = proj(X + U); U += X − Z; X = (XX + I)⁻¹(XY + (Z − U))
 *     Z = proj(X + U); U += X − Z
 *   the result is Fn·G with both factors in the constraint set (their Z's).
 *
 * F is stored transposed (r×m) so both steps are the same "r×c variable" update. With an
 * activation metric H the objective is ‖(T − F·G)·H^½‖²: the F-step uses Ĝ = G·H^½ for the normal
 * matrix and T·H for the right-hand side; the G-step is a Sylvester equation
 *   (FnᵀFn)·G·H + (λ+ρ)·G = Fnᵀ·T·H + ρ(Z − U)
 * solved in the joint eigenbasis of FnᵀFn and H (as OneCompression's Hessian ADMM does). */
#include "quant/qf_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bl_status side_alloc(bl_qf_side *s, int64_t r, int64_t c, int l, uint64_t seed,
                            bl_err *err) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->c = c;
    size_t sz = (size_t)r * (size_t)c;
    s->Z = calloc(sz, sizeof(float));
    s->U = calloc(sz, sizeof(float));
    s->XY = malloc(sizeof(float) * sz);
    s->tmp = malloc(sizeof(float) * sz);
    s->B = malloc(sizeof(float) * sz);
    if (!s->Z || !s->U || !s->XY || !s->tmp || !s->B)
        return bl_fail(err, BL_ERR_NOMEM, "ADMM buffers (%lldx%lld)", (long long)r, (long long)c);
    return bl_qf_env_alloc(&s->env, r, c, l, seed, err);
}

static void side_free(bl_qf_side *s) {
    free(s->Z);
    free(s->U);
    free(s->XY);
    free(s->tmp);
    free(s->B);
    bl_qf_env_free(&s->env);
    memset(s, 0, sizeof *s);
}

bl_status bl_qf_path_alloc(bl_qf_path *p, int64_t m, int64_t n, int64_t r, int l, uint64_t seed,
                           bl_err *err) {
    memset(p, 0, sizeof *p);
    p->m = m;
    p->n = n;
    p->r = r;
    p->l = l;
    bl_status st = side_alloc(&p->f, r, m, l, seed ^ 0x9e3779b97f4a7c15ull, err);
    if (st == BL_OK) st = side_alloc(&p->g, r, n, l, seed ^ 0xd1b54a32d192ed03ull, err);
    if (st != BL_OK) bl_qf_path_free(p);
    return st;
}

void bl_qf_path_free(bl_qf_path *p) {
    side_free(&p->f);
    side_free(&p->g);
}

/* out = X·E·diag(d)·Eᵀ for X r×n (tmp: r×n scratch). */
static void apply_metric_fn(const bl_qf_metric *mt, const float *X, int64_t r, const float *d,
                            float *tmp, float *out) {
    int64_t n = mt->n;
    bl_qf_gemm(false, false, r, n, n, 1.0f, X, n, mt->E, n, 0.0f, tmp, n);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < n; j++) tmp[i * n + j] *= d[j];
    bl_qf_gemm(false, true, r, n, n, 1.0f, tmp, n, mt->E, n, 0.0f, out, n);
}

bl_status bl_qf_path_init_svd(bl_qf_path *p, const float *T, const bl_qf_metric *mt, bl_err *err) {
    int64_t m = p->m, n = p->n, r = p->r;
    const int init_iters = 12; /* cold start of the envelope TSVD */
    float *L = malloc(sizeof(float) * (size_t)m * (size_t)r);
    float *Th = NULL;
    bl_status st = BL_OK;
    if (!L) return bl_fail(err, BL_ERR_NOMEM, "MDBF init (%lldx%lld)", (long long)m, (long long)r);
    const float *A = T;
    if (mt) { /* activation-aware: factor T·H^½, then map the right factor back with H^-½ */
        Th = malloc(sizeof(float) * (size_t)m * (size_t)n);
        if (!Th) {
            free(L);
            return bl_fail(err, BL_ERR_NOMEM, "MDBF init (T·H^1/2)");
        }
        bl_qf_gemm(false, false, m, n, n, 1.0f, T, n, mt->Hhalf, n, 0.0f, Th, n);
        A = Th;
    }
    /* G's side receives RT directly (r×n) */
    st = bl_qf_tsvd(A, m, n, r, L, p->g.tmp, err);
    free(Th);
    if (st != BL_OK) {
        free(L);
        return st;
    }
    if (mt) {
        float *d = malloc(sizeof(float) * (size_t)n);
        if (!d) {
            free(L);
            return bl_fail(err, BL_ERR_NOMEM, "MDBF init (metric)");
        }
        for (int64_t j = 0; j < n; j++) d[j] = 1.0f / sqrtf(mt->lam[j]);
        memcpy(p->g.XY, p->g.tmp, sizeof(float) * (size_t)(r * n));
        apply_metric_fn(mt, p->g.XY, r, d, p->g.B, p->g.tmp);
        free(d);
    }
    /* F = L (m×r) is kept transposed */
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < r; k++) p->f.tmp[k * m + i] = L[i * r + k];
    free(L);
    p->f.env.warm = p->g.env.warm = false;
    if ((st = bl_qf_project(p->f.tmp, &p->f.env, init_iters, p->f.Z, err)) != BL_OK) return st;
    if ((st = bl_qf_project(p->g.tmp, &p->g.env, init_iters, p->g.Z, err)) != BL_OK) return st;
    memset(p->f.U, 0, sizeof(float) * (size_t)(r * m));
    memset(p->g.U, 0, sizeof(float) * (size_t)(r * n));
    return BL_OK;
}

void bl_qf_path_init_random(bl_qf_path *p, uint64_t seed) {
    bl_qf_fill_normal(p->f.Z, (size_t)(p->r * p->m), seed + 1);
    bl_qf_fill_normal(p->g.Z, (size_t)(p->r * p->n), seed + 2);
    memset(p->f.U, 0, sizeof(float) * (size_t)(p->r * p->m));
    memset(p->g.U, 0, sizeof(float) * (size_t)(p->r * p->n));
    p->f.env.warm = p->g.env.warm = false;
}

/* dst = src / (norm + 1e-12) row-wise; norms returned in nrm. */
static void normalize_rows(const float *src, int64_t r, int64_t c, float *nrm, float *dst) {
    bl_qf_row_norms(src, r, c, nrm);
    for (int64_t i = 0; i < r; i++) {
        float inv = 1.0f / (nrm[i] + 1e-12f);
        for (int64_t j = 0; j < c; j++) dst[i * c + j] = src[i * c + j] * inv;
    }
}

static float mean_diag(const float *XX, int64_t k) {
    double s = 0.0;
    for (int64_t i = 0; i < k; i++) s += XX[i * k + i];
    return (float)(s / (double)k);
}

/* tmp = XY + rho·(Z − U) */
static void form_rhs(bl_qf_side *s, float rho) {
    size_t sz = (size_t)(s->r * s->c);
    for (size_t i = 0; i < sz; i++) s->tmp[i] = s->XY[i] + rho * (s->Z[i] - s->U[i]);
}

/* Z = proj(B + U); U += B − Z */
static bl_status project_step(bl_qf_side *s, int proj_iters, bl_err *err) {
    size_t sz = (size_t)(s->r * s->c);
    for (size_t i = 0; i < sz; i++) s->tmp[i] = s->B[i] + s->U[i];
    bl_status st = bl_qf_project(s->tmp, &s->env, proj_iters, s->Z, err);
    if (st != BL_OK) return st;
    for (size_t i = 0; i < sz; i++) s->U[i] += s->B[i] - s->Z[i];
    return BL_OK;
}

/* Plain side update: the normal matrix acts from the left on the r×c variable. */
static bl_status solve_side(bl_qf_side *s, const float *XX, float rho0, const bl_qf_admm_opts *ao,
                            float *inv0, float *inv1, bl_err *err) {
    int64_t r = s->r, c = s->c;
    float lam = ao->reg * mean_diag(XX, r);
    bl_status st = bl_qf_spd_inverse(XX, r, lam + rho0, inv0, err);
    if (st == BL_OK && ao->inner > 1) st = bl_qf_spd_inverse(XX, r, lam + 1.0f, inv1, err);
    if (st != BL_OK) return st;
    form_rhs(s, rho0);
    bl_qf_gemm(false, false, r, c, r, 1.0f, inv0, r, s->tmp, c, 0.0f, s->B, c);
    for (int t = 1; t < ao->inner; t++) {
        if ((st = project_step(s, ao->proj_iters, err)) != BL_OK) return st;
        form_rhs(s, 1.0f);
        bl_qf_gemm(false, false, r, c, r, 1.0f, inv1, r, s->tmp, c, 0.0f, s->B, c);
    }
    return project_step(s, ao->proj_iters, err);
}

/* Sylvester solve for the G side under the metric: with FnᵀFn = Q·diag(σ)·Qᵀ and
 * H = E·diag(λ_H)·Eᵀ, G = Q·[(Qᵀ·RHS·E) ⊘ (σ_i λ_H,j + λ + ρ)]·Eᵀ. */
static void sylvester_solve(bl_qf_side *s, const bl_qf_metric *mt, const float *Q,
                            const float *sig, float shift) {
    int64_t r = s->r, n = s->c;
    bl_qf_gemm(true, false, r, n, r, 1.0f, Q, r, s->tmp, n, 0.0f, s->B, n);
    bl_qf_gemm(false, false, r, n, n, 1.0f, s->B, n, mt->E, n, 0.0f, s->tmp, n);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < n; j++)
            s->tmp[i * n + j] /= sig[i] * mt->lam[j] + shift;
    bl_qf_gemm(false, true, r, n, n, 1.0f, s->tmp, n, mt->E, n, 0.0f, s->B, n);
    bl_qf_gemm(false, false, r, n, r, 1.0f, Q, r, s->B, n, 0.0f, s->tmp, n);
    float *t = s->B; /* the result lives in tmp: swap the two scratch buffers */
    s->B = s->tmp;
    s->tmp = t;
}

static bl_status solve_side_metric(bl_qf_side *s, const bl_qf_metric *mt, float *XX, float rho0,
                                   const bl_qf_admm_opts *ao, float *sig, bl_err *err) {
    int64_t r = s->r;
    double lmean = 0.0;
    for (int64_t j = 0; j < mt->n; j++) lmean += mt->lam[j];
    lmean /= (double)mt->n;
    float lam = ao->reg * mean_diag(XX, r) * (float)lmean;
    bl_status st = bl_qf_sym_eig(XX, r, sig, err); /* XX becomes Q */
    if (st != BL_OK) return st;
    for (int64_t i = 0; i < r; i++) sig[i] = sig[i] > 0.0f ? sig[i] : 0.0f;
    form_rhs(s, rho0);
    sylvester_solve(s, mt, XX, sig, lam + rho0);
    for (int t = 1; t < ao->inner; t++) {
        if ((st = project_step(s, ao->proj_iters, err)) != BL_OK) return st;
        form_rhs(s, 1.0f);
        sylvester_solve(s, mt, XX, sig, lam + 1.0f);
    }
    return project_step(s, ao->proj_iters, err);
}

bl_status bl_qf_admm(bl_qf_path *p, const float *T, const bl_qf_metric *mt,
                     const bl_qf_admm_opts *ao, bl_err *err) {
    int64_t m = p->m, n = p->n, r = p->r;
    bl_qf_side *f = &p->f, *g = &p->g;
    float *XX = malloc(sizeof(float) * (size_t)(r * r));
    float *inv0 = malloc(sizeof(float) * (size_t)(r * r));
    float *inv1 = malloc(sizeof(float) * (size_t)(r * r));
    float *nrm = malloc(sizeof(float) * (size_t)r);
    float *TH = NULL;
    bl_status st = BL_OK;
    if (!XX || !inv0 || !inv1 || !nrm) {
        st = bl_fail(err, BL_ERR_NOMEM, "ADMM normal equations (k=%lld)", (long long)r);
        goto done;
    }
    const float *Trhs = T; /* right-hand-side target: T, or T·H under the metric */
    if (mt) {
        TH = malloc(sizeof(float) * (size_t)m * (size_t)n);
        if (!TH) {
            st = bl_fail(err, BL_ERR_NOMEM, "ADMM (T·H)");
            goto done;
        }
        bl_qf_gemm(false, false, m, n, n, 1.0f, T, n, mt->H, n, 0.0f, TH, n);
        Trhs = TH;
    }
    for (int it = 0; it < ao->iters; it++) {
        double x = (double)it / (double)(ao->iters - 3 > 1 ? ao->iters - 3 : 1);
        x = x < 1.0 ? x : 1.0;
        float rho0 = (float)(0.03 + 0.97 * x * x * x);

        /* F-step: Fixed = G with unit rows (under the metric: unit rows of G·H^½) */
        if (mt) {
            bl_qf_gemm(false, false, r, n, n, 1.0f, g->Z, n, mt->Hhalf, n, 0.0f, g->tmp, n);
            normalize_rows(g->tmp, r, n, nrm, g->tmp);
            for (int64_t k = 0; k < r; k++) {
                float inv = 1.0f / (nrm[k] + 1e-12f);
                for (int64_t j = 0; j < n; j++) g->B[k * n + j] = g->Z[k * n + j] * inv;
            }
            bl_qf_gram_rows(g->tmp, r, n, XX);
        } else {
            normalize_rows(g->Z, r, n, nrm, g->B);
            bl_qf_gram_rows(g->B, r, n, XX);
        }
        bl_qf_gemm(false, true, r, m, n, 1.0f, g->B, n, Trhs, n, 0.0f, f->XY, m);
        if ((st = solve_side(f, XX, rho0, ao, inv0, inv1, err)) != BL_OK) goto done;

        /* G-step: Fixed = F with unit columns (rows of the stored Fᵀ) */
        normalize_rows(f->Z, r, m, nrm, f->B);
        bl_qf_gram_rows(f->B, r, m, XX);
        bl_qf_gemm(false, false, r, n, m, 1.0f, f->B, m, Trhs, n, 0.0f, g->XY, n);
        if (mt)
            st = solve_side_metric(g, mt, XX, rho0, ao, inv0 /* r floats of scratch */, err);
        else
            st = solve_side(g, XX, rho0, ao, inv0, inv1, err);
        if (st != BL_OK) goto done;

        for (size_t i = 0; i < (size_t)r; i++)
            if (!isfinite(g->env.L[i * (size_t)p->l])) {
                st = bl_fail(err, BL_ERR_NUMERIC, "ADMM diverged at outer iteration %d", it);
                goto done;
            }
        if (ao->progress)
            ao->progress(ao->progress_ctx,
                         ao->progress_base + ao->progress_span * (double)(it + 1) / ao->iters);
    }
done:
    free(XX);
    free(inv0);
    free(inv1);
    free(nrm);
    free(TH);
    return st;
}

bl_status bl_qf_path_product(bl_qf_path *p, float alpha, float beta, float *Y, bl_err *err) {
    int64_t m = p->m, n = p->n, r = p->r;
    float *nrm = malloc(sizeof(float) * (size_t)r);
    if (!nrm) return bl_fail(err, BL_ERR_NOMEM, "path product");
    normalize_rows(p->f.Z, r, m, nrm, p->f.B);
    free(nrm);
    bl_qf_gemm(true, false, m, n, r, alpha, p->f.B, m, p->g.Z, n, beta, Y, n);
    return BL_OK;
}

bl_status bl_qf_metric_init(bl_qf_metric *mt, const float *H, int64_t n, const float *si,
                            bl_err *err) {
    memset(mt, 0, sizeof *mt);
    mt->n = n;
    size_t nn = (size_t)n * (size_t)n;
    mt->E = malloc(sizeof(float) * nn);
    mt->lam = malloc(sizeof(float) * (size_t)n);
    mt->Hhalf = malloc(sizeof(float) * nn);
    mt->H = malloc(sizeof(float) * nn);
    float *tmp = malloc(sizeof(float) * nn);
    bl_status st = BL_OK;
    if (!mt->E || !mt->lam || !mt->Hhalf || !mt->H || !tmp) {
        st = bl_fail(err, BL_ERR_NOMEM, "activation metric (n=%lld)", (long long)n);
        goto done;
    }
    for (size_t i = 0; i < nn; i++)
        if (!isfinite(H[i])) {
            st = bl_fail(err, BL_ERR_ARG, "H contains a non-finite value");
            goto done;
        }
    /* symmetrize, divide by the diagonal scaling, normalize to unit mean diagonal (so ρ and the
     * ridge keep their meaning) */
    double md = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = si ? (double)si[i] * si[i] : 1.0;
        md += H[i * n + i] / d;
    }
    md /= (double)n;
    if (!(md > 0.0)) {
        st = bl_fail(err, BL_ERR_ARG, "H has a non-positive mean diagonal");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double d = si ? (double)si[i] * si[j] : 1.0;
            mt->E[i * n + j] = (float)(0.5 * ((double)H[i * n + j] + H[j * n + i]) / (d * md));
        }
    if ((st = bl_qf_sym_eig(mt->E, n, mt->lam, err)) != BL_OK) goto done;
    /* clamp negative eigenvalues (H is PSD up to rounding) and add a small ridge so H^-½ exists */
    for (int64_t j = 0; j < n; j++) mt->lam[j] = (mt->lam[j] > 0.0f ? mt->lam[j] : 0.0f) + 1e-4f;
    /* H^½ = E·diag(√λ)·Eᵀ and H = E·diag(λ)·Eᵀ */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) tmp[i * n + j] = mt->E[i * n + j] * sqrtf(mt->lam[j]);
    bl_qf_gemm(false, true, n, n, n, 1.0f, tmp, n, mt->E, n, 0.0f, mt->Hhalf, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) tmp[i * n + j] = mt->E[i * n + j] * mt->lam[j];
    bl_qf_gemm(false, true, n, n, n, 1.0f, tmp, n, mt->E, n, 0.0f, mt->H, n);
done:
    free(tmp);
    if (st != BL_OK) bl_qf_metric_free(mt);
    return st;
}

void bl_qf_metric_free(bl_qf_metric *mt) {
    free(mt->E);
    free(mt->lam);
    free(mt->Hhalf);
    free(mt->H);
    memset(mt, 0, sizeof *mt);
}
