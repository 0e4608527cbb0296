/* The per-layer entries of a quantized checkpoint's quantization_config block. */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

static bool get_int(const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                    bool *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return false;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        *bad = true;
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

bl_status bl_format_params_from_json(const cJSON *o, const char *where, const bl_format_ops **ops,
                                     bl_format_params *p, bl_err *err) {
    memset(p, 0, sizeof *p);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsObject(o) || !cJSON_IsString(f))
        return bl_fail(err, BL_ERR_FORMAT, "quantization_config.layers[%s]: missing \"format\"",
                       where);
    *ops = bl_format_find(f->valuestring);
    if (!*ops)
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "quantization_config.layers[%s]: unknown format \"%s\"", where,
                       f->valuestring);
    bool bad = false;
    int64_t v;
    if (get_int(o, "bits", 1, 32, &v, &bad)) p->bits = (int)v;
    if (get_int(o, "group", 1, 1 << 20, &v, &bad)) p->group = (int)v;
    if (get_int(o, "mid", 1, BL_MAX_MID, &v, &bad)) p->mid = v;
    if (get_int(o, "rank_l", 1, 1024, &v, &bad)) p->rank_l = (int)v;
    if (get_int(o, "paths", 1, 64, &v, &bad)) p->paths = (int)v;
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(o, "post_ln");
    if (pl && !cJSON_IsBool(pl)) bad = true;
    p->post_ln = cJSON_IsTrue(pl);
    if (bad)
        return bl_fail(err, BL_ERR_FORMAT,
                       "quantization_config.layers[%s]: a parameter is out of range or mistyped",
                       where);
    return BL_OK;
}
