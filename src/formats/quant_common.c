/* Shared save/load/validation helpers of the quantized formats. Every tensor a quantized layer
 * reads is checked for presence, dtype, exact shape and byte size before it is touched, and every
 * error names the full tensor name, because the caller only sees the message. */
#include "formats/quant_common.h"

#include "core/simd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bl_status bl_qc_name(char *buf, const char *prefix, const char *part, bl_err *err) {
    int len = snprintf(buf, BL_MAX_NAME, "%s.%s", prefix, part);
    if (len < 0 || len >= BL_MAX_NAME)
        return bl_fail(err, BL_ERR_ARG, "%s.%s: tensor name longer than %d bytes", prefix, part,
                       BL_MAX_NAME - 1);
    return BL_OK;
}

bool bl_qc_has(const bl_tensor_set *ts, const char *prefix, const char *part) {
    char name[BL_MAX_NAME];
    int len = snprintf(name, sizeof name, "%s.%s", prefix, part);
    return len > 0 && len < BL_MAX_NAME && bl_tensor_set_find(ts, name) != NULL;
}

static const char *dtype_name(bl_dtype t) {
    return (unsigned)t < BL_DT_COUNT ? bl_dtype_info(t)->name : "?";
}

/* "U8 [64, 22]" */
static void describe(char *buf, size_t cap, bl_dtype dt, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "%s [", dtype_name(dt));
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Finds <prefix>.<part> and checks dtype, shape and byte count exactly. */
static bl_status find_checked(const bl_tensor_set *ts, const char *prefix, const char *part,
                              bl_dtype dt, int ndim, const int64_t *shape, const bl_tensor **out,
                              bl_err *err) {
    char name[BL_MAX_NAME], want[96], got[96];
    bl_status s = bl_qc_name(name, prefix, part, err);
    if (s) return s;
    describe(want, sizeof want, dt, ndim, shape);
    const bl_tensor *t = bl_tensor_set_find(ts, name);
    if (!t) return bl_fail(err, BL_ERR_FORMAT, "%s: missing tensor (expected %s)", name, want);
    bool ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        describe(got, sizeof got, t->dtype, t->ndim < 0 || t->ndim > BL_MAX_DIMS ? 0 : t->ndim,
                 t->shape);
        return bl_fail(err, BL_ERR_FORMAT, "%s: expected %s, got %s", name, want, got);
    }
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (uint64_t)shape[i];
    size_t nbytes;
    if (!bl_dtype_nbytes(dt, numel, &nbytes) || nbytes != t->nbytes || (nbytes && !t->data))
        return bl_fail(err, BL_ERR_FORMAT, "%s: %zu bytes of data for %s", name, t->nbytes, want);
    *out = t;
    return BL_OK;
}

bl_status bl_qc_load_bits(const bl_tensor_set *ts, const char *prefix, const char *part,
                          int64_t rows, int64_t used_bits, const uint8_t **out, bl_err *err) {
    int64_t row_bytes = (used_bits + 7) / 8, shape[2] = {rows, row_bytes};
    const bl_tensor *t;
    bl_status s = find_checked(ts, prefix, part, BL_DT_U8, 2, shape, &t, err);
    if (s) return s;
    const uint8_t *bits = t->data;
    char name[BL_MAX_NAME];
    bl_qc_name(name, prefix, part, NULL);
    s = bl_qc_check_padding(bits, rows, used_bits, name, err);
    if (s) return s;
    *out = bits;
    return BL_OK;
}

bl_status bl_qc_check_padding(const uint8_t *bits, int64_t rows, int64_t used_bits,
                              const char *what, bl_err *err) {
    if (used_bits % 8 == 0) return BL_OK;
    int64_t row_bytes = (used_bits + 7) / 8;
    uint8_t pad = (uint8_t)(0xffu << (used_bits % 8));
    for (int64_t i = 0; i < rows; i++)
        if (bits[i * row_bytes + row_bytes - 1] & pad)
            return bl_fail(err, BL_ERR_FORMAT, "%s: row %lld has padding bits set (bits past %lld "
                           "must be 0)", what, (long long)i, (long long)used_bits);
    return BL_OK;
}

bl_status bl_qc_load_f16(const bl_tensor_set *ts, const char *prefix, const char *part,
                         int64_t rows, int64_t cols, float **out, bl_err *err) {
    int64_t shape[2] = {rows, cols};
    const bl_tensor *t;
    bl_status s = find_checked(ts, prefix, part, BL_DT_F16, cols ? 2 : 1, shape, &t, err);
    if (s) return s;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    float *v = bl_malloc_array(n, sizeof *v);
    if (!v) return bl_fail(err, BL_ERR_NOMEM, "%s.%s: out of memory", prefix, part);
    bl_dtype_info(BL_DT_F16)->to_f32(t->data, v, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return bl_fail(err, BL_ERR_FORMAT, "%s.%s: element %zu is not finite", prefix, part,
                           i);
        }
    *out = v;
    return BL_OK;
}

bl_status bl_qc_save_f16(bl_st_writer *w, const char *prefix, const char *part, const float *v,
                         int64_t rows, int64_t cols, bl_err *err) {
    char name[BL_MAX_NAME];
    bl_status s = bl_qc_name(name, prefix, part, err);
    if (s) return s;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    uint8_t *buf = bl_malloc_array(n, 2);
    if (!buf) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++) { /* little-endian, as safetensors requires */
        uint16_t h = bl_f32_to_f16(v[i]);
        buf[2 * i] = (uint8_t)(h & 0xff);
        buf[2 * i + 1] = (uint8_t)(h >> 8);
    }
    int64_t shape[2] = {rows, cols};
    /* Copied: the writer then owns what it needs and the layer's lifetime does not matter. */
    s = bl_st_writer_add(w, name, BL_DT_F16, cols ? 2 : 1, shape, buf, n * 2, true, err);
    free(buf);
    return s;
}

bl_status bl_qc_save_u8(bl_st_writer *w, const char *prefix, const char *part,
                        const uint8_t *bits, int64_t rows, int64_t row_bytes, bl_err *err) {
    char name[BL_MAX_NAME];
    bl_status s = bl_qc_name(name, prefix, part, err);
    if (s) return s;
    int64_t shape[2] = {rows, row_bytes};
    return bl_st_writer_add(w, name, BL_DT_U8, 2, shape, bits, (size_t)(rows * row_bytes), true,
                            err);
}

bl_status bl_qc_round_f16(float *v, int64_t n, const char *what, bl_err *err) {
    for (int64_t i = 0; i < n; i++) {
        float r = bl_round_f16(v[i]);
        if (!isfinite(r))
            return bl_fail(err, BL_ERR_NUMERIC, "%s[%lld] = %g is not finite as FP16", what,
                           (long long)i, (double)v[i]);
        v[i] = r;
    }
    return BL_OK;
}

bl_status bl_qc_need(const void *p, const char *what, bl_err *err) {
    return p ? BL_OK : bl_fail(err, BL_ERR_ARG, "%s is NULL", what);
}

bl_status bl_qc_signmat(bl_signmat *S, int64_t rows, int64_t cols, const uint8_t *bits,
                        bl_pool *pool, bl_err *err) {
    bl_signmat_init(S, rows, cols, bits);
    return bl_signmat_prepare(S, bl_cpu_best_isa(), pool, err);
}

void bl_qc_release_bits(const bl_tensor_set *ts, const bl_signmat *S) {
    if (S->packed && S->bits && S->m > 0 && S->n > 0)
        bl_tensor_set_release(ts, S->bits, (size_t)(S->m * bl_sign_row_bytes(S->n)));
}

void bl_qc_for_tokens(const bl_exec *ex, int64_t T, int64_t per_token, bl_range_fn fn, void *ctx) {
    bl_pool_for(ex ? ex->pool : NULL, T, T > 1 && T * per_token >= 32768, fn, ctx);
}

typedef struct {
    const float *x, *s;
    int64_t n;
    float *out;
} scale_ctx;

/* o[j] = x[j]·s[j], and the same in place: one rounding per element, so vector and scalar code
 * give the same bits. Two forms so that neither needs a run-time overlap check to vectorize
 * (out may be x, never overlapping it shifted). */
static void mul_to(float *restrict o, const float *restrict x, const float *restrict s,
                   int64_t n) {
    BL_SIMD
    for (int64_t j = 0; j < n; j++) o[j] = x[j] * s[j];
}

static void mul_in_place(float *restrict o, const float *restrict s, int64_t n) {
    BL_SIMD
    for (int64_t j = 0; j < n; j++) o[j] *= s[j];
}

static void scale_rows(void *ctx, int64_t t0, int64_t t1) {
    const scale_ctx *c = ctx;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = c->x + t * c->n;
        float *o = c->out + t * c->n;
        if (o == xr) mul_in_place(o, c->s, c->n);
        else mul_to(o, xr, c->s, c->n);
    }
}

void bl_qc_scale(const float *x, const float *s, int64_t T, int64_t n, float *out,
                 const bl_exec *ex) {
    scale_ctx c = {x, s, n, out};
    bl_qc_for_tokens(ex, T, n, scale_rows, &c);
}

float bl_qc_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    for (; j < n; j++) acc[j & 7] += a[j] * b[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

typedef struct {
    const void *data;
    bl_qc_dequant_fn dequant;
    int64_t m, n, T;
    const float *x;
    float *y;
} dequant_ctx;

/* Output rows [i0, i1) for every token; each row is dequantized once per chunk and used for all
 * T, so a row's result does not depend on which thread computes it. */
static void dequant_rows(void *ctx, int64_t i0, int64_t i1) {
    const dequant_ctx *c = ctx;
    const int64_t m = c->m, n = c->n, T = c->T;
    float w[BL_QC_CHUNK];
    for (int64_t i = i0; i < i1; i++) {
        for (int64_t t = 0; t < T; t++) c->y[t * m + i] = 0;
        for (int64_t j0 = 0; j0 < n; j0 += BL_QC_CHUNK) {
            int64_t len = n - j0 < BL_QC_CHUNK ? n - j0 : BL_QC_CHUNK;
            c->dequant(c->data, i, j0, len, w);
            for (int64_t t = 0; t < T; t++) c->y[t * m + i] += bl_qc_dot(w, c->x + t * n + j0, len);
        }
    }
}

void bl_qc_dequant_forward(const void *data, bl_qc_dequant_fn dequant, int64_t m, int64_t n,
                           const float *x, int64_t T, float *y, const bl_exec *ex) {
    /* threads split output rows; small products stay serial (a dispatch costs more) */
    dequant_ctx c = {data, dequant, m, n, T, x, y};
    bl_pool_for(ex ? ex->pool : NULL, m, m * n * T >= (1 << 18), dequant_rows, &c);
}
