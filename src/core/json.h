/* Strict JSON text parsing for the file readers: exactly one JSON value, with nothing but
 * whitespace after it (cJSON alone accepts trailing bytes, so a file holding two objects, or an
 * object followed by garbage, would load its first part silently). Private to the library. */
#ifndef BITLLM_CORE_JSON_H
#define BITLLM_CORE_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Parses text[0, len) (a NUL byte in it is an error). Returns NULL on failure, with
 * *bad_at (may be NULL) the byte offset where the text stops being valid. */
cJSON *bl_json_parse(const char *text, size_t len, size_t *bad_at);

#endif
