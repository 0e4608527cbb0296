/* A metadata-only GGUF writer (the tokenizer of a GGUF model, kept beside a converted
 * checkpoint). Values are re-encoded in their original GGUF types. */
#include "bitllm/io.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool failed;
} out_buf;

static void put(out_buf *b, const void *src, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(out_buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(out_buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(out_buf *b, const char *s, uint64_t len) {
    put_u64(b, len);
    put(b, s, (size_t)len);
}

static void put_scalar(out_buf *b, const bl_gguf_kv *kv) {
    uint8_t raw[8];
    switch (kv->type) {
    case BL_GGUF_F32: {
        float f = (float)kv->v.f64;
        memcpy(raw, &f, 4);
        break;
    }
    case BL_GGUF_F64: memcpy(raw, &kv->v.f64, 8); break;
    case BL_GGUF_I8: case BL_GGUF_I16: case BL_GGUF_I32: case BL_GGUF_I64:
        memcpy(raw, &kv->v.i64, 8); /* little-endian: the low bytes come first */
        break;
    default: memcpy(raw, &kv->v.u64, 8); break;
    }
    put(b, raw, bl_gguf_type_size(kv->type));
}

bl_status bl_gguf_write_metadata(const bl_gguf *g, const char *prefix, const char *path,
                                 bl_err *err) {
    out_buf b = {0};
    size_t plen = strlen(prefix);
    uint64_t n_kv = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strncmp(g->kv[i].key, prefix, plen) == 0) n_kv++;
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const bl_gguf_kv *kv = &g->kv[i];
        if (strncmp(kv->key, prefix, plen) != 0) continue;
        put_str(&b, kv->key, strlen(kv->key));
        put_u32(&b, (uint32_t)kv->type);
        if (kv->type == BL_GGUF_STRING) {
            put_str(&b, kv->v.str.ptr, kv->v.str.len);
        } else if (kv->type == BL_GGUF_ARRAY) {
            put_u32(&b, (uint32_t)kv->v.arr.type);
            put_u64(&b, kv->v.arr.n);
            if (kv->v.arr.type == BL_GGUF_STRING) {
                for (uint64_t j = 0; j < kv->v.arr.n; j++)
                    put_str(&b, kv->v.arr.strs[j].ptr, kv->v.arr.strs[j].len);
            } else {
                put(&b, kv->v.arr.data, (size_t)(kv->v.arr.n * bl_gguf_type_size(kv->v.arr.type)));
            }
        } else {
            put_scalar(&b, kv);
        }
    }
    bl_status s = b.failed ? bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path)
                           : bl_write_file_atomic(path, b.p, b.n, err);
    free(b.p);
    return s;
}
