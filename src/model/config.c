/* Model configuration: the Hugging Face config.json reader (the families are in arch.c). */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- strict config.json fields: wrong types and out-of-range values are errors naming the
 * field; only an absent (or null) optional field takes its Hugging Face default ---- */

/* "the string \"64\"", "64.5", "true", "an array", ... for messages. */
static void describe_json(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsString(v)) snprintf(buf, cap, "the string \"%.40s\"", v->valuestring);
    else if (cJSON_IsNumber(v)) snprintf(buf, cap, "%.17g", v->valuedouble);
    else if (cJSON_IsBool(v)) snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsArray(v)) snprintf(buf, cap, "an array");
    else if (cJSON_IsObject(v)) snprintf(buf, cap, "an object");
    else snprintf(buf, cap, "null");
}

typedef struct {
    const char *path; /* the file, for messages */
    const char *obj;  /* "" or "rope_scaling." */
    bl_err *err;
} field_ctx;

static bl_status wrong_type(const field_ctx *f, const char *key, const cJSON *v, const char *want) {
    char got[96];
    describe_json(v, got, sizeof got);
    return bl_fail(f->err, BL_ERR_FORMAT, "%s: \"%s%s\" must be %s, got %s", f->path, f->obj, key,
                   want, got);
}

/* The field, or NULL when absent or null. */
static const cJSON *field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static bool as_int(const cJSON *v, int *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != floor(d)) return false;
    *out = (int)d;
    return true;
}

/* An integer field: absent leaves *out and clears *found (found may be NULL). */
static bl_status get_int(const field_ctx *f, const cJSON *o, const char *key, int *out,
                         bool *found) {
    const cJSON *v = field(o, key);
    if (found) *found = v != NULL;
    if (!v) return BL_OK;
    return as_int(v, out) ? BL_OK : wrong_type(f, key, v, "an integer");
}

static bl_status get_float(const field_ctx *f, const cJSON *o, const char *key, float *out) {
    const cJSON *v = field(o, key);
    if (!v) return BL_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !isfinite((float)v->valuedouble))
        return wrong_type(f, key, v, "a finite number");
    *out = (float)v->valuedouble;
    return BL_OK;
}

static bl_status get_bool(const field_ctx *f, const cJSON *o, const char *key, bool *out) {
    const cJSON *v = field(o, key);
    if (!v) return BL_OK;
    if (!cJSON_IsBool(v)) return wrong_type(f, key, v, "true or false");
    *out = cJSON_IsTrue(v);
    return BL_OK;
}

/* bos_token_id / eos_token_id: an integer, or a list of them (the first is used). */
static bl_status get_token_id(const field_ctx *f, const cJSON *o, const char *key, int *out) {
    const cJSON *v = field(o, key);
    if (!v) return BL_OK;
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            int id;
            if (!as_int(e, &id)) return wrong_type(f, key, v, "an integer or a list of integers");
        }
        if (!v->child) return BL_OK;
        v = v->child;
    }
    return as_int(v, out) ? BL_OK : wrong_type(f, key, v, "an integer or a list of integers");
}

const bl_config_fields bl_hf_config_fields = {
    "config.json", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "bos_token_id", "eos_token_id",
};

bl_status bl_config_validate(const bl_config *c, const char *path, const bl_config_fields *fn,
                             bl_err *err) {
    if (!fn) fn = &bl_hf_config_fields;
    const struct { const char *name; int v, max; } dims[] = {
        {fn->dim, c->dim, 1 << 20},          {fn->hidden_dim, c->hidden_dim, 1 << 20},
        {fn->n_layers, c->n_layers, 4096},   {fn->n_heads, c->n_heads, 4096},
        {fn->n_kv_heads, c->n_kv_heads, 4096}, {fn->head_dim, c->head_dim, 4096},
        {fn->vocab_size, c->vocab_size, 1 << 24}, {fn->max_seq, c->max_seq, 1 << 26},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v <= 0 || dims[i].v > dims[i].max)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %d is out of range (1..%d)", path,
                           dims[i].name, dims[i].v, dims[i].max);
    if (c->n_heads % c->n_kv_heads != 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %d is not a multiple of %s = %d", path,
                       fn->n_heads, c->n_heads, fn->n_kv_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %d must be even for RoPE", path,
                       fn->head_dim, c->head_dim);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %g must be positive", path, fn->norm_eps,
                       (double)c->norm_eps);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %g must be positive", path, fn->rope_theta,
                       (double)c->rope_theta);
    if (c->rope_llama3 &&
        (!(c->rope_factor > 0.0f) || !(c->rope_low_freq_factor > 0.0f) ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_max_pos <= 0))
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: rope_scaling needs factor > 0, 0 < low_freq_factor < "
                       "high_freq_factor and original_max_position_embeddings > 0 (got %g, %g, "
                       "%g, %d)",
                       path, (double)c->rope_factor, (double)c->rope_low_freq_factor,
                       (double)c->rope_high_freq_factor, c->rope_orig_max_pos);
    if (c->sliding_window < 0)
        return bl_fail(err, BL_ERR_FORMAT, "%s: the sliding window must be positive (got %d)",
                       path, c->sliding_window);
    if (c->rope_linear != 0.0f && !(c->rope_linear > 0.0f && isfinite(c->rope_linear)))
        return bl_fail(err, BL_ERR_FORMAT, "%s: the linear rope scaling factor must be a positive "
                       "number (got %g)", path, (double)c->rope_linear);
    const struct { const char *name; int v; } ids[] = {{fn->bos, c->bos_id}, {fn->eos, c->eos_id}};
    for (int i = 0; i < 2; i++)
        if (ids[i].v < -1 || ids[i].v >= c->vocab_size)
            return bl_fail(err, BL_ERR_FORMAT, "%s: %s = %d is not a token id (vocabulary of %d)",
                           path, ids[i].name, ids[i].v, c->vocab_size);
    return BL_OK;
}

static bl_status parse_rope_scaling(const field_ctx *top, const cJSON *o, bl_config *c) {
    const cJSON *rs = field(o, "rope_scaling");
    if (!rs) return BL_OK;
    if (!cJSON_IsObject(rs)) return wrong_type(top, "rope_scaling", rs, "an object or null");
    field_ctx f = {top->path, "rope_scaling.", top->err};
    const cJSON *ty = field(rs, "rope_type");
    const char *tkey = "rope_type";
    if (!ty) ty = field(rs, "type"), tkey = "type";
    if (!ty) return bl_fail(top->err, BL_ERR_FORMAT, "%s: rope_scaling has no \"rope_type\"",
                            top->path);
    if (!cJSON_IsString(ty)) return wrong_type(&f, tkey, ty, "a string");
    if (strcmp(ty->valuestring, "default") == 0) return BL_OK;
    if (strcmp(ty->valuestring, "linear") == 0) {
        if (!field(rs, "factor"))
            return bl_fail(top->err, BL_ERR_FORMAT, "%s: rope_scaling of type \"linear\" has no "
                           "\"factor\"", top->path);
        return get_float(&f, rs, "factor", &c->rope_linear);
    }
    if (strcmp(ty->valuestring, "llama3") != 0)
        return bl_fail(top->err, BL_ERR_UNSUPPORTED,
                       "%s: rope_scaling type \"%.40s\" not supported (llama3, linear, default)",
                       top->path, ty->valuestring);
    c->rope_llama3 = true;
    c->rope_factor = 8.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_orig_max_pos = 8192;
    bl_status st;
    if ((st = get_float(&f, rs, "factor", &c->rope_factor)) ||
        (st = get_float(&f, rs, "low_freq_factor", &c->rope_low_freq_factor)) ||
        (st = get_float(&f, rs, "high_freq_factor", &c->rope_high_freq_factor)) ||
        (st = get_int(&f, rs, "original_max_position_embeddings", &c->rope_orig_max_pos, NULL)))
        return st;
    return BL_OK;
}

/* "sliding_window" as Hugging Face's classes read it: Mistral attends within it (null: no
 * window); Qwen2/Qwen3 only with "use_sliding_window": true, and then on the layers from
 * "max_window_layers" on, which bitllm does not run (refused); LLaMA ignores the field. */
static bl_status parse_sliding_window(const field_ctx *top, const cJSON *o, bl_config *c) {
    bool use = false;
    bl_status st;
    switch (c->arch) {
    case BL_ARCH_MISTRAL:
        if ((st = get_int(top, o, "sliding_window", &c->sliding_window, NULL))) return st;
        if (c->sliding_window <= 0 && field(o, "sliding_window"))
            return bl_fail(top->err, BL_ERR_FORMAT, "%s: \"sliding_window\" = %d must be positive "
                           "(or null)", top->path, c->sliding_window);
        return BL_OK;
    case BL_ARCH_QWEN2:
    case BL_ARCH_QWEN3:
        if ((st = get_bool(top, o, "use_sliding_window", &use))) return st;
        if (use)
            return bl_fail(top->err, BL_ERR_UNSUPPORTED, "%s: \"use_sliding_window\": true (a "
                           "window on some layers) is not supported", top->path);
        return BL_OK;
    default: return BL_OK;
    }
}

static bl_status parse_hf(const cJSON *o, const char *path, bl_config *c, bl_err *err) {
    field_ctx f = {path, "", err};
    /* The architecture first (another model family is "unsupported", not "malformed"), then
     * every required field that is absent, named at once. */
    const cJSON *mt = field(o, "model_type");
    if (mt && !cJSON_IsString(mt)) return wrong_type(&f, "model_type", mt, "a string");
    /* OneBit's released checkpoints are LLaMA models with OneBit projections. */
    const char *type = !mt ? NULL : strcmp(mt->valuestring, "bitllama") == 0 ? "llama"
                                                                            : mt->valuestring;
    if (type && !bl_arch_from_name(type, &c->arch))
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "%s: model_type \"%.40s\" is not supported (%s)", path,
                       mt->valuestring, bl_arch_names());
    static const char *const required[] = {"model_type", "hidden_size", "intermediate_size",
                                           "num_hidden_layers", "num_attention_heads",
                                           "vocab_size"};
    char missing[160] = "";
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!field(o, required[i]))
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                     *missing ? ", " : "", required[i]);
    if (*missing)
        return bl_fail(err, BL_ERR_FORMAT, "%s: missing required field%s %s", path,
                       strchr(missing, ',') ? "s" : "", missing);
    bl_status st;
    bool has_kv = false, has_hd = false;
    if ((st = get_int(&f, o, "hidden_size", &c->dim, NULL)) ||
        (st = get_int(&f, o, "intermediate_size", &c->hidden_dim, NULL)) ||
        (st = get_int(&f, o, "num_hidden_layers", &c->n_layers, NULL)) ||
        (st = get_int(&f, o, "num_attention_heads", &c->n_heads, NULL)) ||
        (st = get_int(&f, o, "vocab_size", &c->vocab_size, NULL)) ||
        (st = get_int(&f, o, "num_key_value_heads", &c->n_kv_heads, &has_kv)) ||
        (st = get_int(&f, o, "head_dim", &c->head_dim, &has_hd)))
        return st;
    if (c->n_heads <= 0 || c->n_heads > 4096)
        return bl_fail(err, BL_ERR_FORMAT, "%s: num_attention_heads = %d is out of range (1..4096)",
                       path, c->n_heads);
    if (!has_kv) c->n_kv_heads = c->n_heads;
    if (!has_hd) {
        if (c->dim % c->n_heads != 0)
            return bl_fail(err, BL_ERR_FORMAT,
                           "%s: hidden_size = %d is not a multiple of num_attention_heads = %d "
                           "(and there is no head_dim)",
                           path, c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    c->max_seq = 2048;
    c->norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->qkv_bias = bl_arch_family_of(c->arch)->qkv_bias;
    c->qk_norm = bl_arch_family_of(c->arch)->qk_norm;
    c->bos_id = c->eos_id = -1;
    bool mlp_bias = false;
    if ((st = get_int(&f, o, "max_position_embeddings", &c->max_seq, NULL)) ||
        (st = get_float(&f, o, "rms_norm_eps", &c->norm_eps)) ||
        (st = get_float(&f, o, "rope_theta", &c->rope_theta)) ||
        (st = get_bool(&f, o, "tie_word_embeddings", &c->tied_embeddings)) ||
        (st = get_bool(&f, o, "attention_bias", &c->qkv_bias)) ||
        (st = get_bool(&f, o, "mlp_bias", &mlp_bias)) ||
        (st = get_bool(&f, o, "rope_interleaved", &c->rope_interleaved)) ||
        (st = get_token_id(&f, o, "bos_token_id", &c->bos_id)) ||
        (st = get_token_id(&f, o, "eos_token_id", &c->eos_id)) ||
        (st = parse_rope_scaling(&f, o, c)) || (st = parse_sliding_window(&f, o, c)))
        return st;
    if (mlp_bias)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", path);
    const cJSON *act = field(o, "hidden_act");
    if (act && !cJSON_IsString(act)) return wrong_type(&f, "hidden_act", act, "a string");
    if (act && strcmp(act->valuestring, "silu") != 0 && strcmp(act->valuestring, "swish") != 0)
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "%s: \"hidden_act\": \"%.40s\" is not supported (silu)", path,
                       act->valuestring);
    return bl_config_validate(c, path, &bl_hf_config_fields, err);
}

bl_status bl_config_from_hf_json(const char *json, const char *path, bl_config *c,
                                 bl_err *err) {
    memset(c, 0, sizeof *c);
    size_t at = 0;
    cJSON *o = bl_json_parse(json, strlen(json), &at);
    bl_status st;
    if (!o)
        st = bl_fail(err, BL_ERR_FORMAT, "%s: not valid JSON (%s at byte %zu)", path,
                     bl_json_refusal(json, strlen(json), at), at);
    else if (!cJSON_IsObject(o))
        st = bl_fail(err, BL_ERR_FORMAT, "%s: not a JSON object", path);
    else
        st = parse_hf(o, path, c, err);
    cJSON_Delete(o);
    return st;
}
