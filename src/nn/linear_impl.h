/* Linear layers of the training engine, compiled once per precision (see nn.h): the dispatch
 * through a layer's trainable-format entry, and the list of trainable formats. Each format is one
 * file src/nn/linear_<name>.h holding its math (in both precisions) and its nn_format entry (in
 * the f32 pass). The binary layers multiply by their packed sign matrices with the sign kernels
 * in both directions (bl_sign_matmul / bl_sign_matmul_t) and never form a dense weight; only the
 * gradient of a sign matrix itself (a latent, flipping scores) is a dense m×n product, made by
 * one gemm. */
#ifndef NN_F64
#include "nn/nn_build.h"
#endif

bl_status FN(nn_linear_sync_signs)(nn_linear *L, const real *P, bl_err *err) {
    if (!L->fmt->signs_follow_latent) return BL_OK;
    nn_signs *S = &L->S[0];
    const int64_t rb = bl_sign_row_bytes(S->cols);
    const real *w = P + L->w;
#pragma omp parallel for schedule(static) if (S->rows * S->cols >= 65536)
    for (int64_t i = 0; i < S->rows; i++) {
        uint8_t *row = S->bits + i * rb;
        memset(row, 0, (size_t)rb);
        for (int64_t j = 0; j < S->cols; j++)
            if (w[i * S->cols + j] < 0) row[j >> 3] |= (uint8_t)(1u << (j & 7)); /* sign(0) = +1 */
    }
    return nn_signs_refresh(S, err);
}

/* ---- the trainable formats: one file each, one line in each of the two lists below ---- */

#include "nn/linear_dense.h"
#include "nn/linear_onebit.h"
#include "nn/linear_dbf.h"
#include "nn/linear_mdbf.h"

#ifndef NN_F64
/* The table nn_format_of searches (in the order `bitllm distill` lists them). */
const nn_format *const nn_formats[] = {&nn_format_dense, &nn_format_onebit, &nn_format_dbf,
                                       &nn_format_mdbf};
const int nn_n_formats = (int)(sizeof nn_formats / sizeof nn_formats[0]);
#endif

/* ---- dispatch ---- */

void FN(nn_lin_acts_bind)(FN(nn_lin_acts) *A, const nn_linear *L, int64_t N, real *mem) {
    A->z = A->y = A->r = NULL;
    L->fmt->FN(math)->bind(A, L, N, mem);
}

void FN(nn_linear_forward)(const nn_linear *L, const real *P, const real *x, int64_t N, real *y,
                           FN(nn_lin_acts) *A, real *work) {
    L->fmt->FN(math)->forward(L, P, x, N, y, A, work);
}

void FN(nn_linear_backward)(const nn_linear *L, const real *P, real *G, const real *x,
                            const real *dy, int64_t N, real *dx, FN(nn_lin_acts) *A,
                            real *work) {
    L->fmt->FN(math)->backward(L, P, G, x, dy, N, dx, A, work);
}
