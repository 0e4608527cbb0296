/* The mdbf format in the training engine:
 *     y = Σ_p Σ_j A_env[:,j] ⊙ S_A·(Q_U[:,j] ⊙ z_p),   z_p = Σ_j Q_V[:,j] ⊙ S_B·(B_env[:,j] ⊙ x)
 * over P = params.paths paths of middle dimension r = params.mid and envelope rank
 * l = params.rank_l; S[2p] = S_A of path p (m×r), S[2p + 1] = S_B (r×n), frozen (or flipped
 * through latent scores). Included by linear_impl.h once per precision: the math in both, the
 * entry (nn_format_mdbf) in the f32 pass only.
 * Activations kept for backward (nn_lin_acts): z = the S_B products [P][N·l][r], y = the S_A
 * products [P][N·l][m], r = the middle activations [P][N][r]. */

/* Its F16 tensors in the nn layout, each [P][rows][l]: L->part[i] holds mdbf_parts[i]. */
enum { MDBF_A_ENV, MDBF_Q_U, MDBF_Q_V, MDBF_B_ENV };

/* The l scaled copies of every row are stacked as rows t·l + j, so each sign matrix is applied
 * once per direction with N·l right-hand sides. */

/* out[t·l+j][c] = env[c][j] · in[t][c] */
static void stack_scaled(real *out, const real *in, const real *env, int64_t N, int64_t c_n,
                         int64_t l) {
#pragma omp parallel for schedule(static) if (N * l * c_n >= 65536)
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < l; j++)
            for (int64_t c = 0; c < c_n; c++)
                out[(t * l + j) * c_n + c] = env[c * l + j] * in[t * c_n + c];
}

/* out[t][c] (+)= Σ_j env[c][j] · in[t·l+j][c] */
static void unstack_scaled(real *out, const real *in, const real *env, int64_t N, int64_t c_n,
                           int64_t l, bool add) {
#pragma omp parallel for schedule(static) if (N * l * c_n >= 65536)
    for (int64_t t = 0; t < N; t++)
        for (int64_t c = 0; c < c_n; c++) {
            real s = 0;
            for (int64_t j = 0; j < l; j++) s += env[c * l + j] * in[(t * l + j) * c_n + c];
            out[t * c_n + c] = add ? out[t * c_n + c] + s : s;
        }
}

/* genv[c][j] += Σ_t a[t·l+j][c] · b[t][c], serially in token order */
static void env_grad(real *genv, const real *a, const real *b, int64_t N, int64_t c_n,
                     int64_t l) {
    for (int64_t t = 0; t < N; t++)
        for (int64_t j = 0; j < l; j++)
            for (int64_t c = 0; c < c_n; c++)
                genv[c * l + j] += a[(t * l + j) * c_n + c] * b[t * c_n + c];
}

static void mdbf_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                         FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, r = L->params.mid, l = L->params.rank_l, Nl = N * l;
    for (int p = 0; p < L->params.paths; p++) {
        real *Z = A->z + p * Nl * r, *Y = A->y + p * Nl * m, *z = A->r + p * N * r;
        stack_scaled(work, x, P + L->part[MDBF_B_ENV] + p * n * l, N, n, l);
        sign_mm(&L->S[2 * p + 1], work, Nl, Z);
        unstack_scaled(z, Z, P + L->part[MDBF_Q_V] + p * r * l, N, r, l, false);
        stack_scaled(work, z, P + L->part[MDBF_Q_U] + p * r * l, N, r, l);
        sign_mm(&L->S[2 * p], work, Nl, Y);
        unstack_scaled(y, Y, P + L->part[MDBF_A_ENV] + p * m * l, N, m, l, p > 0);
    }
}

static void mdbf_backward(const nn_linear *L, const real *P, real *G, const real *x,
                          const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, r = L->params.mid, l = L->params.rank_l, Nl = N * l;
    real *dY = work, *dXu = dY + Nl * m, *dz = dXu + Nl * r, *dZ = dz + N * r, *dX = dZ + Nl * r,
         *tmp = dX + Nl * n;
    const bool vec = G && L->grad_vec;
    for (int p = 0; p < L->params.paths; p++) {
        const real *Z = A->z + p * Nl * r, *Y = A->y + p * Nl * m, *z = A->r + p * N * r;
        const size_t oa = L->part[MDBF_A_ENV] + p * m * l, ou = L->part[MDBF_Q_U] + p * r * l,
                     ov = L->part[MDBF_Q_V] + p * r * l,
                     ob = L->part[MDBF_B_ENV] + p * n * l;
        const nn_signs *SA = &L->S[2 * p], *SB = &L->S[2 * p + 1];
        if (vec) env_grad(G + oa, Y, dy, N, m, l);
        stack_scaled(dY, dy, P + oa, N, m, l);
        if (G && SA->latent != NN_NONE) {
            stack_scaled(tmp, z, P + ou, N, r, l);
            rgemm(CblasTrans, CblasNoTrans, m, r, Nl, 1, dY, m, tmp, r, 1, G + SA->latent, r);
        }
        sign_mm_t(SA, dY, Nl, dXu);
        if (vec) env_grad(G + ou, dXu, z, N, r, l);
        unstack_scaled(dz, dXu, P + ou, N, r, l, false);
        if (vec) { /* dQ_V[i][j] += Σ_t dz_t[i]·Z[t·l+j][i] */
            for (int64_t t = 0; t < N; t++)
                for (int64_t j = 0; j < l; j++)
                    for (int64_t i = 0; i < r; i++)
                        G[ov + i * l + j] += dz[t * r + i] * Z[(t * l + j) * r + i];
        }
        stack_scaled(dZ, dz, P + ov, N, r, l);
        if (G && SB->latent != NN_NONE) {
            stack_scaled(tmp, x, P + ob, N, n, l);
            rgemm(CblasTrans, CblasNoTrans, r, n, Nl, 1, dZ, r, tmp, n, 1, G + SB->latent, n);
        }
        sign_mm_t(SB, dZ, Nl, dX);
        if (vec) env_grad(G + ob, dX, x, N, n, l);
        if (dx) unstack_scaled(dx, dX, P + ob, N, n, l, true);
    }
}

static void mdbf_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    A->y = mem + L->params.paths * N * L->params.rank_l * L->params.mid;
    A->r = A->y + L->params.paths * N * L->params.rank_l * L->m;
}


const FN(nn_lin_math) FN(nn_mdbf_math) = {mdbf_bind, mdbf_forward, mdbf_backward};

#ifndef NN_F64
static bl_status mdbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                             const char *prefix, bl_err *err) {
    const int64_t m = L->m, n = L->n, r = L->params.mid;
    const int l = L->params.rank_l, P = L->params.paths;
    L->part[MDBF_A_ENV] = nn_add_tensor(M, o, NN_R_ENVELOPE, P * m, l, "%s.A_env", prefix);
    L->part[MDBF_Q_U] = nn_add_tensor(M, o, NN_R_ENVELOPE, P * r, l, "%s.Q_U", prefix);
    L->part[MDBF_Q_V] = nn_add_tensor(M, o, NN_R_ENVELOPE, P * r, l, "%s.Q_V", prefix);
    /* l = 1: the checkpoint keeps one middle vector (Q_V merged into Q_U, as dbf's μ), so Q_V
     * stays at its stored ones and the layer trains exactly dbf's parameters */
    if (l == 1) M->t[M->n_t - 1].trainable = false;
    L->part[MDBF_B_ENV] = nn_add_tensor(M, o, NN_R_ENVELOPE, P * n, l, "%s.B_env", prefix);
    bl_status s = nn_new_signs(L, 2 * P, err);
    for (int p = 0; p < P && !s; p++) {
        s = nn_init_signs(&L->S[2 * p], m, r, err);
        if (!s) s = nn_init_signs(&L->S[2 * p + 1], r, n, err);
        if (!s && o->flip) {
            L->S[2 * p].latent = nn_add_tensor(M, o, NN_R_FLIP, m, r, "%s.p%d.flip.SA", prefix, p);
            L->S[2 * p + 1].latent =
                nn_add_tensor(M, o, NN_R_FLIP, r, n, "%s.p%d.flip.SB", prefix, p);
        }
    }
    return s;
}

/* Q_V with l = 1 is ones in memory (merged into Q_U when stored). */
static const nn_part mdbf_parts[] = {[MDBF_A_ENV] = {"p%d.A_env"}, [MDBF_Q_U] = {"p%d.Q_U"},
                                     [MDBF_Q_V] = {"p%d.Q_V"}, [MDBF_B_ENV] = {"p%d.B_env"}};

static bl_status mdbf_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                             bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->params.mid, l = L->params.rank_l;
    for (int p = 0; p < L->params.paths; p++) {
        nn_random_signs(&L->S[2 * p], r);
        nn_random_signs(&L->S[2 * p + 1], r);
    }
    const float sk = k ? 1.0f / sqrtf((float)k) : 0;
    const int paths = L->params.paths;
    nn_fill_pos(P + L->part[MDBF_A_ENV], (size_t)(paths * m * l), r, 1.0f / (float)(l * paths));
    nn_fill_pos(P + L->part[MDBF_Q_U], (size_t)(paths * k * l), r, 1.0f);
    nn_fill_pos(P + L->part[MDBF_Q_V], (size_t)(paths * k * l), r, sk / (float)l);
    nn_fill_pos(P + L->part[MDBF_B_ENV], (size_t)(paths * n * l), r, 1.0f / sqrtf((float)n));
    return nn_frozen_signs_ready(L, o, P, err);
}

static size_t mdbf_acts(const nn_linear *L, int64_t N) {
    const int64_t m = L->m, k = L->params.mid, l = L->params.rank_l;
    return (size_t)(L->params.paths * (N * l * k + N * l * m + N * k));
}

static size_t mdbf_work(const nn_linear *L, int64_t N) {
    const int64_t m = L->m, n = L->n, k = L->params.mid, Nl = N * L->params.rank_l;
    const int64_t wide = n > k ? n : k;
    return (size_t)(Nl * m + 2 * Nl * k + N * k + Nl * n + Nl * wide);
}

NN_MATH_DECL(mdbf)
const nn_format nn_format_mdbf = {.format = "mdbf", .opts = NN_OPT_BIT(NN_OPT_FLIP),
                                  .layout = mdbf_layout, NN_PARTS(mdbf_parts),
                                  .imported = nn_frozen_signs_ready, .random = mdbf_random,
                                  .acts_size = mdbf_acts, .work_size = mdbf_work, NN_MATH(mdbf)};
#endif
