/* The dbf format in the training engine: y = a ⊙ A·(μ ⊙ B·(b ⊙ x)), A = S[0] (m×k),
 * B = S[1] (k×n), k = params.mid; the signs frozen (or flipped through latent scores). Included
 * by linear_impl.h once per precision: the math in both, the entry (nn_format_dbf) in the f32
 * pass only. Activations kept for backward (nn_lin_acts): z = u = B·(b⊙x) (N×k),
 * y = A·(μ⊙u) (N×m). */

/* Its F16 tensors in the nn layout: L->part[i] holds dbf_parts[i]. */
enum { DBF_A, DBF_MU, DBF_B };

static void dbf_forward(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                        FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, k = L->params.mid;
    real *xb = work, *zz = work + N * n;
    scale_cols(xb, x, P + L->part[DBF_B], N, n);
    sign_mm(&L->S[1], xb, N, A->z);
    scale_cols(zz, A->z, P + L->part[DBF_MU], N, k);
    sign_mm(&L->S[0], zz, N, A->y);
    scale_cols(y, A->y, P + L->part[DBF_A], N, m);
}

static void dbf_backward(const nn_linear *L, const real *P, real *G, const real *x,
                         const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A, real *work) {
    const int64_t m = L->m, n = L->n, k = L->params.mid;
    real *dw = work, *dzz = dw + N * m, *zz = dzz + N * k, *xb = zz + N * k, *dxb = xb + N * n;
    const bool vec = G && L->grad_vec;
    if (vec) colsum_acc(G + L->part[DBF_A], dy, A->y, N, m);
    scale_cols(dw, dy, P + L->part[DBF_A], N, m);
    sign_mm_t(&L->S[0], dw, N, dzz);
    if (vec) colsum_acc(G + L->part[DBF_MU], dzz, A->z, N, k);
    if (G && L->S[0].latent != NN_NONE) { /* flipping score of A: ∂L/∂A = dwᵀ·(μ⊙u) */
        scale_cols(zz, A->z, P + L->part[DBF_MU], N, k);
        rgemm(CblasTrans, CblasNoTrans, m, k, N, 1, dw, m, zz, k, 1, G + L->S[0].latent, k);
    }
    scale_cols(dzz, dzz, P + L->part[DBF_MU], N, k); /* du */
    sign_mm_t(&L->S[1], dzz, N, dxb);
    if (G && L->S[1].latent != NN_NONE) { /* ∂L/∂B = duᵀ·(b⊙x) */
        scale_cols(xb, x, P + L->part[DBF_B], N, n);
        rgemm(CblasTrans, CblasNoTrans, k, n, N, 1, dzz, k, xb, n, 1, G + L->S[1].latent, n);
    }
    if (vec) colsum_acc(G + L->part[DBF_B], dxb, x, N, n);
    if (dx) {
        const real *b = P + L->part[DBF_B];
#pragma omp parallel for schedule(static) if (N * n >= 65536)
        for (int64_t t = 0; t < N; t++)
            for (int64_t j = 0; j < n; j++) dx[t * n + j] += dxb[t * n + j] * b[j];
    }
}

static void dbf_bind(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = mem;
    A->y = mem + N * L->params.mid;
}

const FN(nn_lin_math) FN(nn_dbf_math) = {dbf_bind, dbf_forward, dbf_backward};

#ifndef NN_F64
static bl_status dbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                            const char *prefix, bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->params.mid;
    L->part[DBF_A] = nn_add_tensor(M, o, NN_R_SCALE, m, 0, "%s.a", prefix);
    L->part[DBF_MU] = nn_add_tensor(M, o, NN_R_SCALE, k, 0, "%s.mu", prefix);
    L->part[DBF_B] = nn_add_tensor(M, o, NN_R_SCALE, n, 0, "%s.b", prefix);
    bl_status s = nn_new_signs(L, 2, err);
    if (!s) s = nn_init_signs(&L->S[0], m, k, err);
    if (!s) s = nn_init_signs(&L->S[1], k, n, err);
    if (!s && o->flip) {
        L->S[0].latent = nn_add_tensor(M, o, NN_R_FLIP, m, k, "%s.flip.A", prefix);
        L->S[1].latent = nn_add_tensor(M, o, NN_R_FLIP, k, n, "%s.flip.B", prefix);
    }
    return s;
}

static const nn_part dbf_parts[] = {[DBF_A] = {"a"}, [DBF_MU] = {"mu"}, [DBF_B] = {"b"}};

static bl_status dbf_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                            bl_err *err) {
    const int64_t k = L->params.mid;
    nn_random_signs(&L->S[0], r);
    nn_random_signs(&L->S[1], r);
    nn_fill_pos(P + L->part[DBF_A], (size_t)L->m, r, 1.0f);
    nn_fill_pos(P + L->part[DBF_MU], (size_t)k, r, k ? 1.0f / sqrtf((float)k) : 0);
    nn_fill_pos(P + L->part[DBF_B], (size_t)L->n, r, 1.0f / sqrtf((float)L->n));
    return nn_frozen_signs_ready(L, o, P, err);
}

static size_t dbf_acts(const nn_linear *L, int64_t N) {
    return (size_t)(N * (L->params.mid + L->m));
}

static size_t dbf_work(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + 2 * N * L->params.mid + 2 * N * L->n);
}

NN_MATH_DECL(dbf)
const nn_format nn_format_dbf = {.format = "dbf", .opts = NN_OPT_BIT(NN_OPT_FLIP),
                                 .layout = dbf_layout, NN_PARTS(dbf_parts),
                                 .imported = nn_frozen_signs_ready, .random = dbf_random,
                                 .acts_size = dbf_acts, .work_size = dbf_work, NN_MATH(dbf)};
#endif
