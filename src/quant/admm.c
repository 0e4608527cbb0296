/* Alternating ADMM for W ≈ F·G with F, G constrained to the (multi-)SVID set, shared by DBF
 * (l = 1, ALGORITHMS.md §4) and MDBF (any l, §5). It follows the reference implementations
 * (usamec/double_binary factorizef/find_other2, OneCompression mdbf/admm.py):
 *
 *   outer it = 0, 1, ...: ρ₀ = 0.03 + 0.97·min(1, it/ramp)³
 *     F-step: G's rows normalized (Gn = diag(1/‖G_k‖)·G), solve with G fixed
 *     G-step: F's columns normalized (Fn = F·diag(1/‖F_k‖)), solve with F fixed
 *   one side, variable X (r×c), normal matrix XX = Fixed·Fixedᵀ + λI, λ = reg·mean diag(XX):
 *     X = (XX + ρ₀I)⁻¹(XY + ρ₀(Z − U))
 *     repeat inner−1 times: Z = proj(X + U); U += X − Z; X = (XX + I)⁻¹(XY + (Z − U))
 *     Z = proj(X + U); U += X − Z
 *   the result is Fn·G with both factors in the constraint set (their Z's).
 * The k×k systems are solved by Cholesky factors and triangular solves (the explicit inverses
 * cost another 2k³/3 each and LAPACK's spotri runs far below the machine's GEMM rate).
 *
 * Stopping. With a fixed iteration count the ramp is iters − 3 (the reference schedule). Otherwise
 * the ramp has a fixed length (BL_FIT_RAMP) and, once ρ₀ = 1, the loop stops when the objective
 * has improved by less than tol (relative) over a window of iterations, or at a cap. What sets the
 * final error is the length of the anneal, not convergence at a fixed ρ₀: at any fixed ρ₀ the
 * iterates settle within tens of iterations at an error well above what a slow ramp reaches
 * (docs/fits.md has the measurements), so the window test only applies after the ramp. The objective after every outer iteration comes almost for
 * free: with E = ‖T − Fn·G‖² = ‖T‖² − 2⟨Fnᵀ·T, G⟩ + ⟨FnᵀFn, G·Gᵀ⟩, the G-step has Fnᵀ·T (its
 * right-hand side) and FnᵀFn (its normal matrix), and the next F-step's normal matrix is G·Gᵀ with
 * rows and columns normalized; so the objective of iteration it is completed at the start of
 * iteration it + 1 (or by one extra Gram matrix after the last one).
 *
 * F is stored transposed (r×m) so both steps are the same "r×c variable" update. With an
 * activation metric H the objective is ‖(T − F·G)·H^½‖²: the F-step uses Ĝ = G·H^½ for the normal
 * matrix and T·H for the right-hand side; the G-step is a Sylvester equation
 *   (FnᵀFn)·G·H + (λ+ρ)·G = Fnᵀ·T·H + ρ(Z − U)
 * solved in the joint eigenbasis of FnᵀFn and H (as OneCompression's Hessian ADMM does); the
 * objective formula holds with T·H and G·H·Gᵀ in place of T and G·Gᵀ. */
#include "quant/qf_internal.h"

#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Phase timing and flop counting into the optional trace. */
typedef struct {
    bl_fit_trace *tr;
    double t0;
} phase_clock;

static phase_clock clock_start(bl_fit_trace *tr) {
    return (phase_clock){tr, tr ? bl_time_s() : 0.0};
}

static void clock_stop(phase_clock *c, bl_fit_phase ph, double flops) {
    if (!c->tr) return;
    double t = bl_time_s();
    c->tr->seconds[ph] += t - c->t0;
    c->tr->flops += flops;
    c->t0 = t;
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

static double dot(const float *a, const float *b, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += (double)a[i] * b[i];
    return s;
}

/* out = XY + rho·(Z − U) */
static void form_rhs(const bl_qf_side *s, float rho, float *out) {
    size_t sz = (size_t)(s->r * s->c);
    for (size_t i = 0; i < sz; i++) out[i] = s->XY[i] + rho * (s->Z[i] - s->U[i]);
}

/* Z = proj(B + U); U += B − Z */
static bl_status project_step(bl_qf_side *s, int proj_iters, bl_fit_trace *tr, bl_err *err) {
    phase_clock ck = clock_start(tr);
    size_t sz = (size_t)(s->r * s->c);
    for (size_t i = 0; i < sz; i++) s->tmp[i] = s->B[i] + s->U[i];
    bl_status st = bl_qf_project(s->tmp, &s->env, proj_iters, s->Z, err);
    if (st != BL_OK) return st;
    for (size_t i = 0; i < sz; i++) s->U[i] += s->B[i] - s->Z[i];
    clock_stop(&ck, BL_FIT_PHASE_PROJECT, 0.0);
    return BL_OK;
}

typedef struct {
    const float *XX;
    int64_t r;
    float shift[2];
    float *U[2];
    bl_status st[2];
    bl_err err[2];
} factor_call;

static void factor_tasks(void *ctx, int64_t lo, int64_t hi) {
    factor_call *fc = ctx;
    for (int64_t i = lo; i < hi; i++)
        fc->st[i] = bl_qf_spd_factor(fc->XX, fc->r, fc->shift[i], fc->U[i], &fc->err[i]);
}

/* Plain side update: the normal matrix acts from the left on the r×c variable. U0/U1 receive the
 * Cholesky factors for the shifts ρ₀ and 1 (one factor when ρ₀ = 1). */
static bl_status solve_side(bl_qf_side *s, const float *XX, float rho0, const bl_qf_admm_opts *ao,
                            float *U0, float *U1, bl_err *err) {
    const int64_t r = s->r, c = s->c;
    const double rr = (double)r, rc = (double)r * (double)c;
    const float lam = ao->reg * mean_diag(XX, r);
    phase_clock ck = clock_start(ao->trace);
    const bool two = ao->inner > 1 && rho0 != 1.0f;
    factor_call fc = {XX, r, {lam + rho0, lam + 1.0f}, {U0, U1}, {BL_OK, BL_OK}, {{0}, {0}}};
    /* the two factorizations are independent single-threaded LAPACK calls: side by side */
    bl_pool_for(bl_pool_omp_current(), two ? 2 : 1, two && rr >= 512.0, factor_tasks, &fc);
    const float *F1 = two ? U1 : U0;
    clock_stop(&ck, BL_FIT_PHASE_FACTOR, (two ? 2.0 : 1.0) * rr * rr * rr / 3.0);
    for (int i = 0; i < 2; i++)
        if (fc.st[i] != BL_OK) {
            *err = fc.err[i];
            return fc.st[i];
        }
    bl_status st;
    form_rhs(s, rho0, s->B);
    bl_qf_spd_solve(U0, r, s->B, c);
    clock_stop(&ck, BL_FIT_PHASE_SOLVE, 2.0 * rr * rc);
    for (int t = 1; t < ao->inner; t++) {
        if ((st = project_step(s, ao->proj_iters, ao->trace, err)) != BL_OK) return st;
        ck = clock_start(ao->trace);
        form_rhs(s, 1.0f, s->B);
        bl_qf_spd_solve(F1, r, s->B, c);
        clock_stop(&ck, BL_FIT_PHASE_SOLVE, 2.0 * rr * rc);
    }
    return project_step(s, ao->proj_iters, ao->trace, err);
}

/* Sylvester solve for the G side under the metric: with FnᵀFn = Q·diag(σ)·Qᵀ and
 * H = E·diag(λ_H)·Eᵀ, G = Q·[(Qᵀ·RHS·E) ⊘ (σ_i λ_H,j + λ + ρ)]·Eᵀ. With the low-rank form
 * H = E·diag(λ_H)·Eᵀ + c·(I − E·Eᵀ) (E n×k) the complement of span(E) gets the divisor
 * σ_i·c + λ + ρ: with B = Qᵀ·RHS and P = B·E,
 *   G = Q·[B ⊘ (σ_i c + s) + (P ⊘ (σ_i λ_j + s) − P ⊘ (σ_i c + s))·Eᵀ].
 * RHS in tmp, result in B; P is r×k scratch. */
static void sylvester_solve(bl_qf_side *s, const bl_qf_metric *mt, const float *Q,
                            const float *sig, float shift, float *P) {
    int64_t r = s->r, n = s->c, k = mt->k;
    bl_qf_gemm(true, false, r, n, r, 1.0f, Q, r, s->tmp, n, 0.0f, s->B, n);
    if (k == n) {
        bl_qf_gemm(false, false, r, n, n, 1.0f, s->B, n, mt->E, n, 0.0f, s->tmp, n);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < n; j++)
                s->tmp[i * n + j] /= sig[i] * mt->lam[j] + shift;
        bl_qf_gemm(false, true, r, n, n, 1.0f, s->tmp, n, mt->E, n, 0.0f, s->B, n);
    } else {
        bl_qf_gemm(false, false, r, k, n, 1.0f, s->B, n, mt->E, k, 0.0f, P, k);
        for (int64_t i = 0; i < r; i++) {
            const float dc = sig[i] * mt->c + shift;
            for (int64_t j = 0; j < k; j++)
                P[i * k + j] = P[i * k + j] / (sig[i] * mt->lam[j] + shift) - P[i * k + j] / dc;
            for (int64_t j = 0; j < n; j++) s->B[i * n + j] /= dc;
        }
        bl_qf_gemm(false, true, r, n, k, 1.0f, P, k, mt->E, k, 1.0f, s->B, n);
    }
    bl_qf_gemm(false, false, r, n, r, 1.0f, Q, r, s->B, n, 0.0f, s->tmp, n);
    float *t = s->B; /* the result lives in tmp: swap the two scratch buffers */
    s->B = s->tmp;
    s->tmp = t;
}

static bl_status solve_side_metric(bl_qf_side *s, const bl_qf_metric *mt, float *XX, float rho0,
                                   const bl_qf_admm_opts *ao, float *sig, bl_err *err) {
    const int64_t r = s->r, n = s->c;
    const double rr = (double)r, rn = (double)r * (double)n;
    const double solve_flops = 2.0 * (2.0 * rr * rn + 2.0 * rn * (double)mt->k);
    float lam = ao->reg * mean_diag(XX, r) * (float)bl_qf_metric_mean(mt);
    float *P = malloc(sizeof(float) * (size_t)(r * mt->k)); /* the low-rank solve's scratch */
    if (!P) return bl_fail(err, BL_ERR_NOMEM, "Sylvester solve (r=%lld)", (long long)r);
    phase_clock ck = clock_start(ao->trace);
    bl_status st = bl_qf_sym_eig(XX, r, sig, err); /* XX becomes Q */
    clock_stop(&ck, BL_FIT_PHASE_FACTOR, 9.0 * rr * rr * rr);
    if (st != BL_OK) {
        free(P);
        return st;
    }
    for (int64_t i = 0; i < r; i++) sig[i] = sig[i] > 0.0f ? sig[i] : 0.0f;
    form_rhs(s, rho0, s->tmp);
    sylvester_solve(s, mt, XX, sig, lam + rho0, P);
    clock_stop(&ck, BL_FIT_PHASE_SOLVE, solve_flops);
    for (int t = 1; t < ao->inner && st == BL_OK; t++) {
        if ((st = project_step(s, ao->proj_iters, ao->trace, err)) != BL_OK) break;
        ck = clock_start(ao->trace);
        form_rhs(s, 1.0f, s->tmp);
        sylvester_solve(s, mt, XX, sig, lam + 1.0f, P);
        clock_stop(&ck, BL_FIT_PHASE_SOLVE, solve_flops);
    }
    free(P);
    return st != BL_OK ? st : project_step(s, ao->proj_iters, ao->trace, err);
}

static double rho_at(const bl_qf_admm_opts *ao, int it) {
    int ramp = ao->iters > 0 ? ao->iters - 3 : ao->ramp;
    double x = (double)it / (double)(ramp > 1 ? ramp : 1);
    x = x < 1.0 ? x : 1.0;
    return 0.03 + 0.97 * x * x * x;
}

/* The convergence test after `done` outer iterations with objectives e[0..done-1]. */
static bool converged(const bl_qf_admm_opts *ao, const double *e, int done) {
    if (ao->iters > 0) return false;
    if (e[done - 1] == 0.0) return true; /* exact fit (e.g. W = 0) */
    if (done <= ao->ramp || done <= ao->window) return false;
    return e[done - 1 - ao->window] - e[done - 1] < ao->tol * e[done - 1];
}

/* The F-step's normal matrix XX = Gram of G's rows normalized (of G·H^½'s rows under the metric),
 * with the row norms in nrm and the normalized G (the F-step's fixed factor) in g->B. */
static void f_step_gram(bl_qf_path *p, const bl_qf_metric *mt, float *XX, float *nrm,
                        bl_fit_trace *tr) {
    const int64_t r = p->r, n = p->n;
    bl_qf_side *g = &p->g;
    phase_clock ck = clock_start(tr);
    double flops = (double)r * (double)r * (double)n;
    if (mt) {
        bl_qf_metric_pow(mt, g->Z, r, 0.5, g->B /* r×k scratch */, g->tmp);
        normalize_rows(g->tmp, r, n, nrm, g->tmp);
        for (int64_t k = 0; k < r; k++) {
            float inv = 1.0f / (nrm[k] + 1e-12f);
            for (int64_t j = 0; j < n; j++) g->B[k * n + j] = g->Z[k * n + j] * inv;
        }
        bl_qf_gram_rows(g->tmp, r, n, XX);
        flops += 2.0 * (double)r * (double)n * (double)(mt->k == n ? n : 2 * mt->k);
    } else {
        normalize_rows(g->Z, r, n, nrm, g->B);
        bl_qf_gram_rows(g->B, r, n, XX);
    }
    clock_stop(&ck, BL_FIT_PHASE_GRAM, flops);
}

bl_status bl_qf_admm(bl_qf_path *p, const float *T, const bl_qf_metric *mt,
                     const bl_qf_admm_opts *ao, double *obj, bl_err *err) {
    const int64_t m = p->m, n = p->n, r = p->r;
    const size_t rr = (size_t)(r * r), mn = (size_t)m * (size_t)n;
    const double mnr2 = 2.0 * (double)m * (double)n * (double)r;
    bl_qf_side *f = &p->f, *g = &p->g;
    bl_fit_trace *tr = ao->trace;
    const int limit = ao->iters > 0 ? ao->iters : ao->max_iters > 0 ? ao->max_iters : 1;
    float *XX = malloc(sizeof(float) * rr);
    float *XXg = malloc(sizeof(float) * rr); /* the last G-step's FnᵀFn */
    float *U0 = malloc(sizeof(float) * rr);
    float *U1 = malloc(sizeof(float) * rr);
    float *nrm = malloc(sizeof(float) * (size_t)r);
    double *e = malloc(sizeof(double) * (size_t)(limit + 1));
    float *TH = NULL;
    bl_status st = BL_OK;
    if (!XX || !XXg || !U0 || !U1 || !nrm || !e) {
        st = bl_fail(err, BL_ERR_NOMEM, "ADMM normal equations (k=%lld)", (long long)r);
        goto done;
    }
    const float *Trhs = T; /* right-hand-side target: T, or T·H under the metric */
    if (mt) {
        TH = malloc(sizeof(float) * mn);
        float *scratch = malloc(sizeof(float) * (size_t)m * (size_t)mt->k);
        if (!TH || !scratch) {
            free(scratch);
            st = bl_fail(err, BL_ERR_NOMEM, "ADMM (T·H)");
            goto done;
        }
        bl_qf_metric_pow(mt, T, m, 1.0, scratch, TH);
        free(scratch);
        Trhs = TH;
    }
    const double T2 = dot(T, Trhs, mn);
    const double norm = ao->obj_norm > 0.0 ? ao->obj_norm : T2 > 0.0 ? T2 : 1.0;
    double dot_xg = 0.0;
    int done_it = 0;
    bool stopped = false;
    for (int it = 0;; it++) {
        /* Normal matrix of the F-step; it also completes the objective of iteration it − 1. */
        f_step_gram(p, mt, XX, nrm, tr);
        if (it > 0) {
            double quad = 0.0;
            for (int64_t i = 0; i < r; i++) {
                double row = 0.0;
                for (int64_t j = 0; j < r; j++) row += (double)XXg[i * r + j] * XX[i * r + j] * nrm[j];
                quad += row * nrm[i];
            }
            double E = T2 - 2.0 * dot_xg + quad;
            e[it - 1] = sqrt((E > 0.0 ? E : 0.0) / norm);
            done_it = it;
            if (tr) {
                if (tr->n_obj < BL_FIT_TRACE_MAX) tr->obj[tr->n_obj++] = e[it - 1];
                tr->iters++;
            }
            if (converged(ao, e, it)) {
                stopped = true;
                break;
            }
            if (it == limit) break;
        }
        const float rho0 = (float)rho_at(ao, it);

        /* F-step: fixed factor G with unit rows */
        phase_clock ck = clock_start(tr);
        bl_qf_gemm(false, true, r, m, n, 1.0f, g->B, n, Trhs, n, 0.0f, f->XY, m);
        clock_stop(&ck, BL_FIT_PHASE_RHS, mnr2);
        if ((st = solve_side(f, XX, rho0, ao, U0, U1, err)) != BL_OK) goto done;

        /* G-step: fixed factor F with unit columns (rows of the stored Fᵀ) */
        ck = clock_start(tr);
        normalize_rows(f->Z, r, m, nrm, f->B);
        bl_qf_gram_rows(f->B, r, m, XX);
        memcpy(XXg, XX, sizeof(float) * rr);
        clock_stop(&ck, BL_FIT_PHASE_GRAM, (double)r * (double)r * (double)m);
        bl_qf_gemm(false, false, r, n, m, 1.0f, f->B, m, Trhs, n, 0.0f, g->XY, n);
        clock_stop(&ck, BL_FIT_PHASE_RHS, mnr2);
        if (mt)
            st = solve_side_metric(g, mt, XX, rho0, ao, U0 /* r floats of scratch */, err);
        else
            st = solve_side(g, XX, rho0, ao, U0, U1, err);
        if (st != BL_OK) goto done;
        dot_xg = dot(g->XY, g->Z, (size_t)(r * n));

        for (size_t i = 0; i < (size_t)r; i++)
            if (!isfinite(g->env.L[i * (size_t)p->l])) {
                st = bl_fail(err, BL_ERR_NUMERIC, "ADMM diverged at outer iteration %d", it);
                goto done;
            }
        if (ao->progress)
            ao->progress(ao->progress_ctx,
                         ao->progress_base + ao->progress_span * (double)(it + 1) / limit);
    }
    if (tr && stopped) tr->paths_converged++;
    if (obj) *obj = done_it > 0 ? e[done_it - 1] : NAN;
done:
    free(XX);
    free(XXg);
    free(U0);
    free(U1);
    free(nrm);
    free(e);
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
