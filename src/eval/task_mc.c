/* Loaders for the multiple-choice and LAMBADA files: each builds the strings lm-eval builds from
 * the original dataset (docs/eval.md gives the templates and their lm-eval sources). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"

/* Items of the multiple-choice loaders share this context. */
typedef struct {
    bl_task_set *s;
    int cap;
    const char *path;
    const int8_t *labels; /* PIQA labels, or NULL */
    int n_labels;
} load_ctx;

static bl_status get_gold(const cJSON *row, int n_choices, const char *path, int line, int *gold,
                          bl_err *err) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(row, "gold");
    /* compared as a double first: converting an out-of-range double to int is undefined */
    if (!cJSON_IsNumber(g) || !(g->valuedouble >= 0 && g->valuedouble < n_choices) ||
        g->valuedouble != (double)(int)g->valuedouble)
        return bl_fail(err, BL_ERR_FORMAT, "%s:%d: \"gold\" must be an index in [0, %d)", path,
                       line, n_choices);
    *gold = (int)g->valuedouble;
    return BL_OK;
}

/* ---- PIQA: "Question: {goal}\nAnswer:" + " {sol}" (lm_eval/tasks/piqa/piqa.yaml) ---- */

static bl_status piqa_row(void *vctx, const cJSON *row, int line, bl_err *err) {
    load_ctx *c = vctx;
    const char *goal = bl_json_str(row, "goal", c->path, line, err);
    const char *sol[2] = {bl_json_str(row, "sol1", c->path, line, err),
                          bl_json_str(row, "sol2", c->path, line, err)};
    if (!goal || !sol[0] || !sol[1]) return err ? err->code : BL_ERR_FORMAT;
    int idx = c->s->n_items;
    if (idx >= c->n_labels)
        return bl_fail(err, BL_ERR_FORMAT, "%s: more items than labels (%d)", c->path,
                       c->n_labels);
    bl_task_item *it = bl_set_add_item(c->s, &c->cap);
    if (!it) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    it->gold = c->labels[idx];
    char *ctx = bl_strfmt("Question: %s\nAnswer:", goal);
    if (!ctx) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = BL_OK;
    for (int k = 0; k < 2 && !s; k++) {
        char *cont = bl_strfmt(" %s", sol[k]);
        s = cont ? bl_item_add(it, ctx, cont, sol[k], err)
                 : bl_fail(err, BL_ERR_NOMEM, "out of memory");
        free(cont);
    }
    free(ctx);
    return s;
}

/* llm-foundry's PIQA: query "Question: {goal}\n", choices [sol1, sol2], gold. */
static bl_status piqa_foundry_row(void *vctx, const cJSON *row, int line, bl_err *err) {
    load_ctx *c = vctx;
    const char *q = bl_json_str(row, "query", c->path, line, err);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(row, "choices");
    if (!q) return err ? err->code : BL_ERR_FORMAT;
    if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) != 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s:%d: \"choices\" must hold 2 strings", c->path,
                       line);
    size_t n = strlen(q);
    if (n && q[n - 1] == '\n') n--; /* the query ends with the newline before "Answer:" */
    bl_task_item *it = bl_set_add_item(c->s, &c->cap);
    if (!it) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = get_gold(row, 2, c->path, line, &it->gold, err);
    char *ctx = bl_strfmt("%.*s\nAnswer:", (int)n, q);
    if (!ctx) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int k = 0; k < 2 && !s; k++) {
        const cJSON *e = cJSON_GetArrayItem(ch, k);
        if (!cJSON_IsString(e)) {
            s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: choice %d is not a string", c->path, line, k);
            break;
        }
        char *cont = bl_strfmt(" %s", e->valuestring);
        s = cont ? bl_item_add(it, ctx, cont, e->valuestring, err)
                 : bl_fail(err, BL_ERR_NOMEM, "out of memory");
        free(cont);
    }
    free(ctx);
    return s;
}

/* valid-labels.lst: one 0 or 1 per line (trailing whitespace allowed, blank lines skipped). */
static bl_status parse_labels(const char *path, const char *data, size_t len, int8_t **labels,
                              int *n, bl_err *err) {
    int8_t *l = malloc(len / 2 + 2);
    if (!l) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    int k = 0, line = 0;
    bl_status s = BL_OK;
    for (const char *p = data; p < data + len && !s;) {
        const char *e = memchr(p, '\n', (size_t)(data + len - p));
        size_t m = e ? (size_t)(e - p) : (size_t)(data + len - p), next = m + 1;
        line++;
        while (m && bl_is_space(p[m - 1])) m--;
        if (m == 1 && (p[0] == '0' || p[0] == '1')) l[k++] = (int8_t)(p[0] - '0');
        else if (m != 0) s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: expected 0 or 1", path, line);
        p += next;
    }
    if (s) {
        free(l);
        return s;
    }
    *labels = l;
    *n = k;
    return BL_OK;
}

bl_status bl_parse_piqa(bl_task_set *s, const char *data, size_t len, const char *labels,
                        size_t labels_len, int limit, bl_err *err) {
    load_ctx c = {.s = s, .path = s->path};
    if (!labels) return bl_jsonl_each(s->path, data, len, limit, piqa_foundry_row, &c, err);
    int8_t *lab = NULL;
    const char *slash = strrchr(s->path, '/');
    char *lpath = bl_strfmt("%.*svalid-labels.lst", slash ? (int)(slash - s->path + 1) : 0,
                            s->path);
    if (!lpath) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status st = parse_labels(lpath, labels, labels_len, &lab, &c.n_labels, err);
    free(lpath);
    c.labels = lab;
    if (!st) st = bl_jsonl_each(s->path, data, len, limit, piqa_row, &c, err);
    if (!st && limit <= 0 && s->n_items != c.n_labels)
        st = bl_fail(err, BL_ERR_FORMAT, "%s: %d items but %d labels", s->path, s->n_items,
                     c.n_labels);
    free(lab);
    return st;
}

/* ---- llm-foundry {"query", "choices", "gold"}: ARC, OpenBookQA, BoolQ ----
 * ARC (lm_eval/tasks/arc/arc_easy.yaml): "Question: {question}\nAnswer:" + " {choice}"; the
 *   llm-foundry query is already "Question: {question}".
 * OpenBookQA (openbookqa.yaml): context = question_stem = the query; " {choice}".
 * BoolQ (super_glue/boolq/default.yaml): "{passage}\nQuestion: {question}?\nAnswer:" with
 *   " no" / " yes"; the llm-foundry query is "Passage: {passage}\nQuestion: {question}?". */

static bl_status foundry_row(void *vctx, const cJSON *row, int line, bl_err *err) {
    load_ctx *c = vctx;
    const bl_task_id id = c->s->id;
    const char *q = bl_json_str(row, "query", c->path, line, err);
    if (!q) return err ? err->code : BL_ERR_FORMAT;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(row, "choices");
    int nc = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    if (nc < 2) return bl_fail(err, BL_ERR_FORMAT, "%s:%d: need >= 2 choices", c->path, line);
    char *ctx = NULL;
    if (id == BL_TASK_ARC_EASY || id == BL_TASK_ARC_CHALLENGE) {
        if (strncmp(q, "Question: ", 10) != 0)
            return bl_fail(err, BL_ERR_FORMAT, "%s:%d: query does not start with \"Question: \"",
                           c->path, line);
        ctx = bl_strfmt("%s\nAnswer:", q);
    } else if (id == BL_TASK_BOOLQ) {
        if (strncmp(q, "Passage: ", 9) != 0)
            return bl_fail(err, BL_ERR_FORMAT, "%s:%d: query does not start with \"Passage: \"",
                           c->path, line);
        ctx = bl_strfmt("%s\nAnswer:", q + 9);
    } else {
        ctx = bl_strdup(q);
    }
    if (!ctx) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_task_item *it = bl_set_add_item(c->s, &c->cap);
    bl_status s = it ? get_gold(row, nc, c->path, line, &it->gold, err)
                     : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int k = 0; k < nc && !s; k++) {
        const cJSON *e = cJSON_GetArrayItem(ch, k);
        if (!cJSON_IsString(e)) {
            s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: choice %d is not a string", c->path, line, k);
            break;
        }
        char *cont = bl_strfmt(" %s", e->valuestring);
        s = cont ? bl_item_add(it, ctx, cont, e->valuestring, err)
                 : bl_fail(err, BL_ERR_NOMEM, "out of memory");
        free(cont);
    }
    free(ctx);
    return s;
}

bl_status bl_parse_foundry_mc(bl_task_set *s, const char *data, size_t len, int limit,
                              bl_err *err) {
    load_ctx c = {.s = s, .path = s->path};
    return bl_jsonl_each(s->path, data, len, limit, foundry_row, &c, err);
}

/* ---- WinoGrande, partial scoring (winogrande/preprocess_winogrande.py): each option fills the
 * blank, context = sentence[:blank] + option, continuation = " " + sentence[blank+1:].strip().
 * llm-foundry stores exactly those: "context_options" and the stripped "continuation". ---- */

static bl_status wino_row(void *vctx, const cJSON *row, int line, bl_err *err) {
    load_ctx *c = vctx;
    const char *cont = bl_json_str(row, "continuation", c->path, line, err);
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(row, "context_options");
    if (!cont) return err ? err->code : BL_ERR_FORMAT;
    int nc = cJSON_IsArray(opts) ? cJSON_GetArraySize(opts) : 0;
    if (nc != 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s:%d: \"context_options\" must hold 2 strings",
                       c->path, line);
    bl_task_item *it = bl_set_add_item(c->s, &c->cap);
    if (!it) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = get_gold(row, nc, c->path, line, &it->gold, err);
    char *target = bl_strfmt(" %s", cont);
    if (!target) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    for (int k = 0; k < nc && !s; k++) {
        const cJSON *e = cJSON_GetArrayItem(opts, k);
        if (!cJSON_IsString(e)) {
            s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: option %d is not a string", c->path, line, k);
            break;
        }
        /* lm-eval's acc_norm length would be that of the partial context (not reported). */
        s = bl_item_add(it, e->valuestring, target, e->valuestring, err);
    }
    free(target);
    return s;
}

bl_status bl_parse_winogrande(bl_task_set *s, const char *data, size_t len, int limit,
                              bl_err *err) {
    load_ctx c = {.s = s, .path = s->path};
    return bl_jsonl_each(s->path, data, len, limit, wino_row, &c, err);
}

/* ---- LAMBADA (lambada/lambada_openai.yaml): context = " ".join(text.split(" ")[:-1]),
 * target = " " + text.split(" ")[-1]. The text is rebuilt from llm-foundry's split as
 * context + " " + continuation (no space when the continuation starts with whitespace), and split
 * again at its last space. ---- */

static bl_status lambada_row(void *vctx, const cJSON *row, int line, bl_err *err) {
    load_ctx *c = vctx;
    const char *ctx = bl_json_str(row, "context", c->path, line, err);
    const char *cont = bl_json_str(row, "continuation", c->path, line, err);
    if (!ctx || !cont) return err ? err->code : BL_ERR_FORMAT;
    char *text = bl_strfmt("%s%s%s", ctx, bl_is_space(cont[0]) ? "" : " ", cont);
    if (!text) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    char *sp = strrchr(text, ' ');
    if (!sp || sp == text || !sp[1]) {
        free(text);
        return bl_fail(err, BL_ERR_FORMAT, "%s:%d: cannot split off the last word", c->path,
                       line);
    }
    *sp = 0;
    char *target = bl_strfmt(" %s", sp + 1);
    bl_task_item *it = target ? bl_set_add_item(c->s, &c->cap) : NULL;
    bl_status s = it ? bl_item_add(it, text, target, sp + 1, err)
                     : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    free(text);
    free(target);
    return s;
}

bl_status bl_parse_lambada(bl_task_set *s, const char *data, size_t len, int limit, bl_err *err) {
    load_ctx c = {.s = s, .path = s->path};
    return bl_jsonl_each(s->path, data, len, limit, lambada_row, &c, err);
}
