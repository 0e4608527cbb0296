#include "core/json.h"

#include <stdbool.h>
#include <string.h>

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
