/* The one place a linear-layer format is registered. */
#include "formats/formats_internal.h"

#include <string.h>

static const bl_format_ops *const format_table[] = {
    &bl_format_dense,
    &bl_format_onebit,
    &bl_format_dbf,
    &bl_format_mdbf,
    &bl_format_rtn,
};

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

void bl_linear_free(bl_linear *L) {
    if (L && L->ops && L->ops->free_impl) L->ops->free_impl(L);
    if (L) L->impl = NULL;
}
