/* Building the training engine's model: the table of parameter tensors (names, offsets, roles,
 * trainability), the sign matrices of the binary layers, the RoPE tables, and the parameter
 * values, either from a loaded bl_model (teacher or quantized student) or at random (tests and
 * benchmarks). Precision-independent; parameters are produced as f32. */
#include "nn/nn_build.h"
#include "core/parallel.h"

#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nn_build_opts_default(nn_build_opts *o) {
    memset(o, 0, sizeof *o);
    o->latent_init = 0.01f;
    o->post_ln = 1;
    o->train_norms = true;
    o->train_quant = true;
    o->flip_init = 0.01f;
}

/* ---- sizes ---- */

size_t nn_linear_acts_size(const nn_linear *L, int64_t N) {
    return L->fmt->acts_size(L, N);
}

size_t nn_linear_work_size(const nn_linear *L, int64_t N) {
    return L->fmt->work_size(L, N);
}

/* ---- the tensor table ---- */

static bool role_decays(int role) {
    return role == NN_R_EMBED || role == NN_R_HEAD || role == NN_R_DENSE || role == NN_R_LATENT;
}

static bool role_trainable(int role, const nn_build_opts *o) {
    switch (role) {
    case NN_R_EMBED: return o->train_embed;
    case NN_R_HEAD: return o->train_head;
    case NN_R_NORM: case NN_R_QKNORM: case NN_R_BIAS: return o->train_norms;
    case NN_R_DENSE: return o->train_dense;
    case NN_R_LATENT: case NN_R_SCALE: case NN_R_ENVELOPE: return o->train_quant;
    case NN_R_FLIP: return o->flip;
    default: return false;
    }
}

size_t nn_add_tensor(nn_model *M, const nn_build_opts *o, int role, int64_t rows,
                         int64_t cols, const char *fmt, ...) {
    if (!M->t && M->cap_t) return NN_NONE;
    if (M->n_t == M->cap_t) {
        int cap = M->cap_t ? 2 * M->cap_t : 64;
        nn_tensor *t = realloc(M->t, (size_t)cap * sizeof *t);
        if (!t) {
            free(M->t);
            M->t = NULL;
            return NN_NONE;
        }
        M->t = t;
        M->cap_t = cap;
    }
    nn_tensor *t = &M->t[M->n_t++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->rows = rows;
    t->cols = cols;
    t->numel = (size_t)(rows * (cols ? cols : 1));
    t->role = role;
    t->trainable = role_trainable(role, o);
    t->decay = role_decays(role);
    /* Tensors start on 16-float boundaries so that SIMD loops see aligned rows. */
    t->off = (M->n_params + 15) / 16 * 16;
    M->n_params = t->off + t->numel;
    return t->off;
}

const nn_tensor *nn_model_find(const nn_model *m, const char *name) {
    for (int i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

static bool trainable_at(const nn_model *M, size_t off) {
    if (off == NN_NONE) return false;
    for (int i = 0; i < M->n_t; i++)
        if (M->t[i].off == off) return M->t[i].trainable;
    return false;
}

void nn_model_update_grad_flags(nn_model *M) {
    M->grad_embed = trainable_at(M, M->embed);
    M->grad_head = trainable_at(M, M->head);
    M->grad_norms = trainable_at(M, M->out_norm);
    for (int l = 0; l < M->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            nn_linear *L = &M->layers[l].proj[p];
            L->grad_w = L->w != NN_NONE && trainable_at(M, L->w);
            L->grad_vec = L->fmt->n_parts && trainable_at(M, L->part[0]);
        }
}

void nn_model_train_all(nn_model *M) {
    for (int i = 0; i < M->n_t; i++) M->t[i].trainable = true;
    nn_model_update_grad_flags(M);
}

bl_status nn_signs_refresh(nn_signs *s, bl_err *err) {
    bl_signmat_release(&s->mat);
    bl_signmat_init(&s->mat, s->rows, s->cols, s->bits);
    return bl_signmat_prepare(&s->mat, bl_cpu_best_isa(), bl_pool_omp_current(), err);
}

bl_status nn_new_signs(nn_linear *L, int count, bl_err *err) {
    L->S = calloc((size_t)count, sizeof *L->S);
    if (!L->S) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    L->n_signs = count;
    return BL_OK;
}

bl_status nn_init_signs(nn_signs *s, int64_t rows, int64_t cols, bl_err *err) {
    s->rows = rows;
    s->cols = cols;
    s->latent = NN_NONE;
    s->bits = calloc((size_t)(rows * bl_sign_row_bytes(cols)), 1);
    if (!s->bits) return bl_fail(err, BL_ERR_NOMEM, "out of memory for a %lld×%lld sign matrix",
                                 (long long)rows, (long long)cols);
    bl_signmat_init(&s->mat, rows, cols, s->bits);
    return BL_OK;
}

/* Lays out one projection's tensors and sign matrices. */
static bl_status layout_linear(nn_model *M, const nn_build_opts *o, nn_linear *L,
                               const char *prefix, const bl_method *sp, int64_t m, int64_t n,
                               bl_err *err) {
    memset(L, 0, sizeof *L);
    L->fmt = nn_format_of(sp->format);
    if (!L->fmt)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s layers cannot be trained", prefix,
                       sp->format ? sp->format->name : "unset");
    L->format = sp->format;
    L->params = sp->params;
    if (sp->format->check) {
        bl_status s = sp->format->check(m, n, &sp->params, prefix, err);
        if (s) return s;
    }
    L->m = m;
    L->n = n;
    L->w = NN_NONE;
    for (int i = 0; i < NN_MAX_PARTS; i++) L->part[i] = NN_NONE;
    return L->fmt->layout(M, o, L, prefix, err);
}

/* ---- the architecture table's tensors in the parameter buffer ---- */

/* Where nn keeps each vector the bl_model keeps (bl_layer / bl_model field → nn field). */
static const struct {
    bool per_layer;
    size_t bl, nn;
} vec_slots[] = {
    {false, offsetof(bl_model, out_norm), offsetof(nn_model, out_norm)},
    {true, offsetof(bl_layer, attn_norm), offsetof(nn_layer, attn_norm)},
    {true, offsetof(bl_layer, ffn_norm), offsetof(nn_layer, ffn_norm)},
    {true, offsetof(bl_layer, bias[0]), offsetof(nn_layer, bias[0])},
    {true, offsetof(bl_layer, bias[1]), offsetof(nn_layer, bias[1])},
    {true, offsetof(bl_layer, bias[2]), offsetof(nn_layer, bias[2])},
    {true, offsetof(bl_layer, q_norm), offsetof(nn_layer, q_norm)},
    {true, offsetof(bl_layer, k_norm), offsetof(nn_layer, k_norm)},
};

size_t *nn_vector_slot(nn_model *M, const bl_arch_tensor *t, int layer) {
    for (size_t i = 0; i < sizeof vec_slots / sizeof vec_slots[0]; i++)
        if (vec_slots[i].per_layer == t->per_layer && vec_slots[i].bl == t->slot)
            return (size_t *)((char *)(t->per_layer ? (void *)&M->layers[layer] : (void *)M) +
                              vec_slots[i].nn);
    return NULL;
}

static int vector_role(const bl_arch_tensor *t) {
    return t->proj >= 0 ? NN_R_BIAS : t->when == BL_WHEN_QK_NORM ? NN_R_QKNORM : NN_R_NORM;
}

/* Lays out the whole model; spec[l·7 + p] describes each projection. The parameter buffer keeps
 * the order checkpoints and the gradient-norm sum were written in: the embeddings, the head and
 * the final norm, then per layer its vectors followed by its projections. */
static bl_status layout_model(nn_model *M, const bl_config *c, const bl_method *spec,
                              const nn_build_opts *o, bl_err *err) {
    M->cfg = *c;
    int nt;
    const bl_arch_tensor *tt = bl_arch_tensors(&nt);
    char name[BL_MAX_NAME];
    int64_t rows, cols;
    for (int pass = 0; pass < 2; pass++) /* matrices, then vectors */
        for (int i = 0; i < nt; i++) {
            const bl_arch_tensor *t = &tt[i];
            if (t->per_layer || (t->kind == BL_TK_VECTOR) != (pass == 1)) continue;
            bl_arch_shape(t, c, &rows, &cols);
            bl_arch_tensor_name(t, 0, false, name, sizeof name);
            if (t->kind == BL_TK_EMBED) {
                M->embed = nn_add_tensor(M, o, NN_R_EMBED, rows, cols, "%s", name);
                /* One tensor serves both ends when tied; it trains when either end is asked to. */
                if (c->tied_embeddings && M->t) M->t[0].trainable = o->train_embed || o->train_head;
                M->head = M->embed;
            } else if (t->kind == BL_TK_LINEAR) {
                if (bl_arch_present(t, c))
                    M->head = nn_add_tensor(M, o, NN_R_HEAD, rows, cols, "%s.weight", name);
            } else {
                *nn_vector_slot(M, t, 0) = nn_add_tensor(M, o, vector_role(t), rows, 0, "%s", name);
            }
        }
    M->layers = calloc((size_t)c->n_layers, sizeof *M->layers);
    if (!M->layers) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = BL_OK;
    for (int l = 0; l < c->n_layers && !s; l++) {
        nn_layer *ly = &M->layers[l];
        for (int p = 0; p < 3; p++) ly->bias[p] = NN_NONE;
        ly->q_norm = ly->k_norm = NN_NONE;
        for (int pass = 0; pass < 2; pass++) /* vectors, then projections */
            for (int i = 0; i < nt && !s; i++) {
                const bl_arch_tensor *t = &tt[i];
                if (!t->per_layer || (t->kind == BL_TK_LINEAR) != (pass == 1) ||
                    !bl_arch_present(t, c))
                    continue;
                bl_arch_shape(t, c, &rows, &cols);
                bl_arch_tensor_name(t, l, false, name, sizeof name);
                if (t->kind == BL_TK_VECTOR)
                    *nn_vector_slot(M, t, l) = nn_add_tensor(M, o, vector_role(t), rows, 0, "%s",
                                                          name);
                else
                    s = layout_linear(M, o, &ly->proj[t->proj], name,
                                      &spec[l * BL_PROJ_COUNT + t->proj], rows, cols, err);
            }
    }
    if (!s && !M->t) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    return s;
}

static bl_status init_rope(nn_model *M, const float *inv_freq, int max_seq, bl_err *err) {
    const int half = M->cfg.head_dim / 2;
    M->max_seq = max_seq;
    M->rope_cos = malloc(sizeof(double) * (size_t)max_seq * (size_t)half);
    M->rope_sin = malloc(sizeof(double) * (size_t)max_seq * (size_t)half);
    if (!M->rope_cos || !M->rope_sin) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    /* Angles exactly as the inference path computes them (src/model/forward.c). */
    for (int p = 0; p < max_seq; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * (double)inv_freq[i];
            M->rope_cos[(size_t)p * half + i] = (float)cos(a);
            M->rope_sin[(size_t)p * half + i] = (float)sin(a);
        }
    return BL_OK;
}

void nn_model_free(nn_model *M) {
    if (!M) return;
    for (int l = 0; M->layers && l < M->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            nn_linear *L = &M->layers[l].proj[p];
            for (int i = 0; i < L->n_signs; i++) {
                bl_signmat_release(&L->S[i].mat);
                free(L->S[i].bits);
            }
            free(L->S);
        }
    free(M->layers);
    free(M->t);
    free(M->rope_cos);
    free(M->rope_sin);
    free(M);
}

static bl_status finish(nn_model *M, float **params, bl_err *err) {
    *params = bl_aligned_alloc((M->n_params ? M->n_params : 1) * sizeof(float));
    if (!*params) return bl_fail(err, BL_ERR_NOMEM, "cannot allocate %zu parameters", M->n_params);
    memset(*params, 0, M->n_params * sizeof(float));
    nn_model_update_grad_flags(M);
    return BL_OK;
}

/* ---- from a loaded model ---- */

void nn_latent_from_bits(float *lat, const nn_signs *s, float init) {
    const int64_t rb = bl_sign_row_bytes(s->cols);
    for (int64_t i = 0; i < s->rows; i++)
        for (int64_t j = 0; j < s->cols; j++)
            lat[i * s->cols + j] = (float)bl_sign_get(s->bits, rb, i, j) * init;
}

bl_status nn_frozen_signs_ready(const nn_linear *L, const nn_build_opts *o, float *P,
                                bl_err *err) {
    bl_status s = BL_OK;
    for (int i = 0; i < L->n_signs && !s; i++) {
        if (L->S[i].latent != NN_NONE)
            nn_latent_from_bits(P + L->S[i].latent, &L->S[i], o->flip_init);
        s = nn_signs_refresh(&L->S[i], err);
    }
    return s;
}

static bl_status spec_of(const bl_model *src, const bl_linear *L, const char *prefix,
                         const nn_build_opts *o, bl_method *sp, bl_err *err) {
    const bl_method m = {.format = L->ops, .params = L->params};
    if (nn_format_of(L->ops)) return nn_method_spec(&m, o, sp, err);
    char names[96];
    size_t k = 0;
    names[0] = 0;
    for (int i = 0; i < nn_n_formats && k < sizeof names; i++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
                              nn_formats[i]->format);
    return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s is a %s layer, which cannot be trained "
                   "(%s can)", src->path, prefix, L->ops->name, names);
}

bl_status nn_model_from_bl(const bl_model *src, int max_seq, const nn_build_opts *o,
                           nn_model **out, float **params, bl_err *err) {
    *out = NULL;
    *params = NULL;
    const bl_config *c = &src->cfg;
    /* the engine's attention is causal over the whole sequence: within a sliding window only
     * while the sequence fits in it */
    if (c->sliding_window > 0 && max_seq > c->sliding_window)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: training sequences of %d tokens are longer "
                       "than the model's sliding attention window of %d, which the training "
                       "engine does not apply; use sequences of at most %d tokens",
                       src->path ? src->path : "model", max_seq, c->sliding_window,
                       c->sliding_window);
    nn_model *M = calloc(1, sizeof *M);
    bl_method *spec = calloc((size_t)c->n_layers * BL_PROJ_COUNT, sizeof *spec);
    bl_status s = M && spec ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    char prefix[96];
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++) {
            bl_proj_name(l, p, prefix, sizeof prefix);
            s = spec_of(src, &src->layers[l].proj[p], prefix, o, &spec[l * BL_PROJ_COUNT + p], err);
        }
    if (!s) s = layout_model(M, c, spec, o, err);
    free(spec);
    if (!s) s = init_rope(M, src->rope_inv_freq, max_seq, err);
    if (!s) s = finish(M, params, err);
    float *P = *params, *tmp = NULL;
    if (!s && src->embed.ops) s = src->embed.ops->to_dense(&src->embed, P + M->embed, err);
    else if (!s) s = bl_tensor_to_f32(&src->tok_embd, &tmp, err);
    if (!s && tmp) memcpy(P + M->embed, tmp, sizeof(float) * (size_t)c->vocab_size * c->dim);
    free(tmp);
    if (!s && !c->tied_embeddings) s = src->output.ops->to_dense(&src->output, P + M->head, err);
    bl_model *sm = (bl_model *)src; /* the slots are only read */
    for (bl_arch_iter it = {0}; !s && bl_arch_next(c, &it);) {
        const bl_arch_tensor *t = it.t;
        const int l = it.layer;
        int64_t rows, cols;
        bl_arch_shape(t, c, &rows, &cols);
        if (t->kind == BL_TK_VECTOR) {
            memcpy(P + *nn_vector_slot(M, t, l), *bl_arch_vector_slot(sm, t, l),
                   sizeof(float) * (size_t)rows);
        } else if (t->kind == BL_TK_LINEAR && t->per_layer) {
            bl_arch_tensor_name(t, l, false, prefix, sizeof prefix);
            const nn_linear *L = &M->layers[l].proj[t->proj];
            s = nn_linear_import(&src->layers[l].proj[t->proj], L, o, P, err);
        }
    }
    if (!s) s = nn_model_sync_signs_f32(M, P, err);
    if (s) {
        nn_model_free(M);
        bl_aligned_free(*params);
        *params = NULL;
        return s;
    }
    *out = M;
    return BL_OK;
}

/* ---- random models (tests, benchmarks) ---- */

void nn_fill_normal(float *v, size_t n, bl_rng *r, float mean, float sd) {
    for (size_t i = 0; i < n; i++) v[i] = mean + sd * bl_rng_normal(r);
}

void nn_fill_pos(float *v, size_t n, bl_rng *r, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * (0.5f + bl_rng_uniform(r));
}

void nn_random_signs(nn_signs *s, bl_rng *r) {
    const int64_t rb = bl_sign_row_bytes(s->cols);
    memset(s->bits, 0, (size_t)(s->rows * rb));
    for (int64_t i = 0; i < s->rows; i++)
        for (int64_t j = 0; j < s->cols; j++)
            if (bl_rng_u64(r) & 1) s->bits[i * rb + (j >> 3)] |= (uint8_t)(1u << (j & 7));
}

bl_status nn_model_random(const bl_config *c, const bl_method spec[BL_PROJ_COUNT],
                          uint64_t seed, int max_seq, const nn_build_opts *o, nn_model **out,
                          float **params, bl_err *err) {
    *out = NULL;
    *params = NULL;
    nn_model *M = calloc(1, sizeof *M);
    bl_method *all = calloc((size_t)c->n_layers * BL_PROJ_COUNT, sizeof *all);
    float *inv = malloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
    bl_status s = M && all && inv ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layers * BL_PROJ_COUNT && !s; i++) all[i] = spec[i % BL_PROJ_COUNT];
    if (!s) s = layout_model(M, c, all, o, err);
    for (int i = 0; i < c->head_dim / 2 && !s; i++)
        inv[i] = (float)pow((double)c->rope_theta, -2.0 * i / c->head_dim);
    if (!s) s = init_rope(M, inv, max_seq, err);
    if (!s) s = finish(M, params, err);
    free(all);
    free(inv);
    bl_rng r;
    bl_rng_seed(&r, seed);
    float *P = *params;
    for (int i = 0; i < M->n_t && !s; i++) {
        const nn_tensor *t = &M->t[i];
        switch (t->role) {
        case NN_R_EMBED: case NN_R_HEAD: nn_fill_normal(P + t->off, t->numel, &r, 0, 0.5f); break;
        case NN_R_NORM: case NN_R_QKNORM: nn_fill_normal(P + t->off, t->numel, &r, 1, 0.1f); break;
        case NN_R_BIAS: nn_fill_normal(P + t->off, t->numel, &r, 0, 0.1f); break;
        default: break;
        }
    }
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int p = 0; p < BL_PROJ_COUNT && !s; p++)
            s = M->layers[l].proj[p].fmt->random(&M->layers[l].proj[p], o, P, &r, err);
    if (!s) s = nn_model_sync_signs_f32(M, P, err);
    if (s) {
        nn_model_free(M);
        bl_aligned_free(*params);
        *params = NULL;
        return s;
    }
    *out = M;
    return BL_OK;
}
