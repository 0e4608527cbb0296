/* The token embeddings and the output head of a quantized checkpoint (bl_quant_opts.embed and
 * .head): kept as they are (the default, so the files of earlier releases are written byte for
 * byte as before), stored as dense F16, or fitted into a format of the registry (qsym q8_0 / q4_0
 * through its fit, whose get_row serves the embedding lookup; for the head also the 1-bit
 * formats). A quantized table is never tied: a tied model gets its head written on its own. */
#include "model/model_internal.h"
#include "ptq/ptq_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The method spec of one part; *f16 for "f16". */
static bl_status parse_part(const char *what, const char *spec, bool embed, bl_method *m,
                            bool *f16, bl_err *err) {
    *f16 = strcmp(spec, "f16") == 0;
    if (*f16) return BL_OK;
    bl_status s = bl_method_parse(spec, m, err);
    if (s) return bl_fail_context(err, s, "%s", what);
    if (embed && !m->format->get_row)
        return bl_fail(err, BL_ERR_ARG, "%s: %s has no row lookup, so it cannot hold token "
                       "embeddings (use q8_0, q4_0, another qsym spec or f16)", what, spec);
    if (!m->format->fit && !m->format->random)
        return bl_fail(err, BL_ERR_ARG, "%s: %s cannot be fitted", what, spec);
    return BL_OK;
}

bl_status ptq_edges_check(const bl_model *src, const bl_quant_opts *o, bl_err *err) {
    bl_method m;
    bool f16;
    bl_status s = BL_OK;
    if (o->embed) s = parse_part("embeddings (--embed)", o->embed, true, &m, &f16, err);
    if (!s && o->head) s = parse_part("output head (--head)", o->head, false, &m, &f16, err);
    if (!s && o->head && !f16) {
        bl_layer_fit_opts lo;
        bl_layer_fit_opts_default(&lo);
        lo.method = m;
        lo.bpw = o->bpw;
        s = bl_layer_fit_check(&lo, src->cfg.vocab_size, src->cfg.dim, "lm_head", err);
    }
    return s;
}

/* The dense f32 copy of one part of src (caller frees). */
static bl_status dense_of(const bl_model *src, bool embed, float **W, bl_err *err) {
    const bl_linear *L = embed ? (src->embed.ops ? &src->embed : NULL) : &src->output;
    if (!L) return bl_tensor_to_f32(&src->tok_embd, W, err);
    *W = malloc(sizeof(float) * (size_t)(L->m * L->n));
    if (!*W) return bl_fail(err, BL_ERR_NOMEM, "out of memory for a %lld x %lld table",
                            (long long)L->m, (long long)L->n);
    return L->ops->to_dense(L, *W, err);
}

static bl_status make_part(const bl_model *src, const bl_quant_opts *o, bool embed,
                           ptq_edges *e, bl_err *err) {
    const char *what = embed ? "embeddings (--embed)" : "output head (--head)";
    const int64_t rows = src->cfg.vocab_size, cols = src->cfg.dim;
    bl_linear *out = embed ? &e->embed : &e->head;
    bl_method m;
    bool f16;
    bl_status s = parse_part(what, embed ? o->embed : o->head, embed, &m, &f16, err);
    if (s) return s;
    float *W = NULL;
    if (f16 || !o->random_factors) s = dense_of(src, embed, &W, err);
    if (!s && f16) {
        const int k = embed ? 0 : 1;
        const size_t count = (size_t)(rows * cols);
        e->f16[k] = malloc(count * sizeof(uint16_t));
        if (!e->f16[k]) s = bl_fail(err, BL_ERR_NOMEM, "%s: out of memory", what);
        for (size_t i = 0; !s && i < count; i++) e->f16[k][i] = bl_f32_to_f16(W[i]);
        bl_tensor *t = &e->t16[k];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", embed ? "model.embed_tokens.weight" : "lm_head.weight");
        t->dtype = BL_DT_F16;
        t->ndim = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->data = e->f16[k];
        t->nbytes = count * sizeof(uint16_t);
        if (!s) s = bl_linear_dense_init(out, t, err);
    } else if (!s) {
        bl_layer_fit_opts lo;
        bl_layer_fit_opts_default(&lo);
        lo.method = m;
        lo.bpw = o->bpw;
        lo.fit = o->fit;
        lo.fit.in_importance = NULL;
        lo.fit.out_importance = NULL;
        lo.fit.H = NULL;
        lo.random_factors = o->random_factors;
        lo.n_threads = o->n_threads;
        bl_layer_fit_result res;
        s = bl_fit_layer(W, rows, cols, &lo, out, &res, err);
        if (s) bl_fail_context(err, s, "%s", what);
    }
    free(W);
    return s;
}

bl_status ptq_edges_make(const bl_model *src, const bl_quant_opts *o, ptq_edges *e,
                         bl_err *err) {
    memset(e, 0, sizeof *e);
    bl_status s = BL_OK;
    if (o->head && !(s = make_part(src, o, false, e, err))) e->parts.head = &e->head;
    if (!s && o->embed && !(s = make_part(src, o, true, e, err))) {
        /* the embedding lookup as a registry format (dense: a plain table again) */
        e->parts.embed = &e->embed;
        if (!e->parts.head && src->cfg.tied_embeddings) e->parts.head = &src->output;
    }
    return s;
}

void ptq_edges_free(ptq_edges *e) {
    bl_linear_free(&e->head);
    bl_linear_free(&e->embed);
    free(e->f16[0]);
    free(e->f16[1]);
    memset(e, 0, sizeof *e);
}
