/* Helpers shared by the task loaders (src/eval/task_*.c) and exposed to tests. */
#ifndef BITLLM_TASK_INTERNAL_H
#define BITLLM_TASK_INTERNAL_H

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

/* HellaSwag (lm-eval utils.preprocess): strip, " [title]" -> ". ", drop every "[...]",
 * "  " -> " " (one pass). malloc'ed. */
char *bl_hellaswag_preprocess(const char *text);
/* The lm-eval query from a line "activity_label: ctx" of the klosax text file, whose ctx is the
 * raw ctx_a + " " + ctx_b: the last sentence fragment after ". ", "? " or "! " is taken as ctx_b
 * and, when it starts with a lowercase letter, capitalized the way Python's str.capitalize()
 * does (first letter upper, the rest lower, ASCII), then the whole is preprocessed.
 * malloc'ed. */
char *bl_hellaswag_query(const char *line);

/* The parsers, one per data file family (src/eval/task_*.c): the text of the task's file (and
 * PIQA's label file, or NULL for llm-foundry's piqa.jsonl) into s, whose id and path are set. */
bl_status bl_parse_piqa(bl_task_set *s, const char *data, size_t len, const char *labels,
                        size_t labels_len, int limit, bl_err *err);
bl_status bl_parse_foundry_mc(bl_task_set *s, const char *data, size_t len, int limit,
                              bl_err *err); /* arc_easy, arc_challenge, openbookqa, boolq */
bl_status bl_parse_winogrande(bl_task_set *s, const char *data, size_t len, int limit,
                              bl_err *err);
bl_status bl_parse_lambada(bl_task_set *s, const char *data, size_t len, int limit, bl_err *err);
bl_status bl_parse_hellaswag(bl_task_set *s, const char *data, size_t len, int limit,
                             bl_err *err);

#endif
