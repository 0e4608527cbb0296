/* Loading a model from a Hugging Face directory (plain or bitllm-quantized), a GGUF file or a
 * llama2.c checkpoint into one bl_model. The form is told by content (a directory, GGUF magic, a
 * llama2.c header), never by the file name, and each form's configuration is read strictly:
 * a field of the wrong type or out of range is an error naming it. The weights are loaded and
 * checked by src/model/load_weights.c. */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bl_status bl_model_own(bl_model *m, void *p, bl_err *err) {
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

/* Inverse RoPE frequencies, with Llama-3 scaling or GGUF's rope_freqs factors applied, and
 * linear position scaling. */
static bl_status init_rope(bl_model *m, bl_err *err) {
    const bl_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = bl_model_own(m, m->rope_inv_freq, err);
    if (s) return s;
    /* Shape and finiteness were checked with the weights. */
    const bl_tensor *rf = bl_tensor_set_find(&m->tensors, "rope_freqs.weight");
    float *factors = NULL;
    if (rf && (s = bl_tensor_to_f32(rf, &factors, err))) return s;
    for (int i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
        if (factors) {
            if (!(factors[i] > 0.0f)) {
                free(factors);
                return bl_fail(err, BL_ERR_FORMAT, "%s: rope_freqs.weight[%d] = %g must be "
                               "positive", m->path, i, (double)factors[i]);
            }
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
        if (c->rope_linear > 0.0f) f /= c->rope_linear; /* positions / factor */
        m->rope_inv_freq[i] = (float)f;
    }
    free(factors);
    return BL_OK;
}

/* ---- Hugging Face directories ---- */

/* Parses config.json (and its quantization_config block) into m; *root keeps the parsed JSON for
 * the weights. */
static bl_status hf_config(bl_model *m, const char *cfg_path, const char *json, cJSON **root,
                           bl_load_source *src, bl_err *err) {
    *root = NULL;
    bl_status s = bl_config_from_hf_json(json, cfg_path, &m->cfg, err);
    if (s) return s;
    if (!(*root = bl_json_parse(json, strlen(json), NULL)))
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", cfg_path);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(*root, "tie_word_embeddings");
    src->cfg_file = cfg_path;
    src->cfg = &bl_hf_config_fields;
    src->head_required = cJSON_IsFalse(tie);
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(*root, "quantization_config");
    if (!qc || cJSON_IsNull(qc)) return BL_OK;
    const cJSON *meth = cJSON_GetObjectItemCaseSensitive(qc, "method");
    const cJSON *other = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    if (cJSON_IsString(other) && !meth) /* another tool's format: GPTQ, AWQ, bitsandbytes, ... */
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "%s: the checkpoint is quantized by another tool (quantization_config."
                       "quant_method \"%.40s\"); bitllm reads FP32/FP16/BF16 checkpoints and its "
                       "own formats: start from the unquantized model",
                       cfg_path, other->valuestring);
    if (!cJSON_IsObject(qc) || !cJSON_IsString(meth) ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(qc, "layers")))
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: quantization_config must be an object with a \"method\" string and a "
                       "\"layers\" object",
                       cfg_path);
    snprintf(m->quant_method, sizeof m->quant_method, "%s", meth->valuestring);
    if (!(m->quant_config_json = cJSON_PrintUnformatted(qc)))
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", cfg_path);
    return BL_OK;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bl_status load_hf(bl_model *m, const bl_load_opts *opts, bl_err *err) {
    char cfg_path[4096], tpath[4096], path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", m->path);
    if (!file_exists(cfg_path))
        return bl_fail(err, BL_ERR_IO, "%s: no config.json (a model directory holds config.json "
                       "and model.safetensors)", m->path);
    char *json;
    size_t len;
    bl_status s = bl_read_file(cfg_path, &json, &len, err);
    if (s) return s;
    bl_load_source src = {.tensors = tpath};
    cJSON *root = NULL;
    s = hf_config(m, cfg_path, json, &root, &src, err);
    free(json);
    snprintf(tpath, sizeof tpath, "%s/model.safetensors.index.json", m->path);
    if (!file_exists(tpath)) snprintf(tpath, sizeof tpath, "%s/model.safetensors", m->path);
    m->source = BL_SRC_HF;
    if (!s) s = bl_hf_open_tensors(m->path, &m->tensors, err);
    if (!s)
        s = bl_model_load_weights(m, &src,
                                  cJSON_GetObjectItemCaseSensitive(root, "quantization_config"),
                                  opts, err);
    cJSON_Delete(root);
    if (s) return s;
    const char *tp = opts && opts->tokenizer_path ? opts->tokenizer_path : NULL;
    static const char *const beside[] = {"tokenizer.json", "tokenizer.gguf", "tokenizer.bin"};
    for (int i = 0; i < 3 && !tp; i++) {
        snprintf(path, sizeof path, "%s/%s", m->path, beside[i]);
        if (access(path, R_OK) == 0) tp = i == 0 ? m->path : path;
    }
    return tp ? bl_model_load_tokenizer(m, tp, err) : BL_OK;
}

/* ---- GGUF ---- */

/* An integer metadata value: absent is an error only when required; present with another type
 * or out of int range is always one. */
static bl_status gguf_int(const bl_gguf *g, const char *key, int *out, bool required,
                          bl_err *err) {
    int64_t v;
    if (!bl_gguf_find(g, key))
        return required ? bl_fail(err, BL_ERR_FORMAT, "%s: missing metadata %s", g->path, key)
                        : BL_OK;
    if (!bl_gguf_get_int(g, key, &v))
        return bl_fail(err, BL_ERR_FORMAT, "%s: metadata %s must be an integer", g->path, key);
    if (v < INT32_MIN || v > INT32_MAX)
        return bl_fail(err, BL_ERR_FORMAT, "%s: metadata %s = %lld is out of range", g->path, key,
                       (long long)v);
    *out = (int)v;
    return BL_OK;
}

static bl_status gguf_float(const bl_gguf *g, const char *key, float *out, bl_err *err) {
    double d;
    if (!bl_gguf_find(g, key)) return BL_OK;
    if (!bl_gguf_get_float(g, key, &d) || !isfinite((float)d))
        return bl_fail(err, BL_ERR_FORMAT, "%s: metadata %s must be a finite number", g->path, key);
    *out = (float)d;
    return BL_OK;
}

/* kt = <arch>.rope.scaling.type: "none", or "linear" with kf = <arch>.rope.scaling.factor (or
 * kl = the older <arch>.rope.scale_linear); the others (yarn, ...) are refused rather than run
 * unscaled. A factor of 1 is none. */
static bl_status gguf_rope_scaling(const bl_gguf *g, const char *kt, const char *kf,
                                   const char *kl, bl_config *c, bl_err *err) {
    bl_status s;
    if (bl_gguf_find(g, kt)) {
        bl_str t;
        if (!bl_gguf_get_str(g, kt, &t))
            return bl_fail(err, BL_ERR_FORMAT, "%s: metadata %s must be a string", g->path, kt);
        if (t.len == 4 && memcmp(t.ptr, "none", 4) == 0) return BL_OK;
        if (!(t.len == 6 && memcmp(t.ptr, "linear", 6) == 0))
            return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: metadata %s = \"%.*s\" is not supported "
                           "(none, linear)", g->path, kt, (int)(t.len < 40 ? t.len : 40), t.ptr);
        if (!bl_gguf_find(g, kf))
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s is \"linear\" but %s is missing", g->path,
                           kt, kf);
        s = gguf_float(g, kf, &c->rope_linear, err);
    } else {
        s = gguf_float(g, kl, &c->rope_linear, err);
    }
    if (c->rope_linear == 1.0f) c->rope_linear = 0.0f; /* the neutral value converters write */
    return s;
}

/* m->gguf is parsed: configuration from its metadata, then the weights and tokenizer. */
static bl_status gguf_model(bl_model *m, const bl_load_opts *opts, bl_err *err) {
    const bl_gguf *g = m->gguf;
    m->source = BL_SRC_GGUF;
    /* The tensors live in the gguf's set; move the set into the model (gguf keeps metadata). */
    m->tensors = m->gguf->tensors;
    memset(&m->gguf->tensors, 0, sizeof m->gguf->tensors);
    bl_str a;
    if (!bl_gguf_find(g, "general.architecture"))
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing metadata general.architecture", m->path);
    if (!bl_gguf_get_str(g, "general.architecture", &a) || a.len == 0 || a.len > 31 ||
        memchr(a.ptr, 0, a.len))
        return bl_fail(err, BL_ERR_FORMAT, "%s: metadata general.architecture must be a short "
                       "string", m->path);
    char arch[32];
    memcpy(arch, a.ptr, a.len);
    arch[a.len] = 0;
    bl_config *c = &m->cfg;
    if (!bl_arch_from_name(arch, &c->arch))
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported",
                       m->path, arch);
    enum {
        K_DIM, K_FF, K_LAYERS, K_HEADS, K_KV, K_HD, K_CTX, K_EPS, K_THETA,
        K_SCALING, K_SCALE_FACTOR, K_SCALE_LINEAR, K_WINDOW, K_EXPERTS, K_ROPE_DIMS, K_COUNT
    };
    static const char *const suffix[K_COUNT] = {
        "embedding_length", "feed_forward_length", "block_count", "attention.head_count",
        "attention.head_count_kv", "attention.key_length", "context_length",
        "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.scaling.type",
        "rope.scaling.factor", "rope.scale_linear", "attention.sliding_window", "expert_count",
        "rope.dimension_count"};
    char k[K_COUNT][80];
    for (int i = 0; i < K_COUNT; i++) snprintf(k[i], sizeof k[i], "%s.%s", arch, suffix[i]);
    const bl_config_fields fields = {"GGUF metadata", k[K_DIM], k[K_FF], k[K_LAYERS], k[K_HEADS],
                                     k[K_KV], k[K_HD], "rows of token_embd.weight", k[K_CTX],
                                     k[K_EPS], k[K_THETA], "tokenizer.ggml.bos_token_id",
                                     "tokenizer.ggml.eos_token_id"};
    bl_status s;
    bool has_hd = bl_gguf_find(g, k[K_HD]) != NULL;
    c->max_seq = 2048;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->bos_id = c->eos_id = -1;
    if ((s = gguf_int(g, k[K_DIM], &c->dim, true, err)) ||
        (s = gguf_int(g, k[K_FF], &c->hidden_dim, true, err)) ||
        (s = gguf_int(g, k[K_LAYERS], &c->n_layers, true, err)) ||
        (s = gguf_int(g, k[K_HEADS], &c->n_heads, true, err)))
        return s;
    c->n_kv_heads = c->n_heads;
    if ((s = gguf_int(g, k[K_KV], &c->n_kv_heads, false, err)) ||
        (s = gguf_int(g, k[K_CTX], &c->max_seq, false, err)) ||
        (s = gguf_int(g, k[K_HD], &c->head_dim, false, err)) ||
        (s = gguf_float(g, k[K_THETA], &c->rope_theta, err)) ||
        (s = gguf_float(g, k[K_EPS], &c->norm_eps, err)) ||
        (s = gguf_int(g, "tokenizer.ggml.bos_token_id", &c->bos_id, false, err)) ||
        (s = gguf_int(g, "tokenizer.ggml.eos_token_id", &c->eos_id, false, err)))
        return s;
    if ((s = gguf_rope_scaling(g, k[K_SCALING], k[K_SCALE_FACTOR], k[K_SCALE_LINEAR], c, err)) ||
        (s = gguf_int(g, k[K_WINDOW], &c->sliding_window, false, err)))
        return s;
    if (!has_hd) {
        if (c->n_heads <= 0 || c->dim % c->n_heads != 0)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %d is not a multiple of %s = %d (and "
                           "there is no %s)", m->path, k[K_DIM], c->dim, k[K_HEADS], c->n_heads,
                           k[K_HD]);
        c->head_dim = c->dim / c->n_heads;
    }
    const char *embd = bl_arch_role("tok_embd")->gguf;
    const bl_tensor *e = bl_tensor_set_find(&m->tensors, embd);
    if (!e || e->ndim != 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing 2-D tensor %s", m->path, embd);
    c->vocab_size = e->shape[0] > INT32_MAX ? INT32_MAX : (int)e->shape[0];
    /* llama.cpp's converter permutes LLaMA/Mistral q,k rows into adjacent RoPE pairs; Qwen
     * models keep the rotate-half (NEOX) layout. */
    c->rope_interleaved = bl_arch_family_of(c->arch)->gguf_rope_interleaved;
    /* the optional tensors of the family are told by their presence in layer 0 */
    char name[BL_MAX_NAME];
    bl_arch_tensor_name(bl_arch_role("attn_q_bias"), 0, true, name, sizeof name);
    c->qkv_bias = bl_tensor_set_find(&m->tensors, name) != NULL;
    bl_arch_tensor_name(bl_arch_role("attn_q_norm"), 0, true, name, sizeof name);
    c->qk_norm = bl_tensor_set_find(&m->tensors, name) != NULL;
    if ((s = bl_config_validate(c, m->path, &fields, err))) return s;
    /* Mixtral's GGUFs say "llama" too: their experts would otherwise be missing tensors */
    int experts = 0;
    if ((s = gguf_int(g, k[K_EXPERTS], &experts, false, err))) return s;
    if (experts > 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s = %d: mixture-of-experts models are not "
                       "supported", m->path, k[K_EXPERTS], experts);
    /* RoPE over the whole head: a partial rotary dimension would run as a full one */
    int rope_dims = c->head_dim;
    if ((s = gguf_int(g, k[K_ROPE_DIMS], &rope_dims, false, err))) return s;
    if (rope_dims != c->head_dim)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: %s = %d: RoPE over part of the %d-wide heads "
                       "is not supported", m->path, k[K_ROPE_DIMS], rope_dims, c->head_dim);
    const bl_load_source src = {m->path, m->path, &fields, true, false};
    if ((s = bl_model_load_weights(m, &src, NULL, opts, err))) return s;
    if (opts && opts->tokenizer_path) return bl_model_load_tokenizer(m, opts->tokenizer_path, err);
    if (bl_gguf_find(g, "tokenizer.ggml.model")) s = bl_tokenizer_load_gguf(g, &m->tok, err);
    return s;
}

/* ---- llama2.c ---- */

static const bl_config_fields l2c_fields = {
    "the llama2.c header", "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
    "dim / n_heads", "vocab_size", "seq_len", "norm eps", "rope theta", "bos id", "eos id",
};

static bl_status llama2c_model(bl_model *m, const bl_llama2c_header *h, const bl_load_opts *opts,
                               bl_err *err) {
    m->source = BL_SRC_LLAMA2C;
    bl_config *c = &m->cfg;
    c->arch = BL_ARCH_LLAMA;
    c->dim = h->dim;
    c->hidden_dim = h->hidden_dim;
    c->n_layers = h->n_layers;
    c->n_heads = h->n_heads;
    c->n_kv_heads = h->n_kv_heads;
    c->head_dim = h->dim / h->n_heads;
    c->vocab_size = h->vocab_size;
    c->max_seq = h->seq_len;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_interleaved = true;
    c->bos_id = h->vocab_size > 1 ? 1 : -1;
    c->eos_id = h->vocab_size > 2 ? 2 : -1;
    bl_status s;
    if ((s = bl_config_validate(c, m->path, &l2c_fields, err))) return s;
    const bl_load_source src = {m->path, m->path, &l2c_fields, true, !h->shared_classifier};
    if ((s = bl_model_load_weights(m, &src, NULL, opts, err))) return s;
    if (opts && opts->tokenizer_path) s = bl_model_load_tokenizer(m, opts->tokenizer_path, err);
    return s;
}

static bl_status load_file(bl_model *m, const bl_load_opts *opts, bl_err *err) {
    bl_file_kind kind;
    char what[96];
    bl_status s = bl_detect_file(m->path, &kind, what, sizeof what, err);
    if (s) return s;
    if (kind == BL_FILE_DIR) return load_hf(m, opts, err);
    if (kind == BL_FILE_GGUF) {
        if (!(m->gguf = calloc(1, sizeof *m->gguf))) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
        if ((s = bl_gguf_open(m->path, m->gguf, err))) return s;
        return gguf_model(m, opts, err);
    }
    size_t n = strlen(m->path);
    const bool gguf_name = n >= 5 && strcmp(m->path + n - 5, ".gguf") == 0;
    /* A header without magic that fails the range checks is reported by the llama2.c reader,
     * which names the field and says what the content looks like. */
    if (kind == BL_FILE_LLAMA2C || (kind == BL_FILE_UNKNOWN && !gguf_name)) {
        bl_llama2c_header h;
        if ((s = bl_llama2c_open(m->path, &h, &m->tensors, err))) return s;
        return llama2c_model(m, &h, opts, err);
    }
    if (kind == BL_FILE_SAFETENSORS)
        return bl_fail(err, BL_ERR_FORMAT, "%s: a safetensors file: give the model directory that "
                       "holds it and its config.json", m->path);
    const char *expected = gguf_name ? "a GGUF file"
                           : n >= 4 && strcmp(m->path + n - 4, ".bin") == 0
                               ? "a llama2.c checkpoint"
                               : "a model (a GGUF file, a llama2.c checkpoint or a model directory)";
    return bl_fail(err, BL_ERR_FORMAT, "%s: not %s (%s)", m->path, expected, what);
}

/* Common to every form: RoPE tables and the tokenizer checks. */
static bl_status finish(bl_model *m, bl_err *err) {
    bl_status s = init_rope(m, err);
    if (s || !m->tok) return s;
    if ((s = bl_model_check_tokenizer(m, err))) return s;
    /* The model's own config decides BOS/EOS where it names them. */
    bl_tokenizer_set_bos_eos(m->tok, m->cfg.bos_id, m->cfg.eos_id);
    if (m->cfg.bos_id < 0) m->cfg.bos_id = bl_tokenizer_bos(m->tok);
    if (m->cfg.eos_id < 0) m->cfg.eos_id = bl_tokenizer_eos(m->tok);
    return BL_OK;
}

/* opts may be NULL (every default). */
static bl_model *new_model(const char *path, const bl_load_opts *opts, bl_err *err) {
    bl_model *m = calloc(1, sizeof *m);
    if (m && (m->path = bl_strdup(path))) {
        m->isa = bl_isa_clamp(opts ? opts->isa : BL_ISA_AUTO);
        m->sign_tables = opts ? opts->sign_tables : BL_TABLES_F32;
        m->kv_cache = opts ? opts->kv_cache : BL_KV_F32;
        m->load_mode = opts && opts->load != BL_LOAD_DEFAULT ? opts->load : bl_default_load_mode();
        return m;
    }
    free(m);
    bl_fail(err, BL_ERR_NOMEM, "out of memory");
    return NULL;
}

bl_status bl_model_load(const char *path, const bl_load_opts *opts, bl_model **out,
                        bl_err *err) {
    *out = NULL;
    if (opts && (unsigned)opts->kv_cache > BL_KV_Q8)
        return bl_fail(err, BL_ERR_ARG, "%s: unknown KV cache type %d", path, (int)opts->kv_cache);
    bl_model *m = new_model(path, opts, err);
    if (!m) return BL_ERR_NOMEM;
    bl_status s = load_file(m, opts, err);
    if (!s) s = finish(m, err);
    if (s) {
        bl_model_free(m);
        return s;
    }
    *out = m;
    return BL_OK;
}

bl_status bl_model_load_memory(const char *name, const uint8_t *data, size_t size,
                               const char *config_json, bl_model **out, bl_err *err) {
    *out = NULL;
    if (!name || (!data && size)) return bl_fail(err, BL_ERR_ARG, "model: NULL argument");
    bl_model *m = new_model(name, NULL, err);
    if (!m) return BL_ERR_NOMEM;
    bl_status s;
    bl_file_kind kind = bl_detect_bytes(data, size < BL_DETECT_BYTES ? size : BL_DETECT_BYTES,
                                        size);
    if (config_json) {
        bl_load_source src = {.tensors = name};
        cJSON *root = NULL;
        s = hf_config(m, "config.json", config_json, &root, &src, err);
        m->source = BL_SRC_HF;
        if (!s) s = bl_safetensors_parse(name, data, size, &m->tensors, NULL, err);
        if (!s)
            s = bl_model_load_weights(
                m, &src, cJSON_GetObjectItemCaseSensitive(root, "quantization_config"), NULL, err);
        cJSON_Delete(root);
    } else if (kind == BL_FILE_GGUF) {
        s = (m->gguf = calloc(1, sizeof *m->gguf)) ? bl_gguf_parse(name, data, size, m->gguf, err)
                                                   : bl_fail(err, BL_ERR_NOMEM, "out of memory");
        if (!s) s = gguf_model(m, NULL, err);
    } else {
        bl_llama2c_header h;
        s = bl_llama2c_parse(name, data, size, &h, &m->tensors, err);
        if (!s) s = llama2c_model(m, &h, NULL, err);
    }
    if (!s) s = finish(m, err);
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
    bl_linear_free(&m->embed);
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

static uint64_t dtype_bits_of(const bl_tensor *t) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    return (uint64_t)tr->block_bytes * 8 / (uint64_t)tr->block;
}

/* Parameters and stored bits of every tensor of the architecture table that m holds. */
static void count_tensors(const bl_model *m, int64_t *params, uint64_t *bits) {
    const bl_config *c = &m->cfg;
    bl_model *mm = (bl_model *)m; /* the slots are only read */
    *params = 0;
    *bits = 0;
    for (bl_arch_iter it = {0}; bl_arch_next(c, &it);) {
        const bl_arch_tensor *t = it.t;
        const int l = it.layer;
        int64_t rows, cols;
        bl_arch_shape(t, c, &rows, &cols);
        if (t->kind == BL_TK_EMBED && m->embed.ops) {
            *params += m->embed.m * m->embed.n;
            *bits += bl_format_stored_bits(m->embed.ops, m->embed.m, m->embed.n, &m->embed.params);
        } else if (t->kind == BL_TK_EMBED) {
            *params += bl_tensor_numel(&m->tok_embd);
            *bits += (uint64_t)bl_tensor_numel(&m->tok_embd) * dtype_bits_of(&m->tok_embd);
        } else if (t->kind == BL_TK_VECTOR) {
            *params += rows;
            *bits += 32ull * (uint64_t)rows;
        } else {
            const bl_linear *L = bl_arch_linear_slot(mm, t, l);
            *params += L->m * L->n;
            *bits += (uint64_t)bl_format_stored_bits(L->ops, L->m, L->n, &L->params);
        }
    }
}

bool bl_model_adds_bos(const bl_model *m) {
    return m->cfg.bos_id >= 0 && (!m->tok || bl_tokenizer_add_bos(m->tok));
}

int64_t bl_model_param_count(const bl_model *m) {
    int64_t n;
    uint64_t bits;
    count_tensors(m, &n, &bits);
    return n;
}

uint64_t bl_model_weight_bits(const bl_model *m) {
    int64_t n;
    uint64_t bits;
    count_tensors(m, &n, &bits);
    return bits;
}

int64_t bl_model_sign_count(const bl_model *m) {
    int64_t k = bl_linear_sign_count(&m->output);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) k += bl_linear_sign_count(&m->layers[l].proj[p]);
    return k;
}

const char *bl_kv_cache_name(bl_kv_type type) {
    switch (type) {
    case BL_KV_F16: return "f16";
    case BL_KV_Q8: return "q8";
    default: return "f32";
    }
}

bool bl_kv_cache_from_name(const char *name, bl_kv_type *type) {
    for (int t = BL_KV_F32; name && t <= BL_KV_Q8; t++)
        if (strcmp(name, bl_kv_cache_name((bl_kv_type)t)) == 0) {
            *type = (bl_kv_type)t;
            return true;
        }
    return false;
}

int64_t bl_model_i8_count(const bl_model *m) {
    int64_t k = bl_linear_i8_affected(&m->output);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) k += bl_linear_i8_affected(&m->layers[l].proj[p]);
    return k;
}

void bl_model_bpw(const bl_model *m, double *bpw_layers, double *bpw_model) {
    double bits = 0, n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            const bl_linear *L = &m->layers[l].proj[p];
            bits += (double)bl_format_stored_bits(L->ops, L->m, L->n, &L->params);
            n += (double)L->m * (double)L->n;
        }
    if (bpw_layers) *bpw_layers = bits / n;
    if (bpw_model) *bpw_model = (double)bl_model_weight_bits(m) / (double)bl_model_param_count(m);
}
