/* NumPy .npy arrays (format versions 1.0, 2.0 and 3.0): a magic string, a version, a header
 * length, then a Python dict literal such as {'descr': '<f4', 'fortran_order': False,
 * 'shape': (3, 4), } padded with spaces to a multiple of 64 bytes, then the raw data.
 *
 * The parser works on a memory image (bl_npy_parse), so the same code reads files and serves a
 * fuzzer. It accepts exactly the three keys, in any order, little-endian (or byte-order-free)
 * float16 / float32 / float64 and 8- to 64-bit integers, C or Fortran order, any number of
 * dimensions up to BL_MAX_DIMS, and requires the data to fill the rest of the image exactly. */
#include "bitllm/io.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string ('...' or "...") without escapes into buf. */
static bool quoted(cursor *c, char *buf, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return false;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    buf[n] = 0;
    return true;
}

static bool word(cursor *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

/* (d0, d1, ...) with an optional trailing comma; () is a scalar. */
static bool shape_tuple(cursor *c, bl_npy_header *h) {
    if (!eat(c, '(')) return false;
    h->ndim = 0;
    for (;;) {
        if (eat(c, ')')) return true;
        skip_ws(c);
        if (c->p >= c->end || !isdigit((unsigned char)*c->p) || h->ndim == BL_MAX_DIMS) return false;
        uint64_t v = 0;
        while (c->p < c->end && isdigit((unsigned char)*c->p)) {
            v = v * 10 + (uint64_t)(*c->p++ - '0');
            if (v > (uint64_t)INT64_MAX / 16) return false;
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
        h->shape[h->ndim++] = (int64_t)v;
        if (!eat(c, ',')) return eat(c, ')');
    }
}

static bl_status bad(bl_err *err, const char *what, const char *msg) {
    return bl_fail(err, BL_ERR_FORMAT, "%s: not a valid .npy array: %s", what, msg);
}

bl_status bl_npy_parse(const void *image, size_t len, const char *what, bl_npy_header *h,
                       bl_err *err) {
    const uint8_t *b = image;
    memset(h, 0, sizeof *h);
    if (!what) what = "(memory)";
    if (!b || len < 10 || memcmp(b, MAGIC, 6) != 0) return bad(err, what, "no \\x93NUMPY magic");
    const int major = b[6], minor = b[7];
    size_t hlen, pre;
    if (major == 1 && minor == 0) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        pre = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (len < 12) return bad(err, what, "truncated header length");
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        pre = 12;
    } else {
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: .npy format version %d.%d is not supported",
                       what, major, minor);
    }
    if (hlen > len - pre) return bad(err, what, "header longer than the file");
    cursor c = {(const char *)b + pre, (const char *)b + pre + hlen};
    bool have_descr = false, have_order = false, have_shape = false;
    char key[32], descr[32];
    if (!eat(&c, '{')) return bad(err, what, "header is not a dict");
    while (!eat(&c, '}')) {
        if (!quoted(&c, key, sizeof key) || !eat(&c, ':'))
            return bad(err, what, "malformed header dict");
        if (!strcmp(key, "descr") && !have_descr) {
            if (!quoted(&c, descr, sizeof descr)) return bad(err, what, "'descr' is not a string");
            have_descr = true;
        } else if (!strcmp(key, "fortran_order") && !have_order) {
            if (word(&c, "True")) h->fortran_order = true;
            else if (word(&c, "False")) h->fortran_order = false;
            else return bad(err, what, "'fortran_order' is not True or False");
            have_order = true;
        } else if (!strcmp(key, "shape") && !have_shape) {
            if (!shape_tuple(&c, h)) return bad(err, what, "'shape' is not a tuple of sizes");
            have_shape = true;
        } else {
            return bad(err, what, "unknown or repeated key in the header");
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return bad(err, what, "malformed header dict");
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return bad(err, what, "header lacks 'descr', 'fortran_order' or 'shape'");
    skip_ws(&c);
    if (c.p != c.end) return bad(err, what, "text after the header dict");
    /* '<' little-endian, '|' or '=' no byte order / native (this library is little-endian only) */
    if (descr[0] != '<' && descr[0] != '|' && descr[0] != '=')
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: .npy dtype '%s' is not little-endian", what,
                       descr);
    static const struct {
        const char *code;
        char kind;
        int size;
        bl_dtype dt;
    } types[] = {
        {"f2", 'f', 2, BL_DT_F16},   {"f4", 'f', 4, BL_DT_F32},   {"f8", 'f', 8, BL_DT_F64},
        {"i1", 'i', 1, BL_DT_I8},    {"i2", 'i', 2, BL_DT_COUNT}, {"i4", 'i', 4, BL_DT_I32},
        {"i8", 'i', 8, BL_DT_I64},   {"u1", 'u', 1, BL_DT_U8},    {"u2", 'u', 2, BL_DT_COUNT},
        {"u4", 'u', 4, BL_DT_COUNT}, {"u8", 'u', 8, BL_DT_COUNT},
    };
    size_t t = 0;
    while (t < sizeof types / sizeof types[0] && strcmp(descr + 1, types[t].code) != 0) t++;
    if (t == sizeof types / sizeof types[0])
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "%s: .npy dtype '%s' is neither a float (16, 32 or 64 bits) nor an integer",
                       what, descr);
    memcpy(h->descr, descr, 4); /* the byte order, the letter, the size and NUL */
    h->kind = types[t].kind;
    h->itemsize = types[t].size;
    h->dtype = types[t].dt;
    uint64_t numel = 1;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] != 0 && numel > UINT64_MAX / (uint64_t)h->shape[i])
            return bad(err, what, "shape overflows");
        numel *= (uint64_t)h->shape[i];
    }
    if (numel > SIZE_MAX / (size_t)h->itemsize) return bad(err, what, "shape overflows");
    const size_t nbytes = (size_t)numel * (size_t)h->itemsize;
    h->numel = numel;
    h->data_offset = pre + hlen;
    h->nbytes = nbytes;
    if (nbytes != len - h->data_offset)
        return bl_fail(err, BL_ERR_FORMAT, "%s: .npy data is %zu bytes, the shape needs %zu", what,
                       len - h->data_offset, nbytes);
    return BL_OK;
}

bl_status bl_npy_to_f32(const void *image, size_t len, const char *what, float **out,
                        bl_npy_header *h, bl_err *err) {
    *out = NULL;
    bl_status s = bl_npy_parse(image, len, what, h, err);
    if (s) return s;
    if (h->kind != 'f')
        return bl_fail(err, BL_ERR_UNSUPPORTED,
                       "%s: .npy dtype '%s' is not float16, float32 or float64", what, h->descr);
    float *f = malloc(sizeof(float) * (h->numel ? h->numel : 1));
    if (!f) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory for %llu values", what,
                           (unsigned long long)h->numel);
    const uint8_t *d = (const uint8_t *)image + h->data_offset;
    for (uint64_t i = 0; i < h->numel; i++) { /* unaligned-safe element copies */
        if (h->dtype == BL_DT_F16) {
            uint16_t v;
            memcpy(&v, d + 2 * i, 2);
            f[i] = bl_f16_to_f32(v);
        } else if (h->dtype == BL_DT_F32) {
            memcpy(&f[i], d + 4 * i, 4);
        } else {
            double v;
            memcpy(&v, d + 8 * i, 8);
            f[i] = (float)v;
        }
    }
    if (h->fortran_order && h->ndim >= 2) { /* column-major → row-major */
        float *t = malloc(sizeof(float) * (h->numel ? h->numel : 1));
        if (!t) {
            free(f);
            return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", what);
        }
        /* element with row-major index (i0, ..., ik) sits at Fortran offset Σ i_j·Π_{l<j} d_l */
        int64_t idx[BL_MAX_DIMS] = {0};
        for (uint64_t r = 0; r < h->numel; r++) {
            uint64_t off = 0, stride = 1;
            for (int j = 0; j < h->ndim; j++) {
                off += (uint64_t)idx[j] * stride;
                stride *= (uint64_t)h->shape[j];
            }
            t[r] = f[off];
            for (int j = h->ndim - 1; j >= 0; j--) {
                if (++idx[j] < h->shape[j]) break;
                idx[j] = 0;
            }
        }
        free(f);
        f = t;
    }
    *out = f;
    return BL_OK;
}

bl_status bl_npy_read_f32(const char *path, float **out, bl_npy_header *h, bl_err *err) {
    *out = NULL;
    bl_mmap m;
    bl_status s = bl_mmap_open(&m, path, err);
    if (s) return s;
    s = bl_npy_to_f32(m.data, m.size, path, out, h, err);
    bl_mmap_close(&m);
    return s;
}

bl_status bl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                           bl_err *err) {
    if (ndim < 0 || ndim > BL_MAX_DIMS || (ndim > 0 && !shape))
        return bl_fail(err, BL_ERR_ARG, "%s: bad array rank %d", path, ndim);
    char dict[256], dims[160] = "";
    uint64_t numel = 1;
    size_t dl = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return bl_fail(err, BL_ERR_ARG, "%s: negative dimension", path);
        numel *= (uint64_t)shape[i];
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%lld,%s", (long long)shape[i],
                               i + 1 < ndim ? " " : "");
    }
    if (ndim > 1) dims[dl - 1] = 0; /* (3, 4) but (5,) */
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     dims);
    /* magic + version + 2-byte length + dict + spaces + '\n' = a multiple of 64 */
    size_t hlen = ((size_t)n + 1 + 10 + 63) / 64 * 64 - 10;
    size_t total = 10 + hlen + (size_t)numel * sizeof(float);
    uint8_t *buf = malloc(total);
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, MAGIC, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', hlen - (size_t)n - 1);
    buf[10 + hlen - 1] = '\n';
    if (numel) memcpy(buf + 10 + hlen, data, (size_t)numel * sizeof(float));
    bl_status s = bl_write_file_atomic(path, buf, total, err);
    free(buf);
    return s;
}
