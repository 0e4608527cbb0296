/* Numbers that must come back bit for bit from a JSON file. cJSON prints a double with 15
 * significant digits whenever that text reads back within DBL_EPSILON of it (cJSON 1.7.15
 * print_number / compare_double), so about a third of doubles do not survive a JSON number:
 * 0.1 + 0.2 comes back as 0.3. These helpers store such values as strings instead: doubles in
 * C99 hex-float form ("%a", read back by strtod, exact for every finite value, denormals and the
 * sign of zero included) and 64-bit integers in decimal. */
#include "bitllm/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool bl_json_add_exact(cJSON *obj, const char *key, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%a", v);
    return cJSON_AddStringToObject(obj, key, buf) != NULL;
}

bool bl_json_exact_value(const cJSON *item, double *v) {
    if (cJSON_IsNumber(item)) { /* files written before values were stored exactly */
        *v = item->valuedouble;
        return true;
    }
    if (!cJSON_IsString(item) || !item->valuestring[0]) return false;
    char *end;
    errno = 0;
    double x = strtod(item->valuestring, &end);
    if (*end) return false;
    *v = x;
    return true;
}

bool bl_json_get_exact(const cJSON *obj, const char *key, double *v) {
    return bl_json_exact_value(cJSON_GetObjectItemCaseSensitive(obj, key), v);
}

bool bl_json_add_i64(cJSON *obj, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddStringToObject(obj, key, buf) != NULL;
}

bool bl_json_get_i64(const cJSON *obj, const char *key, int64_t *v) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(item)) { /* older files; exact below 2^53 */
        double d = item->valuedouble;
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
            return false;
        *v = (int64_t)d;
        return true;
    }
    if (!cJSON_IsString(item) || !item->valuestring[0]) return false;
    char *end;
    errno = 0;
    long long x = strtoll(item->valuestring, &end, 10);
    if (*end || errno) return false;
    *v = (int64_t)x;
    return true;
}

bool bl_json_add_u64(cJSON *obj, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_AddStringToObject(obj, key, buf) != NULL;
}
