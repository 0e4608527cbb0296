/* The training engine's table of trainable formats (nn_formats): for each, the nn layout of a
 * layer (tensors and sign matrices), where its format's tensors go in that layout (import and
 * export go through the format's tensor table, src/formats/layer.c), a random initialization,
 * the activation and scratch sizes, and its math per precision (linear_impl.h). A layer finds
 * its entry through the registry (nn_format_of), never by comparing names. */
#include "nn/nn_build.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static size_t no_size(const nn_linear *L, int64_t N) {
    (void)L;
    (void)N;
    return 0;
}

/* ---- dense ---- */

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

static size_t no_vec(const nn_linear *L) {
    (void)L;
    return NN_NONE;
}

/* ---- onebit ---- */

static void onebit_opts(bl_format_params *p, const nn_build_opts *o) {
    p->post_ln = o->post_ln < 0 ? p->post_ln : o->post_ln > 0;
}

static bl_status onebit_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                               const char *prefix, bl_err *err) {
    L->post_ln = L->params.post_ln;
    L->w = nn_add_tensor(M, o, NN_R_LATENT, L->m, L->n, "%s.latent", prefix);
    L->g = nn_add_tensor(M, o, NN_R_SCALE, L->n, 0, "%s.g", prefix);
    L->h = nn_add_tensor(M, o, NN_R_SCALE, L->m, 0, "%s.h", prefix);
    bl_status s = nn_new_signs(L, 1, err);
    return s ? s : nn_init_signs(&L->S[0], L->m, L->n, err);
}

static const nn_part onebit_parts[] = {{"g", offsetof(nn_linear, g)},
                                       {"h", offsetof(nn_linear, h)}};

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

/* ---- dbf ---- */

static bl_status dbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                            const char *prefix, bl_err *err) {
    const int64_t m = L->m, n = L->n, k = L->mid = L->params.mid;
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

static const nn_part dbf_parts[] = {{"a", offsetof(nn_linear, a)},
                                    {"mu", offsetof(nn_linear, mu)},
                                    {"b", offsetof(nn_linear, b)}};

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

/* ---- mdbf ---- */

static bl_status mdbf_layout(nn_model *M, const nn_build_opts *o, nn_linear *L,
                             const char *prefix, bl_err *err) {
    const int64_t m = L->m, n = L->n, r = L->mid = L->params.mid;
    const int l = L->l = L->params.rank_l, P = L->P = L->params.paths;
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

/* Q_V with l = 1 is ones in memory (merged into Q_U when stored). */
static const nn_part mdbf_parts[] = {{"p%d.A_env", offsetof(nn_linear, a_env)},
                                     {"p%d.Q_U", offsetof(nn_linear, q_u)},
                                     {"p%d.Q_V", offsetof(nn_linear, q_v)},
                                     {"p%d.B_env", offsetof(nn_linear, b_env)}};

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

/* ---- the table ---- */

/* Each format's math per precision (linear_impl.h, compiled by nn_f32.c and nn_f64.c). */
#define NN_MATH(f)                                                                           \
    extern const nn_lin_math_f32 nn_##f##_math_f32;                                         \
    extern const nn_lin_math_f64 nn_##f##_math_f64;
NN_MATH(dense)
NN_MATH(onebit)
NN_MATH(dbf)
NN_MATH(mdbf)
#define MATH(f) .math_f32 = &nn_##f##_math_f32, .math_f64 = &nn_##f##_math_f64
#define PARTS(a) .parts = (a), .n_parts = (int)(sizeof(a) / sizeof((a)[0]))

const nn_format nn_formats[] = {
    {.format = "dense", .layout = dense_layout, .random = dense_random, .acts_size = no_size,
     .work_size = no_size, .vec = no_vec, MATH(dense)},
    {.format = "onebit", .signs_follow_latent = true,
     .opts = NN_OPT_BIT(NN_OPT_POST_LN) | NN_OPT_BIT(NN_OPT_LATENT_INIT),
     .apply_opts = onebit_opts, .layout = onebit_layout, PARTS(onebit_parts),
     .imported = onebit_imported, .random = onebit_random, .acts_size = onebit_acts,
     .work_size = onebit_work, .vec = onebit_vec, MATH(onebit)},
    {.format = "dbf", .opts = NN_OPT_BIT(NN_OPT_FLIP), .layout = dbf_layout, PARTS(dbf_parts),
     .imported = nn_frozen_signs_ready, .random = dbf_random, .acts_size = dbf_acts,
     .work_size = dbf_work, .vec = dbf_vec, MATH(dbf)},
    {.format = "mdbf", .opts = NN_OPT_BIT(NN_OPT_FLIP), .layout = mdbf_layout,
     PARTS(mdbf_parts), .imported = nn_frozen_signs_ready, .random = mdbf_random,
     .acts_size = mdbf_acts, .work_size = mdbf_work, .vec = mdbf_vec, MATH(mdbf)},
};
const int nn_n_formats = (int)(sizeof nn_formats / sizeof nn_formats[0]);

const nn_format *nn_format_of(const bl_format_ops *f) {
    for (int k = 0; f && k < nn_n_formats; k++)
        if (bl_format_find(nn_formats[k].format) == f) return &nn_formats[k];
    return NULL;
}

bl_status nn_method_spec(const bl_method *m, const nn_build_opts *o, bl_method *sp,
                         bl_err *err) {
    const nn_format *e = nn_format_of(m->format);
    if (!e)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: the training engine has no entry for it",
                       m->format ? m->format->name : "?");
    *sp = *m;
    if (e->apply_opts) e->apply_opts(&sp->params, o);
    return BL_OK;
}

bool nn_linear_is_dense(const nn_linear *L) { return bl_format_is_dense(L->format); }

/* ---- import and export through the format's tensor table ---- */

typedef struct {
    const nn_linear *L;
    float *P;      /* import: written; export: read */
    int sign;      /* the next sign matrix */
    bool to_nn;
} part_copy;

/* Where the F16 tensor of ref lives in the nn layout, or NN_NONE when it has no place. */
static size_t part_offset(const nn_linear *L, const bl_format_tensor_ref *ref) {
    const nn_format *e = L->fmt;
    for (int i = 0; i < e->n_parts; i++)
        if (strcmp(e->parts[i].part, ref->t->part) == 0) {
            const size_t base = *(const size_t *)((const char *)L + e->parts[i].field);
            if (base == NN_NONE) return NN_NONE;
            return base + (size_t)ref->repeat * (size_t)(ref->rows * (ref->cols ? ref->cols : 1));
        }
    return NN_NONE;
}

static bl_status copy_part(const bl_format_tensor_ref *ref, void *ctx, bl_err *err) {
    part_copy *c = ctx;
    const nn_linear *L = c->L;
    if (ref->t->kind == BL_FT_SIGNS) {
        if (c->sign >= L->n_signs || L->S[c->sign].rows != ref->rows ||
            L->S[c->sign].cols != ref->cols)
            return bl_fail(err, BL_ERR_FORMAT, "%s %s: no sign matrix of its shape in the training "
                           "engine's layout", L->format->name, ref->part);
        nn_signs *S = &L->S[c->sign++];
        if (c->to_nn) memcpy(S->bits, ref->buf, ref->bytes);
        else memcpy(ref->buf, S->bits, ref->bytes);
        return BL_OK;
    }
    const size_t off = ref->t->kind == BL_FT_F16 ? part_offset(L, ref) : NN_NONE;
    if (off == NN_NONE)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s %s: the training engine has no tensor for it",
                       L->format->name, ref->part);
    if (c->to_nn) memcpy(c->P + off, ref->buf, ref->bytes);
    else memcpy(ref->buf, c->P + off, ref->bytes);
    return BL_OK;
}

bl_status nn_linear_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                           float *P, bl_err *err) {
    if (BL->ops != L->format || BL->m != L->m || BL->n != L->n)
        return bl_fail(err, BL_ERR_ARG, "%s layer %lld×%lld imported into a %s layer %lld×%lld",
                       BL->ops->name, (long long)BL->m, (long long)BL->n, L->format->name,
                       (long long)L->m, (long long)L->n);
    if (!L->fmt->parts) return BL->ops->to_dense(BL, P + L->w, err);
    part_copy c = {.L = L, .P = P, .to_nn = true};
    bl_status s = bl_format_data_each(BL->ops, BL->ops->data(BL), copy_part, &c, err);
    if (!s && c.sign != L->n_signs)
        s = bl_fail(err, BL_ERR_FORMAT, "%s: %d sign matrices imported, the layout has %d",
                    L->format->name, c.sign, L->n_signs);
    if (!s && L->fmt->imported) s = L->fmt->imported(L, o, P, err);
    return s;
}

bl_status nn_linear_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err) {
    const bl_format_ops *f = L->format;
    if (!L->fmt->parts)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s layers are exported as views of their weight",
                       f->name);
    void *data = malloc(f->data_size);
    if (!data) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = bl_format_data_alloc(f, L->m, L->n, &L->params, data, err);
    if (!s) {
        part_copy c = {.L = L, .P = (float *)P, .to_nn = false}; /* only read */
        s = bl_format_data_each(f, data, copy_part, &c, err);
        if (!s) s = bl_linear_from_data(out, f, data, err);
        if (s) bl_format_data_free(f, data); /* a layer that took the buffers zeroed data */
    }
    free(data);
    return s;
}
