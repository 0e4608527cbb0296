/* bl_tensor_set: a growable list of named tensor views plus the files and heap buffers they point
 * into. Lookups are linear: a model has a few hundred tensors and loads look each up once. */
#include "bitllm/io.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const bl_tensor *bl_tensor_set_find(const bl_tensor_set *s, const char *name) {
    if (!s || !name) return NULL;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

bl_status bl_tensor_set_add(bl_tensor_set *s, const bl_tensor *t, bl_err *err) {
    if (!s || !t) return bl_fail(err, BL_ERR_ARG, "tensor set: NULL argument");
    if (memchr(t->name, 0, sizeof t->name) == NULL || t->name[0] == 0)
        return bl_fail(err, BL_ERR_ARG, "tensor set: empty or unterminated tensor name");
    if (t->ndim < 0 || t->ndim > BL_MAX_DIMS || !bl_dtype_info(t->dtype))
        return bl_fail(err, BL_ERR_ARG, "%s: bad ndim %d or dtype %d", t->name, t->ndim,
                       (int)t->dtype);
    if (s->n == s->cap) {
        if (s->cap > (1 << 28)) return bl_fail(err, BL_ERR_NOMEM, "%s: too many tensors", t->name);
        int cap = s->cap ? 2 * s->cap : 16;
        bl_tensor *nt = realloc(s->t, (size_t)cap * sizeof *nt);
        if (!nt) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", t->name);
        s->t = nt;
        int *nf = realloc(s->file_of, (size_t)cap * sizeof *nf);
        if (!nf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", t->name);
        s->file_of = nf;
        s->cap = cap;
    }
    s->file_of[s->n] = s->n_files - 1;
    s->t[s->n++] = *t;
    return BL_OK;
}

bl_status bl_tensor_set_begin_file(bl_tensor_set *s, const char *path, bl_err *err) {
    char **nf = realloc(s->files, ((size_t)s->n_files + 1) * sizeof *nf);
    if (!nf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    s->files = nf;
    if (!(s->files[s->n_files] = bl_strdup(path)))
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    s->n_files++;
    return BL_OK;
}

const char *bl_tensor_set_file(const bl_tensor_set *s, const bl_tensor *t) {
    int i = -1;
    if (s->n > 0 && t >= s->t && t < s->t + s->n) {
        i = (int)(t - s->t);
    } else {
        for (int k = 0; k < s->n && i < 0; k++)
            if (strcmp(s->t[k].name, t->name) == 0) i = k;
    }
    return i >= 0 && s->file_of[i] >= 0 ? s->files[s->file_of[i]] : NULL;
}

/* The owned lists grow one element at a time: a set holds a handful of files and buffers. */
bl_status bl_tensor_set_own(bl_tensor_set *s, void *buf, bl_err *err) {
    if (!s) {
        free(buf);
        return bl_fail(err, BL_ERR_ARG, "tensor set: NULL argument");
    }
    void **no = realloc(s->owned, ((size_t)s->n_owned + 1) * sizeof *no);
    if (!no) {
        free(buf); /* ownership passes even on failure, so callers never leak or double-free */
        return bl_fail(err, BL_ERR_NOMEM, "tensor set: out of memory");
    }
    s->owned = no;
    s->owned[s->n_owned++] = buf;
    return BL_OK;
}

bl_status bl_tensor_set_own_map(bl_tensor_set *s, bl_mmap *m, bl_err *err) {
    if (!s || !m) {
        if (m) bl_mmap_close(m);
        return bl_fail(err, BL_ERR_ARG, "tensor set: NULL argument");
    }
    bl_mmap *nm = realloc(s->maps, ((size_t)s->n_maps + 1) * sizeof *nm);
    if (!nm) {
        bl_mmap_close(m);
        return bl_fail(err, BL_ERR_NOMEM, "tensor set: out of memory");
    }
    s->maps = nm;
    s->maps[s->n_maps++] = *m;
    memset(m, 0, sizeof *m);
    return BL_OK;
}

void bl_tensor_set_free(bl_tensor_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_maps; i++) bl_mmap_close(&s->maps[i]);
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    for (int i = 0; i < s->n_files; i++) free(s->files[i]);
    free(s->files);
    free(s->file_of);
    free(s->maps);
    free(s->owned);
    free(s->t);
    memset(s, 0, sizeof *s);
}

void bl_tensor_set_release(const bl_tensor_set *s, const void *p, size_t n) {
    const uint8_t *a = p;
    for (int i = 0; i < s->n_maps; i++) {
        const bl_mmap *m = &s->maps[i];
        if (a >= m->data && a + n <= m->data + m->size) {
            bl_mmap_release(m, p, n);
            return;
        }
    }
}

bl_status bl_tensor_set_privatize(bl_tensor_set *s, const char *what, bl_err *err) {
    for (int i = 0; i < s->n_maps; i++) {
        bl_status st = bl_mmap_privatize(&s->maps[i], what, err);
        if (st) return st;
    }
    return BL_OK;
}
