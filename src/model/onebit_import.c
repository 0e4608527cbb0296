/* Layers of released OneBit checkpoints (xuyuzhuang11/OneBit, model_type "bitllama"): each
 * projection stores `weight` (packed signs I8/U8 {m, n/8}, bit 1 = −1, LSB first — our canonical
 * layout — or the latent FP weight {m, n} whose sign is used), `input_factor` (g, n) and
 * `weight_scale` (h, m), and always applies the parameter-free LayerNorm after the product. */
#include "model/model_internal.h"
#include "bitllm/formats/onebit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bl_status vec_f32(const bl_tensor_set *ts, const char *prefix, const char *part,
                         int64_t len, float **out, bl_err *err) {
    char name[BL_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s.%s", prefix, part);
    const bl_tensor *t = bl_tensor_set_find(ts, name);
    if (!t) return bl_fail(err, BL_ERR_FORMAT, "missing tensor %s", name);
    if (bl_tensor_numel(t) != len || (t->dtype != BL_DT_F32 && t->dtype != BL_DT_F16 &&
                                      t->dtype != BL_DT_BF16))
        return bl_fail(err, BL_ERR_FORMAT, "%s: expected a float vector of %lld elements", name,
                       (long long)len);
    return bl_tensor_to_f32(t, out, err);
}

bool bl_onebit_layer_present(const bl_tensor_set *ts, const char *prefix) {
    char name[BL_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s.input_factor", prefix);
    return bl_tensor_set_find(ts, name) != NULL;
}

bl_status bl_onebit_import_layer(const bl_tensor_set *ts, const char *prefix, int64_t m, int64_t n,
                                 bl_linear *L, bl_err *err) {
    char name[BL_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const bl_tensor *w = bl_tensor_set_find(ts, name);
    if (!w) return bl_fail(err, BL_ERR_FORMAT, "missing tensor %s", name);
    bl_onebit q = {.m = m, .n = n, .post_ln = true};
    const int64_t rb = bl_sign_row_bytes(n);
    bl_status s = BL_OK;
    if ((w->dtype == BL_DT_I8 || w->dtype == BL_DT_U8) && w->ndim == 2 && w->shape[0] == m &&
        w->shape[1] == rb) {
        /* Same bit layout (rows padded to whole bytes when n is not a multiple of 8, padding bits
         * checked to be zero): a view into the mapped file. */
        q.sign = (uint8_t *)w->data;
        q.view = true;
    } else if ((w->dtype == BL_DT_F32 || w->dtype == BL_DT_F16 || w->dtype == BL_DT_BF16) &&
               w->ndim == 2 && w->shape[0] == m && w->shape[1] == n) {
        q.sign = calloc((size_t)(m * rb), 1);
        float *row = malloc((size_t)n * sizeof(float));
        if (!q.sign || !row) {
            free(q.sign);
            free(row);
            return bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", name);
        }
        for (int64_t i = 0; i < m; i++) {
            bl_tensor_row_f32(w, i, n, row);
            for (int64_t j = 0; j < n; j++)
                if (row[j] < 0.0f) q.sign[i * rb + (j >> 3)] |= (uint8_t)(1u << (j & 7));
        }
        free(row);
    } else {
        return bl_fail(err, BL_ERR_FORMAT,
                       "%s: expected packed signs I8 [%lld, %lld] or a float weight [%lld, %lld]",
                       name, (long long)m, (long long)rb, (long long)m, (long long)n);
    }
    s = vec_f32(ts, prefix, "input_factor", n, &q.g, err);
    if (!s) s = vec_f32(ts, prefix, "weight_scale", m, &q.h, err);
    if (!s) s = bl_linear_from_onebit(L, &q, err);
    if (s) bl_onebit_free(&q);
    return s;
}
