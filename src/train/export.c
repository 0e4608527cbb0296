/* The trained student as a normal model directory. The binary layers are rebuilt as format
 * layers from the training state by their nn_formats entry (the current signs, or the sign of
 * the latent weights, and the trained vectors and envelopes; the vectors are rounded to FP16 on
 * the way, as every format stores them), and a shallow copy of the source model whose norms, biases and, when
 * trained, embeddings and head point into the f32 parameter buffer is written by bl_model_save.
 * Frozen embeddings and heads keep their original tensors and dtype. */
#include "bitllm/quantize.h"
#include "train/train_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool trainable(const nn_model *M, size_t off) {
    for (int i = 0; i < M->n_t; i++)
        if (M->t[i].off == off) return M->t[i].trainable;
    return false;
}

/* A dense F32 view of a parameter tensor (rows×cols). */
static bl_tensor view_of(const float *P, size_t off, int64_t rows, int64_t cols, const char *name) {
    bl_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = BL_DT_F32;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.data = P + off;
    t.nbytes = (size_t)(rows * cols) * sizeof(float);
    return t;
}

bl_status tr_export(const nn_model *M, const float *P, const bl_model *src, const char *outdir,
                    const char *method, const char *extra_json, bl_err *err) {
    const bl_config *c = &src->cfg;
    const int total = c->n_layers * BL_PROJ_COUNT;
    bl_model sh = *src; /* shallow: tokenizer, paths and mapped tensors stay the source's */
    sh.layers = calloc((size_t)c->n_layers, sizeof *sh.layers);
    bl_tensor *views = calloc((size_t)total + 2, sizeof *views);
    bool *made = calloc((size_t)total + 1, sizeof *made); /* linears owned here */
    bl_status s = sh.layers && views && made ? BL_OK
                                             : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    float *Pm = (float *)P; /* the model struct has non-const pointers; nothing writes them */
    nn_model *Mm = (nn_model *)M; /* the slots are only read */
    for (int l = 0; l < c->n_layers && !s; l++) sh.layers[l] = src->layers[l];
    for (bl_arch_iter it = {0}; !s && bl_arch_next(c, &it);) {
        const bl_arch_tensor *t = it.t;
        const int l = it.layer;
        if (t->kind == BL_TK_VECTOR) {
            *bl_arch_vector_slot(&sh, t, l) = Pm + *nn_vector_slot(Mm, t, l);
            continue;
        }
        if (t->kind != BL_TK_LINEAR || !t->per_layer) continue;
        const nn_linear *L = &M->layers[l].proj[t->proj];
        bl_linear *out = bl_arch_linear_slot(&sh, t, l);
        const int i7 = l * BL_PROJ_COUNT + t->proj;
        if (!nn_linear_is_dense(L)) {
            s = nn_linear_export(L, P, out, err);
        } else { /* dense: a view of the trained weights, or the source's own layer */
            if (!trainable(M, L->w)) continue;
            char name[BL_MAX_NAME];
            bl_arch_tensor_name(t, l, false, name, sizeof name);
            views[i7] = view_of(P, L->w, L->m, L->n, name);
            s = bl_linear_dense_init(out, &views[i7], err);
        }
        made[i7] = !s;
    }
    if (!s && trainable(M, M->embed)) {
        sh.tok_embd = view_of(P, M->embed, c->vocab_size, c->dim, bl_arch_role("tok_embd")->hf);
        if (c->tied_embeddings) s = bl_linear_dense_init(&sh.output, &sh.tok_embd, err);
        made[total] = !s && c->tied_embeddings;
    }
    if (!s && !c->tied_embeddings && trainable(M, M->head)) {
        views[total + 1] = view_of(P, M->head, c->vocab_size, c->dim, bl_arch_role("output")->hf);
        s = bl_linear_dense_init(&sh.output, &views[total + 1], err);
        made[total] = !s;
    }
    if (!s) s = bl_model_save(&sh, outdir, method, extra_json, err);
    for (int l = 0; sh.layers && made && l < c->n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++)
            if (made[l * BL_PROJ_COUNT + p]) bl_linear_free(&sh.layers[l].proj[p]);
    if (made && made[total]) bl_linear_free(&sh.output);
    free(sh.layers);
    free(views);
    free(made);
    return s;
}
