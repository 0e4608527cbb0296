/* Calibration: the calibration tokens run through the FP model in windows, with an observer
 * that accumulates the second moment of every projection input per channel (the input-channel
 * importance of the fits) and, for activation-aware fits, XᵀX of one layer at a time. */
#include "ptq/ptq_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

static const int proj_input[BL_PROJ_COUNT] = {PTQ_IN_ATTN, PTQ_IN_ATTN, PTQ_IN_ATTN, PTQ_IN_O,
                                              PTQ_IN_MLP,  PTQ_IN_MLP,  PTQ_IN_DOWN};
/* The first projection reading each input (the one whose input the observer records). */
static const int input_first[PTQ_IN_COUNT] = {BL_PROJ_Q, BL_PROJ_O, BL_PROJ_GATE, BL_PROJ_DOWN};

int ptq_proj_input(int p) { return proj_input[p]; }


static void observe(void *ctx, int layer, int proj, const float *x, int T, int64_t n) {
    ptq_calib *c = ctx;
    /* Each distinct input is seen first by q (attn), o, gate (mlp) and down. */
    const int in = proj_input[proj];
    if (input_first[in] != proj) return;
    double *ss = c->sumsq[in] + (size_t)layer * (size_t)n;
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) ss[j] += (double)x[(size_t)t * n + j] * x[(size_t)t * n + j];
    if (layer == 0 && proj == BL_PROJ_Q) c->count += T;
    if (layer == c->gram_layer && c->gram[in])
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, T, 1.0f, x, (int)n, 1.0f,
                    c->gram[in], (int)n);
}

void ptq_calib_free(ptq_calib *c) {
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        free(c->sumsq[i]);
        free(c->gram[i]);
    }
}

static bl_status calib_run(const bl_model *m, const bl_quant_opts *o, ptq_calib *c,
                           bl_err *err) {
    bl_state *st;
    int ctx = o->calib_ctx > 0 ? o->calib_ctx : 256;
    if (ctx > m->cfg.max_seq) ctx = m->cfg.max_seq;
    bl_status s = bl_state_new(m, ctx, ctx < 128 ? ctx : 128, o->n_threads, &st, err);
    if (s) return s;
    bl_state_set_observer(st, observe, c);
    int32_t *win = malloc((size_t)ctx * sizeof(int32_t));
    if (!win) {
        bl_state_free(st);
        return bl_fail(err, BL_ERR_NOMEM, "out of memory");
    }
    const bool bos = bl_model_adds_bos(m) && !o->calib_rows; /* rows start with their own BOS */
    const size_t chunk = (size_t)ctx - (bos ? 1 : 0);
    for (size_t at = 0; at < o->n_calib && !s; at += chunk) {
        size_t len = o->n_calib - at < chunk ? o->n_calib - at : chunk;
        int w = 0;
        if (bos) win[w++] = m->cfg.bos_id;
        memcpy(win + w, o->calib_ids + at, len * sizeof(int32_t));
        bl_state_reset(st);
        s = bl_forward(st, win, w + (int)len, NULL, false, err);
        if (s)
            bl_fail_context(err, s, "calibration: window %zu (calibration tokens %zu to %zu)",
                            at / chunk + 1, at, at + len - 1);
    }
    free(win);
    bl_state_free(st);
    return s;
}

static bl_status calib_init(const bl_model *m, ptq_calib *c, bl_err *err) {
    memset(c, 0, sizeof *c);
    c->n_layers = m->cfg.n_layers;
    c->gram_layer = -1;
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        int64_t rows;
        bl_proj_shape(&m->cfg, input_first[i], &rows, &c->width[i]);
    }
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        c->sumsq[i] = calloc((size_t)c->n_layers * (size_t)c->width[i], sizeof(double));
        if (!c->sumsq[i]) return bl_fail(err, BL_ERR_NOMEM, "out of memory for calibration");
    }
    return BL_OK;
}

/* H = XᵀX/N for every input of one layer (Hessian-aware fits), by a calibration pass. */
bl_status ptq_calib_gram(const bl_model *m, const bl_quant_opts *o, ptq_calib *c, int layer,
                            bl_err *err) {
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        free(c->gram[i]);
        c->gram[i] = calloc((size_t)(c->width[i] * c->width[i]), sizeof(float));
        if (!c->gram[i]) return bl_fail(err, BL_ERR_NOMEM, "out of memory for XᵀX");
    }
    /* The pass also re-adds second moments: keep them unchanged by saving and restoring. */
    double *saved[PTQ_IN_COUNT];
    for (int i = 0; i < PTQ_IN_COUNT; i++) saved[i] = c->sumsq[i];
    ptq_calib tmp = *c;
    bl_status s = calib_init(m, &tmp, err);
    tmp.gram_layer = layer;
    for (int i = 0; i < PTQ_IN_COUNT; i++) tmp.gram[i] = c->gram[i];
    if (!s) s = calib_run(m, o, &tmp, err);
    for (int i = 0; i < PTQ_IN_COUNT; i++) {
        free(tmp.sumsq[i]);
        c->sumsq[i] = saved[i];
        const int64_t n = c->width[i];
        float *H = c->gram[i];
        /* ssyrk filled the upper triangle: mirror it and divide by the token count. */
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = a; b < n; b++) {
                float v = H[a * n + b] / (float)(tmp.count ? tmp.count : 1);
                H[a * n + b] = H[b * n + a] = v;
            }
    }
    c->gram_layer = s ? -1 : layer;
    return s;
}


bl_status ptq_calib_collect(const bl_model *m, const bl_quant_opts *o, ptq_calib *c,
                            bl_err *err) {
    bl_status s = calib_init(m, c, err);
    return s ? s : calib_run(m, o, c, err);
}

bool ptq_hessian_fit(const bl_quant_opts *o) {
    return o->calib_ids && o->n_calib > 0 && o->activation_aware &&
           bl_method_uses(&o->method, false, BL_QP_CALIB) &&
           bl_method_uses(&o->method, false, BL_QP_ACTIVATION_AWARE);
}

void ptq_calib_in_importance(const ptq_calib *c, int l, int p, int64_t n, float *imp) {
    const double *ss = c->sumsq[proj_input[p]] + (size_t)l * (size_t)n;
    for (int64_t j = 0; j < n; j++)
        imp[j] = (float)(ss[j] / (double)(c->count ? c->count : 1)) + 1e-8f;
}
