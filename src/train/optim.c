/* AdamW with decoupled weight decay, the warm-up + cosine schedule, global-norm clipping and
 * sign flipping. Elementwise updates are split across threads; the gradient norm sums fixed
 * blocks in parallel and then the blocks in order, so nothing depends on the thread count. */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double tr_lr(const bl_distill_opts *o, int step) {
    if (o->warmup > 0 && step < o->warmup) return o->lr * (double)(step + 1) / (double)o->warmup;
    const int span = o->steps - o->warmup;
    if (span <= 1) return o->lr;
    const double progress = (double)(step - o->warmup) / (double)(span - 1);
    const double cosine = 0.5 * (1.0 + cos(M_PI * (progress < 1 ? progress : 1)));
    return o->lr_min + (o->lr - o->lr_min) * cosine;
}

#define NORM_BLOCK 65536

double tr_grad_norm(const nn_model *M, const float *G) {
    double total = 0;
    for (int i = 0; i < M->n_t; i++) {
        const nn_tensor *t = &M->t[i];
        if (!t->trainable) continue;
        const int64_t nb = (int64_t)((t->numel + NORM_BLOCK - 1) / NORM_BLOCK);
        double *part = malloc(sizeof(double) * (size_t)(nb ? nb : 1));
        if (!part) return NAN; /* reported as a numeric failure by the caller */
#pragma omp parallel for schedule(static) if (nb > 1)
        for (int64_t b = 0; b < nb; b++) {
            const size_t lo = (size_t)b * NORM_BLOCK;
            const size_t hi = lo + NORM_BLOCK < t->numel ? lo + NORM_BLOCK : t->numel;
            double s = 0;
            for (size_t j = lo; j < hi; j++) s += (double)G[t->off + j] * G[t->off + j];
            part[b] = s;
        }
        for (int64_t b = 0; b < nb; b++) total += part[b];
        free(part);
    }
    return sqrt(total);
}

void tr_adamw(const nn_model *M, float *P, const float *G, float *m, float *v, int t, double lr,
              double flip_ratio, float gscale, const bl_distill_opts *o) {
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->adam_eps;
    const float c1 = (float)(1.0 / (1.0 - pow(o->beta1, t)));
    const float c2 = (float)(1.0 / (1.0 - pow(o->beta2, t)));
    const float wd = (float)o->wd;
    for (int i = 0; i < M->n_t; i++) {
        const nn_tensor *tt = &M->t[i];
        if (!tt->trainable) continue;
        const float flr = (float)(tt->role == NN_R_FLIP ? lr * flip_ratio : lr);
        const float decay = tt->decay ? wd : 0.0f;
        const size_t off = tt->off;
#pragma omp parallel for schedule(static) if (tt->numel >= 65536)
        for (size_t j = off; j < off + tt->numel; j++) {
            const float g = G[j] * gscale;
            m[j] = b1 * m[j] + (1 - b1) * g;
            v[j] = b2 * v[j] + (1 - b2) * g * g;
            const float mh = m[j] * c1, vh = v[j] * c2;
            P[j] -= flr * (mh / (sqrtf(vh) + eps) + decay * P[j]);
        }
    }
}

typedef struct {
    float score;
    int64_t idx;
} flip_cand;

static int cand_cmp(const void *a, const void *b) {
    const flip_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* ties by position: a total order */
}

static bl_status flip_one(nn_signs *s, const float *P, double frac, int64_t *flips,
                          bl_err *err) {
    const int64_t n = s->rows * s->cols, rb = bl_sign_row_bytes(s->cols);
    const float *lat = P + s->latent;
    int64_t nc = 0;
    for (int64_t e = 0; e < n; e++) {
        const int sg = bl_sign_get(s->bits, rb, e / s->cols, e % s->cols);
        if ((float)sg * lat[e] < 0) nc++;
    }
    if (nc == 0) return BL_OK;
    flip_cand *c = malloc(sizeof *c * (size_t)nc);
    if (!c) return bl_fail(err, BL_ERR_NOMEM, "out of memory for sign flipping");
    nc = 0;
    for (int64_t e = 0; e < n; e++) {
        const int sg = bl_sign_get(s->bits, rb, e / s->cols, e % s->cols);
        if ((float)sg * lat[e] < 0) c[nc++] = (flip_cand){fabsf(lat[e]), e};
    }
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    int64_t limit = (int64_t)ceil(frac * (double)n);
    if (limit > nc) limit = nc;
    for (int64_t i = 0; i < limit; i++) {
        const int64_t r = c[i].idx / s->cols, col = c[i].idx % s->cols;
        s->bits[r * rb + (col >> 3)] ^= (uint8_t)(1u << (col & 7));
    }
    free(c);
    *flips += limit;
    return limit ? nn_signs_refresh(s, err) : BL_OK;
}

bl_status tr_flip_signs(nn_model *M, const float *P, double frac, int64_t *flips, bl_err *err) {
    *flips = 0;
    for (int l = 0; l < M->cfg.n_layers; l++)
        for (int p = 0; p < BL_PROJ_COUNT; p++) {
            nn_linear *L = &M->layers[l].proj[p];
            if (L->fmt->signs_follow_latent) continue; /* refreshed every step */
            for (int i = 0; i < L->n_signs; i++) {
                if (L->S[i].latent == NN_NONE) continue;
                bl_status s = flip_one(&L->S[i], P, frac, flips, err);
                if (s) return s;
            }
        }
    return BL_OK;
}
