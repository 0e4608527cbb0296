/* The onebit format in the training engine: y = LN( h ⊙ S·(g ⊙ x) ), S = sign(latent), the
 * latent (m×n) trained through a straight-through estimator. Included by linear_impl.h once per
 * precision: the math in both, the entry (nn_format_onebit) in the f32 pass only.
 * Activations kept for backward (nn_lin_acts): z = S·(g⊙x) (N×m); with post_ln, y = the
 * post-LN output (N×m) and r = its 1/std (N). */

/* Its F16 tensors in the nn layout: L->part[i] holds onebit_parts[i]. */
enum { ONEBIT_G, ONEBIT_H };

static void onebit_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                           FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n;
    scale_cols(work, x, P + L->part[ONEBIT_G], N, n);
    sign_mm(&L->S[0], work, N, A->z);
    scale_cols(y, A->z, P + L->part[ONEBIT_H], N, m);
    if (L->params.post_ln) {
        FN(nn_layernorm_forward)(A->y, A->r, y, N, m);
        memcpy(y, A->y, sizeof(real) * (size_t)(N * m));
    }
}

static void onebit_backward(const nn_linear *L, const real *P, real *G, const real *x,
                            const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A,
                            real *work) {
    const int64_t m = L->m, n = L->n;
    real *dz = work, *xg = dz + N * m, *dxg = xg + N * n, *dS = dxg + N * n;
    const real *h = P + L->part[ONEBIT_H], *g = P + L->part[ONEBIT_G];
    if (L->params.post_ln) FN(nn_layernorm_backward)(dz, dy, A->y, A->r, N, m);
    else memcpy(dz, dy, sizeof(real) * (size_t)(N * m));
    if (G && L->grad_vec) colsum_acc(G + L->part[ONEBIT_H], dz, A->z, N, m); /* dh = Σ_t dpre ⊙ z */
    scale_cols(dz, dz, h, N, m);                               /* dz = h ⊙ dpre */
    sign_mm_t(&L->S[0], dz, N, dxg);                           /* ∂/∂(g⊙x) = Sᵀ dz */
    if (G && L->grad_vec) colsum_acc(G + L->part[ONEBIT_G], dxg, x, N, n);
    if (dx) {
#pragma omp parallel for schedule(static) if (N * n >= 65536)
        for (int64_t t = 0; t < N; t++)
            for (int64_t j = 0; j < n; j++) dx[t * n + j] += dxg[t * n + j] * g[j];
    }
    if (G && L->grad_w) {
        /* ∂L/∂S = dzᵀ·(g⊙x); straight-through to the latent: × (1.001 − tanh(w)²). */
        scale_cols(xg, x, g, N, n);
        rgemm(CblasTrans, CblasNoTrans, m, n, N, 1, dz, m, xg, n, 0, dS, n);
        const real *w = P + L->w;
        real *gw = G + L->w;
#pragma omp parallel for schedule(static) if (m * n >= 65536)
        for (int64_t i = 0; i < m * n; i++) {
            const real th = rtanh(w[i]);
            gw[i] += dS[i] * ((real)1.001 - th * th);
        }
    }
}

static void onebit_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    if (L->params.post_ln) {
        A->y = mem + N * L->m;
        A->r = mem + 2 * N * L->m;
    }
}

const FN(nn_lin_math) FN(nn_onebit_math) = {onebit_bind, onebit_forward, onebit_backward};

#ifndef NN_F64
static void onebit_opts(bl_format_params *p, const nn_build_opts *o) {
    p->post_ln = o->post_ln < 0 ? p->post_ln : o->post_ln > 0;
}

static bl_status onebit_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                               const char *prefix, bl_err *err) {
    L->w = nn_add_tensor(M, o, NN_R_LATENT, L->m, L->n, "%s.latent", prefix);
    L->part[ONEBIT_G] = nn_add_tensor(M, o, NN_R_SCALE, L->n, 0, "%s.g", prefix);
    L->part[ONEBIT_H] = nn_add_tensor(M, o, NN_R_SCALE, L->m, 0, "%s.h", prefix);
    bl_status s = nn_new_signs(L, 1, err);
    return s ? s : nn_init_signs(&L->S[0], L->m, L->n, err);
}

static const nn_part onebit_parts[] = {[ONEBIT_G] = {"g"}, [ONEBIT_H] = {"h"}};

/* The latent starts at ±latent_init from the imported signs. */
static bl_status onebit_imported(const nn_linear *L, const nn_build_opts *o, float *P,
                                 bl_err *err) {
    (void)err;
    nn_latent_from_bits(P + L->w, &L->S[0], o->latent_init);
    return BL_OK;
}

static bl_status onebit_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                               bl_err *err) {
    (void)o;
    (void)err;
    const int64_t m = L->m, n = L->n;
    /* latent magnitudes spread over [0.005, 1) so the straight-through factor varies */
    for (int64_t i = 0; i < m * n; i++)
        P[L->w + i] = (bl_rng_u64(r) & 1 ? -1.0f : 1.0f) * (0.005f + bl_rng_uniform(r));
    nn_fill_pos(P + L->part[ONEBIT_G], (size_t)n, r, 1.0f);
    nn_fill_pos(P + L->part[ONEBIT_H], (size_t)m, r, 1.0f / sqrtf((float)n));
    return BL_OK;
}

static size_t onebit_acts(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + (L->params.post_ln ? N * L->m + N : 0));
}

static size_t onebit_work(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + 2 * N * L->n + L->m * L->n);
}

NN_MATH_DECL(onebit)
const nn_format nn_format_onebit = {
    .format = "onebit", .signs_follow_latent = true,
    .opts = NN_OPT_BIT(NN_OPT_POST_LN) | NN_OPT_BIT(NN_OPT_LATENT_INIT),
    .apply_opts = onebit_opts, .layout = onebit_layout, NN_PARTS(onebit_parts),
    .imported = onebit_imported, .random = onebit_random, .acts_size = onebit_acts,
    .work_size = onebit_work, NN_MATH(onebit)};
#endif
