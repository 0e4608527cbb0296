/* The dense format in the training engine: y = x·Wᵀ with W (m×n) a trainable tensor, imported
 * through to_dense and exported as a view of the checkpoint's weight. Included by linear_impl.h
 * once per precision: the math in both, the entry (nn_format_dense) in the f32 pass only. */

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

const FN(nn_lin_math) FN(nn_dense_math) = {dense_bind, dense_fwd, dense_bwd};

#ifndef NN_F64
static size_t no_size(const nn_linear *L, int64_t N) {
    (void)L;
    (void)N;
    return 0;
}

static bl_status dense_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                              const char *prefix, bl_err *err) {
    (void)err;
    L->w = nn_add_tensor(M, o, NN_R_DENSE, L->m, L->n, "%s.weight", prefix);
    return BL_OK;
}

static bl_status dense_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                              bl_err *err) {
    (void)o;
    (void)err;
    nn_fill_normal(P + L->w, (size_t)(L->m * L->n), r, 0, 1.0f / sqrtf((float)L->n));
    return BL_OK;
}


NN_MATH_DECL(dense)
const nn_format nn_format_dense = {.format = "dense", .layout = dense_layout,
                                   .random = dense_random, .acts_size = no_size,
                                   .work_size = no_size, NN_MATH(dense)};
#endif
