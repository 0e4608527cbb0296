/* Model configuration: architecture names and the Hugging Face config.json reader. */
#include "bitllm/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

static const char *const arch_names[] = {
    [BL_ARCH_LLAMA] = "llama",
    [BL_ARCH_MISTRAL] = "mistral",
    [BL_ARCH_QWEN2] = "qwen2",
    [BL_ARCH_QWEN3] = "qwen3",
};

const char *bl_arch_name(bl_arch a) { return arch_names[a]; }

bool bl_arch_from_name(const char *name, bl_arch *out) {
    for (int i = 0; i < (int)(sizeof arch_names / sizeof arch_names[0]); i++) {
        if (strcmp(arch_names[i], name) == 0) {
            *out = (bl_arch)i;
            return true;
        }
    }
    return false;
}

static const char *const proj_hf_names[BL_PROJ_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *bl_proj_hf_name(int proj) { return proj_hf_names[proj]; }

static bool json_int(const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0); /* eos_token_id may be a list */
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d)) return false;
    *out = (int)d;
    return true;
}

static bool json_float(const cJSON *o, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = (float)v->valuedouble;
    return true;
}

static bool json_bool(const cJSON *o, const char *key, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v)) return false;
    *out = cJSON_IsTrue(v);
    return true;
}

/* Validates sizes that the forward pass relies on; shared by every loader. */
bl_status bl_config_validate(const bl_config *c, const char *path, bl_err *err);
bl_status bl_config_validate(const bl_config *c, const char *path, bl_err *err) {
    const int lim = 1 << 20;
    if (c->dim <= 0 || c->dim > lim || c->hidden_dim <= 0 || c->hidden_dim > lim ||
        c->n_layers <= 0 || c->n_layers > 4096 || c->n_heads <= 0 || c->n_heads > 4096 ||
        c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->head_dim <= 0 ||
        c->head_dim > 4096 || c->vocab_size <= 0 || c->vocab_size > (1 << 24) ||
        c->max_seq <= 0)
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: invalid model dimensions (dim %d, hidden %d, layers %d, heads %d/%d, "
                       "head_dim %d, vocab %d, ctx %d)",
                       path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->head_dim, c->vocab_size, c->max_seq);
    if (c->n_heads % c->n_kv_heads != 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: %d attention heads not divisible by %d kv heads",
                       path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", path,
                       c->head_dim);
    if (!(c->norm_eps > 0.0f) || !(c->rope_theta > 0.0f))
        return bl_fail(err, BL_ERR_FORMAT, "%s: norm eps and rope theta must be positive", path);
    return BL_OK;
}

bl_status bl_config_from_hf_json(const char *json, const char *path, bl_config *c,
                                 bl_err *err) {
    memset(c, 0, sizeof *c);
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return bl_fail(err, BL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    bl_status st = BL_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    if (!cJSON_IsString(mt)) {
        st = bl_fail(err, BL_ERR_FORMAT, "%s: missing \"model_type\"", path);
        goto done;
    }
    /* OneBit's released checkpoints are LLaMA models with OneBit projections. */
    const char *type = strcmp(mt->valuestring, "bitllama") == 0 ? "llama" : mt->valuestring;
    if (!bl_arch_from_name(type, &c->arch)) {
        st = bl_fail(err, BL_ERR_UNSUPPORTED,
                     "%s: model_type \"%s\" is not supported (llama, mistral, qwen2, qwen3)", path,
                     mt->valuestring);
        goto done;
    }
    if (!json_int(o, "hidden_size", &c->dim) || !json_int(o, "intermediate_size", &c->hidden_dim) ||
        !json_int(o, "num_hidden_layers", &c->n_layers) ||
        !json_int(o, "num_attention_heads", &c->n_heads) ||
        !json_int(o, "vocab_size", &c->vocab_size)) {
        st = bl_fail(err, BL_ERR_FORMAT,
                     "%s: missing one of hidden_size, intermediate_size, num_hidden_layers, "
                     "num_attention_heads, vocab_size",
                     path);
        goto done;
    }
    if (!json_int(o, "num_key_value_heads", &c->n_kv_heads)) c->n_kv_heads = c->n_heads;
    if (!json_int(o, "head_dim", &c->head_dim) && c->n_heads > 0)
        c->head_dim = c->dim / c->n_heads;
    if (!json_int(o, "max_position_embeddings", &c->max_seq)) c->max_seq = 2048;
    if (!json_float(o, "rms_norm_eps", &c->norm_eps)) c->norm_eps = 1e-6f;
    if (!json_float(o, "rope_theta", &c->rope_theta)) c->rope_theta = 10000.0f;
    c->tied_embeddings = false;
    json_bool(o, "tie_word_embeddings", &c->tied_embeddings);
    c->qkv_bias = c->arch == BL_ARCH_QWEN2;
    json_bool(o, "attention_bias", &c->qkv_bias);
    c->qk_norm = c->arch == BL_ARCH_QWEN3;
    c->rope_interleaved = false;
    json_bool(o, "rope_interleaved", &c->rope_interleaved); /* bitllm outputs of GGUF models */
    if (!json_int(o, "bos_token_id", &c->bos_id)) c->bos_id = -1;
    if (!json_int(o, "eos_token_id", &c->eos_id)) c->eos_id = -1;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (cJSON_IsObject(rs)) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!cJSON_IsString(ty)) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (cJSON_IsString(ty) && strcmp(ty->valuestring, "llama3") == 0) {
            c->rope_llama3 = true;
            if (!json_float(rs, "factor", &c->rope_factor)) c->rope_factor = 8.0f;
            if (!json_float(rs, "low_freq_factor", &c->rope_low_freq_factor))
                c->rope_low_freq_factor = 1.0f;
            if (!json_float(rs, "high_freq_factor", &c->rope_high_freq_factor))
                c->rope_high_freq_factor = 4.0f;
            if (!json_int(rs, "original_max_position_embeddings", &c->rope_orig_max_pos))
                c->rope_orig_max_pos = 8192;
        } else if (cJSON_IsString(ty) && strcmp(ty->valuestring, "default") != 0) {
            st = bl_fail(err, BL_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" not supported",
                         path, ty->valuestring);
            goto done;
        }
    }
    st = bl_config_validate(c, path, err);
done:
    cJSON_Delete(o);
    return st;
}
