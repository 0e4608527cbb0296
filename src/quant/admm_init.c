/* Paths of the alternating ADMM (admm.c): allocation, the closed-form start (ALGORITHMS.md §5)
 * and the reference's random start (the activation metric is metric.c).
 *
 * Scale convention. A path's value is Fn·G (F with unit columns, as the G-step sees it) and also
 * F·Gn (G with unit rows, as the F-step sees it). Both hold when every component k has
 * ‖F_k‖ = ‖G_k‖, so the start puts the projected TSVD factors F₀ = proj(UΣ^½), G₀ = proj(Σ^½Vᵀ)
 * into that form: F_k = F₀_k·‖G₀_k‖, G_k = G₀_k·‖F₀_k‖, which leaves F·Gn = Fn·G = F₀·G₀. Both
 * factors then scale linearly with T, as the ADMM's own iterates do, so the fit is
 * scale-equivariant. (Leaving F₀ = U·Σ^½ unnormalized made the value used for the residual of the
 * next path U·Σ^½·Vᵀ instead of U·Σ·Vᵀ, which broke P ≥ 2 at any scale but one.) */
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

/* Component norms equalized as described at the top: row k of both Z's (and of the envelope
 * factors L, whose rows are the components) scaled so that both get ‖F₀_k‖·‖G₀_k‖. */
static void balance_components(bl_qf_path *p) {
    const int64_t r = p->r, m = p->m, n = p->n;
    const int l = p->l;
    float *nf = p->f.tmp, *ng = p->g.tmp; /* r floats each of scratch */
    bl_qf_row_norms(p->f.Z, r, m, nf);
    bl_qf_row_norms(p->g.Z, r, n, ng);
    for (int64_t k = 0; k < r; k++) {
        const float cf = ng[k], cg = nf[k];
        for (int64_t j = 0; j < m; j++) p->f.Z[k * m + j] *= cf;
        for (int64_t j = 0; j < n; j++) p->g.Z[k * n + j] *= cg;
        for (int j = 0; j < l; j++) {
            p->f.env.L[k * l + j] *= cf;
            p->g.env.L[k * l + j] *= cg;
        }
    }
}

/* The projected product of the b components starting at k0 of the unprojected factors in
 * f.tmp / g.tmp, subtracted from R (m×n): what the next block of the start is fitted to. */
static bl_status subtract_block(bl_qf_path *p, int64_t k0, int64_t b, float *R, bl_err *err) {
    const int64_t m = p->m, n = p->n;
    bl_qf_env ef, eg;
    float *F = malloc(sizeof(float) * (size_t)(b * m)), *G = malloc(sizeof(float) * (size_t)(b * n));
    float *Fz = malloc(sizeof(float) * (size_t)(b * m)), *Gz = malloc(sizeof(float) * (size_t)(b * n));
    bl_status st = BL_OK;
    memset(&ef, 0, sizeof ef);
    memset(&eg, 0, sizeof eg);
    if (!F || !G || !Fz || !Gz) {
        st = bl_fail(err, BL_ERR_NOMEM, "out of memory for the binary-factor start (block of "
                     "%lld)", (long long)b);
        goto done;
    }
    memcpy(F, p->f.tmp + k0 * m, sizeof(float) * (size_t)(b * m));
    memcpy(G, p->g.tmp + k0 * n, sizeof(float) * (size_t)(b * n));
    if ((st = bl_qf_env_alloc(&ef, b, m, p->l, p->f.env.seed + (uint64_t)k0, err)) != BL_OK ||
        (st = bl_qf_env_alloc(&eg, b, n, p->l, p->g.env.seed + (uint64_t)k0, err)) != BL_OK ||
        (st = bl_qf_project(F, &ef, 12, Fz, err)) != BL_OK ||
        (st = bl_qf_project(G, &eg, 12, Gz, err)) != BL_OK)
        goto done;
    bl_qf_gemm(true, false, m, n, b, -1.0f, Fz, m, Gz, n, 1.0f, R, n);
done:
    bl_qf_env_free(&ef);
    bl_qf_env_free(&eg);
    free(F);
    free(G);
    free(Fz);
    free(Gz);
    return st;
}

bl_status bl_qf_path_init_svd(bl_qf_path *p, const float *T, const bl_qf_metric *mt, bl_err *err) {
    const int64_t m = p->m, n = p->n, r = p->r, s = m < n ? m : n;
    const int init_iters = 12; /* cold start of the envelope TSVD */
    const size_t mn = (size_t)m * (size_t)n;
    float *L = malloc(sizeof(float) * (size_t)m * (size_t)(r < s ? r : s));
    float *A = NULL, *R = NULL;
    bl_status st = BL_OK;
    if (!L)
        return bl_fail(err, BL_ERR_NOMEM, "out of memory for the binary-factor initialization "
                       "(%lldx%lld)", (long long)m, (long long)r);
    if (mt || r > s) {
        /* activation-aware: factor T·H^½ and map the right factor back with H^-½; beyond
         * min(m, n) components: a residual copy, block by block */
        A = malloc(sizeof(float) * mn);
        if (!A) {
            st = bl_fail(err, BL_ERR_NOMEM, "out of memory for the binary-factor initialization "
                         "(%lldx%lld copy)", (long long)m, (long long)n);
            goto done;
        }
        if (mt) {
            float *scratch = malloc(sizeof(float) * (size_t)m * (size_t)mt->k);
            if (!scratch) {
                st = bl_fail(err, BL_ERR_NOMEM,
                             "out of memory for the binary-factor initialization (metric)");
                goto done;
            }
            bl_qf_metric_pow(mt, T, m, 0.5, scratch, A);
            free(scratch);
        } else {
            memcpy(A, T, sizeof(float) * mn);
        }
        R = A;
    }
    for (int64_t k0 = 0; k0 < r; k0 += s) {
        const int64_t b = r - k0 < s ? r - k0 : s;
        /* G's side receives its rows directly (b×n); F = L (m×b) is kept transposed */
        if ((st = bl_qf_tsvd(R ? R : T, m, n, b, L, p->g.tmp + k0 * n, err)) != BL_OK) goto done;
        for (int64_t i = 0; i < m; i++)
            for (int64_t k = 0; k < b; k++) p->f.tmp[(k0 + k) * m + i] = L[i * b + k];
        if (k0 + b < r && (st = subtract_block(p, k0, b, R, err)) != BL_OK) goto done;
    }
    if (mt) { /* G = RT·H^-½ */
        memcpy(p->g.XY, p->g.tmp, sizeof(float) * (size_t)(r * n));
        bl_qf_metric_pow(mt, p->g.XY, r, -0.5, p->g.B, p->g.tmp);
    }
    p->f.env.warm = p->g.env.warm = false;
    if ((st = bl_qf_project(p->f.tmp, &p->f.env, init_iters, p->f.Z, err)) != BL_OK) goto done;
    if ((st = bl_qf_project(p->g.tmp, &p->g.env, init_iters, p->g.Z, err)) != BL_OK) goto done;
    balance_components(p);
    memset(p->f.U, 0, sizeof(float) * (size_t)(r * m));
    memset(p->g.U, 0, sizeof(float) * (size_t)(r * n));
done:
    free(L);
    free(A);
    return st;
}

void bl_qf_path_init_random(bl_qf_path *p, uint64_t seed, double t_rms) {
    /* entries of F·G then have about T's RMS: r·σ⁴ = rms² */
    const float sigma = (float)pow(t_rms * t_rms / (double)p->r, 0.25);
    const size_t nf = (size_t)(p->r * p->m), ng = (size_t)(p->r * p->n);
    bl_qf_fill_normal(p->f.Z, nf, seed + 1);
    bl_qf_fill_normal(p->g.Z, ng, seed + 2);
    for (size_t i = 0; i < nf; i++) p->f.Z[i] *= sigma;
    for (size_t i = 0; i < ng; i++) p->g.Z[i] *= sigma;
    memset(p->f.U, 0, sizeof(float) * nf);
    memset(p->g.U, 0, sizeof(float) * ng);
    p->f.env.warm = p->g.env.warm = false;
}
