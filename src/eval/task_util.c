/* Helpers the task parsers share (src/eval/task_*.c): formatting, UTF-8 lengths, request and
 * item building, JSONL iteration. Below the parsers, which are below the dispatch in tasks.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_util.h"

char *bl_strfmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int bl_utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

bool bl_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bl_status bl_item_add(bl_task_item *it, const char *context, const char *continuation,
                      const char *choice, bl_err *err) {
    bl_task_request *r = realloc(it->req, (size_t)(it->n_req + 1) * sizeof *r);
    if (!r) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    it->req = r;
    r += it->n_req;
    r->context = bl_strdup(context);
    r->continuation = bl_strdup(continuation);
    if (!r->context || !r->continuation) {
        free(r->context);
        free(r->continuation);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    r->norm_chars = bl_utf8_chars(choice);
    r->norm_bytes = (int)strlen(choice);
    it->n_req++;
    return BL_OK;
}

bl_task_item *bl_set_add_item(bl_task_set *s, int *cap) {
    if (s->n_items == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        bl_task_item *p = realloc(s->items, (size_t)nc * sizeof *p);
        if (!p) return NULL;
        s->items = p;
        *cap = nc;
    }
    bl_task_item *it = &s->items[s->n_items++];
    memset(it, 0, sizeof *it);
    return it;
}

const char *bl_json_str(const cJSON *o, const char *key, const char *path, int line,
                        bl_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || !v->valuestring) {
        bl_fail(err, BL_ERR_FORMAT, "%s:%d: missing string field \"%s\"", path, line, key);
        return NULL;
    }
    return v->valuestring;
}

bl_status bl_jsonl_each(const char *path, const char *data, size_t len, int limit,
                        bl_jsonl_fn fn, void *ctx, bl_err *err) {
    int line = 0, rows = 0;
    bl_status s = BL_OK;
    for (const char *p = data; p < data + len && !s && (limit <= 0 || rows < limit);) {
        const char *e = memchr(p, '\n', (size_t)(data + len - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(data + len - p);
        line++;
        bool blank = true;
        for (size_t i = 0; i < n && blank; i++) blank = bl_is_space(p[i]);
        if (!blank) {
            size_t at = 0;
            cJSON *row = bl_json_parse(p, n, &at);
            if (!row)
                s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: not valid JSON (%s at column %zu)",
                            path, line, bl_json_refusal(p, n, at), at + 1);
            else if (!cJSON_IsObject(row))
                s = bl_fail(err, BL_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
            else
                s = fn(ctx, row, line, err);
            cJSON_Delete(row);
            rows++;
        }
        p += n + 1;
    }
    return s;
}

