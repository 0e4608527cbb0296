/* Linear layers of the training engine as _forward/_backward pairs (dense, onebit, dbf, mdbf),
 * compiled once per precision (see nn.h). The binary layers multiply by their packed sign
 * matrices with the sign kernels in both directions (bl_sign_matmul / bl_sign_matmul_t) and
 * never form a dense weight; only the gradient of a sign matrix itself (onebit latent, flipping
 * scores) is a dense m×n product, made by one gemm. */

static void dense_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y) {
    rgemm(CblasNoTrans, CblasTrans, N, L->m, L->n, 1, x, L->n, P + L->w, L->n, 0, y, L->m);
}

static void dense_backward(const nn_linear *L, const real *P, real *G, const real *x,
                           const real *dy, int64_t N, real *dx) {
    if (dx) rgemm(CblasNoTrans, CblasNoTrans, N, L->n, L->m, 1, dy, L->m, P + L->w, L->n, 1, dx,
                  L->n);
    if (G && L->grad_w)
        rgemm(CblasTrans, CblasNoTrans, L->m, L->n, N, 1, dy, L->m, x, L->n, 1, G + L->w, L->n);
}

/* ---- onebit: y = LN( h ⊙ S·(g ⊙ x) ), S = sign(latent) ---- */

static void onebit_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                           FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n;
    scale_cols(work, x, P + L->g, N, n);
    sign_mm(&L->S[0], work, N, A->z);
    scale_cols(y, A->z, P + L->h, N, m);
    if (L->post_ln) {
        FN(nn_layernorm_forward)(A->y, A->r, y, N, m);
        memcpy(y, A->y, sizeof(real) * (size_t)(N * m));
    }
}

static void onebit_backward(const nn_linear *L, const real *P, real *G, const real *x,
                            const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A,
                            real *work) {
    const int64_t m = L->m, n = L->n;
    real *dz = work, *xg = dz + N * m, *dxg = xg + N * n, *dS = dxg + N * n;
    const real *h = P + L->h, *g = P + L->g;
    if (L->post_ln) FN(nn_layernorm_backward)(dz, dy, A->y, A->r, N, m);
    else memcpy(dz, dy, sizeof(real) * (size_t)(N * m));
    if (G && L->grad_vec) colsum_acc(G + L->h, dz, A->z, N, m); /* dh = Σ_t dpre ⊙ z */
    scale_cols(dz, dz, h, N, m);                               /* dz = h ⊙ dpre */
    sign_mm_t(&L->S[0], dz, N, dxg);                           /* ∂/∂(g⊙x) = Sᵀ dz */
    if (G && L->grad_vec) colsum_acc(G + L->g, dxg, x, N, n);
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

bl_status FN(nn_linear_sync_signs)(nn_linear *L, const real *P, bl_err *err) {
    if (!L->fmt->signs_follow_latent) return BL_OK;
    nn_signs *S = &L->S[0];
    const int64_t rb = bl_sign_row_bytes(S->cols);
    const real *w = P + L->w;
#pragma omp parallel for schedule(static) if (S->rows * S->cols >= 65536)
    for (int64_t i = 0; i < S->rows; i++) {
        uint8_t *row = S->bits + i * rb;
        memset(row, 0, (size_t)rb);
        for (int64_t j = 0; j < S->cols; j++)
            if (w[i * S->cols + j] < 0) row[j >> 3] |= (uint8_t)(1u << (j & 7)); /* sign(0) = +1 */
    }
    return nn_signs_refresh(S, err);
}

/* ---- dbf: y = a ⊙ A·(μ ⊙ B·(b ⊙ x)), A = S[0] (m×k), B = S[1] (k×n) ---- */

static void dbf_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                        FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, k = L->mid;
    real *xb = work, *zz = work + N * n;
    scale_cols(xb, x, P + L->b, N, n);
    sign_mm(&L->S[1], xb, N, A->z);
    scale_cols(zz, A->z, P + L->mu, N, k);
    sign_mm(&L->S[0], zz, N, A->y);
    scale_cols(y, A->y, P + L->a, N, m);
}

static void dbf_backward(const nn_linear *L, const real *P, real *G, const real *x,
                         const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, k = L->mid;
    real *dw = work, *dzz = dw + N * m, *zz = dzz + N * k, *xb = zz + N * k, *dxb = xb + N * n;
    const bool vec = G && L->grad_vec;
    if (vec) colsum_acc(G + L->a, dy, A->y, N, m);
    scale_cols(dw, dy, P + L->a, N, m);
    sign_mm_t(&L->S[0], dw, N, dzz);
    if (vec) colsum_acc(G + L->mu, dzz, A->z, N, k);
    if (G && L->S[0].latent != NN_NONE) { /* flipping score of A: ∂L/∂A = dwᵀ·(μ⊙u) */
        scale_cols(zz, A->z, P + L->mu, N, k);
        rgemm(CblasTrans, CblasNoTrans, m, k, N, 1, dw, m, zz, k, 1, G + L->S[0].latent, k);
    }
    scale_cols(dzz, dzz, P + L->mu, N, k); /* du */
    sign_mm_t(&L->S[1], dzz, N, dxb);
    if (G && L->S[1].latent != NN_NONE) { /* ∂L/∂B = duᵀ·(b⊙x) */
        scale_cols(xb, x, P + L->b, N, n);
        rgemm(CblasTrans, CblasNoTrans, k, n, N, 1, dzz, k, xb, n, 1, G + L->S[1].latent, n);
    }
    if (vec) colsum_acc(G + L->b, dxb, x, N, n);
    if (dx) {
        const real *b = P + L->b;
#pragma omp parallel for schedule(static) if (N * n >= 65536)
        for (int64_t t = 0; t < N; t++)
            for (int64_t j = 0; j < n; j++) dx[t * n + j] += dxb[t * n + j] * b[j];
    }
}

/* ---- mdbf: y = Σ_p Σ_j A_env[:,j] ⊙ S_A·(Q_U[:,j] ⊙ z_p),
 *            z_p = Σ_j Q_V[:,j] ⊙ S_B·(B_env[:,j] ⊙ x).
 * The l scaled copies of every row are stacked as rows t·l + j, so each sign matrix is applied
 * once per direction with N·l right-hand sides. ---- */

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
    const int64_t m = L->m, n = L->n, r = L->mid, l = L->l, Nl = N * L->l;
    for (int p = 0; p < L->P; p++) {
        real *Z = A->z + p * Nl * r, *Y = A->y + p * Nl * m, *z = A->r + p * N * r;
        stack_scaled(work, x, P + L->b_env + p * n * l, N, n, l);
        sign_mm(&L->S[2 * p + 1], work, Nl, Z);
        unstack_scaled(z, Z, P + L->q_v + p * r * l, N, r, l, false);
        stack_scaled(work, z, P + L->q_u + p * r * l, N, r, l);
        sign_mm(&L->S[2 * p], work, Nl, Y);
        unstack_scaled(y, Y, P + L->a_env + p * m * l, N, m, l, p > 0);
    }
}

static void mdbf_backward(const nn_linear *L, const real *P, real *G, const real *x,
                          const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, r = L->mid, l = L->l, Nl = N * L->l;
    real *dY = work, *dXu = dY + Nl * m, *dz = dXu + Nl * r, *dZ = dz + N * r, *dX = dZ + Nl * r,
         *tmp = dX + Nl * n;
    const bool vec = G && L->grad_vec;
    for (int p = 0; p < L->P; p++) {
        const real *Z = A->z + p * Nl * r, *Y = A->y + p * Nl * m, *z = A->r + p * N * r;
        const size_t oa = L->a_env + p * m * l, ou = L->q_u + p * r * l, ov = L->q_v + p * r * l,
                     ob = L->b_env + p * n * l;
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

/* ---- the math of each format, reached through its nn_formats entry ---- */

static void dense_fwd(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                      FN(nn_lin_acts) *A, real *work) {
    (void)A;
    (void)work;
    dense_forward(L, P, x, N, y);
}

static void dense_bwd(const nn_linear *L, const real *P, real *G, const real *x, const real *dy,
                      int64_t N, real *dx, FN(nn_lin_acts) *A, real *work) {
    (void)A;
    (void)work;
    dense_backward(L, P, G, x, dy, N, dx);
}

static void dense_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    (void)A;
    (void)L;
    (void)N;
    (void)mem;
}

static void onebit_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    if (L->post_ln) {
        A->y = mem + N * L->m;
        A->r = mem + 2 * N * L->m;
    }
}

static void dbf_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    A->y = mem + N * L->mid;
}

static void mdbf_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    A->y = mem + L->P * N * L->l * L->mid;
    A->r = A->y + L->P * N * L->l * L->m;
}

/* Each format's math, named in its entry of nn_formats (nn_formats.c). */
const FN(nn_lin_math) FN(nn_dense_math) = {dense_bind, dense_fwd, dense_bwd};
const FN(nn_lin_math) FN(nn_onebit_math) = {onebit_bind, onebit_forward, onebit_backward};
const FN(nn_lin_math) FN(nn_dbf_math) = {dbf_bind, dbf_forward, dbf_backward};
const FN(nn_lin_math) FN(nn_mdbf_math) = {mdbf_bind, mdbf_forward, mdbf_backward};

void FN(nn_lin_acts_bind)(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = A->y = A->r = NULL;
    L->fmt->FN(math)->bind(A, L, N, mem);
}

void FN(nn_linear_forward)(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                           FN(nn_lin_acts) *A, real *work) {
    L->fmt->FN(math)->forward(L, P, x, N, y, A, work);
}

void FN(nn_linear_backward)(const nn_linear *L, const real *P, real *G, const real *x,
                            const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A,
                            real *work) {
    L->fmt->FN(math)->backward(L, P, G, x, dy, N, dx, A, work);
}
