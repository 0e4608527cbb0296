/* Writing a model as an HF-style directory: config.json (with quantization_config when any layer
 * is quantized), model.safetensors, and the tokenizer. Every file is written atomically. */
#include "bitllm/quantize.h"
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

cJSON *bl_config_to_json(const bl_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(bl_arch_family_of(c->arch)->hf_class));
    cJSON_AddStringToObject(o, "model_type", bl_arch_name(c->arch));
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    if (c->rope_llama3) {
        cJSON *r = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(r, "rope_type", "llama3");
        cJSON_AddNumberToObject(r, "factor", c->rope_factor);
        cJSON_AddNumberToObject(r, "low_freq_factor", c->rope_low_freq_factor);
        cJSON_AddNumberToObject(r, "high_freq_factor", c->rope_high_freq_factor);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", c->rope_orig_max_pos);
    }
    if (c->rope_linear > 0.0f) {
        cJSON *r = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(r, "rope_type", "linear");
        cJSON_AddNumberToObject(r, "factor", c->rope_linear);
    }
    if (c->sliding_window > 0) cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddBoolToObject(o, "attention_bias", c->qkv_bias);
    /* Q/K rows of checkpoints converted from GGUF/llama2.c stay in interleaved-pair order. */
    cJSON_AddBoolToObject(o, "rope_interleaved", c->rope_interleaved);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
    return o;
}

static bl_status add_vec(bl_st_writer *w, const char *name, const float *v, int64_t n,
                         bl_err *err) {
    return bl_st_writer_add(w, name, BL_DT_F32, 1, &n, v, (size_t)n * sizeof(float), false, err);
}

static bl_status copy_file(const char *from, const char *to, bl_err *err) {
    char *data;
    size_t len;
    bl_status s = bl_read_file(from, &data, &len, err);
    if (s) return s;
    s = bl_write_file_atomic(to, data, len, err);
    free(data);
    return s;
}

static bl_status save_tokenizer(const bl_model *m, const char *outdir, bl_err *err) {
    char to[4200], from[4200];
    const char *tp = m->tokenizer_path;
    if (!tp) {
        if (!m->gguf || !m->tok) return BL_OK;
        snprintf(to, sizeof to, "%s/tokenizer.gguf", outdir);
        return bl_gguf_write_metadata(m->gguf, "tokenizer.", to, err);
    }
    size_t n = strlen(tp);
    struct stat st;
    if (n > 4 && (strcmp(tp + n - 4, ".bin") == 0 || strcmp(tp + n - 5, ".gguf") == 0)) {
        snprintf(to, sizeof to, "%s/%s", outdir,
                 strcmp(tp + n - 4, ".bin") == 0 ? "tokenizer.bin" : "tokenizer.gguf");
        return copy_file(tp, to, err);
    }
    /* tokenizer.json, or a directory holding it (plus tokenizer_config.json and the chat
     * template file if present) */
    bool dir = stat(tp, &st) == 0 && S_ISDIR(st.st_mode);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"};
    for (int i = 0; i < 3; i++) {
        if (dir) {
            snprintf(from, sizeof from, "%s/%s", tp, files[i]);
        } else {
            const char *slash = strrchr(tp, '/');
            int dl = slash ? (int)(slash - tp) : 1;
            snprintf(from, sizeof from, "%.*s/%s", dl, slash ? tp : ".", files[i]);
            if (i == 0) snprintf(from, sizeof from, "%s", tp);
        }
        if (stat(from, &st) != 0) continue;
        snprintf(to, sizeof to, "%s/%s", outdir, files[i]);
        bl_status s = copy_file(from, to, err);
        if (s) return s;
    }
    return BL_OK;
}

/* The token embeddings in their stored dtype when it is a float type, else as F32. */
static bl_status add_embedding(bl_st_writer *w, const char *name, const bl_tensor *e,
                               float **f32, bl_err *err) {
    if (e->dtype == BL_DT_F32 || e->dtype == BL_DT_F16 || e->dtype == BL_DT_BF16)
        return bl_st_writer_add(w, name, e->dtype, 2, e->shape, e->data, e->nbytes, false, err);
    bl_status s = bl_tensor_to_f32(e, f32, err);
    return s ? s : bl_st_writer_add(w, name, BL_DT_F32, 2, e->shape, *f32,
                                    (size_t)bl_tensor_numel(e) * 4, false, err);
}

/* The layer's quantization_config entry, for a layer in a quantized format. */
static void add_layer_entry(cJSON **layers, const char *name, const bl_linear *L) {
    if (bl_linear_is_dense(L)) return;
    if (!*layers) *layers = cJSON_CreateObject();
    cJSON_AddItemToObject(*layers, name, bl_format_params_to_json(L));
}

/* The output head is written only when untied; a quantized embedding table never is tied. */
bl_status bl_model_write(const bl_model *m, const bl_model_parts *parts, const char *outdir,
                         const char *method, const char *extra_json, bl_err *err) {
    const bl_model_parts none = {0};
    if (!parts) parts = &none;
    bl_config cfg_out = m->cfg;
    if (parts->head) cfg_out.tied_embeddings = false;
    const bl_config *c = &cfg_out;
    const bl_linear *embed = parts->embed ? parts->embed : m->embed.ops ? &m->embed : NULL;
    if (embed && c->tied_embeddings)
        return bl_fail(err, BL_ERR_ARG, "%s: quantized token embeddings need an output head of "
                       "their own (the model's head is tied to them)", outdir);
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
        return bl_fail(err, BL_ERR_IO, "%s: cannot create directory: %s", outdir, strerror(errno));
    bl_st_writer *w;
    bl_status s = bl_st_writer_new(&w, err);
    if (s) return s;
    cJSON *cfg = bl_config_to_json(c), *layers = NULL;
    float *embd_f32 = NULL;
    char name[BL_MAX_NAME + 64];
    bl_model *mm = (bl_model *)m; /* the slots are only read */
    for (bl_arch_iter it = {0}; !s && bl_arch_next(c, &it);) {
        const bl_arch_tensor *t = it.t;
        const int l = it.layer;
        bl_arch_tensor_name(t, l, false, name, sizeof name);
        if (t->kind == BL_TK_VECTOR) {
            int64_t rows, cols;
            bl_arch_shape(t, c, &rows, &cols);
            s = add_vec(w, name, *bl_arch_vector_slot(mm, t, l), rows, err);
        } else if (t->kind == BL_TK_EMBED && embed) {
            char prefix[BL_MAX_NAME];
            bl_embed_prefix(name, prefix, sizeof prefix);
            s = embed->ops->save(embed, prefix, w, err);
            if (!s) add_layer_entry(&layers, prefix, embed);
        } else if (t->kind == BL_TK_EMBED) {
            s = add_embedding(w, name, &m->tok_embd, &embd_f32, err);
        } else {
            const bl_linear *L = bl_arch_linear_slot(mm, t, l);
            if (parts->proj && t->per_layer) L = &parts->proj[l * BL_PROJ_COUNT + t->proj];
            if (parts->head && !t->per_layer) L = parts->head;
            s = L->ops->save(L, name, w, err);
            if (!s) add_layer_entry(&layers, name, L);
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", outdir);
    if (!s) s = bl_st_writer_meta(w, "format", "pt", err);
    if (!s) s = bl_st_writer_finish(w, path, err);
    bl_st_writer_free(w);
    free(embd_f32);
    if (!s && layers) {
        cJSON *qc = cJSON_CreateObject();
        cJSON_AddStringToObject(qc, "quant_method", "bitllm");
        cJSON_AddStringToObject(qc, "method", method ? method : "custom");
        cJSON_AddStringToObject(qc, "bitllm_version", BITLLM_VERSION);
        if (extra_json) {
            cJSON *x = cJSON_Parse(extra_json);
            if (x) cJSON_AddItemToObject(qc, "provenance", x);
        }
        cJSON_AddItemToObject(qc, "layers", layers);
        layers = NULL;
        cJSON_AddItemToObject(cfg, "quantization_config", qc);
    }
    cJSON_Delete(layers);
    if (!s) {
        char *text = cJSON_Print(cfg);
        snprintf(path, sizeof path, "%s/config.json", outdir);
        s = text ? bl_write_file_atomic(path, text, strlen(text), err)
                 : bl_fail(err, BL_ERR_NOMEM, "out of memory");
        free(text);
    }
    cJSON_Delete(cfg);
    if (!s) s = save_tokenizer(m, outdir, err);
    return s;
}

bl_status bl_model_save(const bl_model *m, const char *outdir, const char *method,
                        const char *extra_json, bl_err *err) {
    return bl_model_write(m, NULL, outdir, method ? method : m->quant_method, extra_json, err);
}
