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
#include <stdint.h>
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

size_t bl_json_nul_at(const char *text, size_t len) {
    const char *raw = memchr(text, 0, len);
    size_t lim = raw ? (size_t)(raw - text) : len;
    for (size_t i = 0; i + 6 <= lim; i++) {
        if (text[i] != '\\') continue;
        size_t k = i;
        while (k < lim && text[k] == '\\') k++;
        /* k - i backslashes: an odd count leaves the last one escaping what follows */
        if ((k - i) % 2 == 1 && lim - k >= 5 && text[k] == 'u' && text[k + 1] == '0' &&
            text[k + 2] == '0' && text[k + 3] == '0' && text[k + 4] == '0')
            return k - 1;
        i = k - 1;
    }
    return raw ? lim : SIZE_MAX;
}

const char *bl_json_refusal(const char *text, size_t len, size_t at) {
    return at < len && bl_json_nul_at(text, len) == at
               ? "a NUL character, \\u0000 or a 0 byte, which bitllm refuses in JSON text,"
               : "error";
}

cJSON *bl_json_parse(const char *text, size_t len, size_t *bad_at) {
    /* cJSON would end a string at a NUL silently, dropping what follows it. */
    size_t nul = bl_json_nul_at(text, len);
    const char *end = NULL;
    cJSON *v = nul != SIZE_MAX ? NULL : cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = 0;
    if (nul != SIZE_MAX) {
        at = nul;
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
