/* The task parsers (src/eval/task_*.c), called by the dispatch in tasks.c, and their pieces
 * exposed to tests. */
#ifndef BITLLM_TASK_INTERNAL_H
#define BITLLM_TASK_INTERNAL_H

#include <cjson/cJSON.h>

#include "eval/task_util.h"

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
