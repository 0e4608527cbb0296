/* The training engine's table of trainable formats (nn_formats, indexed by nn_linear.kind):
 * for each, the nn layout of a layer (tensors and sign matrices), its values imported from a
 * loaded layer through the format's data, a random initialization, the activation and scratch
 * sizes, and the export back into a format layer. A loaded layer finds its entry through the
 * registry (bl_format_find), never by comparing names. The precision-dependent forward/backward
 * pairs are in linear_impl.h. */
#include "nn/nn_build.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void copy_bits(const nn_signs *s, const uint8_t *bits) {
    memcpy(s->bits, bits, (size_t)(s->rows * bl_sign_row_bytes(s->cols)));
}

static void copy_vec(float *dst, const float *src, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void *dup_bytes(const void *p, size_t n) {
    void *d = malloc(n ? n : 1);
    if (d) memcpy(d, p, n);
    return d;
}

static size_t no_size(const nn_linear *L, int64_t N) {
    (void)L;
    (void)N;
    return 0;
}

/* ---- dense ---- */

static void dense_spec(const bl_linear *L, const nn_build_opts *o, nn_lin_spec *sp) {
    (void)L;
    (void)o;
    sp->kind = NN_DENSE;
}

static bl_status dense_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                              const char *prefix, const nn_lin_spec *sp, bl_err *err) {
    (void)sp;
    (void)err;
    L->w = nn_add_tensor(M, o, NN_R_DENSE, L->m, L->n, "%s.weight", prefix);
    return BL_OK;
}

static bl_status dense_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                              float *P, bl_err *err) {
    (void)o;
    return BL->ops->to_dense(BL, P + L->w, err);
}

static bl_status dense_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                              bl_err *err) {
    (void)o;
    (void)err;
    nn_fill_normal(P + L->w, (size_t)(L->m * L->n), r, 0, 1.0f / sqrtf((float)L->n));
    return BL_OK;
}

static size_t no_vec(const nn_linear *L) {
    (void)L;
    return NN_NONE;
}

/* ---- onebit ---- */

static void onebit_spec(const bl_linear *L, const nn_build_opts *o, nn_lin_spec *sp) {
    sp->kind = NN_ONEBIT;
    sp->post_ln = o->post_ln < 0 ? L->params.post_ln : o->post_ln > 0;
}

static bl_status onebit_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                               const char *prefix, const nn_lin_spec *sp, bl_err *err) {
    L->post_ln = sp->post_ln;
    L->w = nn_add_tensor(M, o, NN_R_LATENT, L->m, L->n, "%s.latent", prefix);
    L->g = nn_add_tensor(M, o, NN_R_SCALE, L->n, 0, "%s.g", prefix);
    L->h = nn_add_tensor(M, o, NN_R_SCALE, L->m, 0, "%s.h", prefix);
    bl_status s = nn_new_signs(L, 1, err);
    return s ? s : nn_init_signs(&L->S[0], L->m, L->n, err);
}

static bl_status onebit_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                               float *P, bl_err *err) {
    (void)err;
    const bl_onebit *d = BL->ops->data(BL);
    copy_bits(&L->S[0], d->sign);
    nn_latent_from_bits(P + L->w, &L->S[0], o->latent_init);
    copy_vec(P + L->g, d->g, L->n);
    copy_vec(P + L->h, d->h, L->m);
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
    nn_fill_pos(P + L->g, (size_t)n, r, 1.0f);
    nn_fill_pos(P + L->h, (size_t)m, r, 1.0f / sqrtf((float)n));
    return BL_OK;
}

static size_t onebit_acts(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + (L->post_ln ? N * L->m + N : 0));
}

static size_t onebit_work(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + 2 * N * L->n + L->m * L->n);
}

static size_t onebit_vec(const nn_linear *L) { return L->g; }

static bl_status onebit_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err) {
    const int64_t m = L->m, n = L->n;
    bl_onebit q = {.m = m, .n = n, .post_ln = L->post_ln};
    q.sign = dup_bytes(L->S[0].bits, (size_t)(m * bl_sign_row_bytes(n)));
    q.g = dup_bytes(P + L->g, sizeof(float) * (size_t)n);
    q.h = dup_bytes(P + L->h, sizeof(float) * (size_t)m);
    bl_status s = q.sign && q.g && q.h ? bl_linear_from_onebit(out, &q, err)
                                       : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_onebit_free(&q); /* no-op when the layer took the buffers */
    return s;
}

/* ---- dbf ---- */

static void dbf_spec(const bl_linear *L, const nn_build_opts *o, nn_lin_spec *sp) {
    (void)o;
    sp->kind = NN_DBF;
    sp->mid = L->params.mid;
}

static bl_status dbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                            const char *prefix, const nn_lin_spec *sp, bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->mid = sp->mid;
    L->a = nn_add_tensor(M, o, NN_R_SCALE, m, 0, "%s.a", prefix);
    L->mu = nn_add_tensor(M, o, NN_R_SCALE, k, 0, "%s.mu", prefix);
    L->b = nn_add_tensor(M, o, NN_R_SCALE, n, 0, "%s.b", prefix);
    bl_status s = nn_new_signs(L, 2, err);
    if (!s) s = nn_init_signs(&L->S[0], m, k, err);
    if (!s) s = nn_init_signs(&L->S[1], k, n, err);
    if (!s && o->flip) {
        L->S[0].latent = nn_add_tensor(M, o, NN_R_FLIP, m, k, "%s.flip.A", prefix);
        L->S[1].latent = nn_add_tensor(M, o, NN_R_FLIP, k, n, "%s.flip.B", prefix);
    }
    return s;
}

static bl_status dbf_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                            float *P, bl_err *err) {
    const bl_dbf *d = BL->ops->data(BL);
    copy_bits(&L->S[0], d->A);
    copy_bits(&L->S[1], d->B);
    copy_vec(P + L->a, d->a, L->m);
    copy_vec(P + L->mu, d->mu, L->mid);
    copy_vec(P + L->b, d->b, L->n);
    return nn_frozen_signs_ready(L, o, P, err);
}

static bl_status dbf_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                            bl_err *err) {
    const int64_t k = L->mid;
    nn_random_signs(&L->S[0], r);
    nn_random_signs(&L->S[1], r);
    nn_fill_pos(P + L->a, (size_t)L->m, r, 1.0f);
    nn_fill_pos(P + L->mu, (size_t)k, r, k ? 1.0f / sqrtf((float)k) : 0);
    nn_fill_pos(P + L->b, (size_t)L->n, r, 1.0f / sqrtf((float)L->n));
    return nn_frozen_signs_ready(L, o, P, err);
}

static size_t dbf_acts(const nn_linear *L, int64_t N) { return (size_t)(N * (L->mid + L->m)); }

static size_t dbf_work(const nn_linear *L, int64_t N) {
    return (size_t)(N * L->m + 2 * N * L->mid + 2 * N * L->n);
}

static size_t dbf_vec(const nn_linear *L) { return L->a; }

static bl_status dbf_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->mid;
    bl_dbf q = {.m = m, .n = n, .k = k};
    q.A = dup_bytes(L->S[0].bits, (size_t)(m * bl_sign_row_bytes(k)));
    q.B = dup_bytes(L->S[1].bits, (size_t)(k * bl_sign_row_bytes(n)));
    q.a = dup_bytes(P + L->a, sizeof(float) * (size_t)m);
    q.mu = dup_bytes(P + L->mu, sizeof(float) * (size_t)k);
    q.b = dup_bytes(P + L->b, sizeof(float) * (size_t)n);
    bl_status s = q.A && q.B && q.a && q.mu && q.b ? bl_linear_from_dbf(out, &q, err)
                                                   : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_dbf_free(&q);
    return s;
}

/* ---- mdbf ---- */

static void mdbf_spec(const bl_linear *L, const nn_build_opts *o, nn_lin_spec *sp) {
    (void)o;
    sp->kind = NN_MDBF;
    sp->mid = L->params.mid;
    sp->l = L->params.rank_l;
    sp->P = L->params.paths;
}

static bl_status mdbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                             const char *prefix, const nn_lin_spec *sp, bl_err *err) {
    const int64_t m = L->m, n = L->n, r = L->mid = sp->mid;
    const int l = L->l = sp->l, P = L->P = sp->P;
    L->a_env = nn_add_tensor(M, o, NN_R_ENVELOPE, P * m, l, "%s.A_env", prefix);
    L->q_u = nn_add_tensor(M, o, NN_R_ENVELOPE, P * r, l, "%s.Q_U", prefix);
    L->q_v = nn_add_tensor(M, o, NN_R_ENVELOPE, P * r, l, "%s.Q_V", prefix);
    /* l = 1: the checkpoint keeps one middle vector (Q_V merged into Q_U, as dbf's μ), so Q_V
     * stays at its stored ones and the layer trains exactly dbf's parameters */
    if (l == 1) M->t[M->n_t - 1].trainable = false;
    L->b_env = nn_add_tensor(M, o, NN_R_ENVELOPE, P * n, l, "%s.B_env", prefix);
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

static bl_status mdbf_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                             float *P, bl_err *err) {
    const bl_mdbf *d = BL->ops->data(BL);
    const int64_t m = L->m, n = L->n, r = L->mid, l = L->l;
    for (int p = 0; p < L->P; p++) {
        const bl_mdbf_path *e = &d->paths[p];
        copy_bits(&L->S[2 * p], e->SA);
        copy_bits(&L->S[2 * p + 1], e->SB);
        copy_vec(P + L->a_env + p * m * l, e->A_env, m * l);
        copy_vec(P + L->q_u + p * r * l, e->Q_U, r * l);
        copy_vec(P + L->q_v + p * r * l, e->Q_V, r * l); /* l = 1: ones (merged into Q_U) */
        copy_vec(P + L->b_env + p * n * l, e->B_env, n * l);
    }
    return nn_frozen_signs_ready(L, o, P, err);
}

static bl_status mdbf_random(const nn_linear *L, const nn_build_opts *o, float *P, bl_rng *r,
                             bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->mid, l = L->l;
    for (int p = 0; p < L->P; p++) {
        nn_random_signs(&L->S[2 * p], r);
        nn_random_signs(&L->S[2 * p + 1], r);
    }
    const float sk = k ? 1.0f / sqrtf((float)k) : 0;
    nn_fill_pos(P + L->a_env, (size_t)(L->P * m * l), r, 1.0f / (float)(l * L->P));
    nn_fill_pos(P + L->q_u, (size_t)(L->P * k * l), r, 1.0f);
    nn_fill_pos(P + L->q_v, (size_t)(L->P * k * l), r, sk / (float)l);
    nn_fill_pos(P + L->b_env, (size_t)(L->P * n * l), r, 1.0f / sqrtf((float)n));
    return nn_frozen_signs_ready(L, o, P, err);
}

static size_t mdbf_acts(const nn_linear *L, int64_t N) {
    const int64_t m = L->m, k = L->mid, l = L->l;
    return (size_t)(L->P * (N * l * k + N * l * m + N * k));
}

static size_t mdbf_work(const nn_linear *L, int64_t N) {
    const int64_t m = L->m, n = L->n, k = L->mid, Nl = N * L->l, wide = n > k ? n : k;
    return (size_t)(Nl * m + 2 * Nl * k + N * k + Nl * n + Nl * wide);
}

static size_t mdbf_vec(const nn_linear *L) { return L->a_env; }

static bl_status mdbf_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->mid, l = L->l;
    bl_mdbf q = {.m = m, .n = n, .r = k, .l = L->l, .P = L->P};
    q.paths = calloc((size_t)L->P, sizeof *q.paths);
    bool ok = q.paths != NULL;
    for (int p = 0; ok && p < L->P; p++) {
        bl_mdbf_path *e = &q.paths[p];
        e->SA = dup_bytes(L->S[2 * p].bits, (size_t)(m * bl_sign_row_bytes(k)));
        e->SB = dup_bytes(L->S[2 * p + 1].bits, (size_t)(k * bl_sign_row_bytes(n)));
        e->A_env = dup_bytes(P + L->a_env + p * m * l, sizeof(float) * (size_t)(m * l));
        e->Q_U = dup_bytes(P + L->q_u + p * k * l, sizeof(float) * (size_t)(k * l));
        e->Q_V = dup_bytes(P + L->q_v + p * k * l, sizeof(float) * (size_t)(k * l));
        e->B_env = dup_bytes(P + L->b_env + p * n * l, sizeof(float) * (size_t)(n * l));
        ok = e->SA && e->SB && e->A_env && e->Q_U && e->Q_V && e->B_env;
    }
    bl_status s = ok ? bl_linear_from_mdbf(out, &q, err)
                     : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_mdbf_free(&q);
    return s;
}

/* ---- the table ---- */

const nn_format nn_formats[NN_KIND_COUNT] = {
    [NN_DENSE] = {"dense", false, 0, dense_spec, dense_layout, dense_import, dense_random, no_size,
                  no_size, no_vec, NULL},
    [NN_ONEBIT] = {"onebit", true, NN_OPT_BIT(NN_OPT_POST_LN) | NN_OPT_BIT(NN_OPT_LATENT_INIT), onebit_spec, onebit_layout, onebit_import, onebit_random,
                   onebit_acts, onebit_work, onebit_vec, onebit_export},
    [NN_DBF] = {"dbf", false, NN_OPT_BIT(NN_OPT_FLIP), dbf_spec, dbf_layout, dbf_import, dbf_random, dbf_acts, dbf_work,
                dbf_vec, dbf_export},
    [NN_MDBF] = {"mdbf", false, NN_OPT_BIT(NN_OPT_FLIP), mdbf_spec, mdbf_layout, mdbf_import, mdbf_random, mdbf_acts,
                 mdbf_work, mdbf_vec, mdbf_export},
};

int nn_kind_of(const bl_linear *L) {
    for (int k = 0; k < NN_KIND_COUNT; k++)
        if (bl_format_find(nn_formats[k].format) == L->ops) return k;
    return -1;
}

bl_status nn_method_spec(const bl_method *m, const nn_build_opts *o, nn_lin_spec *sp,
                         bl_err *err) {
    const bl_linear L = {.ops = m->format, .params = m->params};
    const int k = nn_kind_of(&L);
    if (k < 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: the training engine has no entry for it",
                       m->format->name);
    *sp = (nn_lin_spec){.kind = k, .l = 1, .P = 1};
    nn_formats[k].spec(&L, o, sp);
    return BL_OK;
}
