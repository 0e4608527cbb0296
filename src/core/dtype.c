/* The element-type table: the one place an element type is registered. */
#include "bitllm/tensor.h"

#include "bitllm/pool.h"

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
 * element of [0, n), or n. A chunk is tested 8 bytes at a time with no early exit (SWAR: a lane
 * whose exponent bits are all set becomes a zero lane after (w & M) ^ M, and zero lanes are
 * detected exactly by the borrow trick), then searched element by element only when it holds
 * one (F32: see f32_nonfinite). F32 arrays run at memory speed this way; the per-element loop
 * ran at 2.5 GB/s (F16). */
#define SCAN_CHUNK 4096 /* elements */

/* Index of the first element e (width bytes each, e & mask == mask) in [0, n), or n. */
static size_t scan_elems(const uint8_t *p, size_t n, int width, uint64_t mask) {
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        memcpy(&v, p + i * (size_t)width, (size_t)width); /* little-endian host, as everywhere */
        if ((v & mask) == mask) return i;
    }
    return n;
}

/* Lanes of width bytes: M repeats the exponent mask in every lane, L has 1 in the lowest bit of
 * every lane, H the highest bit. */
static size_t scan_swar(const void *src, size_t n, int width, uint64_t M, uint64_t L, uint64_t H) {
    const uint8_t *p = src;
    const size_t per_word = 8 / (size_t)width;
    const uint64_t lane = M & ((1ull << (8 * width)) - 1); /* the mask of one element */
    for (size_t c0 = 0; c0 < n; c0 += SCAN_CHUNK) {
        size_t len = n - c0 < SCAN_CHUNK ? n - c0 : SCAN_CHUNK, words = len / per_word;
        const uint8_t *c = p + c0 * (size_t)width;
        uint64_t any = 0;
        for (size_t w = 0; w < words; w++) {
            uint64_t v;
            memcpy(&v, c + 8 * w, 8);
            uint64_t z = (v & M) ^ M; /* a zero lane: exponent all ones */
            any |= (z - L) & ~z & H;
        }
        size_t tail = words * per_word;
        if (!any && scan_elems(c + tail * (size_t)width, len - tail, width, lane) == len - tail)
            continue;
        size_t i = scan_elems(c, len, width, lane);
        if (i < len) return c0 + i;
    }
    return n;
}

/* F32: the exponent test of eight elements a step, as straight-line code the compiler vectorizes
 * (four lanes at the baseline ISA against SWAR's two, and no borrow trick: 0.15 against 1.2 µs
 * for 4096 floats in L1, 4.5 against 9.7 µs for 32000), then the element search only in a chunk
 * that holds one. */
static size_t f32_nonfinite(const void *src, size_t n) {
    const uint8_t *p = src;
    for (size_t c0 = 0; c0 < n; c0 += SCAN_CHUNK) {
        const size_t len = n - c0 < SCAN_CHUNK ? n - c0 : SCAN_CHUNK;
        const uint8_t *c = p + 4 * c0;
        uint32_t bad = 0;
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
            uint32_t b[8];
            memcpy(b, c + 4 * i, sizeof b);
            for (int k = 0; k < 8; k++) bad |= (b[k] & 0x7f800000u) == 0x7f800000u;
        }
        for (; i < len; i++) {
            uint32_t b;
            memcpy(&b, c + 4 * i, sizeof b);
            bad |= (b & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return c0 + scan_elems(c, len, 4, 0x7f800000u);
    }
    return n;
}
static size_t f16_nonfinite(const void *src, size_t n) {
    return scan_swar(src, n, 2, 0x7c007c007c007c00ull, 0x0001000100010001ull,
                     0x8000800080008000ull);
}
static size_t bf16_nonfinite(const void *src, size_t n) {
    return scan_swar(src, n, 2, 0x7f807f807f807f80ull, 0x0001000100010001ull,
                     0x8000800080008000ull);
}
static size_t f64_nonfinite(const void *src, size_t n) {
    return scan_elems(src, n, 8, 0x7ff0000000000000ull);
}
/* Q8_0: only the f16 scale at the start of each 34-byte block can be non-finite; the first
 * element of the block is reported. */
static size_t q8_0_nonfinite(const void *src, size_t n) {
    const uint8_t *p = src;
    for (size_t b = 0; b < n / 32; b++) {
        uint16_t h;
        memcpy(&h, p + 34 * b, 2);
        if ((h & 0x7c00u) == 0x7c00u) return 32 * b;
    }
    return n;
}

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

typedef struct {
    const bl_dtype_traits *tr;
    const uint8_t *data;
    size_t n, per;            /* elements, elements per piece */
    size_t first[BL_POOL_MAX_THREADS]; /* per thread: its lowest hit, or n */
} scan_job;

/* Thread ith scans its contiguous range of pieces (whole blocks each), lowest hit first. */
static void scan_pieces(void *ctx, int ith, int nth) {
    scan_job *j = ctx;
    const int64_t pieces = (int64_t)((j->n + j->per - 1) / j->per);
    int64_t p0, p1;
    bl_split_range(pieces, ith, nth, &p0, &p1);
    j->first[ith] = j->n;
    for (int64_t p = p0; p < p1; p++) {
        const size_t a = (size_t)p * j->per, len = j->n - a < j->per ? j->n - a : j->per;
        const size_t off = a / (size_t)j->tr->block * (size_t)j->tr->block_bytes;
        const size_t i = j->tr->find_nonfinite(j->data + off, len);
        if (i < len) {
            j->first[ith] = a + i;
            return;
        }
    }
}

bool bl_tensor_find_nonfinite(const bl_tensor *t, bl_pool *pool, int64_t *index) {
    const bl_dtype_traits *tr = bl_dtype_info(t->dtype);
    if (!tr || !tr->find_nonfinite || !t->data) return false;
    scan_job *j = malloc(sizeof *j);
    const size_t n = (size_t)bl_tensor_numel(t), per = (size_t)1 << 22; /* elements per piece */
    size_t first = n;
    if (!j) { /* the whole scan on this thread */
        first = tr->find_nonfinite(t->data, n);
    } else {
        *j = (scan_job){.tr = tr, .data = t->data, .n = n, .per = per};
        for (int k = 0; k < BL_POOL_MAX_THREADS; k++) j->first[k] = n; /* threads that do not run */
        bl_pool_run_n(pool, n > per ? BL_POOL_MAX_THREADS : 1, scan_pieces, j);
        for (int k = 0; k < BL_POOL_MAX_THREADS; k++)
            if (j->first[k] < first) first = j->first[k];
        free(j);
    }
    if (first >= n) return false;
    *index = (int64_t)first;
    return true;
}
