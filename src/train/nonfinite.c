/* Where a NaN or Inf of the training engine came from, for error messages. Only called once a
 * loss or a gradient norm is known to be non-finite, so the scans cost nothing in normal runs. */
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>

/* First non-finite entry of rows×n values, or -1 (row index). */
static int64_t first_bad_row(const float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[r * n + i])) return r;
    return -1;
}

bool tr_find_nonfinite(const nn_model *M, const nn_acts_f32 *A, char *buf, size_t cap) {
    const int64_t N = A->N, D = M->cfg.dim, V = M->cfg.vocab_size;
    const int L = M->cfg.n_layers, T = A->T;
    int64_t r;
    for (int l = 0; l <= L; l++)
        if ((r = first_bad_row(A->x + (size_t)l * (size_t)(N * D), N, D)) >= 0) {
            if (l == 0)
                snprintf(buf, cap, "in the token embeddings (sequence %lld, position %lld)",
                         (long long)(r / T), (long long)(r % T));
            else
                snprintf(buf, cap, "in the output of layer %d (sequence %lld, position %lld)",
                         l - 1, (long long)(r / T), (long long)(r % T));
            return true;
        }
    if ((r = first_bad_row(A->xf, N, D)) >= 0) {
        snprintf(buf, cap, "after the final norm (sequence %lld, position %lld)",
                 (long long)(r / T), (long long)(r % T));
        return true;
    }
    if ((r = first_bad_row(A->logits, N, V)) >= 0) {
        snprintf(buf, cap, "in the logits (sequence %lld, position %lld)", (long long)(r / T),
                 (long long)(r % T));
        return true;
    }
    return false;
}

const char *tr_nonfinite_grad(const nn_model *M, const float *G) {
    for (int i = 0; i < M->n_t; i++) {
        const nn_tensor *t = &M->t[i];
        if (t->trainable && first_bad_row(G + t->off, 1, (int64_t)t->numel) >= 0) return t->name;
    }
    return NULL;
}
