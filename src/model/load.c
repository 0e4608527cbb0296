/* Loading a model from a Hugging Face directory (plain or bitllm-quantized), a GGUF file or a
 * llama2.c checkpoint into one bl_model. Tensors stay memory-mapped; only small vectors (norms,
 * biases) are converted to f32 copies. */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor names differ between HF checkpoints (and ours) and GGUF / llama2.c. */
typedef struct {
    const char *embd, *out_norm, *output;
    const char *layer;              /* prefix before the layer index */
    const char *attn_norm, *ffn_norm, *q_norm, *k_norm;
    const char *proj[BL_PROJ_COUNT];
} name_scheme;

static const name_scheme hf_names = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head", "model.layers.",
    "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight",
    "self_attn.k_norm.weight",
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
};

static const name_scheme gguf_names = {
    "token_embd.weight", "output_norm.weight", "output", "blk.",
    "attn_norm.weight", "ffn_norm.weight", "attn_q_norm.weight", "attn_k_norm.weight",
    {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"},
};

static bl_status own(bl_model *m, void *p, bl_err *err) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) {
            free(p);
            return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return BL_OK;
}

/* A 1-D vector of exactly len elements converted to an owned f32 array. */
static bl_status load_vec(bl_model *m, const char *name, int64_t len, bool required, float **out,
                          bl_err *err) {
    *out = NULL;
    const bl_tensor *t = bl_tensor_set_find(&m->tensors, name);
    if (!t) {
        if (!required) return BL_OK;
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor %s", m->path, name);
    }
    if (bl_tensor_numel(t) != len || t->ndim != 1)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor %s should be a vector of %lld elements",
                       m->path, name, (long long)len);
    bl_status s = bl_tensor_to_f32(t, out, err);
    if (s) return s;
    return own(m, *out, err);
}

static const bl_tensor *find_2d(bl_model *m, const char *name, int64_t rows, int64_t cols,
                                bl_err *err) {
    const bl_tensor *t = bl_tensor_set_find(&m->tensors, name);
    if (!t) {
        bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor %s", m->path, name);
        return NULL;
    }
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        bl_fail(err, BL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                m->path, name, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0),
                (long long)rows, (long long)cols);
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

static bl_status load_linear(bl_model *m, const cJSON *qc, const char *prefix, int64_t rows,
                             int64_t cols, bl_linear *L, bl_err *err) {
    char name[BL_MAX_NAME + 16];
    const cJSON *q = quant_entry(qc, prefix);
    if (!q && bl_onebit_layer_present(&m->tensors, prefix)) {
        bl_status s = bl_onebit_import_layer(&m->tensors, prefix, rows, cols, L, err);
        if (!s) snprintf(m->quant_method, sizeof m->quant_method, "onebit");
        return s;
    }
    if (!q) {
        snprintf(name, sizeof name, "%s.weight", prefix);
        const bl_tensor *t = find_2d(m, name, rows, cols, err);
        if (!t) return err ? err->code : BL_ERR_FORMAT;
        return bl_linear_dense_init(L, t, err);
    }
    const bl_format_ops *ops;
    bl_status s = bl_format_params_from_json(q, prefix, &ops, &L->params, err);
    if (s) return s;
    L->ops = ops;
    L->m = rows;
    L->n = cols;
    s = ops->load(L, prefix, &m->tensors, err);
    if (s) {
        L->ops = NULL;
        /* Prefix the model path so the message names the file. */
        if (err) {
            char tmp[sizeof err->msg];
            memcpy(tmp, err->msg, sizeof tmp);
            size_t n = strlen(m->path);
            if (n + 2 < sizeof err->msg) {
                memcpy(err->msg, m->path, n);
                memcpy(err->msg + n, ": ", 2);
                size_t left = sizeof err->msg - n - 3;
                size_t tl = strnlen(tmp, left);
                memcpy(err->msg + n + 2, tmp, tl);
                err->msg[n + 2 + tl] = 0;
            }
        }
    }
    return s;
}

/* pool: threads for repacking sign matrices (may be NULL). */
static bl_status load_weights(bl_model *m, const name_scheme *ns, const cJSON *qc, bl_pool *pool,
                              bl_err *err) {
    const bl_config *c = &m->cfg;
    if (m->load_mode == BL_LOAD_READ) {
        bl_status s = bl_tensor_set_privatize(&m->tensors, m->path, err);
        if (s) return s;
    }
    m->tensors.pool = pool;
    const bl_tensor *e = find_2d(m, ns->embd, c->vocab_size, c->dim, err);
    if (!e) return err ? err->code : BL_ERR_FORMAT;
    m->tok_embd = *e;
    bl_status s = load_vec(m, ns->out_norm, c->dim, true, &m->out_norm, err);
    if (s) return s;
    char name[BL_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s.weight", ns->output);
    bool has_head = bl_tensor_set_find(&m->tensors, name) != NULL || quant_entry(qc, ns->output);
    if (has_head) {
        s = load_linear(m, qc, ns->output, c->vocab_size, c->dim, &m->output, err);
    } else {
        m->cfg.tied_embeddings = true;
        s = bl_linear_dense_init(&m->output, &m->tok_embd, err);
    }
    if (s) return s;

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", m->path);
    const int64_t q_dim = (int64_t)c->n_heads * c->head_dim;
    const int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t rows[BL_PROJ_COUNT] = {q_dim, kv_dim, kv_dim, c->dim,
                                         c->hidden_dim, c->hidden_dim, c->dim};
    const int64_t cols[BL_PROJ_COUNT] = {c->dim, c->dim, c->dim, q_dim,
                                         c->dim, c->dim, c->hidden_dim};
    for (int l = 0; l < c->n_layers; l++) {
        bl_layer *ly = &m->layers[l];
        char pre[64];
        snprintf(pre, sizeof pre, "%s%d.", ns->layer, l);
        snprintf(name, sizeof name, "%s%s", pre, ns->attn_norm);
        if ((s = load_vec(m, name, c->dim, true, &ly->attn_norm, err))) return s;
        snprintf(name, sizeof name, "%s%s", pre, ns->ffn_norm);
        if ((s = load_vec(m, name, c->dim, true, &ly->ffn_norm, err))) return s;
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            snprintf(name, sizeof name, "%s%s", pre, ns->proj[p]);
            if ((s = load_linear(m, qc, name, rows[p], cols[p], &ly->proj[p], err))) return s;
        }
        if (c->qkv_bias) {
            for (int p = 0; p < 3; p++) {
                snprintf(name, sizeof name, "%s%s.bias", pre, ns->proj[p]);
                if ((s = load_vec(m, name, rows[p], true, &ly->bias[p], err))) return s;
            }
        }
        if (c->qk_norm) {
            snprintf(name, sizeof name, "%s%s", pre, ns->q_norm);
            if ((s = load_vec(m, name, c->head_dim, true, &ly->q_norm, err))) return s;
            snprintf(name, sizeof name, "%s%s", pre, ns->k_norm);
            if ((s = load_vec(m, name, c->head_dim, true, &ly->k_norm, err))) return s;
        }
    }
    return BL_OK;
}

/* Inverse RoPE frequencies, with Llama-3 scaling or GGUF's rope_freqs factors applied. */
static bl_status init_rope(bl_model *m, bl_err *err) {
    const bl_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = own(m, m->rope_inv_freq, err);
    if (s) return s;
    const bl_tensor *rf = bl_tensor_set_find(&m->tensors, "rope_freqs.weight");
    float *factors = NULL;
    if (rf) {
        if (bl_tensor_numel(rf) != half)
            return bl_fail(err, BL_ERR_FORMAT, "%s: rope_freqs.weight should have %d elements",
                           m->path, half);
        if ((s = bl_tensor_to_f32(rf, &factors, err))) return s;
    }
    for (int i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
        if (factors) {
            f /= factors[i];
        } else if (c->rope_llama3) {
            double lo_wl = c->rope_orig_max_pos / c->rope_low_freq_factor;
            double hi_wl = c->rope_orig_max_pos / c->rope_high_freq_factor;
            double wl = 2.0 * M_PI / f;
            if (wl > lo_wl) {
                f /= c->rope_factor;
            } else if (wl >= hi_wl) {
                double smooth = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = (float)f;
    }
    free(factors);
    return BL_OK;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* A llama2.c tokenizer.bin, or a tokenizer.json (or its directory). */
static bl_status load_tokenizer_file(bl_model *m, const char *tp, bl_err *err) {
    bl_status s;
    if (ends_with(tp, ".bin"))
        s = bl_tokenizer_load_llama2c(tp, m->cfg.vocab_size, &m->tok, err);
    else
        s = bl_tokenizer_load_hf(tp, &m->tok, err);
    if (!s && !(m->tokenizer_path = bl_strdup(tp))) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    return s;
}

/* A tokenizer-only GGUF written beside a checkpoint converted from a GGUF model. */
static bl_status load_tokenizer_gguf(bl_model *m, const char *path, bl_err *err) {
    bl_gguf g;
    bl_status s = bl_gguf_open(path, &g, err);
    if (s) return s;
    s = bl_tokenizer_load_gguf(&g, &m->tok, err);
    bl_gguf_close(&g);
    if (!s && !(m->tokenizer_path = bl_strdup(path))) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    return s;
}

static bl_status load_hf(bl_model *m, const bl_load_opts *opts, bl_pool *pool, bl_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", m->path);
    char *json;
    size_t len;
    bl_status s = bl_read_file(path, &json, &len, err);
    if (s) return s;
    s = bl_config_from_hf_json(json, path, &m->cfg, err);
    cJSON *root = s ? NULL : cJSON_Parse(json);
    free(json);
    if (s) return s;
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (qc) {
        const cJSON *meth = cJSON_GetObjectItemCaseSensitive(qc, "method");
        if (!cJSON_IsString(meth) || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(qc, "layers"))) {
            cJSON_Delete(root);
            return bl_fail(err, BL_ERR_FORMAT,
                           "%s: quantization_config needs a \"method\" string and a \"layers\" "
                           "object",
                           path);
        }
        snprintf(m->quant_method, sizeof m->quant_method, "%s", meth->valuestring);
        m->quant_config_json = cJSON_PrintUnformatted(qc);
    }
    m->source = BL_SRC_HF;
    s = bl_hf_open_tensors(m->path, &m->tensors, err);
    if (!s) s = load_weights(m, &hf_names, qc, pool, err);
    m->tensors.pool = NULL;
    cJSON_Delete(root);
    if (s) return s;
    const char *tp = opts && opts->tokenizer_path ? opts->tokenizer_path : NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", m->path);
    if (!tp && access(path, R_OK) == 0) tp = m->path;
    snprintf(path, sizeof path, "%s/tokenizer.gguf", m->path);
    if (!tp && access(path, R_OK) == 0) return load_tokenizer_gguf(m, path, err);
    snprintf(path, sizeof path, "%s/tokenizer.bin", m->path);
    if (!tp && access(path, R_OK) == 0) tp = path;
    return tp ? load_tokenizer_file(m, tp, err) : BL_OK;
}

static bl_status gguf_int(const bl_gguf *g, const char *arch, const char *key, int *out,
                          bool required, bl_err *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v;
    if (!bl_gguf_get_int(g, k, &v)) {
        if (required) return bl_fail(err, BL_ERR_FORMAT, "%s: missing metadata %s", g->path, k);
        return BL_OK;
    }
    if (v <= 0 || v > (1 << 24))
        return bl_fail(err, BL_ERR_FORMAT, "%s: metadata %s = %lld out of range", g->path, k,
                       (long long)v);
    *out = (int)v;
    return BL_OK;
}

static bl_status load_gguf(bl_model *m, bl_pool *pool, bl_err *err) {
    m->gguf = calloc(1, sizeof *m->gguf);
    if (!m->gguf) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = bl_gguf_open(m->path, m->gguf, err);
    if (s) {
        free(m->gguf);
        m->gguf = NULL;
        return s;
    }
    const bl_gguf *g = m->gguf;
    m->source = BL_SRC_GGUF;
    /* The tensors live in the gguf's set; move the set into the model (gguf keeps metadata). */
    m->tensors = m->gguf->tensors;
    memset(&m->gguf->tensors, 0, sizeof m->gguf->tensors);
    bl_str a;
    if (!bl_gguf_get_str(g, "general.architecture", &a) || a.len == 0 || a.len > 31)
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing general.architecture", m->path);
    char arch[32];
    memcpy(arch, a.ptr, a.len);
    arch[a.len] = 0;
    bl_config *c = &m->cfg;
    if (!bl_arch_from_name(arch, &c->arch))
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported",
                       m->path, arch);
    if ((s = gguf_int(g, arch, "embedding_length", &c->dim, true, err)) ||
        (s = gguf_int(g, arch, "feed_forward_length", &c->hidden_dim, true, err)) ||
        (s = gguf_int(g, arch, "block_count", &c->n_layers, true, err)) ||
        (s = gguf_int(g, arch, "attention.head_count", &c->n_heads, true, err)))
        return s;
    c->n_kv_heads = c->n_heads;
    c->max_seq = 2048;
    c->head_dim = c->dim / c->n_heads;
    if ((s = gguf_int(g, arch, "attention.head_count_kv", &c->n_kv_heads, false, err)) ||
        (s = gguf_int(g, arch, "context_length", &c->max_seq, false, err)) ||
        (s = gguf_int(g, arch, "attention.key_length", &c->head_dim, false, err)))
        return s;
    char k[128];
    double d;
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    c->rope_theta = bl_gguf_get_float(g, k, &d) ? (float)d : 10000.0f;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    c->norm_eps = bl_gguf_get_float(g, k, &d) ? (float)d : 1e-5f;
    const bl_tensor *e = bl_tensor_set_find(&m->tensors, "token_embd.weight");
    if (!e || e->ndim != 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing 2-D token_embd.weight", m->path);
    c->vocab_size = (int)e->shape[0];
    /* llama.cpp's converter permutes LLaMA/Mistral q,k rows into adjacent RoPE pairs; Qwen
     * models keep the rotate-half (NEOX) layout. */
    c->rope_interleaved = c->arch == BL_ARCH_LLAMA || c->arch == BL_ARCH_MISTRAL;
    c->qkv_bias = bl_tensor_set_find(&m->tensors, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = bl_tensor_set_find(&m->tensors, "blk.0.attn_q_norm.weight") != NULL;
    int64_t v;
    c->bos_id = bl_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) ? (int)v : -1;
    c->eos_id = bl_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) ? (int)v : -1;
    if ((s = bl_config_validate(c, m->path, err))) return s;
    s = load_weights(m, &gguf_names, NULL, pool, err);
    m->tensors.pool = NULL;
    if (s) return s;
    if (bl_gguf_find(g, "tokenizer.ggml.model")) s = bl_tokenizer_load_gguf(g, &m->tok, err);
    return s;
}

static bl_status load_llama2c(bl_model *m, const bl_load_opts *opts, bl_pool *pool,
                              bl_err *err) {
    bl_llama2c_header h;
    bl_status s = bl_llama2c_open(m->path, &h, &m->tensors, err);
    if (s) return s;
    m->source = BL_SRC_LLAMA2C;
    bl_config *c = &m->cfg;
    c->arch = BL_ARCH_LLAMA;
    c->dim = h.dim;
    c->hidden_dim = h.hidden_dim;
    c->n_layers = h.n_layers;
    c->n_heads = h.n_heads;
    c->n_kv_heads = h.n_kv_heads;
    c->head_dim = h.dim / h.n_heads;
    c->vocab_size = h.vocab_size;
    c->max_seq = h.seq_len;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_interleaved = true;
    c->bos_id = 1;
    c->eos_id = 2;
    if ((s = bl_config_validate(c, m->path, err))) return s;
    s = load_weights(m, &gguf_names, NULL, pool, err);
    m->tensors.pool = NULL;
    if (s) return s;
    if (opts && opts->tokenizer_path) s = load_tokenizer_file(m, opts->tokenizer_path, err);
    return s;
}

bl_status bl_model_load(const char *path, const bl_load_opts *opts, bl_model **out,
                        bl_err *err) {
    *out = NULL;
    bl_model *m = calloc(1, sizeof *m);
    if (!m) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    m->path = bl_strdup(path);
    if (!m->path) {
        free(m);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    const bl_load_opts none = {0};
    if (!opts) opts = &none;
    m->isa = bl_isa_clamp(opts->isa);
    m->load_mode = opts->load != BL_LOAD_DEFAULT ? opts->load : bl_default_load_mode();
    bl_pool *pool = NULL;
    bl_status s = bl_pool_new(opts->n_threads, &pool, err);
    if (s) {
        free(m->path);
        free(m);
        return s;
    }
    if (is_dir(path))
        s = load_hf(m, opts, pool, err);
    else if (ends_with(path, ".gguf"))
        s = load_gguf(m, pool, err);
    else
        s = load_llama2c(m, opts, pool, err);
    bl_pool_free(pool);
    if (!s) s = init_rope(m, err);
    if (!s && m->tok) {
        /* The model's own config decides BOS/EOS where it names them. */
        bl_tokenizer_set_bos_eos(m->tok, m->cfg.bos_id, m->cfg.eos_id);
        if (m->cfg.bos_id < 0) m->cfg.bos_id = bl_tokenizer_bos(m->tok);
        if (m->cfg.eos_id < 0) m->cfg.eos_id = bl_tokenizer_eos(m->tok);
        if (bl_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size)
            s = bl_fail(err, BL_ERR_FORMAT, "%s: tokenizer has %d tokens but the model only %d",
                        path, bl_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
    }
    if (s) {
        bl_model_free(m);
        return s;
    }
    *out = m;
    return BL_OK;
}

void bl_model_free(bl_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int p = 0; p < BL_PROJ_COUNT; p++) bl_linear_free(&m->layers[l].proj[p]);
        free(m->layers);
    }
    bl_linear_free(&m->output);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    bl_tensor_set_free(&m->tensors);
    if (m->gguf) {
        bl_gguf_close(m->gguf);
        free(m->gguf);
    }
    bl_tokenizer_free(m->tok);
    free(m->tokenizer_path);
    free(m->quant_config_json);
    free(m->path);
    free(m);
}

int64_t bl_model_param_count(const bl_model *m) {
    const bl_config *c = &m->cfg;
    int64_t n = (int64_t)c->vocab_size * c->dim + c->dim;
    if (!c->tied_embeddings) n += (int64_t)c->vocab_size * c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const bl_layer *ly = &m->layers[l];
        n += 2 * (int64_t)c->dim;
        for (int p = 0; p < BL_PROJ_COUNT; p++) n += ly->proj[p].m * ly->proj[p].n;
        for (int p = 0; p < 3; p++)
            if (ly->bias[p]) n += ly->proj[p].m;
        if (ly->q_norm) n += 2 * (int64_t)c->head_dim;
    }
    return n;
}

static uint64_t dtype_bits_of(const bl_tensor *t) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    return (uint64_t)tr->block_bytes * 8 / (uint64_t)tr->block;
}

uint64_t bl_model_weight_bits(const bl_model *m) {
    const bl_config *c = &m->cfg;
    uint64_t bits = (uint64_t)bl_tensor_numel(&m->tok_embd) * dtype_bits_of(&m->tok_embd);
    if (!c->tied_embeddings) bits += (uint64_t)(m->output.ops->stored_bits(
                                        m->output.m, m->output.n, &m->output.params));
    bits += 32ull * (uint64_t)c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        const bl_layer *ly = &m->layers[l];
        bits += 64ull * (uint64_t)c->dim;
        for (int p = 0; p < BL_PROJ_COUNT; p++)
            bits += ly->proj[p].ops->stored_bits(ly->proj[p].m, ly->proj[p].n, &ly->proj[p].params);
        for (int p = 0; p < 3; p++)
            if (ly->bias[p]) bits += 32ull * (uint64_t)ly->proj[p].m;
        if (ly->q_norm) bits += 64ull * (uint64_t)c->head_dim;
    }
    return bits;
}

void bl_model_bpw(const bl_model *m, double *bpw_layers, double *bpw_model) {
    double bits = 0, n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const bl_linear *L = &m->layers[l].proj[p];
            bits += (double)L->ops->stored_bits(L->m, L->n, &L->params);
            n += (double)L->m * (double)L->n;
        }
    if (bpw_layers) *bpw_layers = bits / n;
    if (bpw_model) *bpw_model = (double)bl_model_weight_bits(m) / (double)bl_model_param_count(m);
}
