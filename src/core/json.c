/* Numbers that must come back bit for bit from a JSON file. cJSON prints a double with 15
 * significant digits whenever that text reads back within DBL_EPSILON of it (cJSON 1.7.15
 * print_number / compare_double), so about a third of doubles do not survive a JSON number:
 * 0.1 + 0.2 comes back as 0.3. These helpers store such values as strings instead: doubles in
 * C99 hex-float form ("%a", read back by strtod, exact for every finite value, denormals and the
 * sign of zero included) and 64-bit integers in decimal. Also the strict parse every file reader
 * uses (bl_json_parse). */
#include "bitllm/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- strict parsing ---- */

static bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

cJSON *bl_json_parse(const char *text, size_t len, size_t *bad_at) {
    /* A raw NUL is never valid JSON, but cJSON would end a string at one silently. */
    const char *nul = memchr(text, 0, len);
    const char *end = NULL;
    cJSON *v = nul ? NULL : cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = 0;
    if (nul) {
        at = (size_t)(nul - text);
    } else if (!v) {
        const char *e = cJSON_GetErrorPtr();
        at = e && e >= text && e <= text + len ? (size_t)(e - text) : 0;
    } else {
        at = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
        while (at < len && json_space(text[at])) at++;
        if (at == len) return v;
        cJSON_Delete(v);
        v = NULL;
    }
    if (bad_at) *bad_at = at;
    return v;
}
