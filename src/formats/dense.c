/* Dense weights (F32, F16 or BF16) straight from the checkpoint, computed in f32.
 *
 * F16/BF16 stay in their storage type (half the memory) and go to the fused 16-bit kernels
 * (bl_half_matmul), which widen each row in registers: no converted copy, memory speed at
 * decode. Measured at 4096×4096 on one core, they also beat converting to f32 and calling sgemm
 * at every batch size tried (T = 8..256: 2.5-4 ms vs 6-84 ms for the sgemm alone), so there is
 * no second path for prompts. F32 goes through the same kernels (bl_f32_matmul) rather than
 * BLAS: each output row then depends on its own input row only, so a sequence decoded in a
 * batch with others gets bit-identical results to decoding it alone (BLAS gemv and gemm differ
 * in their rounding). */
#include "formats/formats_internal.h"

#include "bitllm/kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bl_tensor w; /* view, m×n */
    float *owned; /* when the checkpoint dtype had to be converted (e.g. Q8_0) */
} dense_impl;

static int dtype_bits(bl_dtype t) {
    return t == BL_DT_F32 ? 32 : 16;
}

static uint64_t dense_stored_bits(int64_t m, int64_t n, const bl_format_params *p) {
    return (uint64_t)m * (uint64_t)n * (uint64_t)(p->bits ? p->bits : 32);
}

static size_t dense_workspace(const bl_linear *L, int64_t T) {
    (void)L, (void)T;
    return 0;
}

static void dense_forward(const bl_linear *L, const float *x, int64_t T, float *y, float *work,
                          const bl_exec *ex) {
    (void)work;
    const dense_impl *d = L->impl;
    const int64_t m = L->m, n = L->n;
    if (d->w.dtype == BL_DT_F32) bl_f32_matmul(d->w.data, m, n, x, T, y, ex);
    else bl_half_matmul(d->w.dtype, d->w.data, m, n, x, T, y, ex);
}

static bl_status dense_to_dense(const bl_linear *L, float *W, bl_err *err) {
    const dense_impl *d = L->impl;
    if (d->w.dtype == BL_DT_F32) memcpy(W, d->w.data, (size_t)(L->m * L->n) * sizeof(float));
    else bl_half_to_f32(d->w.dtype, d->w.data, W, (size_t)(L->m * L->n));
    return BL_OK;
}

static bl_status dense_save(const bl_linear *L, const char *prefix, bl_st_writer *w,
                            bl_err *err) {
    const dense_impl *d = L->impl;
    char name[BL_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int64_t shape[2] = {L->m, L->n};
    return bl_st_writer_add(w, name, d->w.dtype, 2, shape, d->w.data, d->w.nbytes, false, err);
}

static bl_status dense_load(bl_linear *L, const char *prefix, const bl_tensor_set *ts,
                            bl_err *err) {
    char name[BL_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bl_tensor *t = bl_tensor_set_find(ts, name);
    if (!t) return bl_fail(err, BL_ERR_FORMAT, "missing tensor %s", name);
    if (t->ndim != 2 || t->shape[0] != L->m || t->shape[1] != L->n)
        return bl_fail(err, BL_ERR_FORMAT, "%s: expected shape [%lld, %lld]", name,
                       (long long)L->m, (long long)L->n);
    return bl_linear_dense_init(L, t, err);
}

static void dense_free(bl_linear *L) {
    dense_impl *d = L->impl;
    if (!d) return;
    free(d->owned);
    free(d);
}

const bl_format_ops bl_format_dense = {
    .name = "dense",
    .desc = "F32 / F16 / BF16 weights as stored in the checkpoint (not fitted)",
    .trainable = true,
    .stored_bits = dense_stored_bits,
    .forward = dense_forward,
    .workspace_floats = dense_workspace,
    .to_dense = dense_to_dense,
    .save = dense_save,
    .load = dense_load,
    .free_impl = dense_free,
    .forward_tol = 1e-5,
};

bl_status bl_linear_dense_init(bl_linear *L, const bl_tensor *w, bl_err *err) {
    if (w->ndim != 2)
        return bl_fail(err, BL_ERR_FORMAT, "%s: expected a 2-D weight, got %d dims", w->name,
                       w->ndim);
    dense_impl *d = calloc(1, sizeof *d);
    if (!d) return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", w->name);
    d->w = *w;
    if (w->dtype != BL_DT_F32 && w->dtype != BL_DT_F16 && w->dtype != BL_DT_BF16) {
        /* Other numeric types (e.g. GGUF Q8_0) are dequantized once at load. */
        bl_status s = bl_tensor_to_f32(w, &d->owned, err);
        if (s) {
            free(d);
            return s;
        }
        d->w.dtype = BL_DT_F32;
        d->w.data = d->owned;
        d->w.nbytes = (size_t)(w->shape[0] * w->shape[1]) * 4;
    }
    L->ops = &bl_format_dense;
    L->m = w->shape[0];
    L->n = w->shape[1];
    memset(&L->params, 0, sizeof L->params);
    L->params.bits = dtype_bits(d->w.dtype);
    L->impl = d;
    return BL_OK;
}

bool bl_linear_dense_bytes(const bl_linear *L, const void **data, size_t *nbytes) {
    if (L->ops != &bl_format_dense) return false;
    const dense_impl *d = L->impl;
    *data = d->w.data;
    *nbytes = d->w.nbytes;
    return true;
}
