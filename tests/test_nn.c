/* The training engine's backward passes against central finite differences, in double precision
 * (the _f64 instantiation): every elementary layer, every linear format (dense, onebit with and
 * without post-LN, dbf, mdbf), the losses, and the whole decoder's distillation loss
 * (soft CE + α·hidden MSE) for LLaMA (interleaved RoPE, GQA), Qwen2 (biases, rotate-half,
 * untied head) and Qwen3 (q/k norms, head_dim ≠ dim/heads, tied embeddings). The non-smooth
 * parts are checked against their definitions instead: the onebit latent gradient must equal the
 * finite-difference gradient with respect to the ±1 entries of S (made continuous in an
 * independent dense reference) times 1.001 − tanh(w)², and the dbf/mdbf flipping scores the
 * same gradient without the factor. Every trainable format of the registry has an entry in the
 * engine's table that passes these checks and exports/imports through the format's tensor table.
 * Also: f32 agrees with f64. */
#include <omp.h>
#include <stddef.h>

#include "nn/nn.h"
#include "test.h"

#define H_FD 1e-5

/* |a − n| <= tol·max(|a|, |n|, floor): floor keeps near-zero gradients from failing on noise */
static int close_enough(double a, double n, double tol, double floor) {
    return fabs(a - n) <= tol * fmax(fmax(fabs(a), fabs(n)), floor);
}

static void rand_fill(double *v, size_t n, bl_rng *r, double sd) {
    for (size_t i = 0; i < n; i++) v[i] = sd * bl_rng_normal(r);
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* A scalar function of a parameter vector, for finite differences. */
typedef double (*loss_fn)(void *ctx);

/* Checks analytic[i] against (f(p+h) − f(p−h))/2h for `samples` indices of p (all if fewer). */
static double fd_check(const char *what, double *p, size_t n, const double *analytic, loss_fn f,
                       void *ctx, int samples, double tol, bl_rng *r) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(analytic[i]));
    int bad = 0;
    for (int s = 0; s < samples && s < (int)n; s++) {
        size_t i = (int)n <= samples ? (size_t)s : (size_t)(bl_rng_u64(r) % n);
        const double v = p[i];
        p[i] = v + H_FD;
        const double lp = f(ctx);
        p[i] = v - H_FD;
        const double lm = f(ctx);
        p[i] = v;
        const double fd = (lp - lm) / (2 * H_FD);
        const double floor = 1e-3 * scale + 1e-12;
        const double rel = fabs(fd - analytic[i]) / fmax(fmax(fabs(fd), fabs(analytic[i])), floor);
        worst = fmax(worst, rel);
        if (!close_enough(analytic[i], fd, tol, floor) && bad++ < 3)
            fprintf(stderr, "  %s[%zu]: analytic %.12g, finite difference %.12g\n", what, i,
                    analytic[i], fd);
    }
    CHECK_MSG(bad == 0, "%s: %d of %d gradient entries off (worst relative error %.3g)", what, bad,
              samples, worst);
    return worst;
}

/* ---- elementary layers: loss = Σ R ⊙ layer(inputs) ---- */

typedef struct {
    int which;
    int64_t N;
    int D, T, nh, nkv, hd, B;
    bool inter;
    double *x, *w, *y, *R, *aux, *q, *k, *v, *P, *cs, *sn;
} elem_ctx;

enum { E_RMS, E_LN, E_ROPE, E_ATT, E_SWIGLU, E_BIAS, E_EMB };

static double elem_loss(void *vc) {
    elem_ctx *c = vc;
    switch (c->which) {
    case E_RMS: nn_rmsnorm_forward_f64(c->y, c->aux, c->x, c->w, c->N, c->D, 1e-5); break;
    case E_LN: nn_layernorm_forward_f64(c->y, c->aux, c->x, c->N, c->D); break;
    case E_ROPE:
        nn_rope_forward_f64(c->y, c->x, c->N, c->T, c->nh, c->hd, c->cs, c->sn, c->inter);
        break;
    case E_ATT:
        nn_attention_forward_f64(c->y, c->P, c->q, c->k, c->v, c->B, c->T, c->nh, c->nkv, c->hd);
        break;
    case E_SWIGLU: nn_swiglu_forward_f64(c->y, c->x, c->w, c->N * c->D); break;
    case E_BIAS:
        memcpy(c->y, c->x, sizeof(double) * (size_t)(c->N * c->D));
        nn_bias_forward_f64(c->y, c->w, c->N, c->D);
        break;
    }
    int64_t out = c->which == E_ATT ? c->N * c->nh * c->hd
                  : c->which == E_ROPE ? c->N * c->nh * c->hd : c->N * c->D;
    return dot(c->y, c->R, (size_t)out);
}

static void test_elementary_layers(void) {
    bl_rng r;
    bl_rng_seed(&r, 11);
    elem_ctx c = {.N = 7, .D = 6, .T = 7, .B = 1};
    const size_t big = 40000;
    double *x = malloc(big * 8), *w = malloc(big * 8), *y = malloc(big * 8), *R = malloc(big * 8),
           *aux = malloc(big * 8), *dx = malloc(big * 8), *dw = malloc(big * 8),
           *dv = malloc(big * 8), *q = malloc(big * 8), *k = malloc(big * 8),
           *v = malloc(big * 8), *P = malloc(big * 8), *dq = malloc(big * 8),
           *dk = malloc(big * 8), *work = malloc(big * 8 * 4);
    c.x = x, c.w = w, c.y = y, c.R = R, c.aux = aux, c.q = q, c.k = k, c.v = v, c.P = P;
    const size_t n = (size_t)(c.N * c.D);
    rand_fill(x, big, &r, 1.0);
    rand_fill(R, big, &r, 1.0);
    for (int i = 0; i < c.D; i++) w[i] = 1 + 0.3 * bl_rng_normal(&r);

    c.which = E_RMS; /* x and w */
    elem_loss(&c);
    memset(dx, 0, n * 8);
    memset(dw, 0, (size_t)c.D * 8);
    nn_rmsnorm_backward_f64(dx, dw, R, x, w, aux, c.N, c.D);
    fd_check("rmsnorm dx", x, n, dx, elem_loss, &c, 42, 1e-6, &r);
    fd_check("rmsnorm dw", w, (size_t)c.D, dw, elem_loss, &c, 6, 1e-6, &r);

    c.which = E_LN;
    elem_loss(&c);
    nn_layernorm_backward_f64(dx, R, y, aux, c.N, c.D);
    fd_check("layernorm dx", x, n, dx, elem_loss, &c, 42, 1e-6, &r);

    for (int inter = 0; inter < 2; inter++) {
        c.which = E_ROPE;
        c.nh = 2, c.hd = 4, c.inter = inter;
        double cs[7 * 2], sn[7 * 2];
        for (int p = 0; p < 7; p++)
            for (int i = 0; i < 2; i++) {
                cs[p * 2 + i] = cos(p * pow(100.0, -i / 2.0));
                sn[p * 2 + i] = sin(p * pow(100.0, -i / 2.0));
            }
        c.cs = cs, c.sn = sn;
        elem_loss(&c);
        nn_rope_backward_f64(dx, R, c.N, c.T, c.nh, c.hd, cs, sn, inter);
        fd_check(inter ? "rope (interleaved) dx" : "rope (rotate-half) dx", x, 7 * 8, dx,
                 elem_loss, &c, 56, 1e-6, &r);
    }

    c.which = E_ATT; /* 2 sequences of 5, 4 query heads over 2 kv heads */
    c.B = 2, c.T = 5, c.N = 10, c.nh = 4, c.nkv = 2, c.hd = 3;
    rand_fill(q, big, &r, 1.0);
    rand_fill(k, big, &r, 1.0);
    rand_fill(v, big, &r, 1.0);
    elem_loss(&c);
    nn_attention_backward_f64(dq, dk, dv, R, P, q, k, v, c.B, c.T, c.nh, c.nkv, c.hd, work, 1);
    fd_check("attention dq", q, 10 * 12, dq, elem_loss, &c, 60, 1e-6, &r);
    fd_check("attention dk", k, 10 * 6, dk, elem_loss, &c, 60, 1e-6, &r);
    fd_check("attention dv", v, 10 * 6, dv, elem_loss, &c, 60, 1e-6, &r);
    /* across query blocks of the implementation (64 rows): one sequence of 131 */
    c.B = 1, c.T = 131, c.N = 131, c.nh = 2, c.nkv = 1, c.hd = 3;
    elem_loss(&c);
    nn_attention_backward_f64(dq, dk, dv, R, P, q, k, v, c.B, c.T, c.nh, c.nkv, c.hd, work, 1);
    fd_check("attention T=131 dq", q, 131 * 6, dq, elem_loss, &c, 60, 1e-6, &r);
    fd_check("attention T=131 dk", k, 131 * 3, dk, elem_loss, &c, 60, 1e-6, &r);
    fd_check("attention T=131 dv", v, 131 * 3, dv, elem_loss, &c, 60, 1e-6, &r);
    c.B = 2, c.T = 5, c.N = 10, c.nh = 4, c.nkv = 2, c.hd = 3;
    /* causality: the first query's output ignores later keys */
    c.which = E_ATT;
    elem_loss(&c);
    double y0 = y[0];
    k[4 * 6] += 1.0;
    v[4 * 6] += 1.0;
    elem_loss(&c);
    CHECK(y[0] == y0);

    c.which = E_SWIGLU;
    c.N = 7, c.D = 6;
    rand_fill(w, big, &r, 1.0);
    elem_loss(&c);
    nn_swiglu_backward_f64(dx, dw, R, x, w, n);
    fd_check("swiglu dgate", x, n, dx, elem_loss, &c, 42, 1e-6, &r);
    fd_check("swiglu dup", w, n, dw, elem_loss, &c, 42, 1e-6, &r);

    c.which = E_BIAS;
    memset(dw, 0, (size_t)c.D * 8);
    nn_bias_backward_f64(dw, R, c.N, c.D);
    fd_check("bias", w, (size_t)c.D, dw, elem_loss, &c, 6, 1e-6, &r);

    /* embedding: dE[tok] accumulates rows, repeated tokens add up */
    int32_t tok[5] = {2, 0, 2, 3, 2};
    double E[4 * 3], dE[4 * 3] = {0}, xo[5 * 3], g5[5 * 3];
    rand_fill(E, 12, &r, 1);
    rand_fill(g5, 15, &r, 1);
    nn_embedding_forward_f64(xo, tok, 5, E, 3);
    CHECK(xo[3 * 3 + 1] == E[3 * 3 + 1]);
    nn_embedding_backward_f64(dE, tok, 5, g5, 3);
    CHECK_NEAR(dE[2 * 3 + 1], g5[0 * 3 + 1] + g5[2 * 3 + 1] + g5[4 * 3 + 1], 1e-15);
    CHECK(dE[1 * 3] == 0);
    free(x), free(w), free(y), free(R), free(aux), free(dx), free(dw), free(dv), free(q), free(k);
    free(v), free(P), free(dq), free(dk), free(work);
}

/* ---- losses ---- */

typedef struct {
    int which;
    int64_t N;
    int V;
    double *z, *pt, *row;
    int32_t *tgt;
} loss_ctx;

static double loss_eval(void *vc) {
    loss_ctx *c = vc;
    if (c->which == 0) return nn_soft_ce_f64(c->z, c->pt, c->N, c->V, 1, NULL, c->row);
    if (c->which == 1) return nn_hard_ce_f64(c->z, c->tgt, c->N, c->V, 1, NULL, c->row);
    return nn_hidden_mse_f64(c->z, c->pt, c->N, c->V, 1, NULL, c->row);
}

static void test_losses(void) {
    bl_rng r;
    bl_rng_seed(&r, 5);
    const int N = 6, V = 9;
    double z[54], pt[54], dz[54], row[6];
    int32_t tgt[6] = {0, 8, 3, 3, 5, 1};
    rand_fill(z, 54, &r, 2);
    rand_fill(pt, 54, &r, 1);
    nn_softmax_rows_f64(pt, pt, N, V);
    loss_ctx c = {0, N, V, z, pt, row, tgt};
    double l = nn_soft_ce_f64(z, pt, N, V, 1, dz, row);
    CHECK(l > 0);
    fd_check("soft cross-entropy", z, 54, dz, loss_eval, &c, 54, 1e-6, &r);
    /* soft CE against the student's own distribution is its entropy: gradient zero */
    double p2[54];
    nn_softmax_rows_f64(p2, z, N, V);
    nn_soft_ce_f64(z, p2, N, V, 1, dz, row);
    double mx = 0;
    for (int i = 0; i < 54; i++) mx = fmax(mx, fabs(dz[i]));
    CHECK(mx < 1e-15);
    c.which = 1;
    nn_hard_ce_f64(z, tgt, N, V, 1, dz, row);
    fd_check("hard cross-entropy", z, 54, dz, loss_eval, &c, 54, 1e-6, &r);
    c.which = 2; /* hidden MSE: z as hidden states (N×V), pt as normalised teacher rows */
    rand_fill(pt, 54, &r, 1);
    nn_l2_normalize_rows_f64(pt, pt, N, V);
    CHECK_NEAR(dot(pt, pt, 9), 1.0, 1e-14);
    nn_hidden_mse_f64(z, pt, N, V, 1, dz, row);
    fd_check("hidden-state MSE", z, 54, dz, loss_eval, &c, 54, 1e-6, &r);
    nn_l2_normalize_rows_f64(p2, z, N, V); /* teacher = student direction: zero loss */
    CHECK(nn_hidden_mse_f64(z, p2, N, V, 1, NULL, row) < 1e-28);
}

/* ---- linear layers ---- */

static const bl_config tiny_cfg = {
    .arch = BL_ARCH_LLAMA, .dim = 10, .hidden_dim = 13, .n_layers = 1, .n_heads = 2,
    .n_kv_heads = 1, .head_dim = 5, .vocab_size = 7, .max_seq = 16, .rope_theta = 100.0f,
    .norm_eps = 1e-5f, .rope_interleaved = true, .bos_id = 1, .eos_id = 2,
};

static double *to_f64(const float *p, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

/* Dense ±1 copies of a layer's sign matrices, so that the reference below can treat them as
 * continuous values. */
static double **dense_signs(const nn_linear *L) {
    double **S = calloc((size_t)L->n_signs, sizeof *S);
    for (int i = 0; i < L->n_signs; i++) {
        const nn_signs *s = &L->S[i];
        S[i] = malloc(sizeof(double) * (size_t)(s->rows * s->cols));
        for (int64_t a = 0; a < s->rows; a++)
            for (int64_t b = 0; b < s->cols; b++)
                S[i][a * s->cols + b] = bl_sign_get(s->bits, bl_sign_row_bytes(s->cols), a, b);
    }
    return S;
}

/* y = M·v for a dense rows×cols matrix (one token) */
static void mv(double *y, const double *M, const double *v, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++) y[i] = dot(M + i * cols, v, (size_t)cols);
}

static bool is_format(const nn_linear *L, const char *name) {
    return L->format == bl_format_find(name);
}

/* Whether ref_linear below knows the layer's format. */
static bool has_reference(const nn_linear *L) {
    return is_format(L, "onebit") || is_format(L, "dbf") || is_format(L, "mdbf");
}

/* Where the layer keeps the F16 tensor its format's table calls `part` (its entry's parts). */
static size_t part_of(const nn_linear *L, const char *part) {
    for (int i = 0; i < L->fmt->n_parts; i++)
        if (!strcmp(L->fmt->parts[i].part, part)) return L->part[i];
    CHECK(!"a part of the layer's entry");
    return NN_NONE;
}

/* An independent, token-by-token reference of every binary format with dense sign matrices. */
static void ref_linear(const nn_linear *L, const double *P, double **S, const double *x, int64_t N,
                       double *y) {
    const int64_t m = L->m, n = L->n, k = L->params.mid, l = L->params.rank_l;
    double *u = malloc(8 * (size_t)(n + k + m + 8)), *z = malloc(8 * (size_t)(k + 1)),
           *t1 = malloc(8 * (size_t)(n + k + m + 8));
    for (int64_t t = 0; t < N; t++) {
        const double *xt = x + t * n;
        double *yt = y + t * m;
        if (is_format(L, "onebit")) {
            for (int64_t j = 0; j < n; j++) u[j] = P[part_of(L, "g") + j] * xt[j];
            mv(yt, S[0], u, m, n);
            for (int64_t i = 0; i < m; i++) yt[i] *= P[part_of(L, "h") + i];
            if (L->params.post_ln) {
                double mean = 0, var = 0;
                for (int64_t i = 0; i < m; i++) mean += yt[i] / m;
                for (int64_t i = 0; i < m; i++) var += (yt[i] - mean) * (yt[i] - mean) / m;
                for (int64_t i = 0; i < m; i++) yt[i] = (yt[i] - mean) / sqrt(var + 1e-5);
            }
        } else if (is_format(L, "dbf")) {
            for (int64_t j = 0; j < n; j++) u[j] = P[part_of(L, "b") + j] * xt[j];
            mv(z, S[1], u, k, n);
            for (int64_t c = 0; c < k; c++) z[c] *= P[part_of(L, "mu") + c];
            mv(yt, S[0], z, m, k);
            for (int64_t i = 0; i < m; i++) yt[i] *= P[part_of(L, "a") + i];
        } else if (is_format(L, "mdbf")) {
            for (int64_t i = 0; i < m; i++) yt[i] = 0;
            for (int p = 0; p < L->params.paths; p++) {
                const double *Ae = P + part_of(L, "p%d.A_env") + p * m * l,
                             *Qu = P + part_of(L, "p%d.Q_U") + p * k * l,
                             *Qv = P + part_of(L, "p%d.Q_V") + p * k * l,
                             *Be = P + part_of(L, "p%d.B_env") + p * n * l;
                for (int64_t c = 0; c < k; c++) z[c] = 0;
                for (int64_t j = 0; j < l; j++) {
                    for (int64_t c = 0; c < n; c++) u[c] = Be[c * l + j] * xt[c];
                    mv(t1, S[2 * p + 1], u, k, n);
                    for (int64_t c = 0; c < k; c++) z[c] += Qv[c * l + j] * t1[c];
                }
                for (int64_t j = 0; j < l; j++) {
                    for (int64_t c = 0; c < k; c++) u[c] = Qu[c * l + j] * z[c];
                    mv(t1, S[2 * p], u, m, k);
                    for (int64_t i = 0; i < m; i++) yt[i] += Ae[i * l + j] * t1[i];
                }
            }
        }
    }
    free(u), free(z), free(t1);
}

typedef struct {
    const nn_linear *L;
    double *P, *x, *y, *R, *work, **S;
    nn_lin_acts_f64 A;
    int64_t N;
} lin_ctx;

static double lin_loss(void *vc) {
    lin_ctx *c = vc;
    nn_linear_forward_f64(c->L, c->P, c->x, c->N, c->y, &c->A, c->work);
    return dot(c->y, c->R, (size_t)(c->N * c->L->m));
}

static double ref_loss(void *vc) {
    lin_ctx *c = vc;
    ref_linear(c->L, c->P, c->S, c->x, c->N, c->y);
    return dot(c->y, c->R, (size_t)(c->N * c->L->m));
}

static void check_linear(const char *name, bl_method spec, int proj) {
    nn_build_opts o;
    nn_build_opts_default(&o);
    o.flip = true;
    bl_method all[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) all[p] = spec;
    nn_model *M;
    float *pf;
    bl_err err = {0};
    REQUIRE(nn_model_random(&tiny_cfg, all, 77, 16, &o, &M, &pf, &err) == BL_OK);
    nn_model_train_all(M);
    const nn_linear *L = &M->layers[0].proj[proj];
    const int64_t N = 6, m = L->m, n = L->n;
    bl_rng r;
    bl_rng_seed(&r, 99);
    lin_ctx c = {.L = L, .P = to_f64(pf, M->n_params), .N = N};
    c.x = malloc(8 * (size_t)(N * n));
    c.y = malloc(8 * (size_t)(N * m));
    c.R = malloc(8 * (size_t)(N * m));
    c.work = malloc(8 * (nn_linear_work_size(L, N) + 1));
    double *amem = malloc(8 * (nn_linear_acts_size(L, N) + 1)), *dx = calloc((size_t)(N * n), 8),
           *G = calloc(M->n_params, 8), *yl = malloc(8 * (size_t)(N * m));
    nn_lin_acts_bind_f64(&c.A, L, N, amem);
    rand_fill(c.x, (size_t)(N * n), &r, 1);
    rand_fill(c.R, (size_t)(N * m), &r, 1);
    lin_loss(&c);
    nn_linear_backward_f64(L, c.P, G, c.x, c.R, N, dx, &c.A, c.work);
    char what[96];
    snprintf(what, sizeof what, "%s dx", name);
    fd_check(what, c.x, (size_t)(N * n), dx, lin_loss, &c, 40, 1e-6, &r);
    for (int i = 0; i < M->n_t; i++) {
        const nn_tensor *t = &M->t[i];
        if (strncmp(t->name, "model.layers.0.", 15) || !strstr(t->name, bl_proj_hf_name(proj)) ||
            t->role == NN_R_LATENT || t->role == NN_R_FLIP)
            continue;
        snprintf(what, sizeof what, "%s %s", name, t->name + 15);
        fd_check(what, c.P + t->off, t->numel, G + t->off, lin_loss, &c, 30, 1e-6, &r);
    }
    CHECK_MSG(L->n_signs == 0 || has_reference(L),
              "%s: the format has sign matrices but no independent reference here (ref_linear)",
              name);
    if (L->n_signs && has_reference(L)) {
        /* the packed forward equals the dense reference */
        c.S = dense_signs(L);
        lin_loss(&c); /* fd_check left y at a perturbed point */
        memcpy(yl, c.y, 8 * (size_t)(N * m));
        ref_loss(&c);
        double worst = 0;
        for (int64_t i = 0; i < N * m; i++) worst = fmax(worst, fabs(yl[i] - c.y[i]));
        CHECK_MSG(worst < 1e-12, "%s: packed forward differs from the reference by %g", name,
                  worst);
        /* the gradient of every sign entry, by finite differences on the dense reference */
        for (int i = 0; i < L->n_signs; i++) {
            const nn_signs *s = &L->S[i];
            const size_t cnt = (size_t)(s->rows * s->cols);
            double *want = malloc(8 * cnt), *got = malloc(8 * cnt);
            size_t lat = L->fmt->signs_follow_latent ? L->w : s->latent;
            for (size_t e = 0; e < cnt; e++) {
                double *se = &c.S[i][e], v = *se;
                *se = v + H_FD;
                double lp = ref_loss(&c);
                *se = v - H_FD;
                double lm = ref_loss(&c);
                *se = v;
                double ste = 1;
                if (L->fmt->signs_follow_latent) ste = 1.001 - tanh(c.P[L->w + e]) * tanh(c.P[L->w + e]);
                want[e] = (lp - lm) / (2 * H_FD) * ste;
                got[e] = G[lat + e];
            }
            double wmax = 0, diff = 0;
            for (size_t e = 0; e < cnt; e++) {
                wmax = fmax(wmax, fabs(want[e]));
                diff = fmax(diff, fabs(want[e] - got[e]));
            }
            CHECK_MSG(diff <= 1e-7 * fmax(wmax, 1e-9),
                      "%s sign matrix %d: latent gradient off by %g (scale %g)", name, i, diff,
                      wmax);
            free(want), free(got);
        }
        for (int i = 0; i < L->n_signs; i++) free(c.S[i]);
        free(c.S);
    }
    free(c.P), free(c.x), free(c.y), free(c.R), free(c.work), free(amem), free(dx), free(G);
    free(yl);
    bl_aligned_free(pf);
    nn_model_free(M);
}

/* A method from its spec (the layouts below are the registry's formats and parameters). */
static bl_method method(const char *spec) {
    bl_method m;
    bl_err err = {0};
    memset(&m, 0, sizeof m);
    CHECK_MSG(bl_method_parse(spec, &m, &err) == BL_OK, "%s: %s", spec, err.msg);
    return m;
}

static void test_linear_layers(void) {
    check_linear("dense (down)", method("dense"), BL_PROJ_DOWN);
    check_linear("onebit (gate)", method("onebit"), BL_PROJ_GATE);
    check_linear("onebit post-LN (down)", method("onebit:post_ln=1"), BL_PROJ_DOWN);
    check_linear("onebit post-LN (q)", method("onebit:post_ln=1"), BL_PROJ_Q);
    check_linear("dbf (up)", method("dbf:mid=9"), BL_PROJ_UP);
    check_linear("dbf (down)", method("dbf:mid=5"), BL_PROJ_DOWN);
    check_linear("mdbf l=2 P=2 (gate)", method("mdbf:mid=7,rank_l=2,paths=2"), BL_PROJ_GATE);
    check_linear("mdbf l=1 P=1 (down)", method("mdbf:mid=4,rank_l=1,paths=1"), BL_PROJ_DOWN);
    check_linear("mdbf l=3 P=1 (o)", method("mdbf:mid=9,rank_l=3,paths=1"), BL_PROJ_O);
    /* middle dimensions above min(m, n) (and max(m, n)): up is 13×10, down 10×13 */
    check_linear("dbf k=17 > m, n (up)", method("dbf:mid=17"), BL_PROJ_UP);
    check_linear("mdbf r=15 l=2 P=2 (down)", method("mdbf:mid=15,rank_l=2,paths=2"),
                 BL_PROJ_DOWN);
    check_linear("mdbf r=12 l=1 P=1 (up)", method("mdbf:mid=12,rank_l=1,paths=1"), BL_PROJ_UP);
}

/* ---- the table of trainable formats against the registry ---- */

/* Layer p of a random model of one method into a format layer and back: the export is a valid
 * layer of the format whose data the import reads back exactly (a second export is bitwise the
 * first), and the packed f32 forward of the format agrees with the engine's f64 forward. */
static void check_round_trip(const char *name, const bl_method *spec, int proj) {
    nn_build_opts o;
    nn_build_opts_default(&o);
    o.post_ln = -1; /* as the layer records it */
    bl_method all[BL_PROJ_COUNT];
    for (int p = 0; p < BL_PROJ_COUNT; p++) all[p] = *spec;
    nn_model *M1, *M2;
    float *P1, *P2;
    bl_err err = {0};
    REQUIRE(nn_model_random(&tiny_cfg, all, 5, 16, &o, &M1, &P1, &err) == BL_OK);
    REQUIRE(nn_model_random(&tiny_cfg, all, 6, 16, &o, &M2, &P2, &err) == BL_OK);
    const nn_linear *L1 = &M1->layers[0].proj[proj], *L2 = &M2->layers[0].proj[proj];
    bl_linear a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    if (nn_linear_is_dense(L1)) {
        CHECK_MSG(nn_linear_export(L1, P1, &a, &err) == BL_ERR_UNSUPPORTED,
                  "%s: a dense layer is exported as a view", name);
        goto done;
    }
    CHECK_MSG(nn_linear_export(L1, P1, &a, &err) == BL_OK, "%s export: %s", name, err.msg);
    CHECK_MSG(a.ops == spec->format && a.m == L1->m && a.n == L1->n, "%s: exported shape", name);
    CHECK_MSG(nn_linear_import(&a, L2, &o, P2, &err) == BL_OK, "%s import: %s", name, err.msg);
    for (int i = 0; i < L2->n_signs; i++) CHECK(nn_signs_refresh(&L2->S[i], &err) == BL_OK);
    CHECK_MSG(nn_linear_export(L2, P2, &b, &err) == BL_OK, "%s re-export: %s", name, err.msg);
    const int64_t m = a.m, n = a.n, T = 3;
    float *wa = malloc(sizeof(float) * (size_t)(m * n)), *wb = malloc(sizeof(float) * (size_t)(m * n));
    CHECK(a.ops->to_dense(&a, wa, &err) == BL_OK && b.ops->to_dense(&b, wb, &err) == BL_OK);
    CHECK_MSG(memcmp(wa, wb, sizeof(float) * (size_t)(m * n)) == 0,
              "%s: export → import → export changed the layer", name);
    /* the engine's forward of the imported layer against the format's own forward */
    float *x = malloc(sizeof(float) * (size_t)(T * n)), *y = malloc(sizeof(float) * (size_t)(T * m));
    float *work = malloc(sizeof(float) * (a.ops->workspace_floats(&a, T) + 1));
    double *Pd = malloc(sizeof(double) * M2->n_params), *xd = malloc(sizeof(double) * (size_t)(T * n)),
           *yd = malloc(sizeof(double) * (size_t)(T * m)),
           *wd = malloc(sizeof(double) * (nn_linear_work_size(L2, T) + 1)),
           *ad = malloc(sizeof(double) * (nn_linear_acts_size(L2, T) + 1));
    for (size_t i = 0; i < M2->n_params; i++) Pd[i] = P2[i];
    bl_rng r;
    bl_rng_seed(&r, 8);
    for (int64_t i = 0; i < T * n; i++) xd[i] = x[i] = (float)bl_rng_normal(&r);
    a.ops->forward(&a, x, T, y, work, NULL);
    nn_lin_acts_f64 A;
    nn_lin_acts_bind_f64(&A, L2, T, ad);
    nn_linear_forward_f64(L2, Pd, xd, T, yd, &A, wd);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < T * m; i++) {
        worst = fmax(worst, fabs(yd[i] - y[i]));
        scale = fmax(scale, fabs(yd[i]));
    }
    /* f32 sums of at most ~40 products against f64 ones: 1e-5 relative is ~100 ulp of margin */
    CHECK_MSG(worst <= 1e-5 * fmax(scale, 1), "%s: format forward vs engine forward: %g (scale %g)",
              name, worst, scale);
    free(wa), free(wb), free(x), free(y), free(work), free(Pd), free(xd), free(yd), free(wd),
        free(ad);
done:
    bl_linear_free(&a);
    bl_linear_free(&b);
    bl_aligned_free(P1), bl_aligned_free(P2);
    nn_model_free(M1), nn_model_free(M2);
}

/* Every registry format that declares itself trainable has an entry in the engine's table, every
 * entry is such a format, and each one's default method (a middle dimension set where the format
 * has one) passes the gradient checks and the import/export round trip. */
static void test_trainable_registry(void) {
    int nf, trainable = 0;
    const bl_format_ops *const *all = bl_format_list(&nf);
    for (int i = 0; i < nf; i++) {
        const bl_format_ops *f = all[i];
        const nn_format *e = nn_format_of(f);
        CHECK_MSG((e != NULL) == f->trainable, "%s: trainable %d but %s entry in the engine",
                  f->name, f->trainable, e ? "an" : "no");
        if (!e) continue;
        trainable++;
        bl_method m = method(f->name);
        if (f->mid_from_bpw) m.params.mid = 6;
        /* and every schema parameter moved off its default (l = 2 tells Q_U from Q_V, ...) */
        bl_method moved = m;
        for (int k = 0; k < f->n_params; k++) {
            const bl_format_param *d = &f->params[k];
            void *at = (char *)&moved.params + d->offset;
            const int64_t v = d->offset == offsetof(bl_format_params, mid) && f->mid_from_bpw
                                  ? 5
                                  : d->def + 1 <= d->hi ? d->def + 1 : d->def - 1;
            if (d->type == BL_FPT_BOOL) *(bool *)at = !d->def;
            else if (d->type == BL_FPT_INT) *(int *)at = (int)v;
            else *(int64_t *)at = v;
        }
        char name[96];
        static const int projs[] = {BL_PROJ_Q, BL_PROJ_O, BL_PROJ_UP, BL_PROJ_DOWN}; /* 4 shapes */
        for (int j = 0; j < 4; j++) {
            const int proj = projs[j];
            snprintf(name, sizeof name, "%s (registry, %s)", f->name, bl_proj_hf_name(proj));
            check_linear(name, m, proj);
            check_round_trip(name, &m, proj);
            if (f->n_params == 0) continue;
            char spec[64];
            bl_method_spec(&moved, spec, sizeof spec);
            snprintf(name, sizeof name, "%s (registry, %s)", spec, bl_proj_hf_name(proj));
            check_linear(name, moved, proj);
            check_round_trip(name, &moved, proj);
        }
    }
    for (int k = 0; k < nn_n_formats; k++) {
        const bl_format_ops *f = bl_format_find(nn_formats[k]->format);
        CHECK_MSG(f && f->trainable, "engine entry %s: not a trainable registry format",
                  nn_formats[k]->format);
    }
    CHECK(trainable == nn_n_formats && trainable >= 4);
}

/* mdbf with l = 1 stores one middle vector (Q_V merged into Q_U): its Q_V must stay at the
 * stored ones when trained, so that the layer trains dbf's parameters; with l > 1 Q_V is its
 * own stored tensor and trains. */
static void test_mdbf_l1_middle_vector(void) {
    for (int l = 1; l <= 2; l++) {
        nn_build_opts o;
        nn_build_opts_default(&o);
        bl_method all[BL_PROJ_COUNT];
        for (int p = 0; p < BL_PROJ_COUNT; p++)
            all[p] = method(l == 1 ? "mdbf:mid=5,rank_l=1,paths=1" : "mdbf:mid=5,rank_l=2,paths=1");
        nn_model *M;
        float *pf;
        bl_err err = {0};
        REQUIRE(nn_model_random(&tiny_cfg, all, 5, 8, &o, &M, &pf, &err) == BL_OK);
        int qv = 0, qu = 0;
        for (int i = 0; i < M->n_t; i++) {
            const char *nm = M->t[i].name;
            const size_t len = strlen(nm);
            if (len > 4 && !strcmp(nm + len - 4, ".Q_V")) {
                qv++;
                CHECK(M->t[i].trainable == (l > 1));
            }
            if (len > 4 && !strcmp(nm + len - 4, ".Q_U")) {
                qu++;
                CHECK(M->t[i].trainable);
            }
        }
        CHECK(qv == M->cfg.n_layers * BL_PROJ_COUNT && qu == qv);
        nn_model_free(M);
        bl_aligned_free(pf);
    }
}

/* ---- the whole decoder's distillation loss ---- */

typedef struct {
    nn_model *M;
    double *P, *pt, *nt, alpha;
    nn_acts_f64 *A;
    int32_t *tok;
} model_ctx;

static double model_loss(void *vc) {
    model_ctx *c = vc;
    const bl_config *cf = &c->M->cfg;
    const int64_t N = c->A->N, D = cf->dim;
    nn_forward_f64(c->M, c->P, c->A, c->tok);
    double loss = nn_soft_ce_f64(c->A->logits, c->pt, N, cf->vocab_size, 1, NULL, c->A->row);
    for (int l = 0; l < cf->n_layers; l++)
        loss += c->alpha * nn_hidden_mse_f64(c->A->x + (l + 1) * N * D, c->nt + l * N * D, N,
                                             (int)D, 1, NULL, c->A->row);
    return loss;
}

/* Gradients of the loss into G (zeroed first). */
static void model_grad(model_ctx *c, double *G) {
    const bl_config *cf = &c->M->cfg;
    const int64_t N = c->A->N, D = cf->dim;
    memset(G, 0, c->M->n_params * sizeof *G);
    nn_forward_f64(c->M, c->P, c->A, c->tok);
    nn_soft_ce_f64(c->A->logits, c->pt, N, cf->vocab_size, 1, c->A->logits, c->A->row);
    for (int l = 0; l < cf->n_layers; l++)
        nn_hidden_mse_f64(c->A->x + (l + 1) * N * D, c->nt + l * N * D, N, (int)D, c->alpha,
                          c->A->dhid + l * N * D, c->A->row);
    nn_backward_f64(c->M, c->P, G, c->A, c->tok, c->A->logits, c->A->dhid);
}

static void check_model(const char *name, const char *json_like, bl_config cfg) {
    (void)json_like;
    nn_build_opts o;
    nn_build_opts_default(&o);
    const bl_method spec[BL_PROJ_COUNT] = {
        method("onebit:post_ln=1"), method("dense"), method("dbf:mid=5"),
        method("mdbf:mid=6,rank_l=2,paths=2"), method("onebit"), method("dbf:mid=7"),
        method("mdbf:mid=5,rank_l=1,paths=1"),
    };
    nn_model *M;
    float *pf;
    bl_err err = {0};
    REQUIRE(nn_model_random(&cfg, spec, 1234, 8, &o, &M, &pf, &err) == BL_OK);
    nn_model_train_all(M);
    const int B = 2, T = 5;
    const int64_t N = B * T, D = cfg.dim, V = cfg.vocab_size;
    model_ctx c = {.M = M, .P = to_f64(pf, M->n_params), .alpha = 0.7};
    REQUIRE(nn_acts_new_f64(M, B, T, &c.A, &err) == BL_OK);
    bl_rng r;
    bl_rng_seed(&r, 3);
    int32_t tok[10];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(bl_rng_u64(&r) % (uint64_t)V);
    c.tok = tok;
    c.pt = malloc(8 * (size_t)(N * V));
    c.nt = malloc(8 * (size_t)(cfg.n_layers * N * D));
    rand_fill(c.pt, (size_t)(N * V), &r, 2);
    nn_softmax_rows_f64(c.pt, c.pt, N, (int)V);
    rand_fill(c.nt, (size_t)(cfg.n_layers * N * D), &r, 1);
    nn_l2_normalize_rows_f64(c.nt, c.nt, cfg.n_layers * N, (int)D);
    double *G = malloc(8 * M->n_params);
    model_grad(&c, G);
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < M->n_t; i++) {
        const nn_tensor *t = &M->t[i];
        if (t->role == NN_R_LATENT || t->role == NN_R_FLIP) continue;
        char what[160];
        snprintf(what, sizeof what, "%s: %s", name, t->name);
        worst = fmax(worst, fd_check(what, c.P + t->off, t->numel, G + t->off, model_loss, &c, 4,
                                     1e-5, &r));
        checked++;
    }
    fprintf(stderr, "  %s: %d tensors, worst relative error %.2g\n", name, checked, worst);

    /* f32 agrees with f64 (same model, parameters rounded identically) */
    nn_acts_f32 *A32;
    REQUIRE(nn_acts_new_f32(M, B, T, &A32, &err) == BL_OK);
    float *G32 = calloc(M->n_params, sizeof *G32), *pt32 = malloc(4 * (size_t)(N * V)),
          *nt32 = malloc(4 * (size_t)(cfg.n_layers * N * D));
    for (int64_t i = 0; i < N * V; i++) pt32[i] = (float)c.pt[i];
    for (int64_t i = 0; i < cfg.n_layers * N * D; i++) nt32[i] = (float)c.nt[i];
    nn_forward_f32(M, pf, A32, tok);
    nn_soft_ce_f32(A32->logits, pt32, N, (int)V, 1, A32->logits, A32->row);
    for (int l = 0; l < cfg.n_layers; l++)
        nn_hidden_mse_f32(A32->x + (l + 1) * N * D, nt32 + l * N * D, N, (int)D, c.alpha,
                          A32->dhid + l * N * D, A32->row);
    nn_backward_f32(M, pf, G32, A32, tok, A32->logits, A32->dhid);
    double num = 0, den = 0;
    for (size_t i = 0; i < M->n_params; i++) {
        num += (G32[i] - G[i]) * (G32[i] - G[i]);
        den += G[i] * G[i];
    }
    CHECK_MSG(sqrt(num / den) < 1e-4, "%s: f32 gradient differs from f64 by %.3g (relative)",
              name, sqrt(num / den));
    nn_acts_free_f32(A32);
    free(G32), free(pt32), free(nt32);
    free(G), free(c.P), free(c.pt), free(c.nt);
    nn_acts_free_f64(c.A);
    bl_aligned_free(pf);
    nn_model_free(M);
}

static void test_whole_model(void) {
    bl_config llama = {.arch = BL_ARCH_LLAMA, .dim = 12, .hidden_dim = 20, .n_layers = 2,
                       .n_heads = 4, .n_kv_heads = 2, .head_dim = 3, .vocab_size = 11,
                       .max_seq = 8, .rope_theta = 10000, .norm_eps = 1e-5f,
                       .rope_interleaved = true, .bos_id = 1, .eos_id = 2};
    check_model("llama (interleaved RoPE, GQA, untied)", NULL, llama);
    bl_config qwen2 = llama;
    qwen2.arch = BL_ARCH_QWEN2;
    qwen2.rope_interleaved = false;
    qwen2.qkv_bias = true;
    qwen2.head_dim = 4;
    qwen2.n_kv_heads = 1;
    check_model("qwen2 (q/k/v biases, rotate-half RoPE)", NULL, qwen2);
    bl_config qwen3 = llama;
    qwen3.arch = BL_ARCH_QWEN3;
    qwen3.rope_interleaved = false;
    qwen3.qk_norm = true;
    qwen3.head_dim = 4; /* 4 heads × 4 = 16 != dim 12 */
    qwen3.tied_embeddings = true;
    check_model("qwen3 (q/k norms, head_dim != dim/heads, tied)", NULL, qwen3);
}

int main(void) {
    TEST_RUN(test_elementary_layers);
    TEST_RUN(test_losses);
    TEST_RUN(test_linear_layers);
    TEST_RUN(test_mdbf_l1_middle_vector);
    TEST_RUN(test_trainable_registry);
    TEST_RUN(test_whole_model);
    return test_summary();
}
