/* safetensors writer. Tensors are collected (copied or referenced), then written in one pass:
 * header length, JSON header padded with spaces to a multiple of 8 bytes, then each tensor's bytes
 * in the order they were added, contiguously (the layout the reference safetensors loader
 * requires). The file is written to "<path>.tmp.<pid>", fsync'ed and renamed, so a reader never
 * sees a half-written checkpoint. */
#include "bitllm/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char name[BL_MAX_NAME];
    bl_dtype dtype;
    int ndim;
    int64_t shape[BL_MAX_DIMS];
    const void *data;
    size_t nbytes;
    void *copy; /* owned copy of data when the caller asked for one */
    bl_st_fill_fn fill; /* lazy tensor: produces the bytes at write time */
    void *fill_ctx;
} st_item;

struct bl_st_writer {
    st_item *items;
    int n, cap;
    cJSON *meta; /* "__metadata__" object, NULL until a key is set */
};

bl_status bl_st_writer_new(bl_st_writer **w, bl_err *err) {
    if (!w) return bl_fail(err, BL_ERR_ARG, "st_writer: NULL argument");
    *w = bl_calloc(1, sizeof **w);
    if (!*w) return bl_fail(err, BL_ERR_NOMEM, "st_writer: out of memory");
    return BL_OK;
}

void bl_st_writer_free(bl_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->items[i].copy);
    free(w->items);
    cJSON_Delete(w->meta);
    free(w);
}

bl_status bl_st_writer_add_lazy(bl_st_writer *w, const char *name, bl_dtype dtype, int ndim,
                                const int64_t *shape, size_t nbytes, bl_st_fill_fn fill,
                                void *ctx, bl_err *err) {
    if (!fill) return bl_fail(err, BL_ERR_ARG, "st_writer: NULL fill function");
    /* Validate through the common path with a placeholder pointer, then mark it lazy. */
    static const uint8_t placeholder;
    bl_status s = bl_st_writer_add(w, name, dtype, ndim, shape, &placeholder, nbytes, false, err);
    if (s) return s;
    w->items[w->n - 1].data = NULL;
    w->items[w->n - 1].fill = fill;
    w->items[w->n - 1].fill_ctx = ctx;
    return BL_OK;
}

bl_status bl_st_writer_add(bl_st_writer *w, const char *name, bl_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, size_t nbytes, bool copy,
                           bl_err *err) {
    if (!w || !name || (ndim > 0 && !shape) || (nbytes > 0 && !data))
        return bl_fail(err, BL_ERR_ARG, "st_writer: NULL argument");
    size_t len = strlen(name);
    if (len == 0 || len >= BL_MAX_NAME || strcmp(name, "__metadata__") == 0)
        return bl_fail(err, BL_ERR_ARG, "st_writer: invalid tensor name '%.128s'", name);
    if (!bl_dtype_info(dtype) || dtype == BL_DT_Q8_0)
        return bl_fail(err, BL_ERR_ARG, "%s: dtype %d cannot be stored in safetensors", name,
                       (int)dtype);
    if (ndim < 0 || ndim > BL_MAX_DIMS)
        return bl_fail(err, BL_ERR_ARG, "%s: ndim %d out of range", name, ndim);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && numel > (uint64_t)INT64_MAX / (uint64_t)shape[i]))
            return bl_fail(err, BL_ERR_ARG, "%s: bad shape[%d] = %lld", name, i,
                           (long long)shape[i]);
        numel *= (uint64_t)shape[i];
    }
    size_t need;
    if (!bl_dtype_nbytes(dtype, numel, &need) || need != nbytes)
        return bl_fail(err, BL_ERR_ARG, "%s: %zu bytes given, shape and dtype need %zu", name,
                       nbytes, need);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0)
            return bl_fail(err, BL_ERR_ARG, "%s: tensor added twice", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        st_item *ni = realloc(w->items, (size_t)cap * sizeof *ni);
        if (!ni) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", name);
        w->items = ni;
        w->cap = cap;
    }
    st_item *it = &w->items[w->n];
    memset(it, 0, sizeof *it);
    memcpy(it->name, name, len + 1);
    it->dtype = dtype;
    it->ndim = ndim;
    for (int i = 0; i < ndim; i++) it->shape[i] = shape[i];
    it->nbytes = nbytes;
    it->data = data;
    if (copy && nbytes > 0) {
        it->copy = bl_malloc(nbytes);
        if (!it->copy) return bl_fail(err, BL_ERR_NOMEM, "%s: cannot copy %zu bytes", name, nbytes);
        memcpy(it->copy, data, nbytes);
        it->data = it->copy;
    }
    w->n++;
    return BL_OK;
}

bl_status bl_st_writer_meta(bl_st_writer *w, const char *key, const char *value, bl_err *err) {
    if (!w || !key || !value) return bl_fail(err, BL_ERR_ARG, "st_writer: NULL argument");
    if (!w->meta && !(w->meta = cJSON_CreateObject()))
        return bl_fail(err, BL_ERR_NOMEM, "st_writer: out of memory");
    cJSON *v = cJSON_CreateString(value);
    if (!v) return bl_fail(err, BL_ERR_NOMEM, "st_writer: out of memory");
    /* Setting a key twice keeps the last value, like a dict. */
    bool ok = cJSON_GetObjectItemCaseSensitive(w->meta, key)
                  ? cJSON_ReplaceItemInObjectCaseSensitive(w->meta, key, v)
                  : cJSON_AddItemToObject(w->meta, key, v);
    if (!ok) {
        cJSON_Delete(v);
        return bl_fail(err, BL_ERR_NOMEM, "st_writer: out of memory");
    }
    return BL_OK;
}

/* Integers go in as raw JSON text so that offsets above 2^53 would still print exactly. */
static cJSON *raw_int(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

static cJSON *build_header(const bl_st_writer *w) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (w->meta && !cJSON_AddItemReferenceToObject(root, "__metadata__", w->meta)) goto fail;
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_item *it = &w->items[i];
        cJSON *e = cJSON_AddObjectToObject(root, it->name);
        if (!e || !cJSON_AddStringToObject(e, "dtype", bl_dtype_info(it->dtype)->name)) goto fail;
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (!shape) goto fail;
        for (int d = 0; d < it->ndim; d++)
            if (!cJSON_AddItemToArray(shape, raw_int((uint64_t)it->shape[d]))) goto fail;
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        if (!offs || !cJSON_AddItemToArray(offs, raw_int(off)) ||
            !cJSON_AddItemToArray(offs, raw_int(off + it->nbytes)))
            goto fail;
        off += it->nbytes;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

static bool write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* The file's first bytes: the 8-byte header length and the JSON header padded with spaces to a
 * multiple of 8, in a buffer of 8 + hlen + extra bytes (caller frees). */
static bl_status header_bytes(bl_st_writer *w, const char *what, size_t extra, char **out,
                              size_t *n, bl_err *err) {
    cJSON *root = build_header(w);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return bl_fail(err, BL_ERR_NOMEM, "%s: cannot build the JSON header", what);
    size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;
    char *hdr = bl_malloc(8 + hlen + extra);
    if (!hdr) {
        cJSON_free(json);
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", what);
    }
    uint64_t hlen64 = hlen;
    memcpy(hdr, &hlen64, 8);
    memcpy(hdr + 8, json, jlen);
    memset(hdr + 8 + jlen, ' ', hlen - jlen);
    cJSON_free(json);
    *out = hdr;
    *n = 8 + hlen;
    return BL_OK;
}

bl_status bl_st_writer_finish(bl_st_writer *w, const char *path, bl_err *err) {
    if (!w || !path) return bl_fail(err, BL_ERR_ARG, "st_writer: NULL argument");
    char *hdr;
    size_t hn;
    bl_status hs = header_bytes(w, path, 0, &hdr, &hn, err);
    if (hs) return hs;
    size_t tlen = strlen(path) + 32;
    char *tmp = bl_malloc(tlen);
    if (!tmp) {
        free(hdr);
        return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    bl_status st = BL_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        st = bl_fail(err, BL_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    bool ok = write_all(fd, hdr, hn);
    for (int i = 0; ok && i < w->n; i++) {
        const st_item *it = &w->items[i];
        if (!it->fill) {
            ok = write_all(fd, it->data, it->nbytes);
            continue;
        }
        /* One lazy tensor in memory at a time: large generated models stream to disk. */
        void *buf = bl_malloc(it->nbytes);
        if (!buf) {
            errno = ENOMEM;
            ok = false;
            break;
        }
        it->fill(it->fill_ctx, it->name, buf, it->nbytes);
        ok = write_all(fd, buf, it->nbytes);
        free(buf);
    }
    if (!ok) st = bl_fail(err, BL_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (st == BL_OK && fsync(fd) != 0)
        st = bl_fail(err, BL_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == BL_OK)
        st = bl_fail(err, BL_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == BL_OK && rename(tmp, path) != 0)
        st = bl_fail(err, BL_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (st != BL_OK) unlink(tmp);
done:
    free(tmp);
    free(hdr);
    return st;
}

bl_status bl_st_writer_finish_mem(bl_st_writer *w, uint8_t **data, size_t *size, bl_err *err) {
    if (!w || !data || !size) return bl_fail(err, BL_ERR_ARG, "st_writer: NULL argument");
    *data = NULL;
    *size = 0;
    size_t body = 0, at;
    for (int i = 0; i < w->n; i++) body += w->items[i].nbytes;
    char *out;
    bl_status s = header_bytes(w, "safetensors image", body, &out, &at, err);
    if (s) return s;
    for (int i = 0; i < w->n; i++) {
        const st_item *it = &w->items[i];
        if (it->fill) it->fill(it->fill_ctx, it->name, out + at, it->nbytes);
        else if (it->nbytes) memcpy(out + at, it->data, it->nbytes);
        at += it->nbytes;
    }
    *data = (uint8_t *)out;
    *size = at;
    return BL_OK;
}
