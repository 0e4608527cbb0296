/* Output-channel importance from gradient statistics (ALGORITHMS.md §4): the mean squared output
 * gradients of every projection over the calibration windows (collected by the training engine,
 * bl_grad_stats), scaled to mean 1 per projection (only the ratios between channels matter to
 * the fit) plus 1e-6 so that no channel weighs zero. */
#include "bitllm/train.h"
#include "ptq/ptq_internal.h"

#include <stdlib.h>

bl_status bl_quant_grad_importance(const bl_model *m, const int32_t *ids, size_t n, int ctx,
                                   float ***out, bl_err *err) {
    return ptq_grad_importance(m, ids, n, ctx, out, NULL, err);
}

bl_status ptq_grad_importance(const bl_model *m, const int32_t *ids, size_t n, int ctx,
                              float ***out, double **scale, bl_err *err) {
    const int n_proj = m->cfg.n_layers * BL_PROJ_COUNT;
    float **g = calloc((size_t)n_proj, sizeof *g);
    double *sc = scale ? calloc((size_t)n_proj, sizeof *sc) : NULL;
    *out = NULL;
    if (scale) *scale = NULL;
    if (!g || (scale && !sc)) {
        free(g);
        free(sc);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    bl_status s = bl_grad_stats(m, ids, n, ctx, g, err);
    for (int i = 0; i < n_proj && !s; i++) {
        const int64_t rows = m->layers[i / BL_PROJ_COUNT].proj[i % BL_PROJ_COUNT].m;
        double mean = 0;
        for (int64_t j = 0; j < rows; j++) mean += g[i][j];
        mean = mean > 0 ? mean / (double)rows : 1.0;
        if (sc) sc[i] = mean;
        for (int64_t j = 0; j < rows; j++) g[i][j] = (float)(g[i][j] / mean) + 1e-6f;
    }
    if (s) {
        bl_quant_importance_free(m, g);
        free(sc);
        return s;
    }
    *out = g;
    if (scale) *scale = sc;
    return BL_OK;
}

void bl_quant_importance_free(const bl_model *m, float **imp) {
    for (int i = 0; imp && i < m->cfg.n_layers * BL_PROJ_COUNT; i++) free(imp[i]);
    free(imp);
}
