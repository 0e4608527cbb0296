/* GGUF v2/v3 reader. Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv, the key/value pairs
 * (u64-length strings, u32 value type, value), the tensor infos (name, u32 n_dims, u64 ne[n_dims]
 * with ne[0] fastest, u32 ggml type, u64 offset), padding to general.alignment, then tensor data at
 * the given offsets. Every length and count is checked against the bytes left before it is used,
 * so a hostile file cannot make us allocate or read beyond what the file itself holds. */
#include "bitllm/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t size, pos;
} gg_reader;

static size_t rd_left(const gg_reader *r) { return r->size - r->pos; }

static bool rd_bytes(gg_reader *r, void *dst, size_t n) {
    if (rd_left(r) < n) return false;
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return true;
}

static bool rd_u32(gg_reader *r, uint32_t *v) { return rd_bytes(r, v, 4); }
static bool rd_u64(gg_reader *r, uint64_t *v) { return rd_bytes(r, v, 8); }

static bool rd_str(gg_reader *r, bl_str *s) {
    uint64_t len;
    if (!rd_u64(r, &len) || len > rd_left(r)) return false;
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += (size_t)len;
    return true;
}

size_t bl_gguf_type_size(bl_gguf_type t) {
    switch (t) {
    case BL_GGUF_U8: case BL_GGUF_I8: case BL_GGUF_BOOL: return 1;
    case BL_GGUF_U16: case BL_GGUF_I16: return 2;
    case BL_GGUF_U32: case BL_GGUF_I32: case BL_GGUF_F32: return 4;
    case BL_GGUF_U64: case BL_GGUF_I64: case BL_GGUF_F64: return 8;
    default: return 0;
    }
}

static bool is_signed(uint32_t t) {
    return t == BL_GGUF_I8 || t == BL_GGUF_I16 || t == BL_GGUF_I32 || t == BL_GGUF_I64;
}

static bool is_float(uint32_t t) { return t == BL_GGUF_F32 || t == BL_GGUF_F64; }

/* Decodes one little-endian scalar of type t at p into the matching union member. */
static void decode_scalar(uint32_t t, const uint8_t *p, bl_gguf_kv *kv) {
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; float f; double d;
    switch (t) {
    case BL_GGUF_U8: case BL_GGUF_BOOL: memcpy(&u8, p, 1); kv->v.u64 = u8; break;
    case BL_GGUF_I8: memcpy(&u8, p, 1); kv->v.i64 = (int8_t)u8; break;
    case BL_GGUF_U16: memcpy(&u16, p, 2); kv->v.u64 = u16; break;
    case BL_GGUF_I16: memcpy(&u16, p, 2); kv->v.i64 = (int16_t)u16; break;
    case BL_GGUF_U32: memcpy(&u32, p, 4); kv->v.u64 = u32; break;
    case BL_GGUF_I32: memcpy(&u32, p, 4); kv->v.i64 = (int32_t)u32; break;
    case BL_GGUF_F32: memcpy(&f, p, 4); kv->v.f64 = f; break;
    case BL_GGUF_U64: memcpy(&u64, p, 8); kv->v.u64 = u64; break;
    case BL_GGUF_I64: memcpy(&u64, p, 8); kv->v.i64 = (int64_t)u64; break;
    case BL_GGUF_F64: memcpy(&d, p, 8); kv->v.f64 = d; break;
    default: break;
    }
}

static bl_status read_value(const char *path, gg_reader *r, bl_gguf_kv *kv, bl_err *err) {
    uint32_t t = kv->type;
    size_t sz = bl_gguf_type_size((bl_gguf_type)t);
    if (sz) {
        if (rd_left(r) < sz) goto truncated;
        decode_scalar(t, r->p + r->pos, kv);
        r->pos += sz;
        return BL_OK;
    }
    if (t == BL_GGUF_STRING) {
        if (!rd_str(r, &kv->v.str)) goto truncated;
        return BL_OK;
    }
    if (t != BL_GGUF_ARRAY)
        return bl_fail(err, BL_ERR_FORMAT, "%s: key '%s' has unknown value type %u", path, kv->key,
                       t);
    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, &et) || !rd_u64(r, &n)) goto truncated;
    kv->v.arr.type = (bl_gguf_type)et;
    kv->v.arr.n = n;
    size_t esz = bl_gguf_type_size((bl_gguf_type)et);
    if (esz) {
        if (n > rd_left(r) / esz) goto truncated;
        kv->v.arr.data = r->p + r->pos;
        r->pos += (size_t)n * esz;
        return BL_OK;
    }
    if (et != BL_GGUF_STRING)
        return bl_fail(err, BL_ERR_FORMAT, "%s: key '%s': array of type %u not supported", path,
                       kv->key, et);
    if (n > rd_left(r) / 8) goto truncated; /* every string needs at least its length field */
    kv->v.arr.strs = bl_malloc_array((size_t)n, sizeof(bl_str));
    if (!kv->v.arr.strs)
        return bl_fail(err, BL_ERR_NOMEM, "%s: key '%s': no memory for %llu strings", path,
                       kv->key, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (!rd_str(r, &kv->v.arr.strs[i])) goto truncated;
    return BL_OK;
truncated:
    return bl_fail(err, BL_ERR_FORMAT, "%s: key '%s': value runs past the end of the file", path,
                   kv->key);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First string occurring twice in v[0..n) (sorted in place), or NULL. */
static const char *find_duplicate(const char **v, size_t n) {
    qsort(v, n, sizeof *v, cmp_cstr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i - 1], v[i]) == 0) return v[i];
    return NULL;
}

static bl_status read_kvs(const char *path, gg_reader *r, bl_gguf *g, bl_err *err) {
    /* Smallest pair: empty key (8) + type (4) + one-byte value. */
    if (g->n_kv > rd_left(r) / 13)
        return bl_fail(err, BL_ERR_FORMAT, "%s: n_kv = %llu cannot fit in the file", path,
                       (unsigned long long)g->n_kv);
    g->kv = bl_calloc((size_t)g->n_kv, sizeof *g->kv);
    if (!g->kv) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        bl_gguf_kv *kv = &g->kv[i];
        bl_str k;
        uint32_t t;
        if (!rd_str(r, &k) || !rd_u32(r, &t))
            return bl_fail(err, BL_ERR_FORMAT, "%s: key/value pair %llu is truncated", path,
                           (unsigned long long)i);
        if (k.len == 0 || memchr(k.ptr, 0, (size_t)k.len))
            return bl_fail(err, BL_ERR_FORMAT, "%s: key %llu is empty or contains NUL", path,
                           (unsigned long long)i);
        if (!(kv->key = bl_strndup(k.ptr, (size_t)k.len)))
            return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
        kv->type = (bl_gguf_type)t;
        bl_status st = read_value(path, r, kv, err);
        if (st != BL_OK) return st;
    }
    const char **keys = bl_malloc_array((size_t)g->n_kv, sizeof *keys);
    if (!keys) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < g->n_kv; i++) keys[i] = g->kv[i].key;
    const char *dup = find_duplicate(keys, (size_t)g->n_kv);
    bl_status st = dup ? bl_fail(err, BL_ERR_FORMAT, "%s: key '%s' appears twice", path, dup)
                       : BL_OK;
    free(keys);
    return st;
}

static bl_status read_alignment(const char *path, bl_gguf *g, bl_err *err) {
    g->alignment = 32;
    const bl_gguf_kv *kv = bl_gguf_find(g, "general.alignment");
    if (!kv) return BL_OK;
    int64_t a;
    if (!bl_gguf_get_int(g, "general.alignment", &a) || a <= 0 || a > (1 << 24) || (a & (a - 1)))
        return bl_fail(err, BL_ERR_FORMAT, "%s: general.alignment is not a power of two", path);
    g->alignment = (size_t)a;
    return BL_OK;
}

static bool ggml_to_dtype(uint32_t t, bl_dtype *d) {
    switch (t) {
    case 0: *d = BL_DT_F32; return true;
    case 1: *d = BL_DT_F16; return true;
    case 8: *d = BL_DT_Q8_0; return true;
    case 30: *d = BL_DT_BF16; return true;
    default: return false;
    }
}

/* Reads one tensor info into t (data not yet set) and its offset. */
static bl_status read_tensor_info(const char *path, gg_reader *r, uint64_t i, bl_tensor *t,
                                  uint64_t *offset, bl_err *err) {
    bl_str name;
    uint32_t nd, type;
    memset(t, 0, sizeof *t);
    if (!rd_str(r, &name))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor info %llu is truncated", path,
                       (unsigned long long)i);
    if (name.len == 0 || name.len >= BL_MAX_NAME || memchr(name.ptr, 0, (size_t)name.len))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor %llu: name empty, too long or has NUL",
                       path, (unsigned long long)i);
    memcpy(t->name, name.ptr, (size_t)name.len);
    if (!rd_u32(r, &nd))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': info truncated", path, t->name);
    if (nd > BL_MAX_DIMS)
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': %u dimensions (max %d)", path,
                       t->name, nd, BL_MAX_DIMS);
    uint64_t ne[BL_MAX_DIMS], numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if (!rd_u64(r, &ne[d]))
            return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': info truncated", path, t->name);
        if (ne[d] > (uint64_t)INT64_MAX || (ne[d] && numel > (uint64_t)INT64_MAX / ne[d]))
            return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': bad dimension %llu", path,
                           t->name, (unsigned long long)ne[d]);
        numel *= ne[d];
    }
    if (!rd_u32(r, &type) || !rd_u64(r, offset))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': info truncated", path, t->name);
    if (!ggml_to_dtype(type, &t->dtype))
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: tensor '%s': ggml type %u not supported",
                       path, t->name, type);
    /* ggml blocks run along ne[0], so a partial block there is malformed. */
    int block = bl_dtype_info(t->dtype)->block;
    if (block > 1 && (nd == 0 || ne[0] % (uint64_t)block))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': row length not a multiple of %d",
                       path, t->name, block);
    if (!bl_dtype_nbytes(t->dtype, numel, &t->nbytes))
        return bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s': size overflows", path, t->name);
    t->ndim = (int)nd;
    for (uint32_t d = 0; d < nd; d++) t->shape[nd - 1 - d] = (int64_t)ne[d];
    return BL_OK;
}

static bl_status read_tensors(const char *path, gg_reader *r, uint64_t n, bl_gguf *g,
                              bl_err *err) {
    /* Smallest info: empty name (8) + n_dims (4) + type (4) + offset (8). */
    if (n > rd_left(r) / 24)
        return bl_fail(err, BL_ERR_FORMAT, "%s: n_tensors = %llu cannot fit in the file", path,
                       (unsigned long long)n);
    uint64_t *offs = bl_malloc_array((size_t)n, sizeof *offs);
    if (!offs) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    bl_status st = BL_OK;
    for (uint64_t i = 0; i < n && st == BL_OK; i++) {
        bl_tensor t;
        st = read_tensor_info(path, r, i, &t, &offs[i], err);
        if (st == BL_OK) st = bl_tensor_set_add(&g->tensors, &t, err);
    }
    size_t start = 0, avail = 0;
    if (st == BL_OK && bl_add_overflows(r->pos, g->alignment - 1, &start))
        st = bl_fail(err, BL_ERR_FORMAT, "%s: data section offset overflows", path);
    start &= ~(g->alignment - 1);
    avail = start < r->size ? r->size - start : 0;
    for (int i = 0; st == BL_OK && i < g->tensors.n; i++) {
        bl_tensor *t = &g->tensors.t[i];
        if (offs[i] % g->alignment || offs[i] > avail || t->nbytes > avail - offs[i])
            st = bl_fail(err, BL_ERR_FORMAT,
                         "%s: tensor '%s': offset %llu (+%zu bytes) misaligned or past the end",
                         path, t->name, (unsigned long long)offs[i], t->nbytes);
        else
            t->data = r->p + start + offs[i];
    }
    free(offs);
    if (st != BL_OK || g->tensors.n < 2) return st;
    const char **names = bl_malloc_array((size_t)g->tensors.n, sizeof *names);
    if (!names) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < g->tensors.n; i++) names[i] = g->tensors.t[i].name;
    const char *dup = find_duplicate(names, (size_t)g->tensors.n);
    if (dup) st = bl_fail(err, BL_ERR_FORMAT, "%s: tensor '%s' appears twice", path, dup);
    free(names);
    return st;
}

/* Parses the file image [data, data+size) into g (which does not own it). */
static bl_status parse(const char *path, const uint8_t *data, size_t size, bl_gguf *g,
                       bl_err *err) {
    gg_reader r = {data, size, 0};
    char magic[4];
    uint64_t n_tensors = 0;
    if (!rd_bytes(&r, magic, 4) || memcmp(magic, "GGUF", 4) != 0) {
        char what[96];
        bl_describe_content(data, size, size, what, sizeof what);
        return bl_fail(err, BL_ERR_FORMAT, "%s: not a GGUF file (%s)", path, what);
    }
    if (!rd_u32(&r, &g->version))
        return bl_fail(err, BL_ERR_FORMAT, "%s: truncated GGUF header", path);
    if (g->version != 2 && g->version != 3)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: GGUF version %u not supported (need 2 or 3)",
                       path, g->version);
    if (!rd_u64(&r, &n_tensors) || !rd_u64(&r, &g->n_kv))
        return bl_fail(err, BL_ERR_FORMAT, "%s: truncated GGUF header", path);
    bl_status st;
    if ((st = bl_tensor_set_begin_file(&g->tensors, path, err)) != BL_OK) return st;
    if ((st = read_kvs(path, &r, g, err)) != BL_OK) return st;
    if ((st = read_alignment(path, g, err)) != BL_OK) return st;
    return read_tensors(path, &r, n_tensors, g, err);
}

bl_status bl_gguf_parse(const char *path, const uint8_t *data, size_t size, bl_gguf *g,
                        bl_err *err) {
    if (!g || !path || (!data && size)) return bl_fail(err, BL_ERR_ARG, "gguf: NULL argument");
    memset(g, 0, sizeof *g);
    if (!(g->path = bl_strdup(path))) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    bl_status st = parse(path, data, size, g, err);
    if (st != BL_OK) bl_gguf_close(g);
    return st;
}

bl_status bl_gguf_open(const char *path, bl_gguf *g, bl_err *err) {
    if (!g || !path) return bl_fail(err, BL_ERR_ARG, "gguf: NULL argument");
    memset(g, 0, sizeof *g);
    bl_mmap m;
    bl_status st = bl_mmap_open(&m, path, err);
    if (st != BL_OK) return st;
    const uint8_t *data = m.data;
    size_t size = m.size;
    /* The set owns the map from here on, so every failure below is cleaned up by close. */
    if ((st = bl_tensor_set_own_map(&g->tensors, &m, err)) != BL_OK) return st;
    if (!(g->path = bl_strdup(path))) {
        st = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    } else {
        st = parse(path, data, size, g, err);
    }
    if (st != BL_OK) bl_gguf_close(g);
    return st;
}

void bl_gguf_close(bl_gguf *g) {
    if (!g) return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            if (g->kv[i].type == BL_GGUF_ARRAY) free(g->kv[i].v.arr.strs);
        }
    }
    free(g->kv);
    free(g->path);
    bl_tensor_set_free(&g->tensors);
    memset(g, 0, sizeof *g);
}

const bl_gguf_kv *bl_gguf_find(const bl_gguf *g, const char *key) {
    if (!g || !key || !g->kv) return NULL;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

bool bl_gguf_get_int(const bl_gguf *g, const char *key, int64_t *out) {
    const bl_gguf_kv *kv = bl_gguf_find(g, key);
    if (!kv || kv->type == BL_GGUF_BOOL || !bl_gguf_type_size(kv->type) || is_float(kv->type))
        return false;
    if (is_signed(kv->type)) {
        *out = kv->v.i64;
    } else {
        if (kv->v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->v.u64;
    }
    return true;
}

/* Floats also accept integer values: converters store e.g. rope_freq_base either way. */
bool bl_gguf_get_float(const bl_gguf *g, const char *key, double *out) {
    const bl_gguf_kv *kv = bl_gguf_find(g, key);
    if (!kv || kv->type == BL_GGUF_BOOL || !bl_gguf_type_size(kv->type)) return false;
    if (is_float(kv->type)) *out = kv->v.f64;
    else if (is_signed(kv->type)) *out = (double)kv->v.i64;
    else *out = (double)kv->v.u64;
    return true;
}

bool bl_gguf_get_bool(const bl_gguf *g, const char *key, bool *out) {
    const bl_gguf_kv *kv = bl_gguf_find(g, key);
    if (!kv || kv->type != BL_GGUF_BOOL) return false;
    *out = kv->v.u64 != 0;
    return true;
}

bool bl_gguf_get_str(const bl_gguf *g, const char *key, bl_str *out) {
    const bl_gguf_kv *kv = bl_gguf_find(g, key);
    if (!kv || kv->type != BL_GGUF_STRING) return false;
    *out = kv->v.str;
    return true;
}

/* Element i of a numeric array decoded through a scratch kv; false if not applicable. */
static bool arr_elem(const bl_gguf_kv *kv, uint64_t i, bl_gguf_kv *tmp) {
    if (!kv || kv->type != BL_GGUF_ARRAY || kv->v.arr.strs || i >= kv->v.arr.n) return false;
    size_t sz = bl_gguf_type_size(kv->v.arr.type);
    if (!sz) return false;
    tmp->type = kv->v.arr.type;
    decode_scalar(kv->v.arr.type, kv->v.arr.data + (size_t)i * sz, tmp);
    return true;
}

double bl_gguf_arr_float(const bl_gguf_kv *kv, uint64_t i) {
    bl_gguf_kv e;
    if (!arr_elem(kv, i, &e)) return NAN;
    if (is_float(e.type)) return e.v.f64;
    return is_signed(e.type) ? (double)e.v.i64 : (double)e.v.u64;
}

int64_t bl_gguf_arr_int(const bl_gguf_kv *kv, uint64_t i) {
    bl_gguf_kv e;
    if (!arr_elem(kv, i, &e)) return 0;
    if (is_float(e.type)) /* out-of-range float to int conversion is undefined: clamp first */
        return fabs(e.v.f64) < 9.2e18 ? (int64_t)e.v.f64
               : isnan(e.v.f64)       ? 0
               : e.v.f64 > 0          ? INT64_MAX
                                      : INT64_MIN;
    if (is_signed(e.type)) return e.v.i64;
    return e.v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)e.v.u64;
}
