/* The whole decoder: activations for a batch of B sequences × T tokens (one allocation sized
 * from a table, llm.c style), the forward pass that keeps what backward needs, and the backward
 * pass. Compiled once per precision (see nn.h). */

#define NN_ALIGN 16 /* reals per slab boundary: 64 bytes for f32 */

static size_t round_up(size_t n) { return (n + NN_ALIGN - 1) / NN_ALIGN * NN_ALIGN; }

bl_status FN(nn_acts_new)(const nn_model *M, int B, int T, FN(nn_acts) **out, bl_err *err) {
    *out = NULL;
    const bl_config *c = &M->cfg;
    if (B < 1 || T < 1 || T > M->max_seq)
        return bl_fail(err, BL_ERR_ARG, "batch %d × %d tokens: need B >= 1 and 1 <= T <= %d", B,
                       T, M->max_seq);
    FN(nn_acts) *A = calloc(1, sizeof *A);
    if (!A) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    /* The attention products call BLAS from OpenMP threads: OpenBLAS must not thread itself. */
    bl_blas_single_thread();
    const int64_t N = (int64_t)B * T, D = c->dim, H = c->hidden_dim, L = c->n_layers;
    const int64_t nh = c->n_heads, nkv = c->n_kv_heads, qd = nh * c->head_dim,
                  kvd = nkv * c->head_dim, V = c->vocab_size, wq = qd > kvd ? qd : kvd;
    const bool qkn = c->qk_norm;
    A->B = B;
    A->T = T;
    A->N = N;
    A->n_layers = (int)L;
    A->n_threads = omp_get_max_threads();
    size_t lin_total = 0, work = 0;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const nn_linear *li = &M->layers[l].proj[p];
            lin_total += round_up(nn_linear_acts_size(li, N));
            size_t w = nn_linear_work_size(li, N);
            work = w > work ? w : work;
        }
    real *lin_mem = NULL;
    struct {
        real **p;
        double n;
    } tab[] = {
        {&A->x, (double)(L + 1) * N * D}, {&A->xn1, (double)L * N * D}, {&A->rstd1, (double)L * N},
        {&A->qlin, qkn ? (double)L * N * qd : 0}, {&A->klin, qkn ? (double)L * N * kvd : 0},
        {&A->rstdq, qkn ? (double)L * N * nh : 0}, {&A->rstdk, qkn ? (double)L * N * nkv : 0},
        {&A->q, (double)L * N * qd}, {&A->k, (double)L * N * kvd}, {&A->v, (double)L * N * kvd},
        {&A->P, (double)L * B * nh * T * T}, {&A->ao, (double)L * N * qd},
        {&A->xmid, (double)L * N * D}, {&A->xn2, (double)L * N * D}, {&A->rstd2, (double)L * N},
        {&A->gate, (double)L * N * H}, {&A->up, (double)L * N * H}, {&A->hmid, (double)L * N * H},
        {&lin_mem, (double)lin_total}, {&A->xf, (double)N * D}, {&A->rstdf, (double)N},
        {&A->logits, (double)N * V}, {&A->dhid, (double)L * N * D}, {&A->dx, (double)N * D},
        {&A->dxn, (double)N * D}, {&A->dq, (double)N * qd}, {&A->dk, (double)N * kvd},
        {&A->dv, (double)N * kvd}, {&A->dtmp, (double)N * wq}, {&A->dao, (double)N * qd},
        {&A->dgate, (double)N * H}, {&A->dup, (double)N * H}, {&A->dhmid, (double)N * H},
        {&A->attw, (double)A->n_threads * T * T}, {&A->work, (double)work},
    };
    const int n_tab = (int)(sizeof tab / sizeof tab[0]);
    double total = 0;
    for (int i = 0; i < n_tab; i++) total += (double)round_up((size_t)tab[i].n);
    if (total * sizeof(real) > 1e15) {
        free(A);
        return bl_fail(err, BL_ERR_NOMEM, "activations for %d × %d tokens are too large", B, T);
    }
    A->mem = bl_aligned_alloc((size_t)total * sizeof(real));
    A->row = malloc((size_t)N * sizeof(double));
    A->lin = calloc((size_t)(L * BL_PROJ_COUNT), sizeof *A->lin);
    if (!A->mem || !A->row || !A->lin) {
        FN(nn_acts_free)(A);
        return bl_fail(err, BL_ERR_NOMEM, "cannot allocate %.1f MiB of activations for %d × %d "
                       "tokens", total * sizeof(real) / 1048576.0, B, T);
    }
    real *at = A->mem;
    for (int i = 0; i < n_tab; i++) {
        *tab[i].p = tab[i].n > 0 ? at : NULL;
        at += round_up((size_t)tab[i].n);
    }
    for (int l = 0; l < L; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const nn_linear *li = &M->layers[l].proj[p];
            FN(nn_lin_acts_bind)(&A->lin[l * BL_PROJ_COUNT + p], li, N, lin_mem);
            lin_mem += round_up(nn_linear_acts_size(li, N));
        }
    *out = A;
    return BL_OK;
}

void FN(nn_acts_free)(FN(nn_acts) *A) {
    if (!A) return;
    bl_aligned_free(A->mem);
    free(A->row);
    free(A->lin);
    free(A);
}

/* The per-layer slab of a [L][count] buffer. */
#define SLAB(buf, l, count) ((buf) ? (buf) + (int64_t)(l) * (count) : NULL)

void FN(nn_layer_forward)(const nn_model *M, const real *P, FN(nn_acts) *A, int l) {
    const bl_config *c = &M->cfg;
    const int64_t N = A->N, D = c->dim, H = c->hidden_dim;
    const int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd, TT = (int64_t)A->T * A->T;
    const nn_layer *ly = &M->layers[l];
    FN(nn_lin_acts) *la = A->lin + l * BL_PROJ_COUNT;
    real *x = A->x + l * N * D, *xo = x + N * D;
    real *xn1 = SLAB(A->xn1, l, N * D), *q = SLAB(A->q, l, N * qd), *k = SLAB(A->k, l, N * kvd),
         *v = SLAB(A->v, l, N * kvd), *ao = SLAB(A->ao, l, N * qd),
         *xmid = SLAB(A->xmid, l, N * D), *xn2 = SLAB(A->xn2, l, N * D),
         *gate = SLAB(A->gate, l, N * H), *up = SLAB(A->up, l, N * H),
         *hmid = SLAB(A->hmid, l, N * H);
    real *qo = c->qk_norm ? SLAB(A->qlin, l, N * qd) : q;
    real *ko = c->qk_norm ? SLAB(A->klin, l, N * kvd) : k;
    FN(nn_rmsnorm_forward)(xn1, SLAB(A->rstd1, l, N), x, P + ly->attn_norm, N, (int)D,
                           c->norm_eps);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_Q], P, xn1, N, qo, &la[BL_PROJ_Q], A->work);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_K], P, xn1, N, ko, &la[BL_PROJ_K], A->work);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_V], P, xn1, N, v, &la[BL_PROJ_V], A->work);
    if (ly->bias[0] != NN_NONE) {
        FN(nn_bias_forward)(qo, P + ly->bias[0], N, qd);
        FN(nn_bias_forward)(ko, P + ly->bias[1], N, kvd);
        FN(nn_bias_forward)(v, P + ly->bias[2], N, kvd);
    }
    if (c->qk_norm) { /* per-head RMSNorm: rows of head_dim values */
        FN(nn_rmsnorm_forward)(q, SLAB(A->rstdq, l, N * nh), qo, P + ly->q_norm, N * nh, hd,
                               c->norm_eps);
        FN(nn_rmsnorm_forward)(k, SLAB(A->rstdk, l, N * nkv), ko, P + ly->k_norm, N * nkv, hd,
                               c->norm_eps);
    }
    FN(nn_rope_forward)(q, q, N, A->T, nh, hd, M->rope_cos, M->rope_sin, c->rope_interleaved);
    FN(nn_rope_forward)(k, k, N, A->T, nkv, hd, M->rope_cos, M->rope_sin,
                        c->rope_interleaved);
    FN(nn_attention_forward)(ao, SLAB(A->P, l, (int64_t)A->B * nh * TT), q, k, v, A->B, A->T,
                             nh, nkv, hd);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_O], P, ao, N, xmid, &la[BL_PROJ_O], A->work);
    for (int64_t i = 0; i < N * D; i++) xmid[i] += x[i];
    FN(nn_rmsnorm_forward)(xn2, SLAB(A->rstd2, l, N), xmid, P + ly->ffn_norm, N, (int)D,
                           c->norm_eps);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_GATE], P, xn2, N, gate, &la[BL_PROJ_GATE],
                          A->work);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_UP], P, xn2, N, up, &la[BL_PROJ_UP], A->work);
    FN(nn_swiglu_forward)(hmid, gate, up, N * H);
    FN(nn_linear_forward)(&ly->proj[BL_PROJ_DOWN], P, hmid, N, xo, &la[BL_PROJ_DOWN],
                          A->work);
    for (int64_t i = 0; i < N * D; i++) xo[i] += xmid[i];
}

void FN(nn_forward)(const nn_model *M, const real *P, FN(nn_acts) *A, const int32_t *tok) {
    const bl_config *c = &M->cfg;
    const int64_t N = A->N, D = c->dim;
    FN(nn_embedding_forward)(A->x, tok, N, P + M->embed, (int)D);
    for (int l = 0; l < c->n_layers; l++) FN(nn_layer_forward)(M, P, A, l);
    FN(nn_rmsnorm_forward)(A->xf, A->rstdf, A->x + c->n_layers * N * D, P + M->out_norm, N,
                           (int)D, c->norm_eps);
    rgemm(CblasNoTrans, CblasTrans, N, c->vocab_size, D, 1, A->xf, D, P + M->head, D, 0,
          A->logits, c->vocab_size);
}

/* Gradient statistics hook: Σ_t dy² per output channel, serially in token order. */
static void sumsq_acc(FN(nn_acts) *A, int l, int p, const real *dy, int64_t m) {
    if (!A->dy_sumsq || !A->dy_sumsq[l * BL_PROJ_COUNT + p]) return;
    double *acc = A->dy_sumsq[l * BL_PROJ_COUNT + p];
    for (int64_t t = 0; t < A->N; t++)
        for (int64_t i = 0; i < m; i++) acc[i] += (double)dy[t * m + i] * dy[t * m + i];
}

static void zero(real *p, int64_t n) { memset(p, 0, sizeof(real) * (size_t)n); }

void FN(nn_layer_backward)(const nn_model *M, const real *P, real *G, FN(nn_acts) *A, int l) {
    const bl_config *c = &M->cfg;
    const int64_t N = A->N, D = c->dim, H = c->hidden_dim;
    const int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd, TT = (int64_t)A->T * A->T;
    real *Gn = G && M->grad_norms ? G : NULL; /* norms, q/k norms and biases */
    const nn_layer *ly = &M->layers[l];
    FN(nn_lin_acts) *la = A->lin + l * BL_PROJ_COUNT;
    const real *x = A->x + l * N * D;
    const real *xn1 = SLAB(A->xn1, l, N * D), *q = SLAB(A->q, l, N * qd),
               *k = SLAB(A->k, l, N * kvd), *v = SLAB(A->v, l, N * kvd),
               *ao = SLAB(A->ao, l, N * qd), *xmid = SLAB(A->xmid, l, N * D),
               *xn2 = SLAB(A->xn2, l, N * D), *gate = SLAB(A->gate, l, N * H),
               *up = SLAB(A->up, l, N * H), *hmid = SLAB(A->hmid, l, N * H);
    /* MLP: dx is the gradient of this layer's output, and of xmid through the residual. */
    sumsq_acc(A, l, BL_PROJ_DOWN, A->dx, D);
    zero(A->dhmid, N * H);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_DOWN], P, G, hmid, A->dx, N, A->dhmid,
                           &la[BL_PROJ_DOWN], A->work);
    FN(nn_swiglu_backward)(A->dgate, A->dup, A->dhmid, gate, up, N * H);
    sumsq_acc(A, l, BL_PROJ_GATE, A->dgate, H);
    sumsq_acc(A, l, BL_PROJ_UP, A->dup, H);
    zero(A->dxn, N * D);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_GATE], P, G, xn2, A->dgate, N, A->dxn,
                           &la[BL_PROJ_GATE], A->work);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_UP], P, G, xn2, A->dup, N, A->dxn,
                           &la[BL_PROJ_UP], A->work);
    FN(nn_rmsnorm_backward)(A->dx, Gn ? Gn + ly->ffn_norm : NULL, A->dxn, xmid,
                            P + ly->ffn_norm, SLAB(A->rstd2, l, N), N, (int)D);
    /* attention: dx is now the gradient of xmid, and of x through the residual */
    sumsq_acc(A, l, BL_PROJ_O, A->dx, D);
    zero(A->dao, N * qd);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_O], P, G, ao, A->dx, N, A->dao, &la[BL_PROJ_O],
                           A->work);
    FN(nn_attention_backward)(A->dq, A->dk, A->dv, A->dao,
                              SLAB(A->P, l, (int64_t)A->B * nh * TT), q, k, v, A->B, A->T,
                              nh, nkv, hd, A->attw, A->n_threads);
    FN(nn_rope_backward)(A->dq, A->dq, N, A->T, nh, hd, M->rope_cos, M->rope_sin,
                         c->rope_interleaved);
    FN(nn_rope_backward)(A->dk, A->dk, N, A->T, nkv, hd, M->rope_cos, M->rope_sin,
                         c->rope_interleaved);
    if (c->qk_norm) {
        zero(A->dtmp, N * qd);
        FN(nn_rmsnorm_backward)(A->dtmp, Gn ? Gn + ly->q_norm : NULL, A->dq,
                                SLAB(A->qlin, l, N * qd), P + ly->q_norm,
                                SLAB(A->rstdq, l, N * nh), N * nh, hd);
        memcpy(A->dq, A->dtmp, sizeof(real) * (size_t)(N * qd));
        zero(A->dtmp, N * kvd);
        FN(nn_rmsnorm_backward)(A->dtmp, Gn ? Gn + ly->k_norm : NULL, A->dk,
                                SLAB(A->klin, l, N * kvd), P + ly->k_norm,
                                SLAB(A->rstdk, l, N * nkv), N * nkv, hd);
        memcpy(A->dk, A->dtmp, sizeof(real) * (size_t)(N * kvd));
    }
    if (Gn && ly->bias[0] != NN_NONE) {
        FN(nn_bias_backward)(Gn + ly->bias[0], A->dq, N, qd);
        FN(nn_bias_backward)(Gn + ly->bias[1], A->dk, N, kvd);
        FN(nn_bias_backward)(Gn + ly->bias[2], A->dv, N, kvd);
    }
    sumsq_acc(A, l, BL_PROJ_Q, A->dq, qd);
    sumsq_acc(A, l, BL_PROJ_K, A->dk, kvd);
    sumsq_acc(A, l, BL_PROJ_V, A->dv, kvd);
    zero(A->dxn, N * D);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_Q], P, G, xn1, A->dq, N, A->dxn,
                           &la[BL_PROJ_Q], A->work);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_K], P, G, xn1, A->dk, N, A->dxn,
                           &la[BL_PROJ_K], A->work);
    FN(nn_linear_backward)(&ly->proj[BL_PROJ_V], P, G, xn1, A->dv, N, A->dxn,
                           &la[BL_PROJ_V], A->work);
    FN(nn_rmsnorm_backward)(A->dx, Gn ? Gn + ly->attn_norm : NULL, A->dxn, x,
                            P + ly->attn_norm, SLAB(A->rstd1, l, N), N, (int)D);

}

void FN(nn_backward)(const nn_model *M, const real *P, real *G, FN(nn_acts) *A,
                     const int32_t *tok, const real *dlogits, const real *dhid) {
    const bl_config *c = &M->cfg;
    const int64_t N = A->N, D = c->dim, V = c->vocab_size;
    real *Gn = G && M->grad_norms ? G : NULL; /* norms, q/k norms and biases */
    /* output head and final norm */
    rgemm(CblasNoTrans, CblasNoTrans, N, D, V, 1, dlogits, V, P + M->head, D, 0, A->dxn, D);
    if (G && M->grad_head)
        rgemm(CblasTrans, CblasNoTrans, V, D, N, 1, dlogits, V, A->xf, D, 1, G + M->head, D);
    zero(A->dx, N * D);
    FN(nn_rmsnorm_backward)(A->dx, Gn ? Gn + M->out_norm : NULL, A->dxn,
                            A->x + c->n_layers * N * D, P + M->out_norm, A->rstdf, N, (int)D);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (dhid)
            for (int64_t i = 0; i < N * D; i++) A->dx[i] += dhid[l * N * D + i];
        FN(nn_layer_backward)(M, P, G, A, l);
    }
    if (G && M->grad_embed) FN(nn_embedding_backward)(G + M->embed, tok, N, A->dx, (int)D);
}

bl_status FN(nn_model_sync_signs)(nn_model *M, const real *P, bl_err *err) {
    for (int l = 0; l < M->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            bl_status s = FN(nn_linear_sync_signs)(&M->layers[l].proj[p], P, err);
            if (s) return s;
        }
    return BL_OK;
}
