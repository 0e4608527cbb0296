/* What the training engine does with any trainable format through its entry (nn_format, one
 * file src/nn/linear_<name>.h each, listed in linear_impl.h): the lookup of a layer's entry
 * through the registry (nn_format_of, never by comparing names), the layer's method as the
 * engine lays it out, and import and export through the format's tensor table
 * (src/formats/layer.c). */
#include "nn/nn_build.h"

#include <stdlib.h>
#include <string.h>

const nn_format *nn_format_of(const bl_format_ops *f) {
    for (int k = 0; f && k < nn_n_formats; k++)
        if (bl_format_find(nn_formats[k]->format) == f) return nn_formats[k];
    return NULL;
}

bl_status nn_method_spec(const bl_method *m, const nn_build_opts *o, bl_method *sp,
                         bl_err *err) {
    const nn_format *e = nn_format_of(m->format);
    if (!e)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s: the training engine has no entry for it",
                       m->format ? m->format->name : "?");
    *sp = *m;
    if (e->apply_opts) e->apply_opts(&sp->params, o);
    return BL_OK;
}

bool nn_linear_is_dense(const nn_linear *L) { return bl_format_is_dense(L->format); }

/* ---- import and export through the format's tensor table ---- */

typedef struct {
    const nn_linear *L;
    float *P;      /* import: written; export: read */
    int sign;      /* the next sign matrix */
    bool to_nn;
} part_copy;

/* Where the F16 tensor of ref lives in the nn layout, or NN_NONE when it has no place. */
static size_t part_offset(const nn_linear *L, const bl_format_tensor_ref *ref) {
    const nn_format *e = L->fmt;
    for (int i = 0; i < e->n_parts; i++)
        if (strcmp(e->parts[i].part, ref->t->part) == 0) {
            const size_t base = L->part[i];
            if (base == NN_NONE) return NN_NONE;
            return base + (size_t)ref->repeat * (size_t)(ref->rows * (ref->cols ? ref->cols : 1));
        }
    return NN_NONE;
}

static bl_status copy_part(const bl_format_tensor_ref *ref, void *ctx, bl_err *err) {
    part_copy *c = ctx;
    const nn_linear *L = c->L;
    if (ref->t->kind == BL_FT_SIGNS) {
        if (c->sign >= L->n_signs || L->S[c->sign].rows != ref->rows ||
            L->S[c->sign].cols != ref->cols)
            return bl_fail(err, BL_ERR_FORMAT, "%s %s: no sign matrix of its shape in the training "
                           "engine's layout", L->format->name, ref->part);
        nn_signs *S = &L->S[c->sign++];
        if (c->to_nn) memcpy(S->bits, ref->buf, ref->bytes);
        else memcpy(ref->buf, S->bits, ref->bytes);
        return BL_OK;
    }
    const size_t off = ref->t->kind == BL_FT_F16 ? part_offset(L, ref) : NN_NONE;
    if (off == NN_NONE)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s %s: the training engine has no tensor for it",
                       L->format->name, ref->part);
    if (c->to_nn) memcpy(c->P + off, ref->buf, ref->bytes);
    else memcpy(ref->buf, c->P + off, ref->bytes);
    return BL_OK;
}

bl_status nn_linear_import(const bl_linear *BL, const nn_linear *L, const nn_build_opts *o,
                           float *P, bl_err *err) {
    if (BL->ops != L->format || BL->m != L->m || BL->n != L->n)
        return bl_fail(err, BL_ERR_ARG, "%s layer %lld×%lld imported into a %s layer %lld×%lld",
                       BL->ops->name, (long long)BL->m, (long long)BL->n, L->format->name,
                       (long long)L->m, (long long)L->n);
    if (!L->fmt->parts) return BL->ops->to_dense(BL, P + L->w, err);
    part_copy c = {.L = L, .P = P, .to_nn = true};
    bl_status s = bl_format_data_each(BL->ops, BL->ops->data(BL), copy_part, &c, err);
    if (!s && c.sign != L->n_signs)
        s = bl_fail(err, BL_ERR_FORMAT, "%s: %d sign matrices imported, the layout has %d",
                    L->format->name, c.sign, L->n_signs);
    if (!s && L->fmt->imported) s = L->fmt->imported(L, o, P, err);
    return s;
}

bl_status nn_linear_export(const nn_linear *L, const float *P, bl_linear *out, bl_err *err) {
    const bl_format_ops *f = L->format;
    if (!L->fmt->parts)
        return bl_fail(err, BL_ERR_UNSUPPORTED, "%s layers are exported as views of their weight",
                       f->name);
    void *data = malloc(f->data_size);
    if (!data) return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    bl_status s = bl_format_data_alloc(f, L->m, L->n, &L->params, data, err);
    if (!s) {
        part_copy c = {.L = L, .P = (float *)P, .to_nn = false}; /* only read */
        s = bl_format_data_each(f, data, copy_part, &c, err);
        if (!s) s = bl_linear_from_data(out, f, data, err);
        if (s) bl_format_data_free(f, data); /* a layer that took the buffers zeroed data */
    }
    free(data);
    return s;
}
