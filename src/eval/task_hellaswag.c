/* HellaSwag from the klosax text file (6 lines per item: "activity_label: ctx", the gold index,
 * four endings), rebuilt into lm-eval's strings (lm_eval/tasks/hellaswag/utils.py):
 *   query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
 *   choices = " " + preprocess(ending).
 * The text file was written with a different preprocessing of the raw ctx (only the [header],
 * [step], [substeps] and [title] markers removed, ctx_b not capitalized), so lm-eval's steps are
 * applied again on top; docs/eval.md lists what cannot be recovered. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"

char *bl_hellaswag_preprocess(const char *text) {
    size_t n = strlen(text);
    while (n && bl_is_space(text[n - 1])) n--;
    while (n && bl_is_space(*text)) text++, n--;
    /* " [title]" -> ". " never lengthens the text, so one buffer of n+1 serves every step. */
    char *a = malloc(n + 1), *b = malloc(n + 1);
    if (!a || !b) {
        free(a), free(b);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 8 && memcmp(text + i, " [title]", 8) == 0) {
            a[k++] = '.', a[k++] = ' ', i += 8;
        } else {
            a[k++] = text[i++];
        }
    }
    a[k] = 0;
    /* re.sub("\\[.*?\\]", "", text): from each '[' to the next ']' on the same line. */
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (a[i] == '[') {
            size_t j = i + 1;
            while (j < k && a[j] != ']' && a[j] != '\n') j++;
            if (j < k && a[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        b[m++] = a[i++];
    }
    b[m] = 0;
    /* str.replace("  ", " "): one left-to-right pass over non-overlapping pairs. */
    k = 0;
    for (size_t i = 0; i < m;) {
        if (i + 1 < m && b[i] == ' ' && b[i + 1] == ' ') {
            a[k++] = ' ', i += 2;
        } else {
            a[k++] = b[i++];
        }
    }
    a[k] = 0;
    free(b);
    return a;
}

char *bl_hellaswag_query(const char *line) {
    char *s = bl_strdup(line);
    if (!s) return NULL;
    char *ctx = strstr(s, ": ");
    ctx = ctx ? ctx + 2 : s;
    char *seg = NULL;
    for (char *p = ctx; p[0] && p[1]; p++)
        if ((p[0] == '.' || p[0] == '?' || p[0] == '!') && p[1] == ' ') seg = p + 2;
    /* ctx_b of the ActivityNet items is a lowercase fragment that starts the last sentence;
     * lm-eval capitalizes it (Python: first letter upper, every other letter lower). */
    if (seg && *seg >= 'a' && *seg <= 'z') {
        *seg = (char)toupper((unsigned char)*seg);
        for (char *p = seg + 1; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)tolower((unsigned char)*p);
    }
    char *out = bl_hellaswag_preprocess(s);
    free(s);
    return out;
}

bl_status bl_parse_hellaswag(bl_task_set *s, const char *text, size_t len, int limit,
                             bl_err *err) {
    const char *nul = memchr(text, 0, len);
    if (nul)
        return bl_fail(err, BL_ERR_FORMAT, "%s: a NUL byte at offset %td (not a text file)",
                       s->path, nul - text);
    /* A copy split into lines in place. */
    char *data = bl_strndup(text, len);
    if (!data) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status st = BL_OK;
    /* Split into lines in place. */
    size_t n_lines = 0, cap_lines = 0;
    char **lines = NULL;
    for (char *p = data; p < data + len;) {
        char *e = memchr(p, '\n', (size_t)(data + len - p));
        if (e) *e = 0;
        if (n_lines == cap_lines) {
            cap_lines = cap_lines ? cap_lines * 2 : 4096;
            char **nl = realloc(lines, cap_lines * sizeof *nl);
            if (!nl) {
                st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
                break;
            }
            lines = nl;
        }
        lines[n_lines++] = p;
        p = e ? e + 1 : data + len;
    }
    if (!st && n_lines % 6 != 0)
        st = bl_fail(err, BL_ERR_FORMAT, "%s: %zu lines, not a multiple of 6", s->path, n_lines);
    int cap = 0;
    for (size_t i = 0; !st && i < n_lines / 6 && (limit <= 0 || (int)i < limit); i++) {
        char **L = lines + 6 * i;
        const char *g = L[1];
        if (!(g[0] >= '0' && g[0] <= '3') || (g[1] && !bl_is_space(g[1]))) {
            st = bl_fail(err, BL_ERR_FORMAT, "%s:%zu: gold label must be 0-3", s->path,
                         6 * i + 2);
            break;
        }
        bl_task_item *it = bl_set_add_item(s, &cap);
        char *q = it ? bl_hellaswag_query(L[0]) : NULL;
        if (!q) {
            st = bl_fail(err, BL_ERR_NOMEM, "out of memory");
            break;
        }
        it->gold = g[0] - '0';
        for (int k = 0; k < 4 && !st; k++) {
            char *end = bl_hellaswag_preprocess(L[2 + k]);
            char *cont = end ? bl_strfmt(" %s", end) : NULL;
            st = cont ? bl_item_add(it, q, cont, end, err)
                      : bl_fail(err, BL_ERR_NOMEM, "out of memory");
            free(end);
            free(cont);
        }
        free(q);
    }
    free(lines);
    free(data);
    return st;
}
