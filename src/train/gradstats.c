/* Output-gradient second moments per projection channel (ALGORITHMS.md §4, the DBF importance
 * o): the model runs forward and backward on next-token cross-entropy over calibration windows
 * cut like the perplexity protocol, and the backward pass sums (∂ℓ/∂y)² at every projection
 * output. No parameter gradient is formed. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One window of w tokens: loss = Σ of the w−1 next-token NLLs (the last position predicts
 * nothing and gets no gradient). */
static bl_status run_window(nn_model *M, const float *P, double **sums, nn_acts_f32 **A,
                            const int32_t *win, int w, bl_err *err) {
    if (!*A || (*A)->T != w) { /* the last window may be shorter */
        nn_acts_free_f32(*A);
        *A = NULL;
        bl_status s = nn_acts_new_f32(M, 1, w, A, err);
        if (s) return s;
        (*A)->dy_sumsq = sums;
    }
    nn_acts_f32 *a = *A;
    const int V = M->cfg.vocab_size;
    nn_forward_f32(M, P, a, win);
    /* scale = rows so that each position's gradient is that of its own (unaveraged) NLL */
    const double loss = nn_hard_ce_f32(a->logits, win + 1, w - 1, V, (double)(w - 1), a->logits,
                                       a->row);
    if (!isfinite(loss)) {
        char where[200] = "";
        if (!tr_find_nonfinite(M, a, where, sizeof where)) snprintf(where, sizeof where, "?");
        return bl_fail(err, BL_ERR_NUMERIC, "the loss is not finite (%g): non-finite value %s",
                       loss, where);
    }
    memset(a->logits + (size_t)(w - 1) * V, 0, sizeof(float) * (size_t)V);
    nn_backward_f32(M, P, NULL, a, win, a->logits, NULL);
    return BL_OK;
}

bl_status bl_grad_stats(const bl_model *m, const int32_t *ids, size_t n, int ctx, float **out,
                        bl_err *err) {
    const bl_config *c = &m->cfg;
    const int total = c->n_layers * BL_PROJ_COUNT;
    for (int i = 0; i < total; i++) out[i] = NULL;
    if (ctx < 2 || ctx > c->max_seq)
        return bl_fail(err, BL_ERR_ARG, "context %d must be in [2, %d]", ctx, c->max_seq);
    if (n == 0) return bl_fail(err, BL_ERR_ARG, "no calibration tokens");
    nn_build_opts bo;
    nn_build_opts_default(&bo);
    bo.post_ln = -1;
    bo.train_norms = bo.train_quant = false;
    nn_model *M = NULL;
    float *P = NULL;
    nn_acts_f32 *A = NULL;
    double **sums = calloc((size_t)total, sizeof *sums);
    int32_t *win = malloc(sizeof(int32_t) * (size_t)ctx);
    bl_status s = sums && win ? BL_OK : bl_fail(err, BL_ERR_NOMEM, "out of memory");
    if (!s) s = nn_model_from_bl(m, ctx, &bo, &M, &P, err);
    for (int i = 0; i < total && !s; i++) {
        const nn_linear *L = &M->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT];
        sums[i] = calloc((size_t)L->m, sizeof(double));
        if (!sums[i]) s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    const bool bos = bl_model_adds_bos(m);
    const size_t chunk = (size_t)ctx - (bos ? 1 : 0);
    int64_t positions = 0;
    for (size_t at = 0; at < n && !s; at += chunk) {
        const size_t len = n - at < chunk ? n - at : chunk;
        int w = 0;
        if (bos) win[w++] = c->bos_id;
        memcpy(win + w, ids + at, len * sizeof(int32_t));
        w += (int)len;
        if (w < 2) break; /* a lone trailing token predicts nothing */
        s = run_window(M, P, sums, &A, win, w, err);
        if (s)
            bl_fail_context(err, s, "%s: output-gradient statistics, window %zu (calibration "
                            "tokens %zu to %zu)", m->path ? m->path : "model", at / chunk + 1, at,
                            at + len - 1);
        positions += w;
    }
    for (int i = 0; i < total && !s; i++) {
        const int64_t rows = M->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT].m;
        out[i] = malloc(sizeof(float) * (size_t)rows);
        if (!out[i]) {
            s = bl_fail(err, BL_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t r = 0; r < rows && !s; r++) {
            out[i][r] = (float)(sums[i][r] / (double)positions);
            if (!isfinite(out[i][r])) {
                char name[96];
                bl_proj_name(i / BL_PROJ_COUNT, i % BL_PROJ_COUNT, name, sizeof name);
                s = bl_fail(err, BL_ERR_NUMERIC, "%s: the output-gradient statistics of %s are "
                            "not finite (channel %lld)", m->path ? m->path : "model", name,
                            (long long)r);
            }
        }
        if (s) break;
    }
    if (s)
        for (int i = 0; i < total; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    for (int i = 0; sums && i < total; i++) free(sums[i]);
    free(sums);
    free(win);
    nn_acts_free_f32(A);
    nn_model_free(M);
    bl_aligned_free(P);
    return s;
}
