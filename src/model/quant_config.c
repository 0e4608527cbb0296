/* The per-layer entries of a quantized checkpoint's quantization_config block. */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* An integer parameter in [lo, hi]: absent leaves *out; anything else is an error naming it. */
static bl_status get_int(const cJSON *o, const char *where, const char *key, int64_t lo,
                         int64_t hi, int64_t *out, bl_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return BL_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return bl_fail(err, BL_ERR_FORMAT,
                       "quantization_config.layers[%s]: \"%s\" must be an integer in [%lld, %lld]",
                       where, key, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return BL_OK;
}

bl_status bl_format_params_from_json(const cJSON *o, const char *where, const bl_format_ops **ops,
                                     bl_format_params *p, bl_err *err) {
    memset(p, 0, sizeof *p);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsObject(o) || !cJSON_IsString(f))
        return bl_fail(err, BL_ERR_FORMAT,
                       "quantization_config.layers[%s]: needs an object with a \"format\" string",
                       where);
    *ops = bl_format_find(f->valuestring);
    if (!*ops)
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "quantization_config.layers[%s]: unknown format \"%.40s\"", where,
                       f->valuestring);
    int64_t bits = 0, group = 0, mid = 0, rank_l = 0, paths = 0;
    bl_status s;
    if ((s = get_int(o, where, "bits", 1, 32, &bits, err)) ||
        (s = get_int(o, where, "group", 1, 1 << 20, &group, err)) ||
        (s = get_int(o, where, "mid", 1, BL_MAX_MID, &mid, err)) ||
        (s = get_int(o, where, "rank_l", 1, 1024, &rank_l, err)) ||
        (s = get_int(o, where, "paths", 1, 64, &paths, err)))
        return s;
    p->bits = (int)bits;
    p->group = (int)group;
    p->mid = mid;
    p->rank_l = (int)rank_l;
    p->paths = (int)paths;
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(o, "post_ln");
    if (pl && !cJSON_IsBool(pl))
        return bl_fail(err, BL_ERR_FORMAT,
                       "quantization_config.layers[%s]: \"post_ln\" must be true or false", where);
    p->post_ln = cJSON_IsTrue(pl);
    return BL_OK;
}
