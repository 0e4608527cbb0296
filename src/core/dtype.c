/* The element-type table: the one place an element type is registered. */
#include "bitllm/tensor.h"

#include <stdlib.h>
#include <string.h>

static void f32_to_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * 4); }

static void f16_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = bl_f16_to_f32(h);
    }
}

static void bf16_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = bl_bf16_to_f32(h);
    }
}

static void q8_0_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t b = 0; b < n / 32; b++, p += 34) {
        uint16_t h;
        memcpy(&h, p, 2);
        float d = bl_f16_to_f32(h);
        for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * (float)(int8_t)p[2 + j];
    }
}

static void u8_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
}

static void i8_to_f32(const void *src, float *dst, size_t n) {
    const int8_t *p = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
}

static void i32_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        dst[i] = (float)v;
    }
}

static void i64_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
    }
}

static void f64_to_f32(const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
    }
}

/* Non-finite scans: the exponent field all ones means Inf or NaN. Each returns the first such
 * element of [0, n), or n. A chunk is first tested without an early exit (so the loop
 * vectorizes), then searched only when it holds one. */
#define SCAN_CHUNK 4096
#define DEFINE_SCAN(fn, utype, width, expmask, step, elems)                                    \
    static size_t fn(const void *src, size_t n) {                                              \
        const uint8_t *p = src;                                                                \
        size_t nb = n / (elems);                                                               \
        for (size_t c0 = 0; c0 < nb; c0 += SCAN_CHUNK) {                                       \
            size_t c1 = nb - c0 < SCAN_CHUNK ? nb : c0 + SCAN_CHUNK;                           \
            int any = 0;                                                                       \
            for (size_t i = c0; i < c1; i++) {                                                 \
                utype v;                                                                       \
                memcpy(&v, p + i * (step), width);                                             \
                any |= (v & (expmask)) == (expmask);                                           \
            }                                                                                  \
            if (!any) continue;                                                                \
            for (size_t i = c0; i < c1; i++) {                                                 \
                utype v;                                                                       \
                memcpy(&v, p + i * (step), width);                                             \
                if ((v & (expmask)) == (expmask)) return i * (elems);                          \
            }                                                                                  \
        }                                                                                      \
        return n;                                                                              \
    }
DEFINE_SCAN(f32_nonfinite, uint32_t, 4, 0x7f800000u, 4, 1)
DEFINE_SCAN(f16_nonfinite, uint16_t, 2, 0x7c00u, 2, 1)
DEFINE_SCAN(bf16_nonfinite, uint16_t, 2, 0x7f80u, 2, 1)
DEFINE_SCAN(f64_nonfinite, uint64_t, 8, 0x7ff0000000000000ull, 8, 1)
/* Q8_0: only the f16 scale of each 34-byte block can be non-finite; its block's first element
 * is reported. */
DEFINE_SCAN(q8_0_nonfinite, uint16_t, 2, 0x7c00u, 34, 32)

static const bl_dtype_traits dtype_table[BL_DT_COUNT] = {
    [BL_DT_F32] = {.name = "F32", .block = 1, .block_bytes = 4, .to_f32 = f32_to_f32,
                   .find_nonfinite = f32_nonfinite},
    [BL_DT_F16] = {.name = "F16", .block = 1, .block_bytes = 2, .to_f32 = f16_to_f32,
                   .find_nonfinite = f16_nonfinite},
    [BL_DT_BF16] = {.name = "BF16", .block = 1, .block_bytes = 2, .to_f32 = bf16_to_f32,
                    .find_nonfinite = bf16_nonfinite},
    [BL_DT_Q8_0] = {.name = "Q8_0", .block = 32, .block_bytes = 34, .to_f32 = q8_0_to_f32,
                    .find_nonfinite = q8_0_nonfinite},
    [BL_DT_U8] = {.name = "U8", .block = 1, .block_bytes = 1, .to_f32 = u8_to_f32},
    [BL_DT_I8] = {.name = "I8", .block = 1, .block_bytes = 1, .to_f32 = i8_to_f32},
    [BL_DT_I32] = {.name = "I32", .block = 1, .block_bytes = 4, .to_f32 = i32_to_f32},
    [BL_DT_I64] = {.name = "I64", .block = 1, .block_bytes = 8, .to_f32 = i64_to_f32},
    [BL_DT_F64] = {.name = "F64", .block = 1, .block_bytes = 8, .to_f32 = f64_to_f32,
                   .find_nonfinite = f64_nonfinite},
};

const bl_dtype_traits *bl_dtype_info(bl_dtype t) {
    if ((int)t < 0 || t >= BL_DT_COUNT) return NULL;
    return &dtype_table[t];
}

bool bl_dtype_from_name(const char *name, bl_dtype *out) {
    for (int i = 0; i < BL_DT_COUNT; i++) {
        if (strcmp(dtype_table[i].name, name) == 0) {
            *out = (bl_dtype)i;
            return true;
        }
    }
    return false;
}

bool bl_dtype_nbytes(bl_dtype t, uint64_t n, size_t *out) {
    const bl_dtype_traits *tr = bl_dtype_info(t);
    if (!tr || n % (uint64_t)tr->block) return false;
    uint64_t blocks = n / (uint64_t)tr->block;
    if (blocks > SIZE_MAX / (uint64_t)tr->block_bytes) return false;
    *out = (size_t)(blocks * (uint64_t)tr->block_bytes);
    return true;
}

int64_t bl_tensor_numel(const bl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void bl_tensor_row_f32(const bl_tensor *t, int64_t r, int64_t cols, float *dst) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    size_t off = (size_t)(r * cols / tr->block) * (size_t)tr->block_bytes;
    tr->to_f32((const uint8_t *)t->data + off, dst, (size_t)cols);
}

bl_status bl_tensor_to_f32(const bl_tensor *t, float **out, bl_err *err) {
    int64_t n = bl_tensor_numel(t);
    float *buf = bl_malloc_array((size_t)n, sizeof(float));
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "%s: cannot allocate %lld floats", t->name,
                             (long long)n);
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    if (!tr || !tr->to_f32) {
        free(buf);
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: dtype not convertible to f32", t->name);
    }
    tr->to_f32(t->data, buf, (size_t)n);
    *out = buf;
    return BL_OK;
}

bool bl_tensor_find_nonfinite(const bl_tensor *t, int64_t *index) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    if (!tr || !tr->find_nonfinite || !t->data) return false;
    const size_t n = (size_t)bl_tensor_numel(t), per = (size_t)1 << 22; /* elements per task */
    size_t first = n;
    /* Large tensors are scanned in parallel pieces (whole blocks each); the lowest hit wins. */
#pragma omp parallel for schedule(dynamic, 1) reduction(min : first) if (n > per)
    for (size_t a = 0; a < n; a += per) {
        size_t len = n - a < per ? n - a : per;
        size_t off = a / (size_t)tr->block * (size_t)tr->block_bytes;
        size_t i = tr->find_nonfinite((const uint8_t *)t->data + off, len);
        if (i < len && a + i < first) first = a + i;
    }
    if (first == n) return false;
    *index = (int64_t)first;
    return true;
}
