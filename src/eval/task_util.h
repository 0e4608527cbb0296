/* Helpers shared by the task parsers (src/eval/task_util.c). */
#ifndef BITLLM_TASK_UTIL_H
#define BITLLM_TASK_UTIL_H

#include <cjson/cJSON.h>

#include "bitllm/tasks.h"

/* malloc'ed printf; NULL on failure. */
char *bl_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Unicode code points of UTF-8 text (Python's len()). */
int bl_utf8_chars(const char *s);
/* Python's str.isspace() restricted to ASCII: space, \t, \n, \v, \f, \r. */
bool bl_is_space(char c);

/* Appends a request (strings are copied; the choice text gives the acc_norm lengths). */
bl_status bl_item_add(bl_task_item *it, const char *context, const char *continuation,
                      const char *choice, bl_err *err);
/* Appends an item to a set (grows the array); returns a pointer to it, NULL on out-of-memory. */
bl_task_item *bl_set_add_item(bl_task_set *s, int *cap);

/* Calls fn for each non-empty line of a JSONL text (data, len bytes, from the file path),
 * parsed; stops at the first error (which names the file and line). A line must hold exactly one
 * JSON object. fn returns BL_OK or a failure it has already recorded in err. limit > 0 stops
 * after that many lines. */
typedef bl_status (*bl_jsonl_fn)(void *ctx, const cJSON *row, int line, bl_err *err);
bl_status bl_jsonl_each(const char *path, const char *data, size_t len, int limit,
                        bl_jsonl_fn fn, void *ctx, bl_err *err);
/* String member of a JSON object, or NULL (with err set naming path:line) when absent. */
const char *bl_json_str(const cJSON *o, const char *key, const char *path, int line,
                        bl_err *err);

#endif
