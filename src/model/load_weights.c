/* The weights of a model whose configuration is known: every tensor the configuration asks for
 * must be present with its exact shape, every tensor of the checkpoint must be one the model uses
 * (a checkpoint with more layers or tensors than its configuration is refused, never silently
 * cut), every quantization_config entry must name a layer, and no weight may hold an Inf or NaN.
 * Errors name the tensor and the file it lives in. Tensors stay views into the mapped files; only
 * small vectors (norms, biases) are converted to owned f32 copies. */
#include "model/model_internal.h"
#include "bitllm/dist.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensors some converters store that are derived from the configuration (RoPE tables): ignored. */
static bool ignorable(const char *name) {
    static const char *const suffixes[] = {"rotary_emb.inv_freq", "attn_rot_embd"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0) return true;
    }
    return false;
}

typedef struct {
    bl_model *m;
    bool gguf; /* GGUF / llama2.c tensor names, else Hugging Face names */
    const char *layer_prefix;
    const bl_load_source *src;
    uint8_t *used; /* per tensor of m->tensors: 1 read, 2 read as a dense projection */
} loader;

/* The file a tensor lives in (or the checkpoint's own path) for messages. */
static const char *file_of(const loader *L, const bl_tensor *t) {
    const char *f = t ? bl_tensor_set_file(&L->m->tensors, t) : NULL;
    return f ? f : L->src->tensors;
}

static const bl_tensor *find(loader *L, const char *name) {
    const bl_tensor *t = bl_tensor_set_find(&L->m->tensors, name);
    if (t) L->used[t - L->m->tensors.t] = 1;
    return t;
}

/* "model.layers.7." style prefix: the layer index, or -1. */
static int layer_of(const loader *L, const char *name) {
    size_t k = strlen(L->layer_prefix);
    if (strncmp(name, L->layer_prefix, k) != 0 || name[k] < '0' || name[k] > '9') return -1;
    long v = 0;
    const char *p = name + k;
    for (; *p >= '0' && *p <= '9' && v < (1L << 30); p++) v = v * 10 + (*p - '0');
    return *p == '.' ? (int)v : -1;
}

static bl_status missing(const loader *L, const char *name, bl_err *err) {
    char why[160] = "";
    if (layer_of(L, name) >= 0)
        snprintf(why, sizeof why, " (%s says %s = %d)", L->src->cfg->src, L->src->cfg->n_layers,
                 L->m->cfg.n_layers);
    return bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor %s%s", L->src->tensors, name, why);
}

/* A 1-D vector of exactly len elements converted to an owned f32 array. */
static bl_status load_vec(loader *L, const char *name, int64_t len, float **out, bl_err *err) {
    *out = NULL;
    const bl_tensor *t = find(L, name);
    if (!t) return missing(L, name, err);
    if (bl_tensor_numel(t) != len || t->ndim != 1 || !bl_dtype_info(t->dtype)->find_nonfinite)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: tensor %s should be a float vector of %lld elements (has %d dims, "
                       "%lld elements, %s)",
                       file_of(L, t), name, (long long)len, t->ndim,
                       (long long)bl_tensor_numel(t), bl_dtype_info(t->dtype)->name);
    bl_status s = bl_tensor_to_f32(t, out, err);
    if (s) return s;
    return bl_model_own(L->m, *out, err);
}

static const bl_tensor *find_2d(loader *L, const char *name, int64_t rows, int64_t cols,
                                bl_err *err) {
    const bl_tensor *t = find(L, name);
    if (!t) {
        missing(L, name, err);
        return NULL;
    }
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols ||
        !bl_dtype_info(t->dtype)->find_nonfinite) {
        bl_fail(err, BL_ERR_FORMAT,
                "%s: tensor %s is %s [%lld, %lld] (%d dims), expected a float matrix [%lld, %lld]",
                file_of(L, t), name, bl_dtype_info(t->dtype)->name, (long long)t->shape[0],
                (long long)(t->ndim > 1 ? t->shape[1] : 0), t->ndim, (long long)rows,
                (long long)cols);
        return NULL;
    }
    return t;
}

/* quantization_config.layers entry for prefix, or NULL for a dense layer. */
static const cJSON *quant_entry(const cJSON *qc, const char *prefix) {
    if (!qc) return NULL;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(qc, "layers");
    return cJSON_GetObjectItemCaseSensitive(layers, prefix);
}

/* A format's loader reads the tensors under "<prefix>." itself: they all count as used. */
static void use_prefix(loader *L, const char *prefix) {
    size_t k = strlen(prefix);
    for (int i = 0; i < L->m->tensors.n; i++) {
        const char *n = L->m->tensors.t[i].name;
        if (strncmp(n, prefix, k) == 0 && n[k] == '.') L->used[i] = 1;
    }
}

static bl_status load_linear(loader *L, const cJSON *qc, const char *prefix, int64_t rows,
                             int64_t cols, bl_linear *lin, bl_err *err) {
    bl_model *m = L->m;
    char name[BL_MAX_NAME + 16];
    const cJSON *q = quant_entry(qc, prefix);
    if (!q && bl_onebit_layer_present(&m->tensors, prefix)) {
        use_prefix(L, prefix);
        bl_status s = bl_onebit_import_layer(&m->tensors, prefix, rows, cols, lin, err);
        if (!s) snprintf(m->quant_method, sizeof m->quant_method, "%s", lin->ops->name);
        return s ? bl_fail_context(err, s, "%s", L->src->tensors) : s;
    }
    if (!q) {
        snprintf(name, sizeof name, "%s.weight", prefix);
        const bl_tensor *t = find_2d(L, name, rows, cols, err);
        if (!t) return err ? err->code : BL_ERR_FORMAT;
        L->used[t - m->tensors.t] = 2; /* see check_finite */
        return bl_linear_dense_init(lin, t, err);
    }
    const bl_format_ops *ops;
    bl_status s = bl_format_params_from_json(q, prefix, &ops, &lin->params, err);
    if (s) return bl_fail_context(err, s, "%s", L->src->cfg_file);
    use_prefix(L, prefix);
    lin->ops = ops;
    lin->m = rows;
    lin->n = cols;
    s = ops->load(lin, prefix, &m->tensors, err);
    if (s) {
        lin->ops = NULL;
        bl_fail_context(err, s, "%s", L->src->tensors); /* the format's message names the tensor */
    }
    return s;
}

/* Every key of quantization_config.layers must be a projection (or the head) this model has:
 * an entry for a layer beyond num_hidden_layers is a checkpoint of another shape. */
static bl_status check_quant_keys(const loader *L, const cJSON *qc, bl_err *err) {
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(qc, "layers"), *e;
    int nt;
    const bl_arch_tensor *tt = bl_arch_tensors(&nt);
    cJSON_ArrayForEach(e, layers) {
        const char *k = e->string ? e->string : "";
        bool ok = false;
        const int l = layer_of(L, k);
        char embed[BL_MAX_NAME];
        bl_embed_prefix(bl_arch_role("tok_embd")->hf, embed, sizeof embed);
        ok = strcmp(k, embed) == 0;
        for (int i = 0; i < nt && !ok; i++) {
            if (tt[i].kind != BL_TK_LINEAR || !bl_arch_present(&tt[i], &L->m->cfg)) continue;
            if (tt[i].per_layer && (l < 0 || l >= L->m->cfg.n_layers)) continue;
            char name[BL_MAX_NAME];
            bl_arch_tensor_name(&tt[i], l, L->gguf, name, sizeof name);
            ok = strcmp(k, name) == 0;
        }
        if (!ok)
            return bl_fail(err, BL_ERR_FORMAT,
                           "%s: quantization_config.layers has an entry for \"%.128s\", which is "
                           "not a projection of this %d-layer model",
                           L->src->cfg_file, k, L->m->cfg.n_layers);
    }
    return BL_OK;
}

/* Tensors the model did not read: more layers than configured, or parts this architecture does
 * not have (e.g. biases on a model configured without them) would be silently dropped. */
static bl_status check_unused(const loader *L, bl_err *err) {
    const bl_tensor_set *ts = &L->m->tensors;
    for (int i = 0; i < ts->n; i++) {
        const bl_tensor *t = &ts->t[i];
        if (L->used[i] || ignorable(t->name)) continue;
        int l = layer_of(L, t->name);
        if (l >= L->m->cfg.n_layers)
            return bl_fail(err, BL_ERR_FORMAT,
                           "%s: tensor %s belongs to layer %d, but %s says %s = %d",
                           file_of(L, t), t->name, l, L->src->cfg->src, L->src->cfg->n_layers,
                           L->m->cfg.n_layers);
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: tensor %s is not part of the model %s describes (%s; unused "
                       "tensors are refused rather than ignored)",
                       file_of(L, t), t->name, L->src->cfg->src, bl_arch_name(L->m->cfg.arch));
    }
    return BL_OK;
}

/* Whether t holds an Inf or NaN (*at: the first one's element index). Read in slices of about
 * 16 MiB whose pages are given back right after when the file is mapped (release), so checking a
 * model neither leaves it resident nor raises the peak resident size by more than one slice (the
 * pages are read again when the model uses them). A model read into private memory
 * (BL_LOAD_READ) keeps its pages: giving them back would map the file over them again. */
static bool find_nonfinite(const bl_tensor_set *ts, const bl_tensor *t, bool release,
                           int64_t *at) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    if (!tr->find_nonfinite || !t->data) return false;
    const size_t step = ((size_t)16 << 20) / (size_t)tr->block_bytes * (size_t)tr->block_bytes;
    const size_t per = step / (size_t)tr->block_bytes * (size_t)tr->block; /* elements */
    for (size_t off = 0, first = 0; off < t->nbytes; off += step, first += per) {
        bl_tensor v = *t;
        v.ndim = 1;
        v.nbytes = t->nbytes - off < step ? t->nbytes - off : step;
        v.shape[0] = (int64_t)(v.nbytes / (size_t)tr->block_bytes * (size_t)tr->block);
        v.data = (const uint8_t *)t->data + off;
        bool bad = bl_tensor_find_nonfinite(&v, ts->pool, at);
        if (release) bl_tensor_set_release(ts, v.data, v.nbytes);
        if (bad) {
            *at += (int64_t)first;
            return true;
        }
    }
    return false;
}

/* No weight the model reads may hold an Inf or NaN (they would turn every output into NaN).
 * In a job of N MPI ranks (bitllm/dist.h) every rank loads the model; the dense projections, the
 * bulk of its bytes, are then checked by one rank each in turn, so the job reads them once and a
 * rank of a distributed quantize reads little beyond what it fits. The rank that finds a bad
 * value fails, which ends the job. */
static bl_status check_finite(const loader *L, bl_err *err) {
    const bl_tensor_set *ts = &L->m->tensors;
    const int ranks = bl_dist_size(), rank = bl_dist_rank();
    int proj = 0;
    for (int i = 0; i < ts->n; i++) {
        const bl_tensor *t = &ts->t[i];
        int64_t at;
        if (!L->used[i] || (L->used[i] == 2 && proj++ % ranks != rank)) continue;
        if (!find_nonfinite(ts, t, L->m->load_mode != BL_LOAD_READ, &at)) continue;
        /* the offending element, decoded with its block (Q8_0: 32 elements share a scale) */
        float blockv[32];
        const int64_t blk = bl_dtype_info(t->dtype)->block;
        bl_tensor_row_f32(t, at / blk, blk, blockv);
        const float v = blockv[at % blk];
        if (t->ndim == 2)
            return bl_fail(err, BL_ERR_NUMERIC,
                           "%s: tensor %s holds a non-finite value (%g) at row %lld, column %lld",
                           file_of(L, t), t->name, (double)v, (long long)(at / t->shape[1]),
                           (long long)(at % t->shape[1]));
        return bl_fail(err, BL_ERR_NUMERIC,
                       "%s: tensor %s holds a non-finite value (%g) at element %lld",
                       file_of(L, t), t->name, (double)v, (long long)at);
    }
    return BL_OK;
}

/* One tensor of the architecture table into its place in the model. */
static bl_status load_entry(loader *L, const cJSON *qc, const bl_arch_tensor *t, int layer,
                            bl_err *err) {
    bl_model *m = L->m;
    char name[BL_MAX_NAME];
    int64_t rows, cols;
    bl_arch_tensor_name(t, layer, L->gguf, name, sizeof name);
    bl_arch_shape(t, &m->cfg, &rows, &cols);
    switch (t->kind) {
    case BL_TK_EMBED: {
        char prefix[BL_MAX_NAME];
        bl_embed_prefix(name, prefix, sizeof prefix);
        if (quant_entry(qc, prefix)) { /* quantized: a registry format with a row lookup */
            bl_status s = load_linear(L, qc, prefix, rows, cols, &m->embed, err);
            if (!s && !m->embed.ops->get_row) {
                s = bl_fail(err, BL_ERR_FORMAT, "%s: the token embeddings %s are stored as %s, "
                            "a format without a row lookup", L->src->cfg_file, prefix,
                            m->embed.ops->name);
                bl_linear_free(&m->embed);
                m->embed.ops = NULL;
            }
            return s;
        }
        const bl_tensor *e = find_2d(L, name, rows, cols, err);
        if (!e) return err ? err->code : BL_ERR_FORMAT;
        m->tok_embd = *e;
        return BL_OK;
    }
    case BL_TK_VECTOR: return load_vec(L, name, rows, bl_arch_vector_slot(m, t, layer), err);
    case BL_TK_LINEAR: break;
    }
    bl_linear *lin = bl_arch_linear_slot(m, t, layer);
    if (t->when == BL_WHEN_UNTIED) {
        /* the head: present in the checkpoint (dense, quantized or a released OneBit layer), or
         * tied to the embeddings unless the configuration says otherwise */
        char w[BL_MAX_NAME + 8];
        snprintf(w, sizeof w, "%s.weight", name);
        const bool has_head = bl_tensor_set_find(&m->tensors, w) != NULL ||
                              quant_entry(qc, name) || bl_onebit_layer_present(&m->tensors, name);
        if (!has_head && L->src->head_required)
            return bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor %s (%s says the output head "
                           "is not tied to the embeddings)", L->src->tensors, w,
                           L->src->cfg->src);
        if (!has_head && m->embed.ops)
            return bl_fail(err, BL_ERR_FORMAT, "%s: the token embeddings are quantized (%s) and "
                           "there is no output head %s (a quantized table is never tied)",
                           L->src->tensors, m->embed.ops->name, w);
        if (!has_head) {
            m->cfg.tied_embeddings = true;
            return bl_linear_dense_init(lin, &m->tok_embd, err);
        }
    }
    return load_linear(L, qc, name, rows, cols, lin, err);
}

static bl_status load_all(loader *L, const cJSON *qc, bl_err *err) {
    bl_model *m = L->m;
    const bl_config *c = &m->cfg;
    int nt;
    const bl_arch_tensor *tt = bl_arch_tensors(&nt);
    bl_status s = BL_OK;
    /* the head decides tied_embeddings, so it is present until it is found absent */
    for (int i = 0; i < nt && !s; i++)
        if (!tt[i].per_layer && (tt[i].when == BL_WHEN_UNTIED || bl_arch_present(&tt[i], c)))
            s = load_entry(L, qc, &tt[i], 0, err);
    if (s) return s;
    const bl_tensor *rf = find(L, "rope_freqs.weight");
    if (rf && (rf->ndim != 1 || bl_tensor_numel(rf) != c->head_dim / 2 ||
               !bl_dtype_info(rf->dtype)->find_nonfinite))
        return bl_fail(err, BL_ERR_FORMAT, "%s: rope_freqs.weight should be a float vector of %d "
                       "elements", file_of(L, rf), c->head_dim / 2);

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", m->path);
    for (int l = 0; l < c->n_layers && !s; l++)
        for (int i = 0; i < nt && !s; i++)
            if (tt[i].per_layer && bl_arch_present(&tt[i], c))
                s = load_entry(L, qc, &tt[i], l, err);
    if (s) return s;
    if (qc && (s = check_quant_keys(L, qc, err))) return s;
    if ((s = check_unused(L, err))) return s;
    return check_finite(L, err);
}

bl_status bl_model_load_weights(bl_model *m, const bl_load_source *src, const cJSON *qc,
                                const bl_load_opts *opts, bl_err *err) {
    if (m->load_mode == BL_LOAD_READ) {
        bl_status s = bl_tensor_set_privatize(&m->tensors, m->path, err);
        if (s) return s;
    }
    loader L = {m, src->gguf_names, bl_arch_layer_prefix(src->gguf_names), src,
                bl_calloc((size_t)m->tensors.n, 1)};
    if (!L.used) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", m->path);
    bl_pool *pool = NULL;
    bl_status s = bl_pool_new(opts ? opts->n_threads : 0, &pool, err);
    if (!s) {
        m->tensors.pool = pool; /* the sign matrices' repacking runs on it */
        s = load_all(&L, qc, err);
        m->tensors.pool = NULL;
    }
    bl_pool_free(pool);
    free(L.used);
    return s;
}
