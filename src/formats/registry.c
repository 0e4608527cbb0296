/* The one place a linear-layer format is registered (its traits record, format.h). */
#include "formats/formats_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every format, one line each, in the order `bitllm formats` lists them. A format is its own
 * file(s) defining `const bl_format_ops bl_format_<name>` plus one line here (the list ends in an
 * empty line, so adding one touches no other). */
#define BL_FORMATS(X) \
    X(dense)          \
    X(rtn)            \
    X(onebit)         \
    X(dbf)            \
    X(mdbf)           \
    X(qsym)           \
    X(ternary)        \
    /* end of the list */

#define DECLARE(f) extern const bl_format_ops bl_format_##f;
BL_FORMATS(DECLARE)
#define ENTRY(f) &bl_format_##f,
static const bl_format_ops *const format_table[] = {BL_FORMATS(ENTRY)};

const bl_format_ops *const *bl_format_list(int *count) {
    *count = (int)(sizeof format_table / sizeof format_table[0]);
    return format_table;
}

const bl_format_ops *bl_format_find(const char *name) {
    int n;
    const bl_format_ops *const *all = bl_format_list(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

bool bl_linear_is_dense(const bl_linear *L) { return L->ops == &bl_format_dense; }

bool bl_format_is_dense(const bl_format_ops *f) { return f == &bl_format_dense; }

const char *bl_bpw_keyword(void) {
    int n;
    const bl_format_ops *const *all = bl_format_list(&n);
    for (int i = 0; i < n; i++)
        if (all[i]->bpw_reference) return all[i]->name;
    return "";
}

bl_status bl_bpw_parse(const char *text, double hi, double *bpw, bl_err *err) {
    const char *kw = bl_bpw_keyword();
    if (*kw && strcmp(text, kw) == 0) {
        *bpw = 0;
        return BL_OK;
    }
    char *end;
    const double v = strtod(text, &end);
    if (!*text || *end || !(v > 0.0 && v <= hi))
        return bl_fail(err, BL_ERR_ARG, "a bpw target is a number in (0, %g] or '%s' (the bpw %s "
                       "stores for each layer's shape), got '%s'", hi, kw, kw, text);
    *bpw = v;
    return BL_OK;
}

void bl_compare_default_methods(char *buf, size_t cap) {
    int n;
    size_t k = 0;
    const bl_format_ops *const *all = bl_format_list(&n);
    if (cap) buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++)
        if (all[i]->compare_default)
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? "," : "", all[i]->compare_default);
}

void bl_linear_free(bl_linear *L) {
    if (L && L->ops && L->ops->free_impl) L->ops->free_impl(L);
    if (L) L->impl = NULL;
}
