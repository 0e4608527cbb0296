/* Scalar reference for the group-quantized (qsym) product: the specification the AVX-512 kernel
 * is tested against. Each weight is dequantized with the one formula of bl_qmat (d·(c − 2^(b−1)),
 * exact in f32), each output accumulated in double in column order and rounded once. */
#include "bitllm/kernels.h"

float bl_qmat_weight(const bl_qmat *Q, int64_t i, int64_t j) {
    const uint8_t *row = Q->qs + i * bl_qmat_row_bytes(Q->n, Q->bits);
    const int64_t bit = j * Q->bits;
    unsigned v = row[bit >> 3];
    if ((bit & 7) + Q->bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
    const unsigned code = (v >> (bit & 7)) & ((1u << Q->bits) - 1u);
    const int64_t G = (Q->n + Q->group - 1) / Q->group;
    return Q->d[i * G + j / Q->group] * ((float)code - (float)(1 << (Q->bits - 1)));
}

void bl_qmat_matmul_ref(const bl_qmat *Q, const float *X, int64_t T, float *Y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < Q->m; i++) {
            double acc = 0.0;
            for (int64_t j = 0; j < Q->n; j++)
                acc += (double)bl_qmat_weight(Q, i, j) * (double)X[t * Q->n + j];
            Y[t * Q->m + i] = (float)acc;
        }
}
